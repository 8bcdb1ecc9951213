//! Attention recognition: `softmax(q·kᵀ·scale + mask)·v` over rank-4 `[b, h, s, d]` operands →
//! `attention(q, k, v, mask)`, in the forms exporters emit:
//!
//! - the scale as a multiply or a divide of the scores, or split between `q` and `kᵀ`
//!   (`(q·√scale)·(kᵀ·√scale)`, as the torch SDPA export does);
//! - `kᵀ` as a transpose of the last two axes (the layout rule
//!   `transpose-through-merged-reshape` gives it for the export's
//!   `reshape(transpose(reshape(k, [b·h, t, d]), [0, 2, 1]), [b, h, d, t])`);
//! - grouped-query heads repeated with `reshape(expand(unsqueeze(k, 2)))` (`repeat_kv`): the
//!   fused op reads the `hk` key/value heads itself (query head `i` uses head `i / (h / hk)`, the
//!   head the repeat puts there);
//! - a mask proven causal from how it is computed (its [`IndexForm`] keeps exactly the positions
//!   `j ≤ i + (t - s)`) becomes `causal = true` and no mask operand;
//! - the NaN guard `where(isnan(p), 0, p)` the export puts on the probabilities, which zeroes
//!   the rows whose every position is masked. The fused op gives NaN there, so the guard is
//!   dropped only when no row is fully masked: no mask, or a causal mask with `t ≥ s` (position
//!   0 is always kept). The two then differ only when a score is itself NaN or infinite.
//!
//! A causal mask built as `where(allowed, 0, m)` is exact for `m = -∞`; for the lowest finite
//! value of the dtype (what exporters write) it requires `t ≥ s`, and masked scores then weigh
//! `exp(m + score - max)`, which is 0 unless scores approach the dtype's largest value.
//!
//! `attention-causal-mask` turns an existing `attention` whose mask is proven causal (a bool
//! mask, or an additive one as above) into `causal = true` without the mask, and
//! `attention-grouped-heads` lets an existing `attention` read repeated key/value heads
//! unrepeated. `attention-common-key-permutation` drops a permutation of the head dimension
//! applied alike to the queries' and keys' trailing parts (an export's de-interleaving of
//! rotary halves): the scores sum over that dimension, so it cancels.

use cubevec_ir::op::{BinaryOp, Op, UnaryOp};
use cubevec_ir::{DType, Dim, Shape};
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot, f32_bits};
use crate::optimize::index_form::{Cmp, IndexForm};
use crate::optimize::language::TensorNode;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(ScaledDotProductAttention),
        Box::new(CausalMask),
        Box::new(GroupedHeads),
        Box::new(CommonKeyPermutation),
    ]
}

/// `(x, c)` for every `x · c` (either order) in class `id` with `c` a constant splat that
/// broadcasts to nothing larger than `x`; `(id, 1)` first.
fn scaled(ctx: &Ctx<'_>, id: Id) -> Vec<(Id, f64)> {
    let mut out = vec![(id, 1.0)];
    for (x, c) in ctx.binary(id, BinaryOp::Mul, true) {
        if let Some(scale) = ctx.splat(c)
            && ctx.ty(x) == ctx.ty(id)
        {
            out.push((x, scale));
        }
    }
    out
}

/// `k` for every `transpose(k, [0, 1, 3, 2])` in class `kt`.
fn transposed_keys(ctx: &Ctx<'_>, kt: Id) -> Vec<Id> {
    ctx.ops(kt)
        .filter_map(|(op, operands)| match (op, operands) {
            (Op::Transpose { perm }, [k]) if perm.as_slice() == [0, 1, 3, 2] => Some(*k),
            _ => None,
        })
        .collect()
}

