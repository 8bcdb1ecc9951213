//! Epilogue chains: the elementwise nodes after a `MatMul` or `Gemm` that may run in the GEMM's
//! own launch (a MIX kernel, see [`crate::lower::epilogue`]), and the binary nodes after a `Moe`
//! block that its combine kernel may apply (see [`crate::lower::moe`]).
//!
//! A chain starts at a GEMM whose product is not a weight-only value and follows the product
//! through nodes that are its only user: shape views that keep the last axis (the `[m, n]`
//! rows of the product stay rows), unary ops with a vector lowering, and binary ops with a
//! vector instruction whose other operand is a whole tensor of the product's shape, an `[n]`
//! row or a `[.., 1]` column (one value per row), and casts between f32, f16 and bf16 (exact
//! widenings anywhere, any other cast last). First in the chain may come a SwiGLU: of the
//! product's two halves, or of the product (the gate) and the product of a second GEMM of the
//! same input (the up projection, which the launch computes too). It stops at a value that is a
//! graph output or has several users, and ends at its last elementwise node, where the fused
//! launch goes (by then every other operand exists). After a `Moe` block a chain holds only
//! shape views and binary ops whose other operand is a whole tensor of the block's result (the
//! residual add). Whether a chain is fused is the partitioner's decision, by modelled time.

use cubevec_ir::graph::Node;
use cubevec_ir::{Graph, NodeId, Op, ValueId};

use crate::lower::epilogue::{
    EpilogueNode, fusible_binary, fusible_cast, fusible_gemm, fusible_unary, widens_exactly,
};
use crate::tile::epilogue::EpilogueOperand;

/// The most elementwise nodes one epilogue takes.
const MAX_NODES: usize = 8;

/// A GEMM or MoE block and the nodes after it that its launches may compute.
#[derive(Clone, Debug)]
pub struct Chain {
    /// The GEMM or `Moe` node.
    pub start: NodeId,
    /// The nodes folded into the launch after the start (views and elementwise ops), in order;
    /// the launch takes the place of the last.
    pub nodes: Vec<NodeId>,
    /// The up projection's GEMM of a two-GEMM SwiGLU, also computed by the launch.
    pub up_gemm: Option<NodeId>,
    /// The elementwise steps.
    pub ops: Vec<EpilogueNode>,
    /// The fused unit's operands: the start node's, then the steps' other operands.
    pub inputs: Vec<Option<ValueId>>,
    /// The value the launch writes.
    pub output: ValueId,
}

/// Every chain of `graph` (see the module documentation); `shape` is a value's bound shape
/// and `constant` says which values depend on weights alone.
pub fn find_chains(
    graph: &Graph,
    constant: &[bool],
    shape: &dyn Fn(ValueId) -> Option<Vec<u64>>,
) -> Vec<Chain> {
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); graph.values.len()];
    let mut producer: Vec<Option<NodeId>> = vec![None; graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            users[v.index()].push(NodeId(i as u32));
        }
        for v in &node.outputs {
            producer[v.index()] = Some(NodeId(i as u32));
        }
    }
    let mut is_output = vec![false; graph.values.len()];
    for v in &graph.outputs {
        is_output[v.index()] = true;
    }
    let uses = Uses {
        users: &users,
        producer: &producer,
        is_output: &is_output,
        constant,
    };
    (0..graph.nodes.len() as u32)
        .map(NodeId)
        .filter_map(|id| chain_from(graph, id, &uses, shape))
        .collect()
}

/// How values are used, by value index.
struct Uses<'a> {
    users: &'a [Vec<NodeId>],
    producer: &'a [Option<NodeId>],
    is_output: &'a [bool],
    constant: &'a [bool],
}

impl Uses<'_> {
    /// Whether `user` alone reads `value`, which is neither a graph output nor weight-only: a
    /// value a fused launch may keep to itself.
    fn private_to(&self, value: ValueId, user: NodeId) -> bool {
        self.users[value.index()] == [user]
            && !self.is_output[value.index()]
            && !self.constant[value.index()]
    }
}

/// The up projection of a two-GEMM SwiGLU `swiglu` whose gate is `gate`: a GEMM with the same
/// op, the same A and no C, whose product only the SwiGLU reads.
fn up_projection(graph: &Graph, gate: &Node, swiglu: NodeId, uses: &Uses) -> Option<NodeId> {
    let up_value = graph.node(swiglu).inputs.get(1).copied().flatten()?;
    let up = uses.producer[up_value.index()]?;
    let node = graph.node(up);
    let no_c = |n: &Node| n.inputs.get(2).is_none_or(Option::is_none);
    (node.op == gate.op
        && node.inputs.first() == gate.inputs.first()
        && no_c(node)
        && no_c(gate)
        && node.inputs.get(1).is_some_and(Option::is_some)
        && uses.private_to(up_value, swiglu))
    .then_some(up)
}

