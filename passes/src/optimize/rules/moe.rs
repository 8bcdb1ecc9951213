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
//!
//! DeepSeek-V3's group-limited sigmoid routing is recognised in the same block:
//!
//! ```text
//! s = sigmoid(logits); c = s + bias                                  (or c = s)
//! best2 = topk(reshape(c, [t, g, e/g]), 2)[0]; gi = topk(reduce_sum(best2, -1), kg)[1]
//! kept = cast(reshape(expand(unsqueeze(scatter_elements(0, gi, 1), -1)), [t, e]), bool)
//! idx = topk(where(not(kept), -inf, c), k)[1]                          (or topk(c, k))
//! w = gather_elements(s, idx) [/ reduce_sum(.., -1)] [* scaling]
//! ```
//!
//! becomes `moe{routing: sigmoid_group_limited{g, kg, normalize, scaling}}(.., bias)`: the same
//! group scores (sum of each group's top two), the same kept groups and experts (ties to the
//! lower index, excluded experts at -∞), the same unbiased weights.

use cubevec_ir::op::{
    BinaryOp, ExpertActivation, Op, ReduceOp, RoutingMode, ScatterReduction, UnaryOp,
};
use cubevec_ir::{DType, Dim};
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot, f32_bits};
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

/// How a block routes: the router logits, the fused op's routing mode and its selection bias.
struct Routing {
    logits: Id,
    mode: RoutingMode,
    bias: Option<Id>,
}

/// The routings for which class `w` holds the weights of the experts chosen by the top-k
/// `tuple`.
fn routing(ctx: &Ctx<'_>, w: Id, tuple: Id) -> Vec<Routing> {
    let mut out: Vec<Routing> = softmax_routing(ctx, w, tuple)
        .map(|(logits, normalize)| Routing {
            logits,
            mode: RoutingMode::SoftmaxTopK { normalize },
            bias: None,
        })
        .into_iter()
        .collect();
    out.extend(sigmoid_routing(ctx, w, tuple));
    out
}

/// Whether class `id` holds the chosen values of the top-k `tuple`.
fn selected_values(ctx: &Ctx<'_>, id: Id, tuple: Id) -> bool {
    ctx.projections(id)
        .into_iter()
        .any(|(i, t, _, _)| i == 0 && ctx.same(t, tuple))
}

/// Whether class `id` holds the chosen indices of the top-k `tuple`.
fn selected_indices(ctx: &Ctx<'_>, id: Id, tuple: Id) -> bool {
    ctx.projections(id)
        .into_iter()
        .any(|(i, t, _, _)| i == 1 && ctx.same(t, tuple))
}

/// `(x, true)` for `x / reduce_sum(x, last axis, keep_dims)` in class `w`, and `(w, false)`.
fn maybe_normalised(ctx: &Ctx<'_>, w: Id) -> Vec<(Id, bool)> {
    let mut out = vec![(w, false)];
    for (x, s) in ctx.binary(w, BinaryOp::Div, false) {
        let sum_of_x = ctx.ops(s).any(|(op, operands)| match (op, operands) {
            (
                Op::Reduce {
                    op: ReduceOp::Sum,
                    axes,
                    keep_dims: true,
                },
                [y],
            ) => ctx.same(*y, x) && ctx.is_last_axis(x, axes),
            _ => false,
        });
        if sum_of_x {
            out.push((x, true));
        }
    }
    out
}

