//! Weight layout rewrites done before lowering, so that constants are stored the way the Cube
//! loads them.
//!
//! The L1 → L0B move transposes fractals only for 16-bit types, so a 32-bit GEMM needs B stored
//! `[n, k]`. A `MatMul` whose B is a constant `[k, n]` f32 matrix is rewritten to a `Gemm` with
//! `trans_b` over the transposed constant (computed once with the other constants), with its A
//! flattened to 2-D and its result reshaped back, both views.

use cubevec_ir::graph::{Node, TensorType};
use cubevec_ir::{Dim, Graph, NodeId, Op, Shape};

/// `graph` with every 32-bit `MatMul` by a constant 2-D matrix rewritten to a transposed-B
/// `Gemm` (see the module documentation). `constant` says which values depend on weights alone.
pub fn transpose_constant_b(graph: &Graph, constant: &[bool]) -> Graph {
    let mut out = graph.clone();
    for index in 0..graph.nodes.len() {
        let node = &graph.nodes[index];
        let (Op::MatMul, [Some(a), Some(b)]) = (&node.op, node.inputs.as_slice()) else {
            continue;
        };
        let (a_ty, b_ty) = (&graph.value(*a).ty, &graph.value(*b).ty);
        let [k, n] = b_ty.shape.dims() else {
            continue;
        };
        if !constant[b.index()] || b_ty.dtype.bits() != 32 || a_ty.shape.rank() < 2 {
            continue;
        }
        let Some((_, lead)) = a_ty.shape.dims().split_last() else {
            continue;
        };
        let m = lead.iter().fold(Dim::Known(1), |acc, d| acc.mul(d));
        let result = node.outputs[0];
        let result_ty = graph.value(result).ty.clone();
        // Named after the result value, which is unique (node names need not be: the optimiser
        // names every matmul it creates `optimized.matmul`), since constants are found by name.
        let name = &graph.value(result).name;
        let add = |out: &mut Graph, suffix: &str, ty: TensorType, op: Op, inputs| {
            let v = out.add_value(format!("{name}.{suffix}:0"), ty);
            out.add_node(Node {
                name: format!("{name}.{suffix}"),
                op,
                inputs,
                outputs: vec![v],
            });
            v
        };
        let b_t = add(
            &mut out,
            "b_transposed",
            TensorType::new(b_ty.dtype, Shape(vec![n.clone(), k.clone()])),
            Op::Transpose { perm: vec![1, 0] },
            vec![Some(*b)],
        );
        let a_2d = add(
            &mut out,
            "a_2d",
            TensorType::new(a_ty.dtype, Shape(vec![m.clone(), k.clone()])),
            Op::Reshape {
                shape: vec![m.clone(), k.clone()],
            },
            vec![Some(*a)],
        );
        let product = add(
            &mut out,
            "gemm",
            TensorType::new(result_ty.dtype, Shape(vec![m, n.clone()])),
            Op::Gemm {
                alpha_bits: 1f32.to_bits(),
                beta_bits: 0f32.to_bits(),
                trans_a: false,
                trans_b: true,
            },
            vec![Some(a_2d), Some(b_t), None],
        );
        let original = &mut out.nodes[NodeId(index as u32).0 as usize];
        original.op = Op::Reshape {
            shape: result_ty.shape.dims().to_vec(),
        };
        original.inputs = vec![Some(product)];
    }
    out
}
