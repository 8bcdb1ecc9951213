//! `RmsNorm` whose scale broadcasts over the normalised row (a scalar or a size-1 axis, as
//! DeepSeek-V4's hyper-connection norms use): the scale is expanded into a scratch row by the
//! broadcast kernel, then the row kernel of [`super::rows`] runs with that row.

use cubevec_ir::{Dim, Op};

use super::{ArgRef, LowerError, Lowering, OpContext, Scratch, TensorShape, movement, rows};

/// Whether the node is an `RmsNorm` whose scale is not one element per column of the row.
pub fn handles(ctx: &OpContext) -> bool {
    matches!(ctx.op, Op::RmsNorm { .. })
        && match (ctx.input(0), ctx.input(1)) {
            (Ok(x), Ok(scale)) => x
                .shape
                .last()
                .is_some_and(|&cols| cols > 1 && scale.elements() != cols),
            _ => false,
        }
}

/// `RmsNorm` with a broadcast scale (see the module documentation).
pub fn lower_rms_norm(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let (x, scale) = (ctx.input(0)?, ctx.input(1)?);
    let cols = *x.shape.last().unwrap_or(&1);
    if scale.elements() != 1 {
        return Err(LowerError::Unsupported(format!(
            "`{}`: a scale of {} elements does not broadcast over rows of {cols}",
            ctx.name,
            scale.elements()
        )));
    }
    let row = TensorShape::new(scale.dtype, vec![cols]);
    let expand = Op::Expand {
        shape: vec![Dim::from(cols)],
    };
    let name = format!("{}_scale", ctx.name);
    let expand_ctx = OpContext {
        name: &name,
        op: &expand,
        inputs: vec![Some(scale.clone())],
        outputs: vec![row.clone()],
        target: ctx.target,
    };
    let mut calls = movement::lower_expand(&expand_ctx)?.calls;
    for call in &mut calls {
        for arg in &mut call.args {
            *arg = match *arg {
                ArgRef::Operand(_) => ArgRef::Operand(1),
                _ => ArgRef::Scratch(0),
            };
        }
    }
    let mut norm_ctx = ctx.clone();
    norm_ctx.inputs[1] = Some(row.clone());
    for mut call in rows::lower_rows(&norm_ctx)?.calls {
        for arg in &mut call.args {
            if *arg == ArgRef::Operand(1) {
                *arg = ArgRef::Scratch(0);
            }
        }
        calls.push(call);
    }
    Ok(Lowering {
        scratch: vec![Scratch {
            name: "scale".into(),
            tensor: row,
        }],
        calls,
        view: false,
    })
}
