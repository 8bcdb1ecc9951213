//! Type conversions and dequantisation: `Cast`, `CastLike`, `DequantizeLinear` (per-tensor,
//! per-axis and blocked scales).

use cubevec_ir::{DType, Dim, Op};

use super::{OpSpec, one, spec};
use crate::onnx::context::{Importer, NodeCx, Val};
use crate::onnx::error::OnnxError;
use crate::onnx::symbolic::Known;

/// The conversion importers.
pub const OPS: &[OpSpec] = &[
    spec("Cast", &[1, 6, 9, 13, 19, 21, 23, 24, 25, 28], cast),
    spec("CastLike", &[15, 19, 21, 23, 24, 25], cast_like),
    spec(
        "DequantizeLinear",
        &[10, 13, 19, 21, 23, 24, 25, 28],
        dequantize,
    ),
];

/// Converts `x` to `to`, checking the ONNX conversion options the IR's `Cast` implements
/// (saturating fp8/fp4 conversion, round-to-nearest scales).
fn convert(
    imp: &mut Importer,
    n: &NodeCx,
    x: Val,
    to: DType,
) -> Result<Vec<Option<Val>>, OnnxError> {
    if to.is_low_precision_float() && to != DType::E8M0 && !n.flag("saturate", true)? {
        return Err(n.bad_attr(
            "saturate",
            "only saturating conversion (saturate=1) to low-precision floats is supported",
        ));
    }
    if to == DType::E8M0 {
        let mode = n.string("round_mode")?.unwrap_or_else(|| "up".into());
        if mode != "nearest" {
            return Err(n.bad_attr(
                "round_mode",
                format!("conversion to e8m0 rounds to nearest; `{mode}` is not supported"),
            ));
        }
    }
    if x.dtype() == to {
        return one(Val { name: None, ..x });
    }
    // Shape arithmetic: integer shape vectors keep their symbolic elements.
    if to.is_int()
        && x.const_tensor().is_none()
        && let Some((values, scalar, _)) = x.known.as_ref().and_then(Known::ints)
    {
        return one(Val::known(Known::Ints {
            values,
            scalar,
            dtype: to,
        }));
    }
    one(imp.emit1(n, Op::Cast { to }, &[Some(&x)])?)
}

fn cast(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let to = n.dtype_attr("to")?;
    convert(imp, n, x, to)
}

fn cast_like(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let like = imp.req(n, 1)?;
    convert(imp, n, x, like.dtype())
}

/// Reshapes a per-axis or blocked scale (or zero point) to the rank of `x`.
fn scale_to_rank(
    imp: &mut Importer,
    n: &NodeCx,
    v: &Val,
    rank: usize,
    axis: usize,
) -> Result<Val, OnnxError> {
    if v.rank() == rank {
        return Ok(v.clone());
    }
    if v.rank() != 1 {
        return Err(n.unsupported(format!(
            "a per-axis scale or zero point must be 1-D or of the input's rank, got shape {}",
            v.ty.shape
        )));
    }
    let mut shape = vec![Dim::Known(1); rank];
    shape[axis] = v.dims()[0].clone();
    imp.emit1(n, Op::Reshape { shape }, &[Some(v)])
}

fn dequantize(imp: &mut Importer, n: &NodeCx) -> Result<Vec<Option<Val>>, OnnxError> {
    let x = imp.req(n, 0)?;
    let scale = imp.req(n, 1)?;
    let zero_point = imp.input(n, 2)?;
    let to = match n.int("output_dtype", 0)? {
        0 => scale.dtype(),
        _ => n.dtype_attr("output_dtype")?,
    };
    let block_size = n.int("block_size", 0)?;
    let numel_one = scale.ty.shape.numel() == Dim::Known(1);
    if block_size == 0 && (scale.rank() == 0 || (scale.rank() == 1 && numel_one && x.rank() != 1)) {
        // Per-tensor.
        let flat = |imp: &mut Importer, v: &Val| -> Result<Val, OnnxError> {
            if v.rank() == 0 {
                Ok(v.clone())
            } else {
                imp.emit1(n, Op::Reshape { shape: vec![] }, &[Some(v)])
            }
        };
        let scale = flat(imp, &scale)?;
        let zp = match &zero_point {
            Some(z) => Some(flat(imp, z)?),
            None => None,
        };
        let op = Op::Dequantize { block: vec![], to };
        return one(imp.emit1(n, op, &[Some(&x), Some(&scale), zp.as_ref()])?);
    }
    let rank = x.rank();
    let axis = super::axis(n, "axis", n.int("axis", 1)?, rank)?;
    let mut block = Vec::with_capacity(rank);
    for (i, d) in x.dims().iter().enumerate() {
        let size = if i == axis {
            match block_size {
                0 => 1,
                b => u64::try_from(b).map_err(|_| n.bad_attr("block_size", "negative"))?,
            }
        } else if block_size != 0 && scale.rank() == rank {
            // Blocked scales have the rank of `x`; other axes are one element per scale.
            1
        } else {
            d.as_known()
                .ok_or_else(|| {
                    n.unsupported(format!("per-axis scale over symbolic dimension `{d}`"))
                })?
                .max(1)
        };
        block.push(size);
    }
    let scale = scale_to_rank(imp, n, &scale, rank, axis)?;
    let zp = match &zero_point {
        Some(z) => Some(scale_to_rank(imp, n, z, rank, axis)?),
        None => None,
    };
    let op = Op::Dequantize { block, to };
    one(imp.emit1(n, op, &[Some(&x), Some(&scale), zp.as_ref()])?)
}