/// `(q, k, scale)` for which class `qk` computes `(q·a)·(kᵀ·b)` with `scale = a·b`.
fn query_key(ctx: &Ctx<'_>, qk: Id) -> Vec<(Id, Id, f64)> {
    let mut out = Vec::new();
    for (op, operands) in ctx.ops(qk) {
        let (Op::MatMul, [qa, kb]) = (op, operands) else {
            continue;
        };
        for (q, a) in scaled(ctx, *qa) {
            if ctx.rank(q) != Some(4) {
                continue;
            }
            for (kt, b) in scaled(ctx, *kb) {
                out.extend(transposed_keys(ctx, kt).into_iter().map(|k| (q, k, a * b)));
            }
        }
    }
    out
}

/// `(q, k, scale)` for the scaled scores held by class `t`.
fn scaled_scores(ctx: &Ctx<'_>, t: Id) -> Vec<(Id, Id, f64)> {
    let mut out = Vec::new();
    for (qk, scale) in scaled(ctx, t) {
        out.extend(
            query_key(ctx, qk)
                .into_iter()
                .map(|(q, k, s)| (q, k, s * scale)),
        );
    }
    for (qk, c) in ctx.binary(t, BinaryOp::Div, false) {
        if let Some(d) = ctx.splat(c).filter(|d| *d != 0.0) {
            out.extend(
                query_key(ctx, qk)
                    .into_iter()
                    .map(|(q, k, s)| (q, k, s / d)),
            );
        }
    }
    out
}

/// Class `x` itself, and every `x0` of which it is the grouped-query repeat
/// `reshape(expand(unsqueeze(x0, 2)), [b, hk·g, t, d])` of an `x0 [b, hk, t, d]`.
fn ungrouped(ctx: &Ctx<'_>, x: Id) -> Vec<Id> {
    let mut out = vec![x];
    let Some(xt) = ctx.ty(x) else {
        return out;
    };
    for (op, operands) in ctx.ops(x) {
        let (Op::Reshape { .. }, [e]) = (op, operands) else {
            continue;
        };
        for (op, operands) in ctx.ops(*e) {
            let (Op::Expand { .. }, [u]) = (op, operands) else {
                continue;
            };
            for (op, operands) in ctx.ops(*u) {
                let (Op::Unsqueeze { axes }, [x0]) = (op, operands) else {
                    continue;
                };
                let (Some(et), Some(x0t)) = (ctx.ty(*e), ctx.ty(*x0)) else {
                    continue;
                };
                let (rd, ed, d0) = (xt.shape.dims(), et.shape.dims(), x0t.shape.dims());
                let repeat = matches!(axes.as_slice(), [2] | [-3])
                    && rd.len() == 4
                    && ed.len() == 5
                    && d0.len() == 4
                    && [0, 1, 3, 4]
                        .iter()
                        .zip(d0)
                        .all(|(&i, d)| ed[i].provably_equal(d))
                    && rd[0].provably_equal(&d0[0])
                    && rd[1].provably_equal(&d0[1].mul(&ed[2]))
                    && rd[2].provably_equal(&d0[2])
                    && rd[3].provably_equal(&d0[3]);
                if repeat {
                    out.push(*x0);
                }
            }
        }
    }
    out
}

/// `(scores, guarded)` for class `p` holding `softmax(scores)` over the last axis, or its NaN
/// guard `where(isnan(softmax(scores)), 0, softmax(scores))`.
fn probabilities(ctx: &Ctx<'_>, p: Id) -> Vec<(Id, bool)> {
    let softmax_of = |id: Id| -> Vec<Id> {
        ctx.ops(id)
            .filter_map(|(op, operands)| match (op, operands) {
                (Op::Softmax { axis }, [s]) if ctx.is_last_axis(*s, &[*axis]) => Some(*s),
                _ => None,
            })
            .collect()
    };
    let mut out: Vec<(Id, bool)> = softmax_of(p).into_iter().map(|s| (s, false)).collect();
    for (op, operands) in ctx.ops(p) {
        let (Op::Where, [c, zero, sm]) = (op, operands) else {
            continue;
        };
        let guards_sm = ctx
            .unary(*c, &Op::Unary(UnaryOp::IsNaN))
            .into_iter()
            .any(|x| ctx.same(x, *sm));
        if guards_sm && ctx.splat(*zero) == Some(0.0) && ctx.ty(*sm) == ctx.ty(p) {
            out.extend(softmax_of(*sm).into_iter().map(|s| (s, true)));
        }
    }
    out
}

