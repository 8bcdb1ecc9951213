//! Constant folding: an op whose operands are all constants, with a small result, becomes a
//! constant computed by the reference interpreter ([`cubevec_ir::interp::eval_op`]).

use cubevec_ir::interp::eval_op;
use cubevec_ir::shape::DimBindings;
use egg::Id;

use super::{Ctx, Recipe, Rule};
use crate::optimize::language::{ConstTensor, TensorNode};

pub(super) fn rules(limit: usize) -> Vec<Box<dyn Rule>> {
    vec![Box::new(FoldConstants { limit })]
}

/// Folds ops over constants whose results have at most `limit` elements each.
struct FoldConstants {
    limit: usize,
}

impl Rule for FoldConstants {
    fn name(&self) -> &'static str {
        "constant-fold"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let Some(op) = node.ir_op() else { return };
        if op.num_outputs() != 1 || ctx.constant(class).is_some() {
            return;
        }
        let Some(ty) = ctx.ty(class) else { return };
        let Some(dims) = ty.shape.as_known() else {
            return;
        };
        if dims.iter().product::<u64>() > self.limit as u64 {
            return;
        }
        let mut operands = Vec::with_capacity(node.children.len());
        for &c in &node.children {
            if ctx.is_absent(c) {
                operands.push(None);
            } else {
                match ctx.constant(c) {
                    Some(k) => operands.push(Some(k.to_tensor())),
                    None => return,
                }
            }
        }
        let refs: Vec<_> = operands.iter().map(Option::as_ref).collect();
        let Ok(mut results) = eval_op(op, &refs, &DimBindings::new()) else {
            return;
        };
        let Some(result) = results.pop() else { return };
        if result.dtype() != ty.dtype {
            return;
        }
        let mut r = Recipe::new();
        let k = r.constant(ConstTensor::from_tensor(&result));
        out.push(r.union(class, k));
    }
}
