//! Matrix-product rules.
//!
//! - Parallel products sharing their left operand (q/k/v, gate/up projections) by weight
//!   matrices → one product by the concatenated weights and a split (a multi-pattern rule; the
//!   extractor keeps it only where the cost model says one wide product is cheaper).
//! - Chain order: `(a·B)·C` with weights `B`, `C` ↔ `a·(B·C)`: absorbing the weight product
//!   (MLA-style absorption) or factoring it, whichever the cost model prefers for the shapes.

use std::collections::BTreeMap;

use cubevec_ir::op::Op;
use cubevec_ir::{DType, Dim};
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot};
use crate::optimize::language::{TensorNode, TensorOp};

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(MergeParallel),
        Box::new(ChainAbsorb),
        Box::new(ChainFactor),
    ]
}

/// Most products merged into one.
const MAX_MERGED: usize = 8;

/// A plain product `a·op(b)`: `MatMul`, or `Gemm` with `alpha = 1`, no `trans_a`, no bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Product {
    /// `MatMul(a, b)`.
    MatMul,
    /// `Gemm(a, b)` with `trans_b`.
    Gemm {
        /// `beta` bits (irrelevant without bias, kept as given).
        beta_bits: u32,
        /// Whether `b` is transposed.
        trans_b: bool,
    },
}

impl Product {
    fn of(ctx: &Ctx<'_>, op: &Op, operands: &[Id]) -> Option<(Product, Id, Id)> {
        match (op, operands) {
            (Op::MatMul, [a, b]) => Some((Product::MatMul, *a, *b)),
            (
                Op::Gemm {
                    alpha_bits,
                    beta_bits,
                    trans_a: false,
                    trans_b,
                },
                [a, b, rest @ ..],
            ) if *alpha_bits == 1f32.to_bits() && rest.iter().all(|&c| ctx.is_absent(c)) => Some((
                Product::Gemm {
                    beta_bits: *beta_bits,
                    trans_b: *trans_b,
                },
                *a,
                *b,
            )),
            _ => None,
        }
    }

    fn op(self) -> Op {
        match self {
            Product::MatMul => Op::MatMul,
            Product::Gemm { beta_bits, trans_b } => Op::Gemm {
                alpha_bits: 1f32.to_bits(),
                beta_bits,
                trans_a: false,
                trans_b,
            },
        }
    }

    /// The weight axis holding the output features: rows for `trans_b`, else columns.
    fn output_axis(self) -> i64 {
        match self {
            Product::Gemm { trans_b: true, .. } => 0,
            _ => 1,
        }
    }
}

/// A rank-2 weight with known sizes: `(dtype, dims)`.
fn weight_matrix(ctx: &Ctx<'_>, w: Id) -> Option<(DType, [u64; 2])> {
    if !ctx.data(w).weight_only {
        return None;
    }
    let ty = ctx.ty(w)?;
    match ty.shape.dims() {
        [Dim::Known(r), Dim::Known(c)] => Some((ty.dtype, [*r, *c])),
        _ => None,
    }
}

/// Whether a class holds a concatenation (a weight merged before).
fn is_merged(ctx: &Ctx<'_>, w: Id) -> bool {
    ctx.ops(w).any(|(op, _)| matches!(op, Op::Concat { .. }))
}

/// Products grouped by what they share: `(left operand, product, weight dtype, contracted
/// size)` → members `(class, weight, output size)`.
type ProductGroups = BTreeMap<(Id, Product, DType, u64), Vec<(Id, Id, u64)>>;

/// Products sharing their left operand → one product over concatenated weights and a split.
struct MergeParallel;

impl Rule for MergeParallel {
    fn name(&self) -> &'static str {
        "merge-parallel-matmul"
    }

    fn find(&self, _ctx: &Ctx<'_>, _class: Id, _node: &TensorNode, _out: &mut Vec<Recipe>) {
        // A multi-pattern rule: everything happens in `find_all`.
    }

    fn find_all(&self, ctx: &Ctx<'_>, limit: usize, out: &mut Vec<Recipe>) {
        let mut groups = ProductGroups::new();
        for class in ctx.egraph.classes() {
            if ctx.data(class.id).weight_only {
                continue;
            }
            for node in &class.nodes {
                let TensorOp::Op(op) = &node.op else { continue };
                let Some((product, a, w)) = Product::of(ctx, op, &node.children) else {
                    continue;
                };
                let Some((dtype, dims)) = weight_matrix(ctx, w) else {
                    continue;
                };
                if is_merged(ctx, w) {
                    continue;
                }
                let axis = product.output_axis() as usize;
                let key = (ctx.egraph.find(a), product, dtype, dims[1 - axis]);
                let members = groups.entry(key).or_default();
                if !members.iter().any(|(c, _, _)| *c == class.id) {
                    members.push((class.id, w, dims[axis]));
                }
                break;
            }
        }
        for ((a, product, _, _), mut members) in groups {
            if out.len() >= limit {
                return;
            }
            members.truncate(MAX_MERGED);
            if members.len() < 2 {
                continue;
            }
            let mut r = Recipe::new();
            let weights: Vec<Slot> = members.iter().map(|(_, w, _)| Slot::Class(*w)).collect();
            let axis = product.output_axis();
            let Some(concat) = r.op(ctx, Op::Concat { axis }, &weights) else {
                continue;
            };
            let mut inputs = vec![Slot::Class(a), concat];
            if matches!(product, Product::Gemm { .. }) {
                inputs.push(r.absent());
            }
            let Some(wide) = r.op(ctx, product.op(), &inputs) else {
                continue;
            };
            let sizes = members.iter().map(|(_, _, n)| Dim::Known(*n)).collect();
            let Some(split) = r.op(ctx, Op::Split { axis: -1, sizes }, &[wide]) else {
                continue;
            };
            let mut ok = true;
            for (i, (class, _, _)) in members.iter().enumerate() {
                match r.get(ctx, split, i as u32) {
                    Some(piece) if r.ty(ctx, piece) == ctx.ty(*class) => {
                        r.also_union(*class, piece)
                    }
                    _ => ok = false,
                }
            }
            if ok {
                out.push(r);
            }
        }
    }
}

