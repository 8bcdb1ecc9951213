//! MoE recognition: the form exporters emit for a softmax-routed SwiGLU MoE block, which gathers a
//! full weight matrix per (token, choice) and multiplies it by the token:
//!
//! ```text
//! p = softmax(logits); (vals, idx) = topk(p, k); w = vals / sum(vals)   (or w = vals)
//! xr = reshape(expand(unsqueeze(x, 1)), [t·k, h]); i = unsqueeze(reshape(idx, [t·k]), -1)
//! y = squeeze(matmul(gather_nd(W_gate_up [e, 2f, h], i), unsqueeze(xr, -1)), -1)
//! a = swiglu(y[:, :f], y[:, f:])
//! z = squeeze(matmul(gather_nd(W_down [e, h, f], i), unsqueeze(a, -1)), -1)
//! out = reduce_sum(reshape(z * unsqueeze(reshape(w, [t·k]), -1), [t, k, h]), axis 1)
//! ```
//!
//! becomes `moe{top_k: k, routing: softmax_topk{normalize}, activation: swiglu}(x, logits,
//! W_gate_up[:, :f], W_gate_up[:, f:], W_down)`. Routing is preserved exactly: the same softmax,
//! the same top-k (ties to the lower index) and the same optional renormalisation.

use cubevec_ir::Dim;
use cubevec_ir::op::{BinaryOp, ExpertActivation, Op, ReduceOp, RoutingMode};
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot};
use crate::optimize::language::TensorNode;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(GatheredExperts)]
}

/// The operands of `op` nodes of `id` with a single operand, filtered by `pred` on the op.
fn through(ctx: &Ctx<'_>, id: Id, pred: impl Fn(&Op) -> bool) -> Vec<Id> {
    ctx.ops(id)
        .filter(|(op, operands)| pred(op) && operands.len() == 1)
        .map(|(_, operands)| operands[0])
        .collect()
}

fn is_unsqueeze_last(op: &Op) -> bool {
    matches!(op, Op::Unsqueeze { axes } if axes.as_slice() == [-1])
}

fn is_squeeze_last(op: &Op) -> bool {
    matches!(op, Op::Squeeze { axes } if axes.as_slice() == [-1])
}

/// `(weight, index)` for `squeeze(matmul(gather_nd(weight, index), unsqueeze(v, -1)), -1)` in
/// class `id` with the given `v` predicate.
fn expert_product(ctx: &Ctx<'_>, id: Id) -> Vec<(Id, Id, Id)> {
    let mut out = Vec::new();
    for mm in through(ctx, id, is_squeeze_last) {
        for (op, operands) in ctx.ops(mm) {
            let (Op::MatMul, [gathered, col]) = (op, operands) else {
                continue;
            };
            for v in through(ctx, *col, is_unsqueeze_last) {
                for (op2, operands2) in ctx.ops(*gathered) {
                    if let (Op::GatherNd { batch_dims: 0 }, [w, idx]) = (op2, operands2) {
                        out.push((*w, *idx, v));
                    }
                }
            }
        }
    }
    out
}

/// The tokens `x` for which class `xr` holds `reshape(expand(unsqueeze(x, 1)))`.
fn repeated_tokens(ctx: &Ctx<'_>, xr: Id) -> Vec<Id> {
    let mut out = Vec::new();
    for ex in through(ctx, xr, |op| matches!(op, Op::Reshape { .. })) {
        for us in through(ctx, ex, |op| matches!(op, Op::Expand { .. })) {
            out.extend(through(
                ctx,
                us,
                |op| matches!(op, Op::Unsqueeze { axes } if axes.as_slice() == [1]),
            ));
        }
    }
    out
}

/// `(topk tuple, k)` when class `idx_col` holds `unsqueeze(reshape(topk(..)[1]), -1)`.
fn expert_indices(ctx: &Ctx<'_>, idx_col: Id) -> Vec<(Id, u64)> {
    let mut out = Vec::new();
    for flat in through(ctx, idx_col, is_unsqueeze_last) {
        for idx in through(ctx, flat, |op| matches!(op, Op::Reshape { .. })) {
            for (i, tuple, op, _) in ctx.projections(idx) {
                if let (
                    1,
                    Op::TopK {
                        k, largest: true, ..
                    },
                ) = (i, op)
                {
                    out.push((tuple, *k));
                }
            }
        }
    }
    out
}

