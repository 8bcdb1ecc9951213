//! Indexing: `Gather`, `GatherElements`, `GatherNd`, `ScatterElements`, `ScatterNd` (ONNX
//! semantics; negative indices count from the end, out-of-range ones are errors).

use super::OpError;
use super::util::{self, Num};
use crate::op::ScatterReduction;
use crate::tensor::Tensor;

/// The indices operand as `i64`s (must be an integer tensor).
fn index_values(t: &Tensor, operand: usize) -> Result<Vec<i64>, OpError> {
    util::expect_int(t, operand)?;
    Ok(t.to_i64_vec())
}

/// ONNX `Gather` along `axis`.
pub fn gather(x: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    let axis = util::axis(axis, x.shape().len())?;
    let idx = index_values(indices, 1)?;
    let (outer, n, inner) = util::around_axis(x.shape(), axis);
    let mut picked = Vec::with_capacity(outer * idx.len() * inner);
    let resolved = idx
        .iter()
        .map(|&i| util::resolve_index(i, n))
        .collect::<Result<Vec<_>, _>>()?;
    for o in 0..outer {
        for &i in &resolved {
            let base = (o * n + i) * inner;
            picked.extend(base..base + inner);
        }
    }
    let mut shape = x.shape()[..axis].to_vec();
    shape.extend_from_slice(indices.shape());
    shape.extend_from_slice(&x.shape()[axis + 1..]);
    Ok(util::take(x, &picked, shape))
}

/// For each position of `indices` (same rank as `x`), the flat index into `x` it addresses along
/// `axis`.
fn element_targets(x: &Tensor, indices: &Tensor, axis: i64) -> Result<Vec<usize>, OpError> {
    let rank = x.shape().len();
    let axis = util::axis(axis, rank)?;
    let idx = index_values(indices, 1)?;
    let fits = indices.shape().len() == rank
        && indices
            .shape()
            .iter()
            .zip(x.shape())
            .enumerate()
            .all(|(d, (&i, &s))| d == axis || i <= s);
    if !fits {
        return Err(OpError::Shape(format!(
            "indices {:?} do not fit data {:?}",
            indices.shape(),
            x.shape()
        )));
    }
    let mut st = util::strides(x.shape());
    let axis_stride = st[axis];
    st[axis] = 0;
    let base = util::strided_offsets(indices.shape(), &st);
    base.iter()
        .zip(&idx)
        .map(|(&b, &i)| Ok(b + util::resolve_index(i, x.shape()[axis])? * axis_stride))
        .collect()
}

/// ONNX `GatherElements` along `axis`.
pub fn gather_elements(x: &Tensor, indices: &Tensor, axis: i64) -> Result<Tensor, OpError> {
    let targets = element_targets(x, indices, axis)?;
    Ok(util::take(x, &targets, indices.shape().to_vec()))
}

/// For every index tuple of an ND-indices operand, the flat offset of the addressed slice, with
/// the slice size and the result's leading shape.
fn nd_targets(
    x: &Tensor,
    indices: &Tensor,
    batch_dims: usize,
) -> Result<(Vec<usize>, usize, Vec<usize>), OpError> {
    let idx = index_values(indices, 1)?;
    let is = indices.shape();
    let xs = x.shape();
    let Some((&q, lead)) = is.split_last() else {
        return Err(OpError::Shape("indices must have rank ≥ 1".into()));
    };
    if batch_dims > lead.len() || batch_dims + q > xs.len() || is[..batch_dims] != xs[..batch_dims]
    {
        return Err(OpError::Shape(format!(
            "indices {is:?} do not fit data {xs:?} with {batch_dims} batch axes"
        )));
    }
    let st = util::strides(xs);
    let inner: usize = xs[batch_dims + q..].iter().product();
    let batch_count: usize = is[..batch_dims].iter().product();
    let per_batch = lead
        .iter()
        .product::<usize>()
        .checked_div(batch_count)
        .unwrap_or(0);
    let batch_stride = if batch_dims == 0 {
        0
    } else {
        st[batch_dims - 1]
    };
    let mut targets = Vec::with_capacity(batch_count * per_batch);
    for (t, tuple) in idx
        .chunks(q.max(1))
        .enumerate()
        .take(batch_count * per_batch)
    {
        let batch = t / per_batch.max(1);
        let mut offset = batch * batch_stride;
        for (j, &i) in tuple.iter().enumerate().take(q) {
            offset += util::resolve_index(i, xs[batch_dims + j])? * st[batch_dims + j];
        }
        targets.push(offset);
    }
    if q == 0 {
        // Every tuple is empty: each addresses its whole batch slice.
        targets = (0..batch_count * per_batch)
            .map(|t| (t / per_batch.max(1)) * batch_stride)
            .collect();
    }
    let mut shape = lead.to_vec();
    shape.extend_from_slice(&xs[batch_dims + q..]);
    Ok((targets, inner, shape))
}

