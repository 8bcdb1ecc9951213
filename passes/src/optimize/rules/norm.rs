//! RMSNorm recognition: `x * rsqrt(mean(x², -1) + eps)` (and the ONNX
//! `Pow/ReduceMean/Add/Sqrt/Reciprocal` or `Div(1, Sqrt)` forms) becomes `rms_norm(x, 1)`, and
//! a scale multiplied onto an RMSNorm with unit scale becomes its scale operand.

use cubevec_ir::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot, f32_bits};
use crate::optimize::language::{ConstTensor, TensorNode};

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(RmsNormDecomposed), Box::new(RmsNormScale)]
}

/// The operands `s` for which class `r` computes `1/sqrt(s)`.
fn inverse_sqrt_of(ctx: &Ctx<'_>, r: Id) -> Vec<Id> {
    let mut out = ctx.unary(r, &Op::Unary(UnaryOp::Rsqrt));
    for sqrt in ctx.unary(r, &Op::Unary(UnaryOp::Reciprocal)) {
        out.extend(ctx.unary(sqrt, &Op::Unary(UnaryOp::Sqrt)));
    }
    for (one, sqrt) in ctx.binary(r, BinaryOp::Div, false) {
        if ctx.splat(one) == Some(1.0) {
            out.extend(ctx.unary(sqrt, &Op::Unary(UnaryOp::Sqrt)));
        }
    }
    out
}

/// Whether class `sq` computes `x²` (`x*x` or `x^2`).
fn is_square_of(ctx: &Ctx<'_>, sq: Id, x: Id) -> bool {
    ctx.binary(sq, BinaryOp::Mul, false)
        .iter()
        .any(|&(a, b)| ctx.same(a, x) && ctx.same(b, x))
        || ctx
            .binary(sq, BinaryOp::Pow, false)
            .iter()
            .any(|&(a, e)| ctx.same(a, x) && ctx.splat(e) == Some(2.0))
}

/// `x * rsqrt(mean(x², last axis, keep) + eps)` → `rms_norm{axis: -1, eps}(x, ones)`.
struct RmsNormDecomposed;

impl Rule for RmsNormDecomposed {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Binary(BinaryOp::Mul)), [a, b]) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        for (x, r) in [(*a, *b), (*b, *a)] {
            let Some(x_ty) = ctx.ty(x) else { continue };
            if !x_ty.dtype.is_float() || ctx.ty(class) != Some(x_ty) {
                continue;
            }
            for s in inverse_sqrt_of(ctx, r) {
                for (mean, eps) in ctx.binary(s, BinaryOp::Add, true) {
                    let Some(eps) = ctx.splat(eps) else { continue };
                    for (op, operands) in ctx.ops(mean) {
                        let (
                            Op::Reduce {
                                op: ReduceOp::Mean,
                                axes,
                                keep_dims: true,
                            },
                            [sq],
                        ) = (op, operands)
                        else {
                            continue;
                        };
                        if !ctx.is_last_axis(x, axes) || !is_square_of(ctx, *sq, x) {
                            continue;
                        }
                        let Some(Some(d)) = x_ty.shape.dims().last().map(|d| d.as_known()) else {
                            continue;
                        };
                        let mut rc = Recipe::new();
                        let ones =
                            rc.constant(ConstTensor::filled(x_ty.dtype, vec![d as usize], 1.0));
                        let op = Op::RmsNorm {
                            axis: -1,
                            epsilon_bits: f32_bits(eps),
                        };
                        if let Some(n) = rc.op(ctx, op, &[Slot::Class(x), ones]) {
                            out.push(rc.union(class, n));
                        }
                    }
                }
            }
        }
    }
}

/// `rms_norm(x, 1) * w` (either order) with `w` of shape `[d]` → `rms_norm(x, w)`.
struct RmsNormScale;

impl Rule for RmsNormScale {
    fn name(&self) -> &'static str {
        "rms-norm-scale"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Binary(BinaryOp::Mul)), [a, b]) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        for (n, w) in [(*a, *b), (*b, *a)] {
            if ctx.rank(w) != Some(1) || ctx.ty(class) != ctx.ty(n) {
                continue;
            }
            for (op, operands) in ctx.ops(n) {
                let (Op::RmsNorm { axis, .. }, [x, unit]) = (op, operands) else {
                    continue;
                };
                if *axis != -1 || ctx.splat(*unit) != Some(1.0) {
                    continue;
                }
                let mut r = Recipe::new();
                if let Some(s) = r.op(ctx, op.clone(), &[Slot::Class(*x), Slot::Class(w)])
                    && r.ty(ctx, s) == ctx.ty(class)
                {
                    out.push(r.union(class, s));
                }
            }
        }
    }
}
