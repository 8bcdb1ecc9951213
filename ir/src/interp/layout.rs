//! Data movement: `Reshape`, `Transpose`, `Concat`, `Split`, `Slice`, `Squeeze`, `Unsqueeze`,
//! `Expand`, `Trilu`, and the generator `Range`. Elements move exactly, whatever the dtype.

use super::OpError;
use super::util;
use crate::DType;
use crate::shape::{Dim, DimBindings};
use crate::tensor::Tensor;

/// Evaluates dimension attributes with the run's bindings.
fn eval_dims(dims: &[Dim], bindings: &DimBindings) -> Result<Vec<usize>, OpError> {
    dims.iter()
        .map(|d| {
            d.eval(bindings)
                .map(|v| v as usize)
                .ok_or_else(|| OpError::UnboundDim(d.to_string()))
        })
        .collect()
}

/// The same elements with shape `shape`.
pub fn reshape(x: &Tensor, shape: &[Dim], bindings: &DimBindings) -> Result<Tensor, OpError> {
    let shape = eval_dims(shape, bindings)?;
    if shape.iter().product::<usize>() != x.numel() {
        return Err(OpError::Shape(format!(
            "cannot reshape {:?} to {shape:?}",
            x.shape()
        )));
    }
    Ok(x.reshaped(shape))
}

/// Axes permuted: result axis `i` is operand axis `perm[i]`.
pub fn transpose(x: &Tensor, perm: &[u64]) -> Result<Tensor, OpError> {
    let rank = x.shape().len();
    let mut seen = vec![false; rank];
    for &p in perm {
        match seen.get_mut(p as usize) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(OpError::Attribute(format!(
                    "{perm:?} is not a permutation of 0..{rank}"
                )));
            }
        }
    }
    if perm.len() != rank {
        return Err(OpError::Attribute(format!(
            "{perm:?} is not a permutation of 0..{rank}"
        )));
    }
    let st = util::strides(x.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p as usize]).collect();
    let pst: Vec<usize> = perm.iter().map(|&p| st[p as usize]).collect();
    Ok(util::take(x, &util::strided_offsets(&shape, &pst), shape))
}

/// Concatenation along `axis`.
pub fn concat(inputs: &[Option<&Tensor>], axis: i64) -> Result<Tensor, OpError> {
    let parts = (0..inputs.len().max(1))
        .map(|i| util::operand(inputs, i))
        .collect::<Result<Vec<_>, _>>()?;
    let first = parts[0];
    let rank = first.shape().len();
    let axis = util::axis(axis, rank)?;
    let mut shape = first.shape().to_vec();
    shape[axis] = 0;
    for (i, p) in parts.iter().enumerate() {
        util::expect_dtype(p, i, first.dtype())?;
        let same = p.shape().len() == rank
            && p.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(d, (a, b))| d == axis || a == b);
        if !same {
            return Err(OpError::Shape(format!(
                "operand {i} has shape {:?}, incompatible with {:?} along axis {axis}",
                p.shape(),
                first.shape()
            )));
        }
        shape[axis] += p.shape()[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    let size = util::elem_size(first.dtype());
    let unpacked: Vec<Vec<u8>> = parts.iter().map(|p| util::unpack(p)).collect();
    let mut data = Vec::with_capacity(shape.iter().product::<usize>() * size);
    for o in 0..outer {
        for (p, bytes) in parts.iter().zip(&unpacked) {
            let chunk = p.shape()[axis..].iter().product::<usize>() * size;
            data.extend_from_slice(&bytes[o * chunk..(o + 1) * chunk]);
        }
    }
    Ok(util::pack(first.dtype(), shape, data))
}

/// Consecutive pieces of `sizes` along `axis`.
pub fn split(
    x: &Tensor,
    axis: i64,
    sizes: &[Dim],
    bindings: &DimBindings,
) -> Result<Vec<Tensor>, OpError> {
    let axis = util::axis(axis, x.shape().len())?;
    let sizes = eval_dims(sizes, bindings)?;
    if sizes.iter().sum::<usize>() != x.shape()[axis] {
        return Err(OpError::Shape(format!(
            "split sizes {sizes:?} do not add up to axis {axis} of {:?}",
            x.shape()
        )));
    }
    let mut start = 0i64;
    sizes
        .iter()
        .map(|&s| {
            let end = start + s as i64;
            let piece = slice(x, &[axis as i64], &[start], &[end], &[1]);
            start = end;
            piece
        })
        .collect()
}

/// ONNX `Slice` with clamping; `i64::MAX`/`i64::MIN` ends mean "to the end".
pub fn slice(
    x: &Tensor,
    axes: &[i64],
    starts: &[i64],
    ends: &[i64],
    steps: &[i64],
) -> Result<Tensor, OpError> {
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err(OpError::Attribute(
            "slice axes, starts, ends and steps differ in length".into(),
        ));
    }
    let rank = x.shape().len();
    let mut first: Vec<i64> = vec![0; rank];
    let mut step: Vec<i64> = vec![1; rank];
    let mut shape = x.shape().to_vec();
    for (((&a, &s), &e), &st) in axes.iter().zip(starts).zip(ends).zip(steps) {
        let a = util::axis(a, rank)?;
        if st == 0 {
            return Err(OpError::Attribute("slice step 0".into()));
        }
        let dim = x.shape()[a] as i64;
        let resolve = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = (resolve(s), resolve(e));
        let (s, e) = if st > 0 {
            (s.clamp(0, dim), e.clamp(0, dim))
        } else if dim == 0 {
            (-1, -1)
        } else {
            (s.clamp(0, dim - 1), e.clamp(-1, dim - 1))
        };
        let len = if st > 0 {
            if e > s { (e - s + st - 1) / st } else { 0 }
        } else if s > e {
            (s - e + (-st) - 1) / (-st)
        } else {
            0
        };
        first[a] = s;
        step[a] = st;
        shape[a] = len as usize;
    }
    let st = util::strides(x.shape());
    let base: i64 = first.iter().zip(&st).map(|(&f, &s)| f * s as i64).sum();
    if let Some(t) = slice_by_runs(x, base, &step, &shape) {
        return Ok(t);
    }
    let mut picked = Vec::with_capacity(shape.iter().product());
    for_each_offset(&shape, &step, &st, base, |offset| picked.push(offset));
    Ok(util::take(x, &picked, shape))
}

