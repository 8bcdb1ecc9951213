//! Concrete tensors: a dtype, known sizes and little-endian element bytes.
//!
//! This is the runtime form of values in the reference interpreter, of constants the frontends
//! fold, and of `.npy` inputs and outputs. Element access goes through `f32`/`f64`/`i64` views so
//! that arithmetic code is written once; storing rounds to the tensor's dtype.

use std::sync::Arc;

use crate::dtype::{self, DType};

/// A dense row-major tensor whose bytes are little-endian elements of `dtype` (FP4 packed two per
/// byte, low nibble first).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    bytes: Arc<[u8]>,
}

/// The error for bytes that do not match a dtype and shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{dtype} tensor of shape {shape:?} needs {expected} bytes, got {actual}")]
pub struct TensorSizeError {
    /// The dtype asked for.
    pub dtype: DType,
    /// The shape asked for.
    pub shape: Vec<usize>,
    /// Bytes the dtype and shape need.
    pub expected: usize,
    /// Bytes given.
    pub actual: usize,
}

impl Tensor {
    /// A tensor over existing bytes; fails if their length does not match.
    pub fn from_bytes(
        dtype: DType,
        shape: Vec<usize>,
        bytes: impl Into<Arc<[u8]>>,
    ) -> Result<Tensor, TensorSizeError> {
        let bytes = bytes.into();
        let expected = dtype.storage_bytes(shape.iter().product());
        if bytes.len() != expected {
            return Err(TensorSizeError {
                dtype,
                shape,
                expected,
                actual: bytes.len(),
            });
        }
        Ok(Tensor {
            dtype,
            shape,
            bytes,
        })
    }

    /// A tensor of `dtype` from `f32` values, each rounded to the dtype (integers truncate toward
    /// zero and saturate, `bool` is `v != 0`).
    pub fn from_f32(dtype: DType, shape: Vec<usize>, values: &[f32]) -> Tensor {
        assert_eq!(
            values.len(),
            shape.iter().product::<usize>(),
            "value count vs shape"
        );
        let bytes = encode_f64_iter(dtype, values.len(), values.iter().map(|&v| v as f64));
        Tensor {
            dtype,
            shape,
            bytes: bytes.into(),
        }
    }

    /// A tensor of `dtype` from `f64` values (rounded once, directly to the dtype).
    pub fn from_f64(dtype: DType, shape: Vec<usize>, values: &[f64]) -> Tensor {
        assert_eq!(
            values.len(),
            shape.iter().product::<usize>(),
            "value count vs shape"
        );
        let bytes = encode_f64_iter(dtype, values.len(), values.iter().copied());
        Tensor {
            dtype,
            shape,
            bytes: bytes.into(),
        }
    }

    /// A tensor of `dtype` from `i64` values (exact for integer dtypes; floats round).
    pub fn from_i64(dtype: DType, shape: Vec<usize>, values: &[i64]) -> Tensor {
        assert_eq!(
            values.len(),
            shape.iter().product::<usize>(),
            "value count vs shape"
        );
        let bytes = match dtype {
            DType::I64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::I32 => values
                .iter()
                .flat_map(|&v| (v as i32).to_le_bytes())
                .collect(),
            DType::I8 => values.iter().map(|&v| v as i8 as u8).collect(),
            DType::U8 => values.iter().map(|&v| v as u8).collect(),
            DType::Bool => values.iter().map(|&v| (v != 0) as u8).collect(),
            _ => encode_f64_iter(dtype, values.len(), values.iter().map(|&v| v as f64)),
        };
        Tensor {
            dtype,
            shape,
            bytes: Arc::from(bytes),
        }
    }

