//! Activation recognition: `x·sigmoid(x)` → `silu(x)`, `silu(g)·u` → `swiglu(g, u)`, and a SwiGLU
//! over the two halves of one tensor → the single-operand `swiglu{split}`.

use cubevec_ir::op::{BinaryOp, Op, UnaryOp};
use cubevec_ir::shape::normalize_axis;
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot};
use crate::optimize::language::TensorNode;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(SigmoidMulToSilu),
        Box::new(SiluMulToSwiGlu),
        Box::new(SwiGluOfHalves),
    ]
}

/// `x * sigmoid(x)` (either order) → `silu(x)`.
struct SigmoidMulToSilu;

impl Rule for SigmoidMulToSilu {
    fn name(&self) -> &'static str {
        "silu"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Binary(BinaryOp::Mul)), [a, b]) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        for (x, s) in [(*a, *b), (*b, *a)] {
            let sigmoid_of_x = ctx
                .unary(s, &Op::Unary(UnaryOp::Sigmoid))
                .into_iter()
                .any(|y| ctx.same(x, y));
            if sigmoid_of_x && ctx.ty(x) == ctx.ty(class) {
                let mut r = Recipe::new();
                if let Some(silu) = r.op(ctx, Op::Unary(UnaryOp::Silu), &[Slot::Class(x)]) {
                    out.push(r.union(class, silu));
                }
                return;
            }
        }
    }
}

/// `silu(g) * u` (either order), `g` and `u` of the same type → `swiglu(g, u)`.
struct SiluMulToSwiGlu;

impl Rule for SiluMulToSwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Binary(BinaryOp::Mul)), [a, b]) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        for (s, u) in [(*a, *b), (*b, *a)] {
            for g in ctx.unary(s, &Op::Unary(UnaryOp::Silu)) {
                if ctx.ty(g).is_none() || ctx.ty(g) != ctx.ty(u) || ctx.ty(u) != ctx.ty(class) {
                    continue;
                }
                let op = Op::SwiGlu {
                    split: false,
                    limit_bits: None,
                };
                let mut r = Recipe::new();
                if let Some(y) = r.op(ctx, op, &[Slot::Class(g), Slot::Class(u)]) {
                    out.push(r.union(class, y));
                }
            }
        }
    }
}

/// `swiglu(y[..., :n], y[..., n:])` where both halves come from one last-axis split of `y` →
/// `swiglu{split}(y)`.
struct SwiGluOfHalves;

impl Rule for SwiGluOfHalves {
    fn name(&self) -> &'static str {
        "swiglu-split"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (
            Some(Op::SwiGlu {
                split: false,
                limit_bits,
            }),
            [g, u],
        ) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        for (gi, gt, gop, goperands) in ctx.projections(*g) {
            let (Op::Split { axis, sizes }, [y]) = (gop, goperands) else {
                continue;
            };
            let Some(rank) = ctx.rank(*y) else { continue };
            if gi != 0 || sizes.len() != 2 || sizes[0] != sizes[1] {
                continue;
            }
            if rank == 0 || normalize_axis(*axis, rank) != Some(rank - 1) {
                continue;
            }
            let second = ctx
                .projections(*u)
                .into_iter()
                .any(|(ui, ut, _, _)| ui == 1 && ctx.same(ut, gt));
            if !second {
                continue;
            }
            let op = Op::SwiGlu {
                split: true,
                limit_bits: *limit_bits,
            };
            let mut r = Recipe::new();
            if let Some(s) = r.op(ctx, op, &[Slot::Class(*y)]) {
                out.push(r.union(class, s));
            }
        }
    }
}
