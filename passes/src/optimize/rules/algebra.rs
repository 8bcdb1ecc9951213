//! Algebraic cleanup: identities, no-op conversions, composition of layout ops, exact cast
//! chains.

use cubevec_ir::DType;
use cubevec_ir::op::{BinaryOp, Op, UnaryOp};
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot};
use crate::optimize::language::TensorNode;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(Identity),
        Box::new(NoOpConversion),
        Box::new(TransposeTranspose),
        Box::new(ReshapeReshape),
        Box::new(CastChain),
        Box::new(DoubleNegation),
    ]
}

/// `x + 0`, `0 + x`, `x - 0`, `x * 1`, `1 * x`, `x / 1` → `x`, when broadcasting the constant
/// does not change `x`'s shape or dtype.
struct Identity;

impl Rule for Identity {
    fn name(&self) -> &'static str {
        "identity-element"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Binary(op)), [a, b]) = (node.ir_op(), node.children.as_slice()) else {
            return;
        };
        let (a, b) = (*a, *b);
        let candidates: &[(Id, Id, f64)] = match op {
            BinaryOp::Add => &[(a, b, 0.0), (b, a, 0.0)],
            BinaryOp::Sub => &[(a, b, 0.0)],
            BinaryOp::Mul => &[(a, b, 1.0), (b, a, 1.0)],
            BinaryOp::Div => &[(a, b, 1.0)],
            _ => &[],
        };
        for &(x, c, neutral) in candidates {
            if ctx.splat(c) == Some(neutral) && ctx.ty(x) == ctx.ty(class) && ctx.ty(x).is_some() {
                out.push(Recipe::new().union(class, Slot::Class(x)));
                return;
            }
        }
    }
}

/// A cast to the operand's dtype, a reshape to its shape, a transpose by the identity
/// permutation, a squeeze or unsqueeze of no axes → the operand.
struct NoOpConversion;

impl Rule for NoOpConversion {
    fn name(&self) -> &'static str {
        "no-op-conversion"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(op), [x]) = (node.ir_op(), node.children.as_slice()) else {
            return;
        };
        let no_op = match op {
            Op::Cast { to } => ctx.ty(*x).is_some_and(|t| t.dtype == *to),
            Op::Reshape { .. } => ctx.ty(*x).is_some() && ctx.ty(*x) == ctx.ty(class),
            Op::Transpose { perm } => perm.iter().enumerate().all(|(i, &p)| p == i as u64),
            Op::Squeeze { axes } | Op::Unsqueeze { axes } => axes.is_empty(),
            _ => false,
        };
        if no_op {
            out.push(Recipe::new().union(class, Slot::Class(*x)));
        }
    }
}

/// `transpose(p2, transpose(p1, x))` → `transpose(p1∘p2, x)`, or `x` when that is the identity.
struct TransposeTranspose;

impl Rule for TransposeTranspose {
    fn name(&self) -> &'static str {
        "transpose-transpose"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Transpose { perm: outer }), [inner]) =
            (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        for (op, operands) in ctx.ops(*inner) {
            let (Op::Transpose { perm: first }, [x]) = (op, operands) else {
                continue;
            };
            // Result axis i is inner axis outer[i], which is x axis first[outer[i]].
            let composed: Option<Vec<u64>> = outer
                .iter()
                .map(|&p| first.get(p as usize).copied())
                .collect();
            let Some(composed) = composed else { continue };
            let mut r = Recipe::new();
            let result = if composed.iter().enumerate().all(|(i, &p)| p == i as u64) {
                Some(Slot::Class(*x))
            } else {
                r.op(ctx, Op::Transpose { perm: composed }, &[Slot::Class(*x)])
            };
            if let Some(result) = result {
                out.push(r.union(class, result));
            }
        }
    }
}

/// `reshape(s2, reshape(s1, x))`, and a reshape of a squeeze or unsqueeze → `reshape(s2, x)`.
struct ReshapeReshape;

impl Rule for ReshapeReshape {
    fn name(&self) -> &'static str {
        "reshape-reshape"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Reshape { shape }), [inner]) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        for (op, operands) in ctx.ops(*inner) {
            let [x] = operands else {
                continue;
            };
            if !op.is_view() {
                continue;
            }
            let mut r = Recipe::new();
            if let Some(s) = r.op(
                ctx,
                Op::Reshape {
                    shape: shape.clone(),
                },
                &[Slot::Class(*x)],
            ) {
                out.push(r.union(class, s));
            }
        }
    }
}

/// Whether every value of `from` is exactly representable in `to` (so converting there and back,
/// or on to a third type, gives the same result as converting directly).
pub(crate) fn widens_exactly(from: DType, to: DType) -> bool {
    use DType::*;
    if from == to {
        return true;
    }
    match from {
        Bool => to != E8M0,
        F16 => to == F32,
        BF16 => to == F32,
        F8E4M3FN | F8E5M2 => matches!(to, F16 | BF16 | F32),
        F4E2M1 => matches!(to, F8E4M3FN | F8E5M2 | F16 | BF16 | F32),
        I8 => matches!(to, I32 | I64 | F16 | BF16 | F32),
        U8 => matches!(to, I32 | I64 | F16 | BF16 | F32),
        I32 => to == I64,
        E8M0 | F32 | I64 => false,
    }
}

/// `cast(c, cast(b, x: a))` → `x` when `c == a`, or `cast(c, x)` otherwise, provided `a → b`
/// is exact. Float → bool is excluded (`-0.0`/NaN handling is identical, but keep to numbers).
struct CastChain;

impl Rule for CastChain {
    fn name(&self) -> &'static str {
        "cast-chain"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Cast { to: c }), [inner]) = (node.ir_op(), node.children.as_slice()) else {
            return;
        };
        for (op, operands) in ctx.ops(*inner) {
            let (Op::Cast { to: b }, [x]) = (op, operands) else {
                continue;
            };
            let Some(a) = ctx.ty(*x).map(|t| t.dtype) else {
                continue;
            };
            if !widens_exactly(a, *b) || *c == DType::Bool {
                continue;
            }
            let mut r = Recipe::new();
            let result = if *c == a {
                Some(Slot::Class(*x))
            } else {
                r.op(ctx, Op::Cast { to: *c }, &[Slot::Class(*x)])
            };
            if let Some(result) = result {
                out.push(r.union(class, result));
            }
        }
    }
}

/// `-(-x)` → `x`.
struct DoubleNegation;

impl Rule for DoubleNegation {
    fn name(&self) -> &'static str {
        "double-negation"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let neg = Op::Unary(UnaryOp::Neg);
        if node.ir_op() != Some(&neg) {
            return;
        }
        for x in ctx.unary(node.children[0], &neg) {
            out.push(Recipe::new().union(class, Slot::Class(x)));
        }
    }
}
