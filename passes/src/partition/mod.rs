//! Partitioning a graph into kernels: each compute node becomes one tiled kernel.
//!
//! `MatMul`, `Gemm` and `GroupedMatMul` become Cube kernels ([`crate::tile::gemm`]); elementwise
//! unary and binary ops, `SwiGlu` (separate operands), `RmsNorm` and `Softmax` over the last
//! axis become Vector kernels ([`crate::tile::vector`]). Shape-only ops (`Reshape`, `Squeeze`,
//! `Unsqueeze`) are views and produce no kernel. Every other op is reported as unsupported,
//! naming the node. Symbolic dimensions are bound first, so kernels are shape-specialised.
//!
//! Not yet done: fusing vector epilogues into MIX kernels and fusing elementwise chains across
//! nodes; each node is its own kernel. Grouped GEMMs are tiled for a balanced routing profile
//! (`tokens / experts` rows per expert), which the report states.

use std::collections::BTreeMap;

use cubevec_ir::graph::TensorType;
use cubevec_ir::kernel::Kernel;
use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Graph, NodeId, Op};
use serde::Serialize;

use crate::cost::{Bound, KernelCost};
use crate::tile::TileError;
use crate::tile::gemm::{GemmProblem, plan};
use crate::tile::vector::{
    ChainArg, ChainStep, ElementwiseChain, RowKind, RowWise, plan_chain, plan_rows,
};

/// Which values depend on initializers alone (indexed by value id).
fn weight_only_values(graph: &Graph) -> Vec<bool> {
    let mut weight_only = vec![false; graph.values.len()];
    for init in &graph.initializers {
        weight_only[init.value.index()] = true;
    }
    let order = graph
        .topological_order()
        .unwrap_or_else(|_| (0..graph.nodes.len() as u32).map(NodeId).collect());
    for id in order {
        let node = graph.node(id);
        if node.inputs.iter().flatten().all(|v| weight_only[v.index()]) {
            for v in &node.outputs {
                weight_only[v.index()] = true;
            }
        }
    }
    weight_only
}

/// Errors of the partitioner.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The op has no kernel mapping yet.
    #[error("{node}: {reason}")]
    Unsupported {
        /// The node, described.
        node: String,
        /// Why.
        reason: String,
    },
    /// A shape has an unbound symbol.
    #[error("{node}: shape of operand {operand} is not bound by the given dimensions")]
    Unbound {
        /// The node, described.
        node: String,
        /// Operand or result index.
        operand: usize,
    },
    /// Tiling failed.
    #[error("{node}: {source}")]
    Tile {
        /// The node, described.
        node: String,
        /// The tiler error.
        source: Box<TileError>,
    },
}

/// Which cores a planned kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KernelKind {
    /// Cube cores only.
    Cube,
    /// Vector cores only.
    Vector,
}

/// One kernel of a partitioned graph.
#[derive(Clone, Debug)]
pub struct PlannedKernel {
    /// The node it implements.
    pub node: NodeId,
    /// Cube or vector.
    pub kind: KernelKind,
    /// The tiled kernel.
    pub kernel: Kernel,
    /// Its estimate.
    pub cost: KernelCost,
    /// Assumptions the plan rests on (e.g. the routing profile of a grouped GEMM).
    pub assumptions: Vec<String>,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelReport {
    /// Kernel name.
    pub name: String,
    /// Cube or vector.
    pub kind: KernelKind,
    /// Tiling facts.
    pub tiles: BTreeMap<String, u64>,
    /// Useful operations.
    pub flops: f64,
    /// Minimum HBM bytes.
    pub bytes: f64,
    /// Modelled time in microseconds.
    pub modeled_time_us: f64,
    /// Roofline limit.
    pub bound: Bound,
    /// Roofline time / modelled time.
    pub efficiency: f64,
    /// Plan assumptions.
    pub assumptions: Vec<String>,
}

/// The per-kernel report of a partitioned graph, serialisable as JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PartitionReport {
    /// Graph name.
    pub graph: String,
    /// Target name.
    pub target: String,
    /// Kernels in execution order.
    pub kernels: Vec<KernelReport>,
    /// Sum of the modelled kernel times (launch overheads excluded).
    pub total_modeled_time_us: f64,
}