fn chain_from(
    graph: &Graph,
    start: NodeId,
    uses: &Uses,
    shape: &dyn Fn(ValueId) -> Option<Vec<u64>>,
) -> Option<Chain> {
    let node = graph.node(start);
    let &product = node.outputs.first()?;
    let moe = matches!(node.op, Op::Moe { .. });
    if !(moe || fusible_gemm(&node.op)) || uses.constant[product.index()] {
        return None;
    }
    let mut n = *shape(product)?.last()?;
    let mut dtype = graph.value(product).ty.dtype;
    let mut chain = Chain {
        start,
        nodes: Vec::new(),
        up_gemm: None,
        ops: Vec::new(),
        inputs: node.inputs.clone(),
        output: product,
    };
    // The nodes and the result up to the last elementwise node (views after it stay out).
    let mut kept = (0, product);
    let mut current = product;
    while chain.ops.len() < MAX_NODES && !uses.is_output[current.index()] {
        let [user] = uses.users[current.index()].as_slice() else {
            break;
        };
        let next = graph.node(*user);
        let (Some(&result), Some(current_shape)) = (next.outputs.first(), shape(current)) else {
            break;
        };
        let result_shape = shape(result)?;
        let result_dtype = graph.value(result).ty.dtype;
        let cast = matches!(next.op, Op::Cast { .. })
            && !moe
            && fusible_cast(dtype, result_dtype)
            && result_shape == current_shape;
        if result_dtype != dtype && !cast {
            break;
        }
        let ops_before = chain.ops.len();
        let mut ends = false;
        match &next.op {
            Op::Cast { .. } if cast => {
                chain.ops.push(EpilogueNode::Cast {
                    from: dtype,
                    to: result_dtype,
                });
                // A rounding cast ends the chain: the launch's store does it.
                ends = !widens_exactly(dtype, result_dtype);
                dtype = result_dtype;
            }
            op if op.is_view() && result_shape.last() == Some(&n) => {}
            Op::SwiGlu {
                split: true,
                limit_bits: None,
            } if !moe && chain.ops.is_empty() && result_shape.last() == Some(&(n / 2)) => {
                n /= 2;
                chain.ops.push(EpilogueNode::SwiGlu { up: None });
            }
            Op::SwiGlu {
                split: false,
                limit_bits: None,
            } if !moe
                && chain.ops.is_empty()
                && next.inputs.first() == Some(&Some(current))
                && result_shape == current_shape =>
            {
                let Some(up) = up_projection(graph, node, *user, uses) else {
                    break;
                };
                let up_node = graph.node(up);
                chain.inputs.push(up_node.inputs[1]);
                chain.up_gemm = Some(up);
                chain.ops.push(EpilogueNode::SwiGlu {
                    up: Some(chain.inputs.len() - 1),
                });
            }
            Op::Unary(op) if !moe && fusible_unary(*op) && result_shape == current_shape => {
                chain.ops.push(EpilogueNode::Unary(*op));
            }
            Op::Binary(op) if fusible_binary(*op) && result_shape == current_shape => {
                let slots: Vec<usize> = (0..next.inputs.len())
                    .filter(|&i| next.inputs[i] == Some(current))
                    .collect();
                let ([slot], [Some(a), Some(b)]) = (slots.as_slice(), next.inputs.as_slice())
                else {
                    break;
                };
                let other = if *slot == 0 { *b } else { *a };
                let lines_up = match EpilogueOperand::of(&shape(other)?, &current_shape) {
                    Some(EpilogueOperand::Full) => true,
                    Some(EpilogueOperand::Row | EpilogueOperand::Column) => !moe,
                    None => false,
                };
                if !lines_up || graph.value(other).ty.dtype != dtype {
                    break;
                }
                let operand = match chain.inputs.iter().position(|v| *v == Some(other)) {
                    Some(i) if i >= node.inputs.len() => i,
                    _ => {
                        chain.inputs.push(Some(other));
                        chain.inputs.len() - 1
                    }
                };
                chain.ops.push(EpilogueNode::Binary {
                    op: *op,
                    operand,
                    product_first: *slot == 0,
                });
            }
            _ => break,
        }
        chain.nodes.push(*user);
        current = result;
        if chain.ops.len() > ops_before {
            kept = (chain.nodes.len(), current);
        }
        if ends {
            break;
        }
    }
    if chain.ops.is_empty() {
        return None;
    }
    // Views add neither steps nor operands: only the nodes and the result need trimming.
    chain.nodes.truncate(kept.0);
    chain.output = kept.1;
    Some(chain)
}