/// Calls `f` with the source element offset of every index of `shape`, in row-major order:
/// `base` plus each index times its axis's `step` and source `strides` (steps may be negative,
/// so offsets are computed in `i64`).
fn for_each_offset(
    shape: &[usize],
    step: &[i64],
    strides: &[usize],
    base: i64,
    mut f: impl FnMut(usize),
) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        let offset = (idx.iter().zip(step).zip(strides))
            .map(|((&i, &p), &s)| i as i64 * p * s as i64)
            .sum::<i64>()
            + base;
        f(offset as usize);
        let mut ax = shape.len();
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
}

/// The slice of `x` starting at element `base` with `step` per axis and the result's `shape`,
/// copied in contiguous runs: the trailing axes the slice keeps whole, and the one before them
/// if it steps by 1 (a split along any axis copies whole rows or blocks, not elements). `None`
/// when the innermost axis does not step by 1 or the dtype packs two elements per byte.
fn slice_by_runs(x: &Tensor, base: i64, step: &[i64], shape: &[usize]) -> Option<Tensor> {
    if x.dtype() == DType::F4E2M1 {
        return None;
    }
    let rank = shape.len();
    // Axes `outer..` form one contiguous run of `run` elements.
    let mut outer = rank;
    let mut run = 1usize;
    while outer > 0 && step[outer - 1] == 1 && shape[outer - 1] == x.shape()[outer - 1] {
        outer -= 1;
        run *= shape[outer];
    }
    if outer > 0 && step[outer - 1] == 1 {
        outer -= 1;
        run *= shape[outer];
    } else if outer == rank && rank > 0 {
        return None;
    }
    let size = util::elem_size(x.dtype());
    let count: usize = shape.iter().product();
    let strides = util::strides(x.shape());
    let bytes = x.bytes();
    let mut data = Vec::with_capacity(count * size);
    // An empty result reads nothing (its start may lie outside the source).
    if count > 0 {
        let prefix = ..outer;
        for_each_offset(
            &shape[prefix],
            &step[prefix],
            &strides[prefix],
            base,
            |offset| data.extend_from_slice(&bytes[offset * size..(offset + run) * size]),
        );
    }
    Some(util::pack(x.dtype(), shape.to_vec(), data))
}

/// Removes the listed size-1 axes (every size-1 axis when the list is empty, like ONNX).
pub fn squeeze(x: &Tensor, axes: &[i64]) -> Result<Tensor, OpError> {
    let rank = x.shape().len();
    let mut remove = vec![false; rank];
    if axes.is_empty() {
        for (r, &d) in remove.iter_mut().zip(x.shape()) {
            *r = d == 1;
        }
    }
    for &a in axes {
        let a = util::axis(a, rank)?;
        if x.shape()[a] != 1 {
            return Err(OpError::Shape(format!(
                "cannot squeeze axis {a} of size {}",
                x.shape()[a]
            )));
        }
        remove[a] = true;
    }
    let shape = x
        .shape()
        .iter()
        .zip(&remove)
        .filter(|(_, r)| !**r)
        .map(|(&d, _)| d)
        .collect();
    Ok(x.reshaped(shape))
}

