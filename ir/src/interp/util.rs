//! Helpers shared by the kernels: operand access, axes, broadcasting, strided element movement
//! and the numeric views of tensors.

use super::OpError;
use crate::dtype::DType;
use crate::tensor::Tensor;

/// The required operand at `index`.
pub fn operand<'a>(inputs: &[Option<&'a Tensor>], index: usize) -> Result<&'a Tensor, OpError> {
    inputs
        .get(index)
        .copied()
        .flatten()
        .ok_or(OpError::MissingOperand(index))
}

/// The optional operand at `index` (`None` when absent or past the end).
pub fn optional<'a>(inputs: &[Option<&'a Tensor>], index: usize) -> Option<&'a Tensor> {
    inputs.get(index).copied().flatten()
}

/// Normalises a possibly negative axis for `rank`.
pub fn axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    crate::shape::normalize_axis(axis, rank).ok_or(OpError::Axis { axis, rank })
}

/// Row-major strides (in elements) of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut out = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        out[i] = out[i + 1] * shape[i + 1];
    }
    out
}

/// `(outer, size, inner)` element counts around `axis`.
pub fn around_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// The numpy-broadcast shape of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let rank = a.len().max(b.len());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = (i + a.len()).checked_sub(rank).map_or(1, |j| a[j]);
        let db = (i + b.len()).checked_sub(rank).map_or(1, |j| b[j]);
        let d = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(OpError::Shape(format!(
                "shapes {a:?} and {b:?} do not broadcast"
            )));
        };
        out.push(d);
    }
    Ok(out)
}

/// For every element of `out_shape` (row-major), the flat index of the element of a tensor of
/// `in_shape` broadcast to it. `in_shape` must broadcast to `out_shape`.
pub fn broadcast_index(in_shape: &[usize], out_shape: &[usize]) -> Result<Vec<usize>, OpError> {
    let fits = in_shape.len() <= out_shape.len()
        && in_shape
            .iter()
            .rev()
            .zip(out_shape.iter().rev())
            .all(|(&i, &o)| i == o || i == 1);
    if !fits {
        return Err(OpError::Shape(format!(
            "shape {in_shape:?} does not broadcast to {out_shape:?}"
        )));
    }
    let pad = out_shape.len() - in_shape.len();
    let in_strides = strides(in_shape);
    let mut st = vec![0; out_shape.len()];
    for (i, &d) in in_shape.iter().enumerate() {
        if d != 1 {
            st[pad + i] = in_strides[i];
        }
    }
    Ok(strided_offsets(out_shape, &st))
}

/// The offsets `Σ idx[i]·strides[i]` of every index of `shape`, in row-major order.
pub fn strided_offsets(shape: &[usize], strides: &[usize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let Some(last) = shape.len().checked_sub(1) else {
        out.push(0);
        return out;
    };
    let (inner_len, inner_stride) = (shape[last], strides[last]);
    let mut idx = vec![0usize; shape.len()];
    let mut base = 0usize;
    loop {
        out.extend((0..inner_len).map(|j| base + j * inner_stride));
        let mut ax = last;
        loop {
            if ax == 0 {
                return out;
            }
            ax -= 1;
            idx[ax] += 1;
            base += strides[ax];
            if idx[ax] < shape[ax] {
                break;
            }
            base -= strides[ax] * shape[ax];
            idx[ax] = 0;
        }
    }
}

/// Bytes per element in the unpacked form of [`unpack`] (FP4 codes take one byte each).
pub fn elem_size(dtype: DType) -> usize {
    match dtype {
        DType::F4E2M1 => 1,
        d => d.bits() / 8,
    }
}

/// The tensor's elements as bytes of [`elem_size`] each (FP4 unpacked to one code per byte).
pub fn unpack(t: &Tensor) -> Vec<u8> {
    if t.dtype() == DType::F4E2M1 {
        (0..t.numel())
            .map(|i| {
                let byte = t.bytes()[i / 2];
                if i.is_multiple_of(2) {
                    byte & 0xF
                } else {
                    byte >> 4
                }
            })
            .collect()
    } else {
        t.bytes().to_vec()
    }
}

/// A tensor from elements in the unpacked form of [`unpack`].
pub fn pack(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Tensor {
    let bytes = if dtype == DType::F4E2M1 {
        data.chunks(2)
            .map(|pair| pair[0] | pair.get(1).map_or(0, |hi| hi << 4))
            .collect()
    } else {
        data
    };
    let count: usize = shape.iter().product();
    debug_assert_eq!(bytes.len(), dtype.storage_bytes(count));
    Tensor::from_bytes(dtype, shape, bytes).unwrap_or_else(|e| unreachable!("packed size: {e}"))
}

/// A tensor of `shape` whose element `i` is element `indices[i]` of `t` (exact for every dtype).
pub fn take(t: &Tensor, indices: &[usize], shape: Vec<usize>) -> Tensor {
    let size = elem_size(t.dtype());
    let src = unpack(t);
    let mut data = Vec::with_capacity(indices.len() * size);
    for &i in indices {
        data.extend_from_slice(&src[i * size..(i + 1) * size]);
    }
    pack(t.dtype(), shape, data)
}

/// A tensor's elements in the arithmetic domain of its dtype: floats as `f32`, integers and bools
/// as `i64`.
pub enum Num {
    /// Float elements.
    F(Vec<f32>),
    /// Integer or bool elements.
    I(Vec<i64>),
}

/// The numeric view of a tensor.
pub fn num(t: &Tensor) -> Num {
    if t.dtype().is_float() {
        Num::F(t.to_f32_vec())
    } else {
        Num::I(t.to_i64_vec())
    }
}

/// Fails unless the operand is a float tensor.
pub fn expect_float(t: &Tensor, operand: usize) -> Result<(), OpError> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(OpError::DType {
            operand,
            expected: "a float type".into(),
            got: t.dtype(),
        })
    }
}

/// Fails unless the operand is an integer tensor.
pub fn expect_int(t: &Tensor, operand: usize) -> Result<(), OpError> {
    if t.dtype().is_int() {
        Ok(())
    } else {
        Err(OpError::DType {
            operand,
            expected: "an integer type".into(),
            got: t.dtype(),
        })
    }
}

/// Fails unless the operand has exactly `dtype`.
pub fn expect_dtype(t: &Tensor, operand: usize, dtype: DType) -> Result<(), OpError> {
    if t.dtype() == dtype {
        Ok(())
    } else {
        Err(OpError::DType {
            operand,
            expected: dtype.to_string(),
            got: t.dtype(),
        })
    }
}

/// Fails unless the operand has rank `rank`.
pub fn expect_rank(t: &Tensor, operand: usize, rank: usize) -> Result<(), OpError> {
    if t.shape().len() == rank {
        Ok(())
    } else {
        Err(OpError::Shape(format!(
            "operand {operand} has shape {:?}, expected rank {rank}",
            t.shape()
        )))
    }
}

/// Resolves an index that may count from the end of an axis of `size`.
pub fn resolve_index(index: i64, size: usize) -> Result<usize, OpError> {
    let resolved = if index < 0 {
        index + size as i64
    } else {
        index
    };
    if (0..size as i64).contains(&resolved) {
        Ok(resolved as usize)
    } else {
        Err(OpError::Index { index, size })
    }
}

/// Total order used for sorting and selection: NaN is greater than every number (numpy's order).
pub fn cmp_nan_greatest(a: f32, b: f32) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}
