//! The interleaved rotary embedding as DeepSeek-V3's ONNX export writes it, on strided slices:
//! `cat(x₀·c − x₁·s, x₁·c + x₀·s)` with `x₀ = x[..., 0::2]`, `x₁ = x[..., 1::2]` rotates the
//! pairs `(x[2i], x[2i+1])` and returns the result de-interleaved (even features first) →
//! `deinterleave(rope{interleaved}(x, c, s))`, where `deinterleave` is
//! `reshape [.., r, 2] → swap last two axes → reshape [.., 2r]`.

use cubevec_ir::Dim;
use cubevec_ir::op::{BinaryOp, Op};
use egg::Id;

use super::super::{Ctx, Recipe, Rule, Slot};
use super::is_last;
use crate::optimize::language::TensorNode;

/// `cat(x₀·c − x₁·s, x₁·c + x₀·s)` over the even and odd features of `x` → de-interleaved
/// interleaved rope.
pub(super) struct StridedRope;

/// Whether class `id` holds `x[..., start::2]` over the whole last axis of `x`, of size `d`.
fn strided_half(ctx: &Ctx<'_>, id: Id, x: Id, start: i64, d: u64) -> bool {
    let Some(rank) = ctx.rank(x) else {
        return false;
    };
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
                && steps.as_slice() == [2]
                && ends.first().is_some_and(|&e| e >= d as i64)
        }
        _ => false,
    })
}

/// The product pairs `(a, b)` of a class, in both operand orders.
fn products(ctx: &Ctx<'_>, id: Id) -> Vec<(Id, Id)> {
    ctx.binary(id, BinaryOp::Mul, true)
}

/// Every `(x₀, c, x₁, s)` for which `first` is `x₀·c − x₁·s` (the first half of the exported
/// rotation), in both operand orders of each product.
fn first_halves(ctx: &Ctx<'_>, first: Id) -> Vec<(Id, Id, Id, Id)> {
    let mut out = Vec::new();
    for (p, q) in ctx.binary(first, BinaryOp::Sub, false) {
        for (x0, c) in products(ctx, p) {
            for (x1, s) in products(ctx, q) {
                out.push((x0, c, x1, s));
            }
        }
    }
    out
}

/// Whether `second` is `x₁·c + x₀·s` (any operand order of the sum and the products).
fn is_second_half(ctx: &Ctx<'_>, second: Id, x0: Id, c: Id, x1: Id, s: Id) -> bool {
    ctx.binary(second, BinaryOp::Add, true)
        .into_iter()
        .any(|(p, q)| {
            products(ctx, p)
                .into_iter()
                .any(|(a, b)| ctx.same(a, x1) && ctx.same(b, c))
                && products(ctx, q)
                    .into_iter()
                    .any(|(a, b)| ctx.same(a, x0) && ctx.same(b, s))
        })
}

/// The tensor `x` whose even and odd features of a last axis of even known size `2r` are `x0`
/// and `x1`, with that `r`.
fn interleaved_source(ctx: &Ctx<'_>, x0: Id, x1: Id) -> Option<(Id, u64)> {
    for (op, operands) in ctx.ops(x0) {
        let (Op::Slice { .. }, [x]) = (op, operands) else {
            continue;
        };
        let Some(Some(d)) = ctx
            .ty(*x)
            .and_then(|t| t.shape.dims().last())
            .map(Dim::as_known)
        else {
            continue;
        };
        if d == 0 || d % 2 != 0 {
            continue;
        }
        if strided_half(ctx, x0, *x, 0, d) && strided_half(ctx, x1, *x, 1, d) {
            return Some((*x, d / 2));
        }
    }
    None
}

/// Whether the last dimension of class `id` is known to be `r`.
fn last_dim_is(ctx: &Ctx<'_>, id: Id, r: u64) -> bool {
    ctx.ty(id)
        .and_then(|t| t.shape.dims().last())
        .is_some_and(|d| *d == Dim::Known(r))
}

impl Rule for StridedRope {
    fn name(&self) -> &'static str {
        "rope-strided-slices"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Concat { axis }), [first, second]) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        let Some(rank) = ctx.rank(class) else { return };
        if !is_last(*axis, rank) {
            return;
        }
        for (x0, c, x1, s) in first_halves(ctx, *first) {
            if !is_second_half(ctx, *second, x0, c, x1, s) {
                continue;
            }
            let Some((x, r)) = interleaved_source(ctx, x0, x1) else {
                continue;
            };
            // The tables must give one angle per pair: a broadcast last axis would make `rope`
            // rotate fewer features.
            if !last_dim_is(ctx, c, r) || !last_dim_is(ctx, s, r) {
                continue;
            }
            let Some(x_ty) = ctx.ty(x) else { continue };
            if Some(x_ty) != ctx.ty(class) {
                continue;
            }
            let dims = x_ty.shape.dims();
            let lead = &dims[..dims.len() - 1];
            let paired: Vec<Dim> = lead
                .iter()
                .cloned()
                .chain([Dim::Known(r), Dim::Known(2)])
                .collect();
            let n = paired.len() as u64;
            let perm: Vec<u64> = (0..n - 2).chain([n - 1, n - 2]).collect();
            let mut recipe = Recipe::new();
            let Some(rotated) = recipe.op(
                ctx,
                Op::Rope { interleaved: true },
                &[Slot::Class(x), Slot::Class(c), Slot::Class(s)],
            ) else {
                continue;
            };
            let Some(pairs) = recipe.op(ctx, Op::Reshape { shape: paired }, &[rotated]) else {
                continue;
            };
            let Some(swapped) = recipe.op(ctx, Op::Transpose { perm }, &[pairs]) else {
                continue;
            };
            let merged = Op::Reshape {
                shape: dims.to_vec(),
            };
            let Some(y) = recipe.op(ctx, merged, &[swapped]) else {
                continue;
            };
            if recipe.ty(ctx, y) == ctx.ty(class) {
                out.push(recipe.union(class, y));
            }
        }
    }
}
