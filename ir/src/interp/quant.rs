//! `Dequantize`: block-scaled (or per-tensor) dequantisation of integer, fp8 and fp4 data.

use super::OpError;
use super::util;
use crate::dtype::DType;
use crate::tensor::Tensor;

/// `(x - zero_point) * scale` as `to`, one scale per block of `block[i]` elements along axis `i`
/// (the last block of an axis possibly shorter), or one scalar scale when `block` is empty.
pub fn dequantize(inputs: &[Option<&Tensor>], block: &[u64], to: DType) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, 0)?;
    let scale = util::operand(inputs, 1)?;
    let zero_point = util::optional(inputs, 2);
    util::expect_float(scale, 1)?;
    if !to.is_float() {
        return Err(OpError::Attribute(format!(
            "dequantize to {to}, a non-float type"
        )));
    }
    let xs = x.shape();
    let scale_index: Vec<usize> = if block.is_empty() {
        if scale.numel() != 1 {
            return Err(OpError::Shape(format!(
                "an empty block needs a scalar scale, got shape {:?}",
                scale.shape()
            )));
        }
        vec![0; x.numel()]
    } else {
        if block.len() != xs.len() || scale.shape().len() != xs.len() || block.contains(&0) {
            return Err(OpError::Shape(format!(
                "block {block:?} and scale {:?} do not fit x {xs:?}",
                scale.shape()
            )));
        }
        for (i, (&d, &b)) in xs.iter().zip(block).enumerate() {
            if scale.shape()[i] != d.div_ceil(b as usize) {
                return Err(OpError::Shape(format!(
                    "axis {i}: {d} elements in blocks of {b} need {} scales, scale has {}",
                    d.div_ceil(b as usize),
                    scale.shape()[i]
                )));
            }
        }
        // Stride of the scale along each axis, applied to the block number of the coordinate.
        let sst = util::strides(scale.shape());
        let mut idx = Vec::with_capacity(x.numel());
        let rank = xs.len();
        let mut coord = vec![0usize; rank];
        for _ in 0..x.numel() {
            idx.push(
                coord
                    .iter()
                    .zip(block)
                    .zip(&sst)
                    .map(|((&c, &b), &s)| (c / b as usize) * s)
                    .sum(),
            );
            for ax in (0..rank).rev() {
                coord[ax] += 1;
                if coord[ax] < xs[ax] {
                    break;
                }
                coord[ax] = 0;
            }
        }
        idx
    };
    let scales = scale.to_f32_vec();
    let zeros = match zero_point {
        Some(z) => {
            util::expect_dtype(z, 2, x.dtype())?;
            if z.shape() != scale.shape() {
                return Err(OpError::Shape(format!(
                    "zero point {:?} and scale {:?} differ in shape",
                    z.shape(),
                    scale.shape()
                )));
            }
            Some(z.to_f32_vec())
        }
        None => None,
    };
    let values = x.to_f32_vec();
    let out: Vec<f32> = values
        .iter()
        .zip(&scale_index)
        .map(|(&v, &s)| (v - zeros.as_ref().map_or(0.0, |z| z[s])) * scales[s])
        .collect();
    Ok(Tensor::from_f32(to, xs.to_vec(), &out))
}