/// `t - s` when it is a known integer.
fn causal_offset(s: &Dim, t: &Dim) -> Option<i64> {
    if t.provably_equal(s) {
        return Some(0);
    }
    if let Some(n) = t.sub(s).as_known() {
        return i64::try_from(n).ok();
    }
    s.sub(t)
        .as_known()
        .and_then(|n| i64::try_from(n).ok())
        .map(|n| -n)
}

/// Whether the bool form `allowed` of a mask of shape `shape` (right-aligned with scores
/// `[.., s, t]`) keeps exactly the positions `j ≤ i + offset`.
fn keeps_causal(allowed: &IndexForm, shape: &Shape, s: &Dim, t: &Dim, offset: i64) -> bool {
    let IndexForm::Pred(f, cmp) = allowed else {
        return false;
    };
    let dims = shape.dims();
    let r = dims.len();
    if !(2..=4).contains(&r) || f.coeffs.len() != r {
        return false;
    }
    // Integers: f < 0 is f + 1 ≤ 0.
    let c = match cmp {
        Cmp::Le => Some(f.constant),
        Cmp::Lt => f.constant.checked_add(1),
        Cmp::Eq | Cmp::Ne => None,
    };
    // A coordinate on an axis of extent 1 is always 0, whatever its coefficient.
    let coefficient =
        |axis: usize, want: i64| f.coeffs[axis] == want || dims[axis] == Dim::Known(1);
    dims[r - 2].provably_equal(s)
        && dims[r - 1].provably_equal(t)
        && (0..r - 2).all(|a| coefficient(a, 0))
        && coefficient(r - 2, -1)
        && coefficient(r - 1, 1)
        && c.and_then(|c| c.checked_neg()) == Some(offset)
}

/// The lowest finite value of a float dtype (`torch.finfo(dtype).min`, exporters' mask value).
fn lowest(dtype: DType) -> Option<f64> {
    match dtype {
        DType::F32 => Some(f64::from(f32::MIN)),
        DType::F16 => Some(-65504.0),
        DType::BF16 => Some(f64::from(f32::from_bits(0xff7f_0000))),
        _ => None,
    }
}

/// Whether `mask`, applied to scores `[.., s, t]` of `dtype` (a bool mask keeps its `true`
/// positions, a float mask is added), has the effect of the causal mask `j > i + (t - s)`.
fn mask_is_causal(ctx: &Ctx<'_>, mask: Id, s: &Dim, t: &Dim, dtype: DType) -> bool {
    let (Some(offset), Some(mty)) = (causal_offset(s, t), ctx.ty(mask)) else {
        return false;
    };
    if mty.dtype == DType::Bool {
        return ctx
            .data(mask)
            .form()
            .is_some_and(|f| keeps_causal(f, &mty.shape, s, t, offset));
    }
    // A masked score must weigh nothing: -∞ always; the lowest finite value only if no row is
    // fully masked (else that row would be uniform instead of NaN).
    let masks = |m: f64| m == f64::NEG_INFINITY || (offset >= 0 && Some(m) == lowest(dtype));
    ctx.ops(mask).any(|(op, operands)| {
        let (Op::Where, [c, a, b]) = (op, operands) else {
            return false;
        };
        let (Some(a), Some(b), Some(cond), Some(cty)) = (
            ctx.splat(*a),
            ctx.splat(*b),
            ctx.data(*c).form(),
            ctx.ty(*c),
        ) else {
            return false;
        };
        let allowed = if a == 0.0 && masks(b) {
            Some(cond.clone())
        } else if b == 0.0 && masks(a) {
            cond.not()
        } else {
            None
        };
        allowed.is_some_and(|f| keeps_causal(&f, &cty.shape, s, t, offset))
    })
}