/// Builds the report of planned kernels.
pub fn report(graph: &Graph, target: &Target, kernels: &[PlannedKernel]) -> PartitionReport {
    PartitionReport {
        graph: graph.name.clone(),
        target: target.name.clone(),
        kernels: kernels
            .iter()
            .map(|k| KernelReport {
                name: k.kernel.name.clone(),
                kind: k.kind,
                tiles: k.kernel.tiling.clone(),
                flops: k.cost.flops,
                bytes: k.cost.bytes,
                modeled_time_us: k.cost.modeled_time_us,
                bound: k.cost.bound,
                efficiency: k.cost.efficiency,
                assumptions: k.assumptions.clone(),
            })
            .collect(),
        total_modeled_time_us: kernels.iter().map(|k| k.cost.modeled_time_us).sum(),
    }
}

/// Maps every compute node of `graph` (in node order) to a tiled kernel for `target`, with the
/// graph's symbolic dimensions bound by `bindings`. Nodes computed from weights alone (FP8
/// dequantisation, packing merged weights) are weight preparation done once at load time, not
/// kernels of the forward pass.
pub fn partition(
    graph: &Graph,
    target: &Target,
    bindings: &DimBindings,
) -> Result<Vec<PlannedKernel>, PartitionError> {
    let weight_only = weight_only_values(graph);
    let mut out = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        let id = NodeId(index as u32);
        if node.inputs.iter().flatten().all(|v| weight_only[v.index()]) {
            continue;
        }
        let describe = || graph.describe_node(id);
        let concrete = |slot: usize, ty: &TensorType| -> Result<Vec<u64>, PartitionError> {
            ty.shape
                .eval(bindings)
                .ok_or_else(|| PartitionError::Unbound {
                    node: describe(),
                    operand: slot,
                })
        };
        let mut inputs = Vec::new();
        for (slot, v) in node.inputs.iter().enumerate() {
            match v {
                Some(v) => {
                    let ty = &graph.value(*v).ty;
                    inputs.push(Some((ty.dtype, concrete(slot, ty)?)));
                }
                None => inputs.push(None),
            }
        }
        let Some(&out_id) = node.outputs.first() else {
            continue;
        };
        let out_ty = &graph.value(out_id).ty;
        let out_shape = concrete(node.inputs.len(), out_ty)?;
        let name = kernel_name(index, &node.name, node.op.name());
        let unsupported = |reason: String| PartitionError::Unsupported {
            node: describe(),
            reason,
        };
        let tile_err = |source: TileError| PartitionError::Tile {
            node: describe(),
            source: Box::new(source),
        };
        let operand = |i: usize| -> Result<(DType, Vec<u64>), PartitionError> {
            inputs
                .get(i)
                .cloned()
                .flatten()
                .ok_or_else(|| unsupported(format!("operand {i} is absent")))
        };
        let cube = |problem: GemmProblem,
                    assumptions: Vec<String>|
         -> Result<PlannedKernel, PartitionError> {
            let chosen = plan(&problem, target).map_err(tile_err)?;
            Ok(PlannedKernel {
                node: id,
                kind: KernelKind::Cube,
                kernel: chosen.kernel,
                cost: chosen.cost,
                assumptions,
            })
        };
        let planned = match &node.op {
            Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => continue,
            Op::MatMul => {
                let (dtype, a) = operand(0)?;
                let (_, b) = operand(1)?;
                let problem =
                    matmul_problem(&name, dtype, out_ty.dtype, &a, &b).ok_or_else(|| {
                        unsupported(format!(
                            "matmul of {a:?} by {b:?} (broadcast batches are not tiled yet)"
                        ))
                    })?;
                cube(problem, Vec::new())?
            }
            Op::Gemm {
                alpha_bits,
                beta_bits,
                trans_a,
                trans_b,
            } => {
                let has_c = node.inputs.get(2).is_some_and(Option::is_some);
                if *trans_a
                    || f32::from_bits(*alpha_bits) != 1.0
                    || (has_c && f32::from_bits(*beta_bits) != 0.0)
                {
                    return Err(unsupported(
                        "Gemm with transposed A, alpha ≠ 1 or a C term is not tiled yet".into(),
                    ));
                }
                let (dtype, a) = operand(0)?;
                let (_, b) = operand(1)?;
                let (m, k) = (a[0], a[1]);
                let n = if *trans_b { b[0] } else { b[1] };
                let mut problem = GemmProblem::plain(&name, m, n, k, dtype, *trans_b);
                problem.output = out_ty.dtype;
                cube(problem, Vec::new())?
            }
            Op::GroupedMatMul => {
                let (dtype, x) = operand(0)?;
                let (_, w) = operand(1)?;
                let (tokens, k, experts, n) = (x[0], x[1], w[0], w[1]);
                if experts == 0 {
                    return Err(unsupported("no experts".into()));
                }
                let groups: Vec<u64> = (0..experts)
                    .map(|e| tokens / experts + u64::from(e < tokens % experts))
                    .collect();
                let problem = GemmProblem {
                    name: name.clone(),
                    groups,
                    n,
                    k,
                    input: dtype,
                    output: out_ty.dtype,
                    b_transposed: true,
                    relu: false,
                };
                cube(
                    problem,
                    vec![format!(
                        "balanced routing: {tokens} tokens over {experts} experts"
                    )],
                )?
            }
            Op::RmsNorm { axis, epsilon_bits } => {
                let (dtype, x) = operand(0)?;
                last_axis(*axis, x.len()).map_err(&unsupported)?;
                let cols = x.last().copied().unwrap_or(1);
                let op = RowWise {
                    name,
                    rows: x.iter().product::<u64>() / cols.max(1),
                    cols,
                    dtype,
                    kind: RowKind::RmsNorm {
                        eps: f32::from_bits(*epsilon_bits) as f64,
                    },
                };
                vector_plan(id, plan_rows(&op, target).map_err(tile_err)?)
            }
            Op::Softmax { axis } => {
                let (dtype, x) = operand(0)?;
                last_axis(*axis, x.len()).map_err(&unsupported)?;
                let cols = x.last().copied().unwrap_or(1);
                let op = RowWise {
                    name,
                    rows: x.iter().product::<u64>() / cols.max(1),
                    cols,
                    dtype,
                    kind: RowKind::Softmax,
                };
                vector_plan(id, plan_rows(&op, target).map_err(tile_err)?)
            }
            Op::SwiGlu {
                split: false,
                limit_bits: None,
            } => {
                let chain =
                    ElementwiseChain::swiglu(&name, out_shape.iter().product(), out_ty.dtype);
                vector_plan(id, plan_chain(&chain, target).map_err(tile_err)?)
            }
            Op::Unary(u) => {
                let steps = unary_steps(*u)
                    .ok_or_else(|| unsupported(format!("no vector lowering of {u:?}")))?;
                let chain = ElementwiseChain {
                    name,
                    len: out_shape.iter().product(),
                    dtype: out_ty.dtype,
                    inputs: 1,
                    steps,
                    output: 0,
                };
                vector_plan(id, plan_chain(&chain, target).map_err(tile_err)?)
            }
            Op::Binary(b) => {
                let (_, lhs) = operand(0)?;
                let (_, rhs) = operand(1)?;
                if lhs != out_shape || rhs != out_shape {
                    return Err(unsupported(
                        "broadcasting binary ops are not tiled yet".into(),
                    ));
                }
                let op = binary_op(*b)
                    .ok_or_else(|| unsupported(format!("no vector lowering of {b:?}")))?;
                let chain = ElementwiseChain {
                    name,
                    len: out_shape.iter().product(),
                    dtype: out_ty.dtype,
                    inputs: 2,
                    steps: vec![ChainStep {
                        op,
                        dst: 0,
                        srcs: vec![ChainArg::Input(0), ChainArg::Input(1)],
                    }],
                    output: 0,
                };
                vector_plan(id, plan_chain(&chain, target).map_err(tile_err)?)
            }
            other => {
                return Err(unsupported(format!(
                    "`{}` has no kernel mapping yet",
                    other.name()
                )));
            }
        };
        out.push(planned);
    }
    Ok(out)
}

