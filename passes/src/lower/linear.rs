//! `MatMul` and `Gemm` on the Cube: one tiled GEMM kernel each.

use cubevec_ir::Op;
use cubevec_ir::op::BinaryOp;

use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, movement};
use crate::tile::gemm::{GemmProblem, plan};

/// `MatMul`: `a [..., m, k] · b [k, n]` (leading dimensions of `a` folded into m) or equal-batch
/// 3-D operands.
pub fn lower_matmul(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let (problem, _) = gemm_problem(ctx)?;
    gemm_call(&problem, ctx)
}

/// The GEMM of a `MatMul` or `Gemm` node, and the operand index of a `Gemm`'s C term (a bias
/// added with beta 1), if it has one.
pub(crate) fn gemm_problem(ctx: &OpContext) -> Result<(GemmProblem, Option<usize>), LowerError> {
    let a = ctx.input(0)?;
    let b = ctx.input(1)?;
    let output = ctx.output(0)?.dtype;
    match ctx.op {
        Op::MatMul => {
            let unsupported = || {
                LowerError::Unsupported(format!(
                    "matmul of {:?} by {:?} (broadcast batches are not tiled yet)",
                    a.shape, b.shape
                ))
            };
            let (&k, lead) = a.shape.split_last().ok_or_else(unsupported)?;
            let problem = match b.shape.as_slice() {
                [kb, n] if *kb == k => {
                    let mut p =
                        GemmProblem::plain(ctx.name, lead.iter().product(), *n, k, a.dtype, false);
                    p.output = output;
                    p
                }
                [batch, kb, n] if *kb == k && a.shape.len() == 3 && a.shape[0] == *batch => {
                    GemmProblem {
                        name: ctx.name.to_string(),
                        groups: vec![a.shape[1]; *batch as usize],
                        n: *n,
                        k,
                        input: a.dtype,
                        output,
                        b_transposed: false,
                        relu: false,
                        epilogue: None,
                        halves: None,
                    }
                }
                _ => return Err(unsupported()),
            };
            Ok((problem, None))
        }
        Op::Gemm {
            alpha_bits,
            beta_bits,
            trans_a,
            trans_b,
        } => {
            let c = ctx.inputs.get(2).cloned().flatten();
            let beta = f32::from_bits(*beta_bits);
            if *trans_a || f32::from_bits(*alpha_bits) != 1.0 || (c.is_some() && beta != 1.0) {
                return Err(LowerError::Unsupported(
                    "Gemm with transposed A, alpha ≠ 1 or beta ≠ 1 is not tiled yet".into(),
                ));
            }
            let (m, k) = (a.shape[0], a.shape[1]);
            let n = if *trans_b { b.shape[0] } else { b.shape[1] };
            let mut problem = GemmProblem::plain(ctx.name, m, n, k, a.dtype, *trans_b);
            problem.output = output;
            Ok((problem, c.map(|_| 2)))
        }
        other => Err(LowerError::Unsupported(format!(
            "`{}` is not a GEMM",
            other.name()
        ))),
    }
}

/// `Gemm` without transposed A and with alpha 1. A C term with beta 1 (a bias) is added by the
/// GEMM's epilogue in one MIX kernel, or by a broadcasting vector kernel after the Cube kernel,
/// whichever the cost model finds faster.
pub fn lower_gemm(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let (problem, c) = gemm_problem(ctx)?;
    let product = gemm_call(&problem, ctx)?;
    let Some(c) = c else {
        return Ok(product);
    };
    let out = ctx.output(0)?;
    // product → scratch, then result = scratch + C (broadcast).
    let name = format!("{}_bias", ctx.name);
    let add = Op::Binary(BinaryOp::Add);
    let bias_ctx = OpContext {
        name: &name,
        op: &add,
        inputs: vec![Some(out.clone()), Some(ctx.input(c)?.clone())],
        outputs: vec![out.clone()],
        target: ctx.target,
    };
    let bias = movement::lower_binary(&bias_ctx)?;
    let mut lowering = Lowering {
        scratch: vec![Scratch {
            name: "product".into(),
            tensor: out.clone(),
        }],
        ..Lowering::default()
    };
    for mut call in product.calls {
        for arg in &mut call.args {
            if *arg == ArgRef::Result(0) {
                *arg = ArgRef::Scratch(0);
            }
        }
        lowering.calls.push(call);
    }
    let first_bias_scratch = lowering.scratch.len();
    lowering.scratch.extend(bias.scratch);
    for mut call in bias.calls {
        for arg in &mut call.args {
            *arg = match *arg {
                ArgRef::Operand(0) => ArgRef::Scratch(0),
                ArgRef::Operand(_) => ArgRef::Operand(c),
                ArgRef::Scratch(i) => ArgRef::Scratch(first_bias_scratch + i),
                result => result,
            };
        }
        lowering.calls.push(call);
    }
    match super::epilogue::lower_gemm_epilogue(ctx, &[]) {
        Ok(fused) if fused.modeled_time_us() < lowering.modeled_time_us() => Ok(fused),
        _ => Ok(lowering),
    }
}

fn gemm_call(problem: &GemmProblem, ctx: &OpContext) -> Result<Lowering, LowerError> {
    let chosen = plan(problem, ctx.target)?;
    Ok(Lowering::single(KernelCall::new(
        chosen.kernel,
        chosen.cost,
        vec![ArgRef::Operand(0), ArgRef::Operand(1), ArgRef::Result(0)],
    )))
}