/// The `attention` op over `q`, `k`, `v` (and `mask`) equal to class `class`, in every
/// grouped-query reading of `k` and `v`.
fn build(
    ctx: &Ctx<'_>,
    class: Id,
    (q, k, v): (Id, Id, Id),
    mask: Option<Id>,
    scale_bits: u32,
    causal: bool,
    out: &mut Vec<Recipe>,
) {
    for k0 in ungrouped(ctx, k) {
        for v0 in ungrouped(ctx, v) {
            let mut r = Recipe::new();
            let mut inputs = vec![Slot::Class(q), Slot::Class(k0), Slot::Class(v0)];
            if let Some(m) = mask {
                inputs.push(Slot::Class(m));
            }
            let op = Op::Attention { scale_bits, causal };
            if let Some(y) = r.op(ctx, op, &inputs)
                && r.ty(ctx, y) == ctx.ty(class)
            {
                out.push(r.union(class, y));
            }
        }
    }
}

/// `matmul(softmax(scores), v)` (probabilities possibly NaN-guarded) → `attention`.
struct ScaledDotProductAttention;

impl Rule for ScaledDotProductAttention {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::MatMul), [p, v]) = (node.ir_op(), node.children.as_slice()) else {
            return;
        };
        if ctx.rank(*v) != Some(4) {
            return;
        }
        for (s, guarded) in probabilities(ctx, *p) {
            // With or without an additive mask.
            let mut candidates: Vec<(Id, Option<Id>)> = vec![(s, None)];
            for (t, mask) in ctx.binary(s, BinaryOp::Add, true) {
                if ctx.ty(t) == ctx.ty(s) {
                    candidates.push((t, Some(mask)));
                }
            }
            for (t, mask) in candidates {
                for (q, k, scale) in scaled_scores(ctx, t) {
                    let (Some(qt), Some(kt)) = (ctx.ty(q), ctx.ty(k)) else {
                        continue;
                    };
                    let (Some(sd), Some(td)) = (qt.shape.dims().get(2), kt.shape.dims().get(2))
                    else {
                        continue;
                    };
                    // The guard is dropped only where no row is fully masked: position 0 is
                    // kept in every row of a causal mask with `t ≥ s`.
                    let every_row_kept = causal_offset(sd, td).is_some_and(|o| o >= 0);
                    let (mask, causal) = match mask {
                        None => (None, false),
                        Some(m)
                            if (!guarded || every_row_kept)
                                && mask_is_causal(ctx, m, sd, td, qt.dtype) =>
                        {
                            (None, true)
                        }
                        Some(m) if !guarded => (Some(m), false),
                        Some(_) => continue,
                    };
                    let scale_bits = f32_bits(scale);
                    build(ctx, class, (q, k, *v), mask, scale_bits, causal, out);
                }
            }
        }
    }
}

/// `attention(q, k, v, mask)` with a mask proven causal → `attention{causal}(q, k, v)`.
struct CausalMask;

impl Rule for CausalMask {
    fn name(&self) -> &'static str {
        "attention-causal-mask"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (
            Some(Op::Attention {
                scale_bits,
                causal: false,
            }),
            [q, k, v, mask],
        ) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        let (Some(qt), Some(kt)) = (ctx.ty(*q), ctx.ty(*k)) else {
            return;
        };
        let (Some(sd), Some(td)) = (qt.shape.dims().get(2), kt.shape.dims().get(2)) else {
            return;
        };
        if mask_is_causal(ctx, *mask, sd, td, qt.dtype) {
            build(ctx, class, (*q, *k, *v), None, *scale_bits, true, out);
        }
    }
}

/// `attention(q, repeat(k), repeat(v), ..)` → `attention(q, k, v, ..)` for grouped-query heads
/// repeated before an existing `attention`.
struct GroupedHeads;

