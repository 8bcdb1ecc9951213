//! Row-wise normalisations over the last axis on the Vector unit: `RmsNorm`, `Softmax`.

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
    Ok(Lowering::single(KernelCall {
        kernel: chosen.kernel,
        cost: chosen.cost,
        args,
        assumptions: Vec::new(),
    }))
}
