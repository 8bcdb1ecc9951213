//! Normalisations over trailing axes: `RmsNorm` and `LayerNorm` (statistics in `f64`).

use super::OpError;
use super::util;
use crate::tensor::Tensor;

/// The `f32` values of a float parameter (any float dtype) broadcast to `shape`.
fn broadcast_param(t: &Tensor, operand: usize, shape: &[usize]) -> Result<Vec<f32>, OpError> {
    util::expect_float(t, operand)?;
    let v = t.to_f32_vec();
    Ok(util::broadcast_index(t.shape(), shape)?
        .into_iter()
        .map(|i| v[i])
        .collect())
}

/// `x / sqrt(mean(x², axes ≥ axis) + eps) * scale`.
pub fn rms_norm(x: &Tensor, scale: &Tensor, axis: i64, eps: f32) -> Result<Tensor, OpError> {
    util::expect_float(x, 0)?;
    let axis = util::axis(axis, x.shape().len())?;
    let inner: usize = x.shape()[axis..].iter().product();
    let scale = broadcast_param(scale, 1, x.shape())?;
    let v = x.to_f32_vec();
    let mut out = vec![0f32; v.len()];
    for (r, row) in v.chunks_exact(inner.max(1)).enumerate() {
        let mean_sq = row.iter().map(|&e| (e as f64) * (e as f64)).sum::<f64>() / inner as f64;
        let inv = 1.0 / (mean_sq + eps as f64).sqrt();
        for (j, &e) in row.iter().enumerate() {
            let at = r * inner + j;
            out[at] = ((e as f64 * inv) as f32) * scale[at];
        }
    }
    Ok(Tensor::from_f32(x.dtype(), x.shape().to_vec(), &out))
}

/// `(x - mean) / sqrt(var + eps) * scale + bias` over the axes ≥ `axis`.
pub fn layer_norm(inputs: &[Option<&Tensor>], axis: i64, eps: f32) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, 0)?;
    util::expect_float(x, 0)?;
    let axis = util::axis(axis, x.shape().len())?;
    let inner: usize = x.shape()[axis..].iter().product();
    let scale = broadcast_param(util::operand(inputs, 1)?, 1, x.shape())?;
    let bias = util::optional(inputs, 2)
        .map(|b| broadcast_param(b, 2, x.shape()))
        .transpose()?;
    let v = x.to_f32_vec();
    let mut out = vec![0f32; v.len()];
    for (r, row) in v.chunks_exact(inner.max(1)).enumerate() {
        let mean = row.iter().map(|&e| e as f64).sum::<f64>() / inner as f64;
        let var = row.iter().map(|&e| (e as f64 - mean).powi(2)).sum::<f64>() / inner as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, &e) in row.iter().enumerate() {
            let at = r * inner + j;
            let normed = (((e as f64 - mean) * inv) as f32) * scale[at];
            out[at] = normed + bias.as_ref().map_or(0.0, |b| b[at]);
        }
    }
    Ok(Tensor::from_f32(x.dtype(), x.shape().to_vec(), &out))
}
