//! Layout folding: a 2-D transpose feeding a matrix product becomes the product's operand flag.

use cubevec_ir::op::Op;
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot};
use crate::optimize::language::TensorNode;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![Box::new(GemmTranspose), Box::new(MatMulTransposeToGemm)]
}

/// The operand of a rank-2 transpose `[1, 0]` held by `id`.
fn transposed_matrix(ctx: &Ctx<'_>, id: Id) -> Vec<Id> {
    ctx.ops(id)
        .filter_map(|(op, operands)| match (op, operands) {
            (Op::Transpose { perm }, [x]) if perm.as_slice() == [1, 0] => Some(*x),
            _ => None,
        })
        .collect()
}

/// `gemm(transpose(a), b)` → `gemm{trans_a: !trans_a}(a, b)`, and likewise for `b`.
struct GemmTranspose;

impl Rule for GemmTranspose {
    fn name(&self) -> &'static str {
        "gemm-transpose-operand"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let Some(Op::Gemm {
            alpha_bits,
            beta_bits,
            trans_a,
            trans_b,
        }) = node.ir_op()
        else {
            return;
        };
        for operand in 0..2 {
            let Some(&child) = node.children.get(operand) else {
                return;
            };
            for x in transposed_matrix(ctx, child) {
                let mut inputs: Vec<Slot> = node.children.iter().map(|&c| Slot::Class(c)).collect();
                inputs[operand] = Slot::Class(x);
                let op = Op::Gemm {
                    alpha_bits: *alpha_bits,
                    beta_bits: *beta_bits,
                    trans_a: *trans_a ^ (operand == 0),
                    trans_b: *trans_b ^ (operand == 1),
                };
                let mut r = Recipe::new();
                if let Some(g) = r.op(ctx, op, &inputs) {
                    out.push(r.union(class, g));
                }
            }
        }
    }
}

/// `matmul(a, transpose(w))` with rank-2 `a` → `gemm{trans_b}(a, w)`.
struct MatMulTransposeToGemm;

impl Rule for MatMulTransposeToGemm {
    fn name(&self) -> &'static str {
        "matmul-transpose-to-gemm"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::MatMul), [a, b]) = (node.ir_op(), node.children.as_slice()) else {
            return;
        };
        if ctx.rank(*a) != Some(2) {
            return;
        }
        for w in transposed_matrix(ctx, *b) {
            let mut r = Recipe::new();
            let none = r.absent();
            let op = Op::Gemm {
                alpha_bits: 1f32.to_bits(),
                beta_bits: 1f32.to_bits(),
                trans_a: false,
                trans_b: true,
            };
            if let Some(g) = r.op(ctx, op, &[Slot::Class(*a), Slot::Class(w), none]) {
                out.push(r.union(class, g));
            }
        }
    }
}
