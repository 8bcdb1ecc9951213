//! Softmax recognition: `exp(x - max(x)) / sum(exp(x - max(x)))` (or without the max, or with a
//! reciprocal multiply) over one axis → `softmax(x)`.

use cubevec_ir::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use cubevec_ir::shape::normalize_axis;
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot};
use crate::optimize::language::TensorNode;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(SoftmaxDecomposed)]
}

/// The single axis of a keep-dims reduction `op` in class `id`, with its operand.
fn keep_dims_reduction(ctx: &Ctx<'_>, id: Id, which: ReduceOp) -> Vec<(i64, Id)> {
    ctx.ops(id)
        .filter_map(|(op, operands)| match (op, operands) {
            (
                Op::Reduce {
                    op,
                    axes,
                    keep_dims: true,
                },
                [x],
            ) if *op == which && axes.len() == 1 => Some((axes[0], *x)),
            _ => None,
        })
        .collect()
}

/// `e / sum(e)` or `e * reciprocal(sum(e))` with `e = exp(x - max(x))` or `exp(x)`.
struct SoftmaxDecomposed;

impl Rule for SoftmaxDecomposed {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let mut pairs = Vec::new();
        match (node.ir_op(), node.children.as_slice()) {
            (Some(Op::Binary(BinaryOp::Div)), [e, s]) => pairs.push((*e, *s)),
            (Some(Op::Binary(BinaryOp::Mul)), [a, b]) => {
                for (e, r) in [(*a, *b), (*b, *a)] {
                    for s in ctx.unary(r, &Op::Unary(UnaryOp::Reciprocal)) {
                        pairs.push((e, s));
                    }
                }
            }
            _ => return,
        }
        for (e, s) in pairs {
            let Some(rank) = ctx.rank(e) else { continue };
            for (axis, summed) in keep_dims_reduction(ctx, s, ReduceOp::Sum) {
                if !ctx.same(summed, e) {
                    continue;
                }
                let Some(axis_n) = normalize_axis(axis, rank) else {
                    continue;
                };
                for t in ctx.unary(e, &Op::Unary(UnaryOp::Exp)) {
                    // exp(x - max(x)) → softmax(x); exp(x) → softmax(x).
                    let mut sources = vec![t];
                    for (x, m) in ctx.binary(t, BinaryOp::Sub, false) {
                        let max_of_x =
                            keep_dims_reduction(ctx, m, ReduceOp::Max)
                                .into_iter()
                                .any(|(a, y)| {
                                    normalize_axis(a, rank) == Some(axis_n) && ctx.same(x, y)
                                });
                        if max_of_x {
                            sources.push(x);
                        }
                    }
                    for x in sources {
                        if ctx.ty(x) != ctx.ty(class) {
                            continue;
                        }
                        let mut r = Recipe::new();
                        if let Some(y) = r.op(ctx, Op::Softmax { axis }, &[Slot::Class(x)]) {
                            out.push(r.union(class, y));
                        }
                    }
                }
            }
        }
    }
}
