//! Rotary embedding recognition.
//!
//! - Rotate-half form: `x·cos + cat(-x₂, x₁)·sin`, where `x₁`, `x₂` are the halves of the last
//!   axis of `x` (a split or two slices) and `cos`/`sin` repeat their first half (built as
//!   `cat(f, f)`, possibly under `cos`/`sin`/`cast`/`unsqueeze`) → `rope(x, cos₁, sin₁)`.
//! - Interleaved form as DeepSeek writes it: rotate-half applied to `x` de-interleaved by
//!   `reshape [.., r, 2] → transpose → reshape [.., 2r]` equals the interleaved rotation of `x`
//!   de-interleaved afterwards → `deinterleave(rope{interleaved}(x, cos, sin))`.
//! - Interleaved form as DeepSeek-V3's ONNX export writes it, on strided slices (`strided`).

use cubevec_ir::Dim;
use cubevec_ir::op::{BinaryOp, Op, UnaryOp};
use cubevec_ir::shape::normalize_axis;
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot};
use crate::optimize::language::TensorNode;

mod strided;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(RotateHalf),
        Box::new(DeinterleavedRope),
        Box::new(strided::StridedRope),
    ]
}

/// Whether `axis` is the last axis of a rank-`rank` tensor.
fn is_last(axis: i64, rank: usize) -> bool {
    rank > 0 && normalize_axis(axis, rank) == Some(rank - 1)
}

/// The halves `(first, second)` of the last axis of `x` found in the e-graph, each as the class
/// holding it.
fn halves_of(ctx: &Ctx<'_>, x: Id, first: Id, second: Id) -> bool {
    let Some(x_ty) = ctx.ty(x) else { return false };
    let rank = x_ty.shape.rank();
    let Some(Some(d)) = x_ty.shape.dims().last().map(Dim::as_known) else {
        return false;
    };
    if d % 2 != 0 {
        return false;
    }
    let r = (d / 2) as i64;
    // Through one split into two equal halves.
    let split_halves = ctx
        .projections(first)
        .into_iter()
        .any(|(i, tuple, op, operands)| {
            matches!((op, operands), (Op::Split { axis, sizes }, [y])
            if ctx.same(*y, x) && is_last(*axis, rank) && sizes.len() == 2 && sizes[0] == sizes[1])
                && i == 0
                && ctx
                    .projections(second)
                    .into_iter()
                    .any(|(j, t2, _, _)| j == 1 && ctx.same(t2, tuple))
        });
    if split_halves {
        return true;
    }
    // Through two slices.
    let slice = |id: Id, start: i64, end_ok: &dyn Fn(i64) -> bool| {
        ctx.ops(id).any(|(op, operands)| match (op, operands) {
            (
                Op::Slice {
                    axes,
                    starts,
                    ends,
                    steps,
                },
                [y],
            ) => {
                ctx.same(*y, x)
                    && axes.len() == 1
                    && is_last(axes[0], rank)
                    && starts.as_slice() == [start]
                    && steps.as_slice() == [1]
                    && end_ok(ends[0])
            }
            _ => false,
        })
    };
    slice(first, 0, &|e| e == r) && slice(second, r, &|e| e >= 2 * r)
}

/// A recipe slot for the first half of the last axis of class `id`, when `id` is known to repeat
/// its first half (`cat(f, f)` under elementwise ops).
fn first_half(ctx: &Ctx<'_>, id: Id, r: &mut Recipe, depth: usize) -> Option<Slot> {
    if depth == 0 {
        return None;
    }
    let rank = ctx.rank(id)?;
    for (op, operands) in ctx.ops(id) {
        match (op, operands) {
            (Op::Concat { axis }, [a, b]) if ctx.same(*a, *b) && is_last(*axis, rank) => {
                return Some(Slot::Class(*a));
            }
            (Op::Unary(UnaryOp::Cos | UnaryOp::Sin) | Op::Cast { .. }, [t]) => {
                if let Some(h) = first_half(ctx, *t, r, depth - 1) {
                    return r.op(ctx, op.clone(), &[h]);
                }
            }
            (Op::Unsqueeze { axes }, [t]) => {
                let touches_last = axes.iter().any(|&a| is_last(a, rank));
                if !touches_last && let Some(h) = first_half(ctx, *t, r, depth - 1) {
                    return r.op(ctx, op.clone(), &[h]);
                }
            }
            _ => {}
        }
    }
    None
}

/// `x·cos + cat(-x₂, x₁)·sin` (any operand order of the products and the sum) → rope.
struct RotateHalf;

impl Rule for RotateHalf {
    fn name(&self) -> &'static str {
        "rope-rotate-half"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Binary(BinaryOp::Add)), [p, q]) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        for (p, q) in [(*p, *q), (*q, *p)] {
            for (x, cos) in ctx.binary(p, BinaryOp::Mul, true) {
                let Some(rank) = ctx.rank(x) else { continue };
                if ctx.ty(x) != ctx.ty(class) {
                    continue;
                }
                for (rot, sin) in ctx.binary(q, BinaryOp::Mul, true) {
                    let rotated = ctx.ops(rot).any(|(op, operands)| match (op, operands) {
                        (Op::Concat { axis }, [neg2, x1]) if is_last(*axis, rank) => ctx
                            .unary(*neg2, &Op::Unary(UnaryOp::Neg))
                            .into_iter()
                            .any(|x2| halves_of(ctx, x, *x1, x2)),
                        _ => false,
                    });
                    if !rotated {
                        continue;
                    }
                    let mut r = Recipe::new();
                    let (Some(c), Some(s)) = (
                        first_half(ctx, cos, &mut r, 6),
                        first_half(ctx, sin, &mut r, 6),
                    ) else {
                        continue;
                    };
                    let op = Op::Rope { interleaved: false };
                    if let Some(y) = r.op(ctx, op, &[Slot::Class(x), c, s])
                        && r.ty(ctx, y) == ctx.ty(class)
                    {
                        out.push(r.union(class, y));
                    }
                }
            }
        }
    }
}

/// `rope(deinterleave(x), cos, sin)` → `deinterleave(rope{interleaved}(x, cos, sin))`, where
/// `deinterleave` is `reshape [.., r, 2] → swap last two axes → reshape [.., 2r]`.
struct DeinterleavedRope;

impl Rule for DeinterleavedRope {
    fn name(&self) -> &'static str {
        "rope-interleaved"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Rope { interleaved: false }), [px, cos, sin]) =
            (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        let Some(Some(half)) = ctx
            .ty(*cos)
            .and_then(|t| t.shape.dims().last())
            .map(Dim::as_known)
        else {
            return;
        };
        for p in ctx.last_axis_permutations(*px) {
            if p.pair != (half, 2) {
                continue;
            }
            let [split, swap, merge] = p.ops;
            let mut r = Recipe::new();
            let rotated = r.op(
                ctx,
                Op::Rope { interleaved: true },
                &[Slot::Class(p.x), Slot::Class(*cos), Slot::Class(*sin)],
            );
            let Some(rotated) = rotated else { continue };
            let Some(pairs) = r.op(ctx, split.clone(), &[rotated]) else {
                continue;
            };
            let Some(swapped) = r.op(ctx, swap.clone(), &[pairs]) else {
                continue;
            };
            let Some(y) = r.op(ctx, merge.clone(), &[swapped]) else {
                continue;
            };
            out.push(r.union(class, y));
        }
    }
}