fn vector_plan(node: NodeId, plan: crate::tile::vector::VectorPlan) -> PlannedKernel {
    PlannedKernel {
        node,
        kind: KernelKind::Vector,
        kernel: plan.kernel,
        cost: plan.cost,
        assumptions: Vec::new(),
    }
}

fn last_axis(axis: i64, rank: usize) -> Result<(), String> {
    let normalized = if axis < 0 { axis + rank as i64 } else { axis };
    if rank > 0 && normalized == rank as i64 - 1 {
        Ok(())
    } else {
        Err(format!(
            "only the last axis is tiled (axis {axis} of rank {rank})"
        ))
    }
}

/// A C identifier for the kernel of node `index`.
fn kernel_name(index: usize, node_name: &str, op: &str) -> String {
    let clean: String = node_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if clean.is_empty() {
        format!("k{index}_{op}")
    } else {
        format!("k{index}_{clean}")
    }
}

/// `a [..., m, k] · b [k, n]` (leading dims of `a` folded into m) or equal-batch 3-D operands.
fn matmul_problem(
    name: &str,
    dtype: DType,
    output: DType,
    a: &[u64],
    b: &[u64],
) -> Option<GemmProblem> {
    let (&k, lead) = a.split_last()?;
    match b {
        [kb, n] if *kb == k => {
            let m: u64 = lead.iter().product();
            let mut p = GemmProblem::plain(name, m, *n, k, dtype, false);
            p.output = output;
            Some(p)
        }
        [batch, kb, n] if *kb == k && a.len() == 3 && a[0] == *batch => Some(GemmProblem {
            name: name.to_string(),
            groups: vec![a[1]; *batch as usize],
            n: *n,
            k,
            input: dtype,
            output,
            b_transposed: false,
            relu: false,
        }),
        _ => None,
    }
}