/// ONNX `GatherND` with `batch_dims` leading batch axes.
pub fn gather_nd(x: &Tensor, indices: &Tensor, batch_dims: u64) -> Result<Tensor, OpError> {
    let (targets, inner, shape) = nd_targets(x, indices, batch_dims as usize)?;
    let picked: Vec<usize> = targets.iter().flat_map(|&t| t..t + inner).collect();
    Ok(util::take(x, &picked, shape))
}

/// Combines `update` into `slot`.
fn combine_f(slot: &mut f32, update: f32, reduction: ScatterReduction) {
    *slot = match reduction {
        ScatterReduction::None => update,
        ScatterReduction::Add => *slot + update,
        ScatterReduction::Mul => *slot * update,
        ScatterReduction::Max => slot.max(update),
        ScatterReduction::Min => slot.min(update),
    };
}

/// Combines `update` into `slot`.
fn combine_i(slot: &mut i64, update: i64, reduction: ScatterReduction) {
    *slot = match reduction {
        ScatterReduction::None => update,
        ScatterReduction::Add => slot.wrapping_add(update),
        ScatterReduction::Mul => slot.wrapping_mul(update),
        ScatterReduction::Max => (*slot).max(update),
        ScatterReduction::Min => (*slot).min(update),
    };
}

/// Applies `updates` (flat, in order) at flat `targets` of a copy of `x`.
fn scatter(
    x: &Tensor,
    updates: &Tensor,
    targets: &[usize],
    reduction: ScatterReduction,
) -> Result<Tensor, OpError> {
    util::expect_dtype(updates, 2, x.dtype())?;
    let shape = x.shape().to_vec();
    match (util::num(x), util::num(updates)) {
        (Num::F(mut v), Num::F(u)) => {
            for (&t, &e) in targets.iter().zip(&u) {
                combine_f(&mut v[t], e, reduction);
            }
            Ok(Tensor::from_f32(x.dtype(), shape, &v))
        }
        (Num::I(mut v), Num::I(u)) => {
            for (&t, &e) in targets.iter().zip(&u) {
                combine_i(&mut v[t], e, reduction);
            }
            Ok(Tensor::from_i64(x.dtype(), shape, &v))
        }
        _ => unreachable!("operands of one dtype have one numeric view"),
    }
}

/// ONNX `ScatterElements` along `axis`.
pub fn scatter_elements(
    inputs: &[Option<&Tensor>],
    axis: i64,
    reduction: ScatterReduction,
) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, 0)?;
    let indices = util::operand(inputs, 1)?;
    let updates = util::operand(inputs, 2)?;
    if updates.shape() != indices.shape() {
        return Err(OpError::Shape(format!(
            "updates {:?} and indices {:?} differ in shape",
            updates.shape(),
            indices.shape()
        )));
    }
    let targets = element_targets(x, indices, axis)?;
    scatter(x, updates, &targets, reduction)
}

/// ONNX `ScatterND`.
pub fn scatter_nd(
    inputs: &[Option<&Tensor>],
    reduction: ScatterReduction,
) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, 0)?;
    let indices = util::operand(inputs, 1)?;
    let updates = util::operand(inputs, 2)?;
    let (slices, inner, shape) = nd_targets(x, indices, 0)?;
    if updates.shape() != shape.as_slice() {
        return Err(OpError::Shape(format!(
            "updates have shape {:?}, expected {shape:?}",
            updates.shape()
        )));
    }
    let targets: Vec<usize> = slices.iter().flat_map(|&t| t..t + inner).collect();
    scatter(x, updates, &targets, reduction)
}
