//! Attention building blocks: `Rope` (rotate-half and interleaved) and `Attention` (grouped
//! heads, bool or additive mask, causal with offset, softmax in `f64`).

use super::OpError;
use super::util;
use crate::dtype::DType;
use crate::tensor::Tensor;

/// Rotary embedding of the first `2·r` features of the last axis (`r` = last dim of `cos`/`sin`).
pub fn rope(inputs: &[Option<&Tensor>], interleaved: bool) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, 0)?;
    let cos = util::operand(inputs, 1)?;
    let sin = util::operand(inputs, 2)?;
    util::expect_float(x, 0)?;
    util::expect_float(cos, 1)?;
    util::expect_float(sin, 2)?;
    let Some((&d, lead)) = x.shape().split_last() else {
        return Err(OpError::Shape("rope operand is a scalar".into()));
    };
    let r = *cos.shape().last().unwrap_or(&0);
    if sin.shape().last() != Some(&r) || r == 0 || 2 * r > d {
        return Err(OpError::Shape(format!(
            "cos {:?} and sin {:?} do not fit x {:?}",
            cos.shape(),
            sin.shape(),
            x.shape()
        )));
    }
    let mut table_shape = lead.to_vec();
    table_shape.push(r);
    let ci = util::broadcast_index(cos.shape(), &table_shape)?;
    let si = util::broadcast_index(sin.shape(), &table_shape)?;
    let (cv, sv) = (cos.to_f32_vec(), sin.to_f32_vec());
    let mut v = x.to_f32_vec();
    for (row_index, row) in v.chunks_exact_mut(d).enumerate() {
        for i in 0..r {
            let c = cv[ci[row_index * r + i]];
            let s = sv[si[row_index * r + i]];
            let (a, b) = if interleaved {
                (2 * i, 2 * i + 1)
            } else {
                (i, i + r)
            };
            let (x1, x2) = (row[a], row[b]);
            row[a] = x1 * c - x2 * s;
            row[b] = x2 * c + x1 * s;
        }
    }
    Ok(Tensor::from_f32(x.dtype(), x.shape().to_vec(), &v))
}

/// `softmax(q·kᵀ·scale + mask) · v` with grouped heads; `causal` masks `j > i + (t - s)`.
/// Query head `i` reads key/value head `i / (h / hk)`. A row whose every position is masked gives
/// NaN, as the softmax of all `-inf` does.
pub fn attention(inputs: &[Option<&Tensor>], scale: f32, causal: bool) -> Result<Tensor, OpError> {
    let q = util::operand(inputs, 0)?;
    let k = util::operand(inputs, 1)?;
    let v = util::operand(inputs, 2)?;
    let mask = util::optional(inputs, 3);
    for (i, t) in [q, k, v].into_iter().enumerate() {
        util::expect_float(t, i)?;
        util::expect_rank(t, i, 4)?;
    }
    let (b, h, s, d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (hk, t) = (k.shape()[1], k.shape()[2]);
    let dv = v.shape()[3];
    let fits = k.shape() == [b, hk, t, d] && v.shape()[..3] == [b, hk, t] && hk > 0 && h % hk == 0;
    if !fits {
        return Err(OpError::Shape(format!(
            "q {:?}, k {:?}, v {:?} do not fit [b, h, s, d], [b, hk, t, d], [b, hk, t, dv] with h a multiple of hk",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    let group = h / hk;
    let scores_shape = [b, h, s, t];
    let mask_values: Option<(Vec<usize>, Vec<f32>, bool)> = match mask {
        Some(m) => {
            let idx = util::broadcast_index(m.shape(), &scores_shape)?;
            if m.dtype() == DType::Bool {
                Some((idx, m.to_f32_vec(), true))
            } else if m.dtype().is_float() {
                Some((idx, m.to_f32_vec(), false))
            } else {
                return Err(OpError::DType {
                    operand: 3,
                    expected: "bool or a float type".into(),
                    got: m.dtype(),
                });
            }
        }
        None => None,
    };
    let (qv, kv, vv) = (q.to_f32_vec(), k.to_f32_vec(), v.to_f32_vec());
    let mut out = vec![0f32; b * h * s * dv];
    let mut scores = vec![0f64; t];
    let mut acc = vec![0f64; dv];
    let offset = t as i64 - s as i64;
    for bi in 0..b {
        for hi in 0..h {
            let kh = hi / group;
            let kbase = (bi * hk + kh) * t;
            for i in 0..s {
                let qrow = &qv[((bi * h + hi) * s + i) * d..][..d];
                for (j, score) in scores.iter_mut().enumerate() {
                    let krow = &kv[(kbase + j) * d..][..d];
                    let dot: f32 = qrow.iter().zip(krow).map(|(a, b)| a * b).sum();
                    let mut value = (dot * scale) as f64;
                    if let Some((idx, m, is_bool)) = &mask_values {
                        let e = m[idx[((bi * h + hi) * s + i) * t + j]];
                        if *is_bool {
                            if e == 0.0 {
                                value = f64::NEG_INFINITY;
                            }
                        } else {
                            value += e as f64;
                        }
                    }
                    if causal && j as i64 > i as i64 + offset {
                        value = f64::NEG_INFINITY;
                    }
                    *score = value;
                }
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0f64;
                for e in scores.iter_mut() {
                    *e = (*e - max).exp();
                    sum += *e;
                }
                acc.fill(0.0);
                for (j, &p) in scores.iter().enumerate() {
                    let vrow = &vv[(kbase + j) * dv..][..dv];
                    for (a, &e) in acc.iter_mut().zip(vrow) {
                        *a += p * e as f64;
                    }
                }
                let orow = &mut out[((bi * h + hi) * s + i) * dv..][..dv];
                for (o, &a) in orow.iter_mut().zip(&acc) {
                    *o = (a / sum) as f32;
                }
            }
        }
    }
    Ok(Tensor::from_f32(q.dtype(), vec![b, h, s, dv], &out))
}
