//! Layout folding: a 2-D transpose feeding a matrix product becomes the product's operand flag;
//! a transpose of the last two axes done on merged leading axes is seen as the plain transpose;
//! a `scatter_nd` writing a run of consecutive rows (the export of a slice assignment) is a
//! concatenation, and concatenations are seen through transposes and slices.

use cubevec_ir::op::{Op, ScatterReduction};
use cubevec_ir::shape::normalize_axis;
use cubevec_ir::{Dim, Shape};
use egg::Id;

use super::{Ctx, Recipe, Rule, Slot};
use crate::optimize::index_form::IndexForm;
use crate::optimize::language::TensorNode;

pub(super) fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(GemmTranspose),
        Box::new(MatMulTransposeToGemm),
        Box::new(TransposeThroughMergedReshape),
        Box::new(ScatterRowsAsConcat),
        Box::new(TransposeOfConcat),
        Box::new(SliceOfConcat),
    ]
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

/// `reshape(transpose(reshape(x, [n, a, b]), [0, 2, 1]), lead ++ [b, a])` for `x` of shape
/// `lead ++ [a, b]` with `n = Π lead` → `transpose(x)` of the last two axes: merging the leading
/// axes, swapping the last two and splitting the leading axes again moves no element across them.
struct TransposeThroughMergedReshape;

impl Rule for TransposeThroughMergedReshape {
    fn name(&self) -> &'static str {
        "transpose-through-merged-reshape"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Reshape { .. }), [t]) = (node.ir_op(), node.children.as_slice()) else {
            return;
        };
        let Some(result) = ctx.ty(class) else {
            return;
        };
        for (op, operands) in ctx.ops(*t) {
            let (Op::Transpose { perm }, [merged]) = (op, operands) else {
                continue;
            };
            if perm.as_slice() != [0, 2, 1] {
                continue;
            }
            for (op, operands) in ctx.ops(*merged) {
                let (Op::Reshape { .. }, [x]) = (op, operands) else {
                    continue;
                };
                let (Some(xt), Some(mt)) = (ctx.ty(*x), ctx.ty(*merged)) else {
                    continue;
                };
                let (xd, md, rd) = (xt.shape.dims(), mt.shape.dims(), result.shape.dims());
                let r = xd.len();
                if r < 3 || rd.len() != r || md.len() != 3 {
                    continue;
                }
                let lead = Shape(xd[..r - 2].to_vec()).numel();
                let fits = md[0].provably_equal(&lead)
                    && md[1].provably_equal(&xd[r - 2])
                    && md[2].provably_equal(&xd[r - 1])
                    && (0..r - 2).all(|i| rd[i].provably_equal(&xd[i]))
                    && rd[r - 2].provably_equal(&xd[r - 1])
                    && rd[r - 1].provably_equal(&xd[r - 2]);
                if !fits {
                    continue;
                }
                let mut perm: Vec<u64> = (0..r as u64).collect();
                perm.swap(r - 2, r - 1);
                let mut rc = Recipe::new();
                if let Some(y) = rc.op(ctx, Op::Transpose { perm }, &[Slot::Class(*x)])
                    && rc.ty(ctx, y) == Some(result)
                {
                    out.push(rc.union(class, y));
                }
            }
        }
    }
}

/// A slice of `[start, end)` along axis 0.
fn rows(start: u64, end: u64) -> Op {
    Op::Slice {
        axes: vec![0],
        starts: vec![start as i64],
        ends: vec![end as i64],
        steps: vec![1],
    }
}

/// `scatter_nd(x [n, ..], idx [m, 1], u)` with `idx` the rows `c, c+1, …, c+m-1` (known from its
/// [`IndexForm`]) and no reduction → `concat(x[..c], u, x[c+m..])` along axis 0.
struct ScatterRowsAsConcat;

impl Rule for ScatterRowsAsConcat {
    fn name(&self) -> &'static str {
        "scatter-rows-as-concat"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (
            Some(Op::ScatterNd {
                reduction: ScatterReduction::None,
            }),
            [x, idx, u],
        ) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        let (Some(xt), Some(it)) = (ctx.ty(*x), ctx.ty(*idx)) else {
            return;
        };
        let (Some(n), [m, one]) = (
            xt.shape.dims().first().and_then(Dim::as_known),
            it.shape.dims(),
        ) else {
            return;
        };
        let (Some(m), Some(IndexForm::Affine(f))) = (m.as_known(), ctx.data(*idx).form()) else {
            return;
        };
        // Row j of the indices holds c + j: consecutive rows from c (never negative).
        let Ok(c) = u64::try_from(f.constant) else {
            return;
        };
        if *one != Dim::Known(1) || f.coeffs.first() != Some(&1) || c + m > n || m == 0 {
            return;
        }
        let mut r = Recipe::new();
        let mut pieces = Vec::new();
        if c > 0 {
            let Some(head) = r.op(ctx, rows(0, c), &[Slot::Class(*x)]) else {
                return;
            };
            pieces.push(head);
        }
        pieces.push(Slot::Class(*u));
        if c + m < n {
            let Some(tail) = r.op(ctx, rows(c + m, n), &[Slot::Class(*x)]) else {
                return;
            };
            pieces.push(tail);
        }
        if let Some(y) = r.op(ctx, Op::Concat { axis: 0 }, &pieces)
            && r.ty(ctx, y) == ctx.ty(class)
        {
            out.push(r.union(class, y));
        }
    }
}

