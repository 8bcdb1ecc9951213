//! `Clip`: `min(max(x, lo), hi)` with run-time scalar bounds, as broadcasting `Max` and `Min`
//! kernels ([`super::movement::lower_binary`]); an absent bound is skipped, and with both the
//! clamped-below values go through a scratch tensor.

use cubevec_ir::op::{BinaryOp, Op};

use super::{ArgRef, LowerError, Lowering, OpContext, Scratch, movement};

/// `Clip` (see the module documentation).
pub fn lower_clip(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let x = ctx.input(0)?;
    let bound = |i: usize| ctx.inputs.get(i).cloned().flatten();
    let steps: Vec<(BinaryOp, usize)> = [(BinaryOp::Max, 1), (BinaryOp::Min, 2)]
        .into_iter()
        .filter(|&(_, i)| bound(i).is_some())
        .collect();
    if steps.is_empty() {
        return Ok(Lowering::view());
    }
    let mut lowering = Lowering::default();
    let last = steps.len() - 1;
    for (k, &(op, slot)) in steps.iter().enumerate() {
        let binary = Op::Binary(op);
        let step_ctx = OpContext {
            op: &binary,
            inputs: vec![Some(x.clone()), bound(slot)],
            ..ctx.clone()
        };
        // Step k reads x (or the previous step's scratch) and writes the scratch (or the result).
        let source = if k == 0 {
            ArgRef::Operand(0)
        } else {
            ArgRef::Scratch(0)
        };
        let target = if k == last {
            ArgRef::Result(0)
        } else {
            ArgRef::Scratch(0)
        };
        let step = movement::lower_binary(&step_ctx)?;
        if !step.scratch.is_empty() || step.view {
            return Err(LowerError::Unsupported(format!(
                "`{}`: the bound's `{}` is not a single pass",
                ctx.name,
                binary.name()
            )));
        }
        for mut call in step.calls {
            for arg in &mut call.args {
                *arg = match *arg {
                    ArgRef::Operand(0) => source,
                    ArgRef::Operand(_) => ArgRef::Operand(slot),
                    _ => target,
                };
            }
            lowering.calls.push(call);
        }
    }
    if last > 0 {
        lowering.scratch.push(Scratch {
            name: "clamped_below".into(),
            tensor: x.clone(),
        });
    }
    Ok(lowering)
}
