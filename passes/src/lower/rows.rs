//! Row-wise normalisations on the Vector unit: `RmsNorm`, `Softmax` and `LogSoftmax` over the
//! last axis,
//! `LayerNorm` over the trailing axes from its `axis` (flattened into one row).

use cubevec_ir::Op;

use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext};
use crate::tile::vector::{RowKind, RowWise, plan_rows};

/// `RmsNorm` or `Softmax` over the last axis.
pub fn lower_rows(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let x = ctx.input(0)?;
    let (axis, kind, args) = match ctx.op {
        Op::RmsNorm { axis, epsilon_bits } => (
            *axis,
            RowKind::RmsNorm {
                eps: f32::from_bits(*epsilon_bits) as f64,
            },
            vec![ArgRef::Operand(0), ArgRef::Operand(1), ArgRef::Result(0)],
        ),
        Op::Softmax { axis } => (
            *axis,
            RowKind::Softmax,
            vec![ArgRef::Operand(0), ArgRef::Result(0)],
        ),
        Op::LogSoftmax { axis } => (
            *axis,
            RowKind::LogSoftmax,
            vec![ArgRef::Operand(0), ArgRef::Result(0)],
        ),
        Op::LayerNorm { axis, epsilon_bits } => return lower_layer_norm(ctx, *axis, *epsilon_bits),
        other => {
            return Err(LowerError::Unsupported(format!(
                "`{}` is not a row-wise op",
                other.name()
            )));
        }
    };
    let rank = x.shape.len();
    let normalized = if axis < 0 { axis + rank as i64 } else { axis };
    if rank == 0 || normalized != rank as i64 - 1 {
        return Err(LowerError::Unsupported(format!(
            "only the last axis is tiled (axis {axis} of rank {rank})"
        )));
    }
    let cols = x.shape[rank - 1];
    let op = RowWise {
        name: ctx.name.to_string(),
        rows: x.elements() / cols.max(1),
        cols,
        dtype: x.dtype,
        kind,
    };
    let chosen = plan_rows(&op, ctx.target)?;
    Ok(Lowering::single(KernelCall::new(
        chosen.kernel,
        chosen.cost,
        args,
    )))
}

/// `LayerNorm` over the axes from `axis` on: rows of their product, gamma (and beta) of one
/// element per row element.
fn lower_layer_norm(ctx: &OpContext, axis: i64, epsilon_bits: u32) -> Result<Lowering, LowerError> {
    let x = ctx.input(0)?;
    let rank = x.shape.len() as i64;
    let first = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&first) {
        return Err(LowerError::Unsupported(format!(
            "axis {axis} of rank {rank}"
        )));
    }
    let cols: u64 = x.shape[first as usize..].iter().product();
    let bias = ctx.inputs.get(2).cloned().flatten();
    for (what, t) in [
        ("scale", Some(ctx.input(1)?.clone())),
        ("bias", bias.clone()),
    ] {
        if let Some(t) = t
            && (t.elements() != cols || t.dtype != x.dtype)
        {
            return Err(LowerError::Unsupported(format!(
                "a {what} of {} {} elements does not match rows of {cols} {}",
                t.elements(),
                t.dtype,
                x.dtype
            )));
        }
    }
    let op = RowWise {
        name: ctx.name.to_string(),
        rows: x.elements() / cols.max(1),
        cols,
        dtype: x.dtype,
        kind: RowKind::LayerNorm {
            eps: f32::from_bits(epsilon_bits) as f64,
            bias: bias.is_some(),
        },
    };
    let chosen = plan_rows(&op, ctx.target)?;
    let mut args = vec![ArgRef::Operand(0), ArgRef::Operand(1)];
    if bias.is_some() {
        args.push(ArgRef::Operand(2));
    }
    args.push(ArgRef::Result(0));
    Ok(Lowering::single(KernelCall::new(
        chosen.kernel,
        chosen.cost,
        args,
    )))
}