fn unary_steps(op: UnaryOp) -> Option<Vec<ChainStep>> {
    use ChainArg::{Imm, Input, Temp};
    use cubevec_ir::kernel::VecOp as V;
    let one = |op, src| {
        vec![ChainStep {
            op,
            dst: 0,
            srcs: src,
        }]
    };
    Some(match op {
        UnaryOp::Exp => one(V::Exp, vec![Input(0)]),
        UnaryOp::Log => one(V::Ln, vec![Input(0)]),
        UnaryOp::Abs => one(V::Abs, vec![Input(0)]),
        UnaryOp::Sqrt => one(V::Sqrt, vec![Input(0)]),
        UnaryOp::Rsqrt => one(V::Rsqrt, vec![Input(0)]),
        UnaryOp::Reciprocal => one(V::Reciprocal, vec![Input(0)]),
        UnaryOp::Relu => one(V::Relu, vec![Input(0)]),
        UnaryOp::Neg => one(V::Muls, vec![Input(0), Imm(-1.0)]),
        UnaryOp::Sigmoid | UnaryOp::Silu => {
            let step = |op, srcs| ChainStep { op, dst: 0, srcs };
            let mut steps = vec![
                step(V::Muls, vec![Input(0), Imm(-1.0)]),
                step(V::Exp, vec![Temp(0)]),
                step(V::Adds, vec![Temp(0), Imm(1.0)]),
            ];
            if op == UnaryOp::Sigmoid {
                steps.push(step(V::Reciprocal, vec![Temp(0)]));
            } else {
                steps.push(step(V::Div, vec![Input(0), Temp(0)]));
            }
            steps
        }
        _ => return None,
    })
}