/// `transpose(concat(xs, a), perm)` → `concat(transpose(x, perm) for x in xs, perm⁻¹(a))`.
struct TransposeOfConcat;

impl Rule for TransposeOfConcat {
    fn name(&self) -> &'static str {
        "transpose-of-concat"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (Some(Op::Transpose { perm }), [c]) = (node.ir_op(), node.children.as_slice()) else {
            return;
        };
        for (op, pieces) in ctx.ops(*c) {
            let Op::Concat { axis } = op else {
                continue;
            };
            let Some(axis) = ctx.rank(*c).and_then(|r| normalize_axis(*axis, r)) else {
                continue;
            };
            let Some(new_axis) = perm.iter().position(|&p| p as usize == axis) else {
                continue;
            };
            let mut r = Recipe::new();
            let transposed: Option<Vec<Slot>> = pieces
                .iter()
                .map(|&x| r.op(ctx, Op::Transpose { perm: perm.clone() }, &[Slot::Class(x)]))
                .collect();
            let Some(transposed) = transposed else {
                continue;
            };
            let concat = Op::Concat {
                axis: new_axis as i64,
            };
            if let Some(y) = r.op(ctx, concat, &transposed)
                && r.ty(ctx, y) == ctx.ty(class)
            {
                out.push(r.union(class, y));
            }
        }
    }
}

/// `slice(concat(xs, a), [s, e))` along `a` with unit step, where `[s, e)` covers whole pieces
/// (of known sizes) → those pieces (concatenated when several).
struct SliceOfConcat;

impl Rule for SliceOfConcat {
    fn name(&self) -> &'static str {
        "slice-of-concat"
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        let (
            Some(Op::Slice {
                axes,
                starts,
                ends,
                steps,
            }),
            [c],
        ) = (node.ir_op(), node.children.as_slice())
        else {
            return;
        };
        let (Some(rank), [a], [start], [end], [1]) = (
            ctx.rank(*c),
            axes.as_slice(),
            starts.as_slice(),
            ends.as_slice(),
            steps.as_slice(),
        ) else {
            return;
        };
        let Some(a) = normalize_axis(*a, rank) else {
            return;
        };
        for (op, pieces) in ctx.ops(*c) {
            let Op::Concat { axis } = op else {
                continue;
            };
            if normalize_axis(*axis, rank) != Some(a) {
                continue;
            }
            // Offsets of the pieces along the axis, when all sizes are known.
            let sizes: Option<Vec<u64>> = pieces
                .iter()
                .map(|&p| ctx.ty(p)?.shape.dims().get(a)?.as_known())
                .collect();
            let Some(sizes) = sizes else {
                continue;
            };
            let total: u64 = sizes.iter().sum();
            let resolve = |v: i64| {
                let v = if v < 0 {
                    v.saturating_add(total as i64)
                } else {
                    v
                };
                v.clamp(0, total as i64) as u64
            };
            let (s, e) = (resolve(*start), resolve(*end));
            let mut offset = 0;
            let mut covered = Vec::new();
            let mut first = None;
            for (&p, &size) in pieces.iter().zip(&sizes) {
                if offset >= s && offset + size <= e {
                    first.get_or_insert(offset);
                    covered.push((p, size));
                }
                offset += size;
            }
            let whole = first == Some(s) && s + covered.iter().map(|(_, n)| n).sum::<u64>() == e;
            if !whole || covered.is_empty() {
                continue;
            }
            let mut r = Recipe::new();
            let y = match covered.as_slice() {
                [(p, _)] => Slot::Class(*p),
                _ => {
                    let inputs: Vec<Slot> = covered.iter().map(|(p, _)| Slot::Class(*p)).collect();
                    let Some(y) = r.op(ctx, Op::Concat { axis: a as i64 }, &inputs) else {
                        continue;
                    };
                    y
                }
            };
            if r.ty(ctx, y) == ctx.ty(class) {
                out.push(r.union(class, y));
            }
        }
    }
}