/// Inserts size-1 axes at the listed positions of the result.
pub fn unsqueeze(x: &Tensor, axes: &[i64]) -> Result<Tensor, OpError> {
    let rank = x.shape().len() + axes.len();
    let mut inserted = vec![false; rank];
    for &a in axes {
        let a = util::axis(a, rank)?;
        if inserted[a] {
            return Err(OpError::Attribute(format!("axis {a} listed twice")));
        }
        inserted[a] = true;
    }
    let mut dims = x.shape().iter();
    let shape = inserted
        .iter()
        .map(|&i| {
            if i {
                1
            } else {
                dims.next().copied().unwrap_or(1)
            }
        })
        .collect();
    Ok(x.reshaped(shape))
}

/// ONNX `Expand`: broadcast to `broadcast(shape(x), shape)`.
pub fn expand(x: &Tensor, shape: &[Dim], bindings: &DimBindings) -> Result<Tensor, OpError> {
    let target = eval_dims(shape, bindings)?;
    let shape = util::broadcast_shape(x.shape(), &target)?;
    let idx = util::broadcast_index(x.shape(), &shape)?;
    Ok(util::take(x, &idx, shape))
}

/// `[start, start+delta, …)` below `limit` (above it for a negative delta).
pub fn range(
    inputs: &[Option<&Tensor>],
    len: &Dim,
    bindings: &DimBindings,
) -> Result<Tensor, OpError> {
    let start = util::operand(inputs, 0)?;
    let limit = util::operand(inputs, 1)?;
    let delta = util::operand(inputs, 2)?;
    for (i, t) in [start, limit, delta].into_iter().enumerate() {
        util::expect_dtype(t, i, start.dtype())?;
        if t.numel() != 1 {
            return Err(OpError::Shape(format!(
                "operand {i} must be a scalar, has shape {:?}",
                t.shape()
            )));
        }
    }
    let dtype = start.dtype();
    let (natural, values) = if dtype.is_float() {
        let (s, l, d) = (start.get_f64(0), limit.get_f64(0), delta.get_f64(0));
        if d == 0.0 {
            return Err(OpError::Attribute("range delta 0".into()));
        }
        let count = ((l - s) / d).ceil().max(0.0);
        if !count.is_finite() {
            return Err(OpError::Attribute(format!(
                "range from {s} to {l} by {d} has no finite length"
            )));
        }
        let n = count as usize;
        let v: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
        (n, Tensor::from_f64(dtype, vec![n], &v))
    } else {
        let (s, l, d) = (start.get_i64(0), limit.get_i64(0), delta.get_i64(0));
        if d == 0 {
            return Err(OpError::Attribute("range delta 0".into()));
        }
        let span = l - s;
        let n = if (span > 0) == (d > 0) && span != 0 {
            ((span.abs() + d.abs() - 1) / d.abs()) as usize
        } else {
            0
        };
        let v: Vec<i64> = (0..n as i64).map(|i| s + i * d).collect();
        (n, Tensor::from_i64(dtype, vec![n], &v))
    };
    if let Some(expected) = len.eval(bindings)
        && expected as usize != natural
    {
        return Err(OpError::Shape(format!(
            "the operands give {natural} elements, the length is {len} = {expected}"
        )));
    }
    Ok(values)
}

/// The upper (`j - i >= k`) or lower (`j - i <= k`) triangle of the last two axes.
pub fn trilu(x: &Tensor, upper: bool, k: i64) -> Result<Tensor, OpError> {
    let rank = x.shape().len();
    if rank < 2 {
        return Err(OpError::Shape(format!(
            "trilu needs rank ≥ 2, got {:?}",
            x.shape()
        )));
    }
    let (rows, cols) = (x.shape()[rank - 2], x.shape()[rank - 1]);
    let size = util::elem_size(x.dtype());
    let mut data = util::unpack(x);
    for (e, chunk) in data.chunks_exact_mut(size).enumerate() {
        let i = ((e / cols.max(1)) % rows.max(1)) as i64;
        let j = (e % cols.max(1)) as i64;
        let keep = if upper { j - i >= k } else { j - i <= k };
        if !keep {
            chunk.fill(0);
        }
    }
    Ok(util::pack(x.dtype(), x.shape().to_vec(), data))
}