/// `(logits, normalize)` when class `w` holds the routing weights of the top-k `tuple` over
/// `softmax(logits)`: the selected probabilities, renormalised or not.
fn softmax_routing(ctx: &Ctx<'_>, w: Id, tuple: Id) -> Option<(Id, bool)> {
    let normalize = maybe_normalised(ctx, w)
        .into_iter()
        .find(|&(x, _)| selected_values(ctx, x, tuple))?
        .1;
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

/// The value every element of class `id` has: a constant splat, or one broadcast by `expand`.
fn filled(ctx: &Ctx<'_>, id: Id) -> Option<f64> {
    ctx.splat(id).or_else(|| {
        ctx.ops(id).find_map(|(op, operands)| match (op, operands) {
            (Op::Expand { .. }, [c]) => ctx.splat(*c),
            _ => None,
        })
    })
}

/// `(operand, k)` for every top-k tuple node `tuple` over the last axis of its operand, largest
/// first.
fn top_k_of(ctx: &Ctx<'_>, tuple: Id) -> Vec<(Id, u64)> {
    ctx.ops(tuple)
        .filter_map(|(op, operands)| match (op, operands) {
            (
                Op::TopK {
                    k,
                    axis,
                    largest: true,
                    ..
                },
                [x],
            ) if ctx.is_last_axis(*x, &[*axis]) => Some((*x, *k)),
            _ => None,
        })
        .collect()
}

/// The tuple classes of the top-k projections `index` held by class `id`.
fn top_k_projection(ctx: &Ctx<'_>, id: Id, index: u32) -> Vec<Id> {
    ctx.projections(id)
        .into_iter()
        .filter(|(i, _, op, _)| *i == index && matches!(op, Op::TopK { .. }))
        .map(|(_, t, _, _)| t)
        .collect()
}

/// `(n_group, topk_group)` when bool class `kept` marks the experts of the best groups of
/// `choice [t, e]` (DeepSeek-V3's group limit): `cast(reshape(expand(unsqueeze(m, -1),
/// [t, g, e/g]), [t, e]), bool)` where `m = scatter_elements(0, top_k(group score)[1], 1)` and
/// the group score is the sum of each group's top two of `reshape(choice, [t, g, e/g])`.
fn group_limit(ctx: &Ctx<'_>, kept: Id, choice: Id) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Some(ct) = ctx.ty(choice) else {
        return out;
    };
    let ([t, e], Some(kt)) = (ct.shape.dims(), ctx.ty(kept)) else {
        return out;
    };
    let Some(e) = e.as_known() else {
        return out;
    };
    if kt.shape != ct.shape {
        return out;
    }
    let casts = through(ctx, kept, |op| matches!(op, Op::Cast { to: DType::Bool }));
    for flat in casts {
        for ex in through(ctx, flat, |op| matches!(op, Op::Reshape { .. })) {
            // One row of groups per token: `[t, g, e/g]`.
            let Some((g, per_group)) = ctx.ty(ex).and_then(|x| match x.shape.dims() {
                [t2, g, p] if t2.provably_equal(t) => Some((g.as_known()?, p.as_known()?)),
                _ => None,
            }) else {
                continue;
            };
            for un in through(ctx, ex, |op| matches!(op, Op::Expand { .. })) {
                let unsqueezed = |op: &Op| matches!(op, Op::Unsqueeze { axes } if matches!(axes.as_slice(), [-1] | [2]));
                for mask in through(ctx, un, unsqueezed) {
                    let per_token = ctx.ty(mask).is_some_and(|m| match m.shape.dims() {
                        [t2, g2] => t2.provably_equal(t) && g2.as_known() == Some(g),
                        _ => false,
                    });
                    if per_token && g * per_group == e {
                        out.extend(group_mask(ctx, mask, choice, e, per_group));
                    }
                }
            }
        }
    }
    out
}