impl Rule for GroupedHeads {
    fn name(&self) -> &'static str {
        "attention-grouped-heads"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let Some(Op::Attention { scale_bits, causal }) = node.ir_op() else {
            return;
        };
        let (q, k, v, mask) = match node.children.as_slice() {
            [q, k, v] => (*q, *k, *v, None),
            [q, k, v, m] if !ctx.is_absent(*m) => (*q, *k, *v, Some(*m)),
            [q, k, v, _] => (*q, *k, *v, None),
            _ => return,
        };
        if ungrouped(ctx, k).len() > 1 && ungrouped(ctx, v).len() > 1 {
            build(ctx, class, (q, k, v), mask, *scale_bits, *causal, out);
        }
    }
}

/// `(x, pair, expand)` for every [`Ctx::last_axis_permutations`] of `x` in class `id`, directly
/// (`expand` is `None`) or under an `expand` that keeps the last axis (the keys shared by all
/// heads): `expand(P(x))` is `P(expand(x))`.
fn permuted_parts<'a>(ctx: &Ctx<'a>, id: Id) -> Vec<(Id, (u64, u64), Option<&'a Op>)> {
    let mut out: Vec<_> = (ctx.last_axis_permutations(id).into_iter())
        .map(|p| (p.x, p.pair, None))
        .collect();
    let last = |id: Id| ctx.ty(id).and_then(|t| t.shape.dims().last().cloned());
    for (op, operands) in ctx.ops(id) {
        if let (Op::Expand { .. }, [p]) = (op, operands)
            && last(*p).is_some_and(|d| last(id) == Some(d))
        {
            for p in ctx.last_axis_permutations(*p) {
                out.push((p.x, p.pair, Some(op)));
            }
        }
    }
    out
}

/// The two parts of every concatenation along the last axis of two operands in class `id`.
fn last_axis_halves(ctx: &Ctx<'_>, id: Id) -> Vec<(Id, Id)> {
    ctx.ops(id)
        .filter_map(|(op, operands)| match (op, operands) {
            (Op::Concat { axis }, [a, b]) if ctx.is_last_axis(id, &[*axis]) => Some((*a, *b)),
            _ => None,
        })
        .collect()
}

/// `attention(concat(qa, P(qb)), concat(ka, P(kb)), v, ..)` → `attention(concat(qa, qb),
/// concat(ka, kb), v, ..)` for one last-axis permutation `P` of both trailing parts, which
/// start at the same offset.
struct CommonKeyPermutation;

impl Rule for CommonKeyPermutation {
    fn name(&self) -> &'static str {
        "attention-common-key-permutation"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(op @ Op::Attention { .. }), [q, k, rest @ ..]) =
            (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        let last = |id: Id| ctx.ty(id).and_then(|t| t.shape.dims().last());
        for (qa, qp) in last_axis_halves(ctx, *q) {
            for q_perm in ctx.last_axis_permutations(qp) {
                let qb = q_perm.x;
                for (ka, kp) in last_axis_halves(ctx, *k) {
                    if last(ka).is_none() || last(ka) != last(qa) {
                        continue;
                    }
                    for (kb, pair, expand) in permuted_parts(ctx, kp) {
                        if pair != q_perm.pair {
                            continue;
                        }
                        let mut r = Recipe::new();
                        let concat = Op::Concat { axis: -1 };
                        let Some(q2) =
                            r.op(ctx, concat.clone(), &[Slot::Class(qa), Slot::Class(qb)])
                        else {
                            continue;
                        };
                        let k_part = match expand {
                            Some(e) => r.op(ctx, e.clone(), &[Slot::Class(kb)]),
                            None => Some(Slot::Class(kb)),
                        };
                        let Some(k2) =
                            k_part.and_then(|kb| r.op(ctx, concat, &[Slot::Class(ka), kb]))
                        else {
                            continue;
                        };
                        let mut inputs = vec![q2, k2];
                        inputs.extend(rest.iter().map(|&c| Slot::Class(c)));
                        if let Some(y) = r.op(ctx, op.clone(), &inputs)
                            && r.ty(ctx, y) == ctx.ty(class)
                        {
                            out.push(r.union(class, y));
                        }
                    }
                }
            }
        }
    }
}