/// `(a·B)·C` with weights `B`, `C` → `a·(B·C)`.
struct ChainAbsorb;

impl Rule for ChainAbsorb {
    fn name(&self) -> &'static str {
        "matmul-chain-absorb"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let Some(op) = node.ir_op() else { return };
        let Some((outer, x, c)) = Product::of(ctx, op, &node.children) else {
            return;
        };
        if weight_matrix(ctx, c).is_none() {
            return;
        }
        for (op2, operands2) in ctx.ops(x) {
            let Some((inner, a, b)) = Product::of(ctx, op2, operands2) else {
                continue;
            };
            if inner != outer || weight_matrix(ctx, b).is_none() {
                continue;
            }
            let mut r = Recipe::new();
            // B·C with each weight in its stored orientation.
            let (weights, product) = match inner {
                Product::MatMul => (
                    r.op(ctx, Op::MatMul, &[Slot::Class(b), Slot::Class(c)]),
                    Product::MatMul,
                ),
                Product::Gemm { trans_b, .. } => {
                    // a·Bᵀ·Cᵀ = a·(C·B)ᵀ.
                    let none = r.absent();
                    let cb = Op::Gemm {
                        alpha_bits: 1f32.to_bits(),
                        beta_bits: 1f32.to_bits(),
                        trans_a: false,
                        trans_b: false,
                    };
                    let w = if trans_b {
                        r.op(ctx, cb, &[Slot::Class(c), Slot::Class(b), none])
                    } else {
                        r.op(ctx, cb, &[Slot::Class(b), Slot::Class(c), none])
                    };
                    (w, inner)
                }
            };
            let Some(weights) = weights else { continue };
            let mut inputs = vec![Slot::Class(a), weights];
            if matches!(product, Product::Gemm { .. }) {
                inputs.push(r.absent());
            }
            if let Some(y) = r.op(ctx, product.op(), &inputs)
                && r.ty(ctx, y) == ctx.ty(class)
            {
                out.push(r.union(class, y));
            }
        }
    }
}

/// `a·W` with `W = B·C` computed from weights → `(a·B)·C`.
struct ChainFactor;

impl Rule for ChainFactor {
    fn name(&self) -> &'static str {
        "matmul-chain-factor"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let Some(op) = node.ir_op() else { return };
        let Some((outer, a, w)) = Product::of(ctx, op, &node.children) else {
            return;
        };
        if ctx.data(a).weight_only || weight_matrix(ctx, w).is_none() {
            return;
        }
        for (op2, operands2) in ctx.ops(w) {
            let Some((inner, b, c)) = Product::of(ctx, op2, operands2) else {
                continue;
            };
            if weight_matrix(ctx, b).is_none() || weight_matrix(ctx, c).is_none() {
                continue;
            }
            let mut r = Recipe::new();
            let result = match (outer, inner) {
                (Product::MatMul, Product::MatMul) => r
                    .op(ctx, Op::MatMul, &[Slot::Class(a), Slot::Class(b)])
                    .and_then(|ab| r.op(ctx, Op::MatMul, &[ab, Slot::Class(c)])),
                (Product::Gemm { trans_b: true, .. }, Product::Gemm { trans_b: false, .. }) => {
                    // a·(C·B)ᵀ = (a·Bᵀ)·Cᵀ, where the inner product lists C first.
                    let plain = |t| Op::Gemm {
                        alpha_bits: 1f32.to_bits(),
                        beta_bits: 1f32.to_bits(),
                        trans_a: false,
                        trans_b: t,
                    };
                    let n1 = r.absent();
                    let n2 = r.absent();
                    r.op(ctx, plain(true), &[Slot::Class(a), Slot::Class(c), n1])
                        .and_then(|ac| r.op(ctx, plain(true), &[ac, Slot::Class(b), n2]))
                }
                _ => None,
            };
            if let Some(y) = result
                && r.ty(ctx, y) == ctx.ty(class)
            {
                out.push(r.union(class, y));
            }
        }
    }
}
