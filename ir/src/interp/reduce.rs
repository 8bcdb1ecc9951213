//! Reductions and scans along axes: `Reduce`, `Softmax`/`LogSoftmax`, `TopK`, `CumSum`, `ArgMax`.
//!
//! Float sums, means and products accumulate in `f64`; `Max`/`Min` propagate NaN. Selection
//! (`TopK`, `ArgMax`) orders NaN above every number, like numpy.

use std::cmp::Ordering;

use super::OpError;
use super::util::{self, Num};
use crate::dtype::DType;
use crate::op::ReduceOp;
use crate::tensor::Tensor;

/// `Reduce` over `axes` (all when empty).
pub fn reduce(op: ReduceOp, x: &Tensor, axes: &[i64], keep_dims: bool) -> Result<Tensor, OpError> {
    let rank = x.shape().len();
    let mut reduced = vec![axes.is_empty(); rank];
    for &a in axes {
        reduced[util::axis(a, rank)?] = true;
    }
    let out_full: Vec<usize> = x
        .shape()
        .iter()
        .zip(&reduced)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let out_count: usize = out_full.iter().product();
    // Each input element's output slot: output strides, zero along reduced axes.
    let out_strides = util::strides(&out_full);
    let map_strides: Vec<usize> = out_strides
        .iter()
        .zip(&reduced)
        .map(|(&s, &r)| if r { 0 } else { s })
        .collect();
    let slots = util::strided_offsets(x.shape(), &map_strides);
    let count = (x.numel() / out_count.max(1)) as f64;
    let out_shape: Vec<usize> = if keep_dims {
        out_full
    } else {
        x.shape()
            .iter()
            .zip(&reduced)
            .filter(|(_, r)| !**r)
            .map(|(&d, _)| d)
            .collect()
    };
    match util::num(x) {
        Num::F(v) => {
            let init = match op {
                ReduceOp::Sum | ReduceOp::Mean => 0.0,
                ReduceOp::Prod => 1.0,
                ReduceOp::Max => f64::NEG_INFINITY,
                ReduceOp::Min => f64::INFINITY,
            };
            let mut acc = vec![init; out_count];
            for (&e, &slot) in v.iter().zip(&slots) {
                let a = &mut acc[slot];
                let e = e as f64;
                *a = match op {
                    ReduceOp::Sum | ReduceOp::Mean => *a + e,
                    ReduceOp::Prod => *a * e,
                    ReduceOp::Max if e.is_nan() || a.is_nan() => f64::NAN,
                    ReduceOp::Min if e.is_nan() || a.is_nan() => f64::NAN,
                    ReduceOp::Max => a.max(e),
                    ReduceOp::Min => a.min(e),
                };
            }
            if op == ReduceOp::Mean {
                acc.iter_mut().for_each(|a| *a /= count);
            }
            Ok(Tensor::from_f64(x.dtype(), out_shape, &acc))
        }
        Num::I(v) => {
            let init = match op {
                ReduceOp::Sum | ReduceOp::Mean => 0,
                ReduceOp::Prod => 1,
                ReduceOp::Max => i64::MIN,
                ReduceOp::Min => i64::MAX,
            };
            let mut acc = vec![init; out_count];
            for (&e, &slot) in v.iter().zip(&slots) {
                let a = &mut acc[slot];
                *a = match op {
                    ReduceOp::Sum | ReduceOp::Mean => a.wrapping_add(e),
                    ReduceOp::Prod => a.wrapping_mul(e),
                    ReduceOp::Max => (*a).max(e),
                    ReduceOp::Min => (*a).min(e),
                };
            }
            if op == ReduceOp::Mean {
                let c = count as i64;
                if c == 0 {
                    return Err(OpError::DivisionByZero);
                }
                acc.iter_mut().for_each(|a| *a /= c);
            }
            Ok(Tensor::from_i64(x.dtype(), out_shape, &acc))
        }
    }
}

/// Softmax (or log-softmax) along `axis`, computed in `f64` with the maximum subtracted.
pub fn softmax(x: &Tensor, axis: i64, log: bool) -> Result<Tensor, OpError> {
    util::expect_float(x, 0)?;
    let axis = util::axis(axis, x.shape().len())?;
    let (outer, n, inner) = util::around_axis(x.shape(), axis);
    let v = x.to_f32_vec();
    let mut out = vec![0f64; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * n * inner + j * inner + i;
            let max = (0..n)
                .map(|j| v[at(j)] as f64)
                .fold(f64::NEG_INFINITY, |m, e| {
                    if e.is_nan() || m.is_nan() {
                        f64::NAN
                    } else {
                        m.max(e)
                    }
                });
            let sum: f64 = (0..n).map(|j| (v[at(j)] as f64 - max).exp()).sum();
            for j in 0..n {
                let shifted = v[at(j)] as f64 - max;
                out[at(j)] = if log {
                    shifted - sum.ln()
                } else {
                    shifted.exp() / sum
                };
            }
        }
    }
    Ok(Tensor::from_f64(x.dtype(), x.shape().to_vec(), &out))
}