/// `(logits, normalize)` when class `w` holds the routing weights of the top-k `tuple` over
/// `softmax(logits)`: the selected probabilities, renormalised or not.
fn routing(ctx: &Ctx<'_>, w: Id, tuple: Id) -> Option<(Id, bool)> {
    let selected = |id: Id| {
        ctx.projections(id)
            .into_iter()
            .any(|(i, t, _, _)| i == 0 && ctx.same(t, tuple))
    };
    let normalize = if selected(w) {
        false
    } else {
        let renormalised = ctx.binary(w, BinaryOp::Div, false).into_iter().any(|(vals, s)| {
            selected(vals)
                && ctx.ops(s).any(|(op, operands)| {
                    matches!(op, Op::Reduce { op: ReduceOp::Sum, axes, keep_dims: true } if axes.as_slice() == [-1])
                        && operands.len() == 1
                        && ctx.same(operands[0], vals)
                })
        });
        if !renormalised {
            return None;
        }
        true
    };
    let p = ctx
        .ops(tuple)
        .find_map(|(op, operands)| match (op, operands) {
            (Op::TopK { axis, .. }, [p]) if ctx.is_last_axis(*p, &[*axis]) => Some(*p),
            _ => None,
        })?;
    let logits = ctx.ops(p).find_map(|(op, operands)| match (op, operands) {
        (Op::Softmax { axis }, [l]) if ctx.is_last_axis(*l, &[*axis]) => Some(*l),
        _ => None,
    })?;
    Some((logits, normalize))
}

/// `(gate-up weight, index column, tokens column)` for the SwiGLU activation class `a` computed
/// on the two halves of one gathered gate-up product.
fn fused_gate_up(ctx: &Ctx<'_>, a: Id) -> Vec<(Id, Id, Id)> {
    let mut ys = Vec::new();
    for (op, operands) in ctx.ops(a) {
        match (op, operands) {
            (
                Op::SwiGlu {
                    split: true,
                    limit_bits: None,
                },
                [y],
            ) => ys.push(*y),
            (
                Op::SwiGlu {
                    split: false,
                    limit_bits: None,
                },
                [g, u],
            ) => {
                for (gi, gt, gop, goperands) in ctx.projections(*g) {
                    let halves = ctx
                        .projections(*u)
                        .into_iter()
                        .any(|(ui, ut, _, _)| ui == 1 && ctx.same(ut, gt));
                    if let (0, Op::Split { axis: 1, sizes }, [y], true) =
                        (gi, gop, goperands, halves)
                        && sizes.len() == 2
                        && sizes[0] == sizes[1]
                    {
                        ys.push(*y);
                    }
                }
            }
            _ => {}
        }
    }
    ys.into_iter()
        .flat_map(|y| expert_product(ctx, y))
        .collect()
}

/// The gathered-experts MoE block → `moe`.
struct GatheredExperts;

impl Rule for GatheredExperts {
    fn name(&self) -> &'static str {
        "moe-gathered-experts"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (
            Some(Op::Reduce {
                op: ReduceOp::Sum,
                axes,
                keep_dims: false,
            }),
            [per_choice],
        ) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        if axes.as_slice() != [1] {
            return;
        }
        for zw in through(ctx, *per_choice, |op| matches!(op, Op::Reshape { .. })) {
            for (z, wcol) in ctx.binary(zw, BinaryOp::Mul, true) {
                for (down, idx_col, a) in expert_product(ctx, z) {
                    for (gate_up, idx_col2, xr_col) in fused_gate_up(ctx, a) {
                        if !ctx.same(idx_col, idx_col2) {
                            continue;
                        }
                        for (tuple, k) in expert_indices(ctx, idx_col) {
                            let weights = through(ctx, wcol, is_unsqueeze_last)
                                .into_iter()
                                .flat_map(|f| {
                                    through(ctx, f, |op| matches!(op, Op::Reshape { .. }))
                                });
                            for w in weights {
                                let Some((logits, normalize)) = routing(ctx, w, tuple) else {
                                    continue;
                                };
                                for x in repeated_tokens(ctx, xr_col) {
                                    if let Some(r) =
                                        build(ctx, class, x, logits, gate_up, down, k, normalize)
                                    {
                                        out.push(r);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `moe` replacement, when everything type-checks.
#[allow(clippy::too_many_arguments)]
fn build(
    ctx: &Ctx<'_>,
    class: Id,
    x: Id,
    logits: Id,
    gate_up: Id,
    down: Id,
    k: u64,
    normalize: bool,
) -> Option<Recipe> {
    let dims = ctx.ty(gate_up)?.shape.dims().to_vec();
    let Some(Dim::Known(two_f)) = dims.get(1).cloned() else {
        return None;
    };
    if dims.len() != 3 || two_f % 2 != 0 {
        return None;
    }
    let half = Dim::Known(two_f / 2);
    let mut r = Recipe::new();
    let split = r.op(
        ctx,
        Op::Split {
            axis: 1,
            sizes: vec![half.clone(), half],
        },
        &[Slot::Class(gate_up)],
    )?;
    let gate = r.get(ctx, split, 0)?;
    let up = r.get(ctx, split, 1)?;
    let op = Op::Moe {
        top_k: u32::try_from(k).ok()?,
        routing: RoutingMode::SoftmaxTopK { normalize },
        activation: ExpertActivation::SwiGlu,
    };
    let moe = r.op(
        ctx,
        op,
        &[
            Slot::Class(x),
            Slot::Class(logits),
            gate,
            up,
            Slot::Class(down),
        ],
    )?;
    (r.ty(ctx, moe) == ctx.ty(class)).then(|| r.union(class, moe))
}