fn binary_op(op: BinaryOp) -> Option<cubevec_ir::kernel::VecOp> {
    use cubevec_ir::kernel::VecOp as V;
    Some(match op {
        BinaryOp::Add => V::Add,
        BinaryOp::Sub => V::Sub,
        BinaryOp::Mul => V::Mul,
        BinaryOp::Div => V::Div,
        BinaryOp::Max => V::Max,
        BinaryOp::Min => V::Min,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use cubevec_ir::graph::{TensorType, WeightData};
    use cubevec_ir::kernel::verify;
    use cubevec_ir::{Dim, Shape};

    use super::*;

    fn ty(dtype: DType, dims: Vec<Dim>) -> TensorType {
        TensorType::new(dtype, Shape(dims))
    }

    fn small_block() -> Graph {
        let mut g = Graph::new("block");
        let mut b = g.builder();
        let seq = Dim::sym("seq");
        let x = b
            .add_input("x", ty(DType::BF16, vec![seq.clone(), Dim::Known(256)]))
            .expect("x");
        let gamma = b
            .add_initializer(
                "gamma",
                ty(DType::BF16, vec![Dim::Known(256)]),
                WeightData::Absent,
            )
            .expect("gamma");
        let w1 = b
            .add_initializer(
                "w1",
                ty(DType::BF16, vec![Dim::Known(256), Dim::Known(512)]),
                WeightData::Absent,
            )
            .expect("w1");
        let experts = b
            .add_initializer(
                "experts",
                ty(
                    DType::BF16,
                    vec![Dim::Known(4), Dim::Known(128), Dim::Known(256)],
                ),
                WeightData::Absent,
            )
            .expect("experts");
        let sizes = b
            .add_input("group_sizes", ty(DType::I64, vec![Dim::Known(4)]))
            .expect("sizes");
        let normed = b
            .add_op(
                "norm",
                Op::RmsNorm {
                    axis: -1,
                    epsilon_bits: 1e-6f32.to_bits(),
                },
                vec![Some(x), Some(gamma)],
                vec![],
            )
            .expect("norm")[0];
        let h = b
            .add_op("up", Op::MatMul, vec![Some(normed), Some(w1)], vec![])
            .expect("matmul")[0];
        let act = b
            .add_op("act", Op::Unary(UnaryOp::Silu), vec![Some(h)], vec![])
            .expect("silu")[0];
        let probs = b
            .add_op("probs", Op::Softmax { axis: -1 }, vec![Some(act)], vec![])
            .expect("softmax")[0];
        let moe = b
            .add_op(
                "experts",
                Op::GroupedMatMul,
                vec![Some(normed), Some(experts), Some(sizes)],
                vec![],
            )
            .expect("grouped")[0];
        b.add_output(probs).expect("out");
        b.add_output(moe).expect("out");
        g
    }

    #[test]
    fn a_block_partitions_into_verified_cube_and_vector_kernels() {
        let graph = small_block();
        let target = Target::by_name("ascend910b2").expect("target");
        let bindings: DimBindings = [("seq".to_string(), 64)].into_iter().collect();
        let kernels = partition(&graph, &target, &bindings).expect("partition");
        let kinds: Vec<(String, KernelKind)> = kernels
            .iter()
            .map(|k| (k.kernel.name.clone(), k.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("k0_norm".to_string(), KernelKind::Vector),
                ("k1_up".to_string(), KernelKind::Cube),
                ("k2_act".to_string(), KernelKind::Vector),
                ("k3_probs".to_string(), KernelKind::Vector),
                ("k4_experts".to_string(), KernelKind::Cube),
            ]
        );
        for k in &kernels {
            verify(&k.kernel, &target).expect("verify");
            assert!(k.cost.efficiency > 0.0 && k.cost.efficiency <= 1.0);
        }
        let rep = report(&graph, &target, &kernels);
        let json = serde_json::to_string(&rep).expect("json");
        assert!(json.contains("\"modeled_time_us\"") && json.contains("balanced routing"));
        assert_eq!(rep.kernels[1].flops, 2.0 * 64.0 * 256.0 * 512.0);
    }

    #[test]
    fn unbound_symbols_and_unsupported_ops_name_the_node() {
        let graph = small_block();
        let target = Target::by_name("ascend910b2").expect("target");
        let err = partition(&graph, &target, &DimBindings::new()).expect_err("seq unbound");
        assert!(err.to_string().contains("norm"), "{err}");

        let mut g = Graph::new("topk");
        let mut b = g.builder();
        let x = b
            .add_input("x", ty(DType::F32, vec![Dim::Known(8), Dim::Known(16)]))
            .expect("x");
        let y = b
            .add_op("floor_it", Op::Unary(UnaryOp::Floor), vec![Some(x)], vec![])
            .expect("floor")[0];
        b.add_output(y).expect("out");
        let err = partition(&g, &target, &DimBindings::new()).expect_err("floor");
        assert!(err.to_string().contains("floor_it"), "{err}");
    }
}
