//! Attention recognition: `softmax(q·kᵀ·scale + mask)·v` over rank-4 `[b, h, s, d]` operands
//! (scale as a multiply or a divide by a constant, mask optional) → `attention(q, k, v, mask)`.

use cubevec_ir::op::{BinaryOp, Op};
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot, f32_bits};
use crate::optimize::language::TensorNode;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(ScaledDotProductAttention)]
}

/// `(q, k)` for which class `qk` computes `q·kᵀ` with `kᵀ` a transpose of the last two axes.
fn query_key(ctx: &Ctx<'_>, qk: Id) -> Vec<(Id, Id)> {
    let mut out = Vec::new();
    for (op, operands) in ctx.ops(qk) {
        let (Op::MatMul, [q, kt]) = (op, operands) else {
            continue;
        };
        if ctx.rank(*q) != Some(4) {
            continue;
        }
        for (op2, operands2) in ctx.ops(*kt) {
            if let (Op::Transpose { perm }, [k]) = (op2, operands2)
                && perm.as_slice() == [0, 1, 3, 2]
            {
                out.push((*q, *k));
            }
        }
    }
    out
}

/// `(q, k, scale)` for the scaled scores held by class `t`.
fn scaled_scores(ctx: &Ctx<'_>, t: Id) -> Vec<(Id, Id, f64)> {
    let mut out: Vec<(Id, Id, f64)> = query_key(ctx, t)
        .into_iter()
        .map(|(q, k)| (q, k, 1.0))
        .collect();
    for (qk, c) in ctx.binary(t, BinaryOp::Mul, true) {
        if let Some(scale) = ctx.splat(c) {
            out.extend(query_key(ctx, qk).into_iter().map(|(q, k)| (q, k, scale)));
        }
    }
    for (qk, c) in ctx.binary(t, BinaryOp::Div, false) {
        if let Some(d) = ctx.splat(c).filter(|d| *d != 0.0) {
            out.extend(query_key(ctx, qk).into_iter().map(|(q, k)| (q, k, 1.0 / d)));
        }
    }
    out
}

/// `matmul(softmax(scores), v)` → `attention`.
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
        for (op, operands) in ctx.ops(*p) {
            let (Op::Softmax { axis }, [s]) = (op, operands) else {
                continue;
            };
            if !ctx.is_last_axis(*s, &[*axis]) {
                continue;
            }
            // With or without an additive mask.
            let mut candidates: Vec<(Id, Option<Id>)> = vec![(*s, None)];
            for (t, mask) in ctx.binary(*s, BinaryOp::Add, true) {
                if ctx.ty(t) == ctx.ty(*s) {
                    candidates.push((t, Some(mask)));
                }
            }
            for (t, mask) in candidates {
                for (q, k, scale) in scaled_scores(ctx, t) {
                    let mut r = Recipe::new();
                    let mut inputs = vec![Slot::Class(q), Slot::Class(k), Slot::Class(*v)];
                    if let Some(m) = mask {
                        inputs.push(Slot::Class(m));
                    }
                    let op = Op::Attention {
                        scale_bits: f32_bits(scale),
                        causal: false,
                    };
                    if let Some(y) = r.op(ctx, op, &inputs)
                        && r.ty(ctx, y) == ctx.ty(class)
                    {
                        out.push(r.union(class, y));
                    }
                }
            }
        }
    }
}