/// The `k` largest (or smallest) along `axis`, sorted; ties keep the lower index first and NaN
/// counts as larger than every number.
pub fn top_k(x: &Tensor, k: u64, axis: i64, largest: bool) -> Result<Vec<Tensor>, OpError> {
    let axis = util::axis(axis, x.shape().len())?;
    let (outer, n, inner) = util::around_axis(x.shape(), axis);
    let k = k as usize;
    if k > n {
        return Err(OpError::Attribute(format!(
            "k = {k} exceeds the axis size {n}"
        )));
    }
    let values = util::num(x);
    let cmp = |a: usize, b: usize| -> Ordering {
        let ord = match &values {
            Num::F(v) => util::cmp_nan_greatest(v[a], v[b]),
            Num::I(v) => v[a].cmp(&v[b]),
        };
        if largest { ord.reverse() } else { ord }
    };
    let mut indices = vec![0i64; outer * k * inner];
    let mut lane: Vec<usize> = Vec::with_capacity(n);
    let mut flat = vec![0usize; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            lane.clear();
            lane.extend((0..n).map(|j| o * n * inner + j * inner + i));
            // A stable sort keeps equal elements in index order.
            lane.sort_by(|&a, &b| cmp(a, b));
            for (r, &src) in lane[..k].iter().enumerate() {
                let dst = o * k * inner + r * inner + i;
                flat[dst] = src;
                indices[dst] = ((src - o * n * inner - i) / inner.max(1)) as i64;
            }
        }
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = k;
    Ok(vec![
        util::take(x, &flat, shape.clone()),
        Tensor::from_i64(DType::I64, shape, &indices),
    ])
}

/// Cumulative sum along `axis` (floats accumulate in `f64`).
pub fn cumsum(x: &Tensor, axis: i64, exclusive: bool, reverse: bool) -> Result<Tensor, OpError> {
    let axis = util::axis(axis, x.shape().len())?;
    let (outer, n, inner) = util::around_axis(x.shape(), axis);
    let order: Vec<usize> = if reverse {
        (0..n).rev().collect()
    } else {
        (0..n).collect()
    };
    let shape = x.shape().to_vec();
    match util::num(x) {
        Num::F(v) => {
            let mut out = vec![0f64; v.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let mut acc = 0f64;
                    for &j in &order {
                        let at = o * n * inner + j * inner + i;
                        if exclusive {
                            out[at] = acc;
                            acc += v[at] as f64;
                        } else {
                            acc += v[at] as f64;
                            out[at] = acc;
                        }
                    }
                }
            }
            Ok(Tensor::from_f64(x.dtype(), shape, &out))
        }
        Num::I(v) => {
            let mut out = vec![0i64; v.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let mut acc = 0i64;
                    for &j in &order {
                        let at = o * n * inner + j * inner + i;
                        if exclusive {
                            out[at] = acc;
                            acc = acc.wrapping_add(v[at]);
                        } else {
                            acc = acc.wrapping_add(v[at]);
                            out[at] = acc;
                        }
                    }
                }
            }
            Ok(Tensor::from_i64(x.dtype(), shape, &out))
        }
    }
}

/// Index of the largest element along `axis` (NaN counts as the largest; ties take the first
/// index, or the last with `select_last_index`).
pub fn arg_max(
    x: &Tensor,
    axis: i64,
    keep_dims: bool,
    select_last_index: bool,
) -> Result<Tensor, OpError> {
    let axis = util::axis(axis, x.shape().len())?;
    let (outer, n, inner) = util::around_axis(x.shape(), axis);
    if n == 0 {
        return Err(OpError::Shape("argmax over an empty axis".into()));
    }
    let values = util::num(x);
    let cmp = |a: usize, b: usize| -> Ordering {
        match &values {
            Num::F(v) => util::cmp_nan_greatest(v[a], v[b]),
            Num::I(v) => v[a].cmp(&v[b]),
        }
    };
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * n * inner + j * inner + i;
            let mut best = 0usize;
            for j in 1..n {
                let ord = cmp(at(j), at(best));
                if ord == Ordering::Greater || (select_last_index && ord == Ordering::Equal) {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    let mut shape = x.shape().to_vec();
    if keep_dims {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    Ok(Tensor::from_i64(DType::I64, shape, &out))
}