    /// A scalar (rank 0) tensor.
    pub fn scalar_f32(dtype: DType, value: f32) -> Tensor {
        Tensor::from_f32(dtype, Vec::new(), &[value])
    }

    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = dtype.storage_bytes(shape.iter().product());
        Tensor {
            dtype,
            shape,
            bytes: vec![0u8; n].into(),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Sizes.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The same elements with another shape of equal element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> Tensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            self.numel(),
            "reshape count"
        );
        Tensor {
            dtype: self.dtype,
            shape,
            bytes: self.bytes.clone(),
        }
    }

    /// Element `i` (row-major) as `f64`; integers and bools convert exactly where they fit.
    pub fn get_f64(&self, i: usize) -> f64 {
        let b = &self.bytes;
        match self.dtype {
            DType::F32 => f32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap()) as f64,
            DType::F16 => half::f16::from_le_bytes([b[i * 2], b[i * 2 + 1]]).to_f64(),
            DType::BF16 => half::bf16::from_le_bytes([b[i * 2], b[i * 2 + 1]]).to_f64(),
            DType::F8E4M3FN => dtype::f8e4m3fn_to_f32(b[i]) as f64,
            DType::F8E5M2 => dtype::f8e5m2_to_f32(b[i]) as f64,
            DType::E8M0 => dtype::e8m0_to_f32(b[i]) as f64,
            DType::F4E2M1 => {
                let byte = b[i / 2];
                let code = if i.is_multiple_of(2) {
                    byte & 0xF
                } else {
                    byte >> 4
                };
                dtype::f4e2m1_to_f32(code) as f64
            }
            DType::I8 => b[i] as i8 as f64,
            DType::U8 | DType::Bool => b[i] as f64,
            DType::I32 => i32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap()) as f64,
            DType::I64 => i64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap()) as f64,
        }
    }

    /// Element `i` as `i64` (floats truncate toward zero).
    pub fn get_i64(&self, i: usize) -> i64 {
        let b = &self.bytes;
        match self.dtype {
            DType::I64 => i64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap()),
            DType::I32 => i32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap()) as i64,
            DType::I8 => b[i] as i8 as i64,
            DType::U8 | DType::Bool => b[i] as i64,
            _ => self.get_f64(i) as i64,
        }
    }

    /// All elements as `f32`.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            _ => (0..self.numel()).map(|i| self.get_f64(i) as f32).collect(),
        }
    }

    /// All elements as `f64`.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.numel()).map(|i| self.get_f64(i)).collect()
    }

    /// All elements as `i64`.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        (0..self.numel()).map(|i| self.get_i64(i)).collect()
    }

    /// All elements as `bool` (non-zero is true).
    pub fn to_bool_vec(&self) -> Vec<bool> {
        (0..self.numel()).map(|i| self.get_f64(i) != 0.0).collect()
    }
}

/// Encodes `count` values as `dtype` bytes, rounding floats to nearest even and saturating where
/// the format saturates.
fn encode_f64_iter(dtype: DType, count: usize, values: impl Iterator<Item = f64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(dtype.storage_bytes(count));
    match dtype {
        DType::F32 => values.for_each(|v| out.extend((v as f32).to_le_bytes())),
        DType::F16 => values.for_each(|v| out.extend(half::f16::from_f64(v).to_le_bytes())),
        DType::BF16 => values.for_each(|v| out.extend(half::bf16::from_f64(v).to_le_bytes())),
        DType::F8E4M3FN => values.for_each(|v| out.push(dtype::f32_to_f8e4m3fn(v as f32))),
        DType::F8E5M2 => values.for_each(|v| out.push(dtype::f32_to_f8e5m2(v as f32))),
        DType::E8M0 => values.for_each(|v| out.push(dtype::f32_to_e8m0(v as f32))),
        DType::F4E2M1 => {
            let codes: Vec<u8> = values.map(|v| dtype::f32_to_f4e2m1(v as f32)).collect();
            for pair in codes.chunks(2) {
                out.push(pair[0] | pair.get(1).map_or(0, |hi| hi << 4));
            }
        }
        DType::I8 => values.for_each(|v| out.push(saturate_int(v, i8::MIN, i8::MAX) as i8 as u8)),
        DType::U8 => values.for_each(|v| out.push(saturate_int(v, 0, u8::MAX) as u8)),
        DType::I32 => values
            .for_each(|v| out.extend((saturate_int(v, i32::MIN, i32::MAX) as i32).to_le_bytes())),
        DType::I64 => values.for_each(|v| out.extend((v as i64).to_le_bytes())),
        DType::Bool => values.for_each(|v| out.push((v != 0.0) as u8)),
    }
    out
}

/// Truncates toward zero and clamps to `[lo, hi]` (NaN gives 0).
fn saturate_int<T: Into<f64>>(v: f64, lo: T, hi: T) -> i64 {
    if v.is_nan() {
        0
    } else {
        v.trunc().clamp(lo.into(), hi.into()) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even gives 1.0.
        let t = Tensor::from_f32(
            DType::BF16,
            vec![2],
            &[1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0],
        );
        assert_eq!(t.to_f32_vec(), vec![1.0, 1.015625]);
    }

    #[test]
    fn fp4_packs_low_nibble_first() {
        let t = Tensor::from_f32(DType::F4E2M1, vec![3], &[1.0, -6.0, 0.5]);
        assert_eq!(t.bytes(), &[0x2 | 0xF << 4, 0x1]);
        assert_eq!(t.to_f32_vec(), vec![1.0, -6.0, 0.5]);
    }

    #[test]
    fn sizes_are_checked() {
        assert!(Tensor::from_bytes(DType::F32, vec![2], vec![0u8; 7]).is_err());
        assert!(Tensor::from_bytes(DType::F4E2M1, vec![3], vec![0u8; 2]).is_ok());
    }

    #[test]
    fn integers_saturate_and_truncate() {
        let t = Tensor::from_f32(DType::I8, vec![3], &[300.0, -2.7, f32::NAN]);
        assert_eq!(t.to_i64_vec(), vec![127, -2, 0]);
    }
}