/// `(n_group, topk_group)` when class `mask [t, g]` is 1 on the `topk_group` best groups of
/// `choice` (groups of `per_group` of its `e` experts) and 0 elsewhere.
fn group_mask(ctx: &Ctx<'_>, mask: Id, choice: Id, e: u64, per_group: u64) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for (op, operands) in ctx.ops(mask) {
        let (
            Op::ScatterElements {
                axis,
                reduction: ScatterReduction::None,
            },
            [zeros, group_idx, ones],
        ) = (op, operands)
        else {
            continue;
        };
        let fills =
            filled(ctx, *zeros) == Some(0.0) && filled(ctx, *ones).is_some_and(|v| v != 0.0);
        // The kept groups of every token are written in that token's row.
        let rows = match (ctx.ty(mask), ctx.ty(*group_idx)) {
            (Some(m), Some(i)) => match (m.shape.dims(), i.shape.dims()) {
                ([t, _], [ti, _]) => ti.provably_equal(t),
                _ => false,
            },
            _ => false,
        };
        if !fills || !rows || !ctx.is_last_axis(*zeros, &[*axis]) {
            continue;
        }
        for groups in top_k_projection(ctx, *group_idx, 1) {
            for (score, topk_group) in top_k_of(ctx, groups) {
                for (op, operands) in ctx.ops(score) {
                    let (
                        Op::Reduce {
                            op: ReduceOp::Sum,
                            axes,
                            keep_dims: false,
                        },
                        [best],
                    ) = (op, operands)
                    else {
                        continue;
                    };
                    for pairs in top_k_projection(ctx, *best, 0) {
                        for (grouped, two) in top_k_of(ctx, pairs) {
                            let Some([_, g, p]) = ctx.ty(grouped).map(|t| t.shape.dims()) else {
                                continue;
                            };
                            let (Some(g), Some(p)) = (g.as_known(), p.as_known()) else {
                                continue;
                            };
                            let regrouped =
                                through(ctx, grouped, |op| matches!(op, Op::Reshape { .. }))
                                    .into_iter()
                                    .any(|c| ctx.same(c, choice));
                            // Each group scores the sum of its top two (the interpreter's
                            // `min(2, per_group)` is 2 when groups have two experts).
                            if regrouped
                                && ctx.is_last_axis(*best, axes)
                                && two == 2
                                && p == per_group
                                && p >= 2
                                && g * p == e
                                && topk_group <= g
                                && let (Ok(g), Ok(kg)) =
                                    (u32::try_from(g), u32::try_from(topk_group))
                            {
                                out.push((g, kg));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// `(choice, n_group, topk_group)` for the class `masked` experts are chosen from: the choice
/// scores with the experts outside the kept groups set to -∞, or the choice scores themselves
/// (one group).
fn selection_scores(ctx: &Ctx<'_>, masked: Id) -> Vec<(Id, u32, u32)> {
    let mut out = vec![(masked, 1, 1)];
    for (op, operands) in ctx.ops(masked) {
        let (Op::Where, [c, a, b]) = (op, operands) else {
            continue;
        };
        let neg_inf = |id: Id| filled(ctx, id) == Some(f64::NEG_INFINITY);
        // where(¬kept, -∞, choice) or where(kept, choice, -∞).
        let candidates: Vec<(Id, Id)> = if neg_inf(*a) {
            ctx.unary(*c, &Op::Unary(UnaryOp::Not))
                .into_iter()
                .map(|kept| (kept, *b))
                .collect()
        } else if neg_inf(*b) {
            vec![(*c, *a)]
        } else {
            Vec::new()
        };
        for (kept, choice) in candidates {
            if ctx.ty(choice) != ctx.ty(masked) {
                continue;
            }
            for (g, kg) in group_limit(ctx, kept, choice) {
                out.push((choice, g, kg));
            }
        }
    }
    out
}

/// DeepSeek-V3 routing: `s = sigmoid(logits)`, experts chosen by top-k of `s + bias` within the
/// best groups, weights `s` of the chosen experts gathered, renormalised or not, times a
/// constant scaling (or not).
fn sigmoid_routing(ctx: &Ctx<'_>, w: Id, tuple: Id) -> Vec<Routing> {
    let mut out = Vec::new();
    let mut scaled: Vec<(Id, f64)> = vec![(w, 1.0)];
    for (x, c) in ctx.binary(w, BinaryOp::Mul, true) {
        if let Some(f) = ctx.splat(c)
            && ctx.ty(x) == ctx.ty(w)
        {
            scaled.push((x, f));
        }
    }
    for (ww, scaling) in scaled {
        for (g, normalize) in maybe_normalised(ctx, ww) {
            for (op, operands) in ctx.ops(g) {
                let (Op::GatherElements { axis }, [scores, idx]) = (op, operands) else {
                    continue;
                };
                if !ctx.is_last_axis(*scores, &[*axis]) || !selected_indices(ctx, *idx, tuple) {
                    continue;
                }
                for logits in ctx.unary(*scores, &Op::Unary(UnaryOp::Sigmoid)) {
                    for (masked, _) in top_k_of(ctx, tuple) {
                        for (choice, n_group, topk_group) in selection_scores(ctx, masked) {
                            let mut biases: Vec<Option<Id>> = Vec::new();
                            if ctx.same(choice, *scores) {
                                biases.push(None);
                            }
                            for (s, bias) in ctx.binary(choice, BinaryOp::Add, true) {
                                if ctx.same(s, *scores) && ctx.rank(bias) == Some(1) {
                                    biases.push(Some(bias));
                                }
                            }
                            for bias in biases {
                                out.push(Routing {
                                    logits,
                                    mode: RoutingMode::SigmoidGroupLimited {
                                        n_group,
                                        topk_group,
                                        normalize,
                                        scaling_bits: f32_bits(scaling),
                                    },
                                    bias,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    out
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
                                for routing in routing(ctx, w, tuple) {
                                    for x in repeated_tokens(ctx, xr_col) {
                                        let experts = Experts { gate_up, down, k };
                                        if let Some(r) = build(ctx, class, x, &routing, &experts) {
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
}

/// The experts of a block: the fused gate-up weight `[e, 2f, h]`, the down weight and `top_k`.
struct Experts {
    gate_up: Id,
    down: Id,
    k: u64,
}

/// The `moe` replacement, when everything type-checks.
fn build(ctx: &Ctx<'_>, class: Id, x: Id, routing: &Routing, experts: &Experts) -> Option<Recipe> {
    let dims = ctx.ty(experts.gate_up)?.shape.dims().to_vec();
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
        &[Slot::Class(experts.gate_up)],
    )?;
    let gate = r.get(ctx, split, 0)?;
    let up = r.get(ctx, split, 1)?;
    let op = Op::Moe {
        top_k: u32::try_from(experts.k).ok()?,
        routing: routing.mode.clone(),
        activation: ExpertActivation::SwiGlu,
    };
    let mut operands = vec![
        Slot::Class(x),
        Slot::Class(routing.logits),
        gate,
        up,
        Slot::Class(experts.down),
    ];
    if let Some(bias) = routing.bias {
        operands.push(Slot::Class(bias));
    }
    let moe = r.op(ctx, op, &operands)?;
    (r.ty(ctx, moe) == ctx.ty(class)).then(|| r.union(class, moe))
}
