//! `MatMul` and `Gemm` on the Cube: one tiled GEMM kernel each.

use cubevec_ir::Op;

use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext};
use crate::tile::gemm::{GemmProblem, plan};

/// `MatMul`: `a [..., m, k] · b [k, n]` (leading dimensions of `a` folded into m) or equal-batch
/// 3-D operands.
pub fn lower_matmul(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let a = ctx.input(0)?;
    let b = ctx.input(1)?;
    let output = ctx.output(0)?.dtype;
    let unsupported = || {
        LowerError::Unsupported(format!(
            "matmul of {:?} by {:?} (broadcast batches are not tiled yet)",
            a.shape, b.shape
        ))
    };
    let (&k, lead) = a.shape.split_last().ok_or_else(unsupported)?;
    let problem = match b.shape.as_slice() {
        [kb, n] if *kb == k => {
            let mut p = GemmProblem::plain(ctx.name, lead.iter().product(), *n, k, a.dtype, false);
            p.output = output;
            p
        }
        [batch, kb, n] if *kb == k && a.shape.len() == 3 && a.shape[0] == *batch => GemmProblem {
            name: ctx.name.to_string(),
            groups: vec![a.shape[1]; *batch as usize],
            n: *n,
            k,
            input: a.dtype,
            output,
            b_transposed: false,
            relu: false,
        },
        _ => return Err(unsupported()),
    };
    gemm_call(&problem, ctx)
}

/// `Gemm` without transposed A, alpha 1 and no C term (beta irrelevant without C).
pub fn lower_gemm(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Gemm {
        alpha_bits,
        beta_bits,
        trans_a,
        trans_b,
    } = ctx.op
    else {
        return Err(LowerError::Unsupported("not a Gemm".into()));
    };
    let has_c = ctx.inputs.get(2).is_some_and(Option::is_some);
    if *trans_a
        || f32::from_bits(*alpha_bits) != 1.0
        || (has_c && f32::from_bits(*beta_bits) != 0.0)
    {
        return Err(LowerError::Unsupported(
            "Gemm with transposed A, alpha ≠ 1 or a C term is not tiled yet".into(),
        ));
    }
    let a = ctx.input(0)?;
    let b = ctx.input(1)?;
    let (m, k) = (a.shape[0], a.shape[1]);
    let n = if *trans_b { b.shape[0] } else { b.shape[1] };
    let mut problem = GemmProblem::plain(ctx.name, m, n, k, a.dtype, *trans_b);
    problem.output = ctx.output(0)?.dtype;
    gemm_call(&problem, ctx)
}

fn gemm_call(problem: &GemmProblem, ctx: &OpContext) -> Result<Lowering, LowerError> {
    let chosen = plan(problem, ctx.target)?;
    Ok(Lowering::single(KernelCall {
        kernel: chosen.kernel,
        cost: chosen.cost,
        args: vec![ArgRef::Operand(0), ArgRef::Operand(1), ArgRef::Result(0)],
        assumptions: Vec::new(),
    }))
}
