//! `.npy` reading and writing (format versions 1.0, 2.0 and 3.0, little-endian, C order).
//!
//! Supported element types: `f32`, `f16`, `i64`, `i32`, `i8`, `u8` and `bool` map to the dtype of
//! the same name. `f64` files are read by converting every element to `f32` (rounding to nearest);
//! nothing is written as `f64`. npy has no bfloat16 or 8/4-bit float types, so `bf16`, `fp8`,
//! `fp4` and `e8m0` tensors are written as `f32` (exactly: every such value is an `f32`).

use std::path::{Path, PathBuf};

use crate::dtype::DType;
use crate::tensor::Tensor;

/// Why a `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes do not start with the npy magic string.
    #[error("not an npy file: the magic string `\\x93NUMPY` is missing")]
    BadMagic,
    /// A format version this reader does not know.
    #[error("unsupported npy format version {0}.{1}")]
    Version(u8, u8),
    /// The data ends before the header or the elements it announces.
    #[error("truncated npy data: {0}")]
    Truncated(String),
    /// The header dictionary is malformed.
    #[error("malformed npy header `{header}`: {reason}")]
    Header {
        /// The header text.
        header: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An element type this reader does not support.
    #[error("unsupported npy dtype `{0}`")]
    UnsupportedDType(String),
    /// Fortran-ordered data.
    #[error("fortran-ordered npy data is not supported")]
    FortranOrder,
    /// More data than the header announces.
    #[error("npy data has {extra} bytes after the {expected} announced")]
    TrailingBytes {
        /// Bytes announced.
        expected: usize,
        /// Bytes beyond them.
        extra: usize,
    },
    /// A `bool` element other than 0 or 1.
    #[error("a bool element is neither 0 nor 1")]
    InvalidBool,
    /// A file under `path` failed to decode.
    #[error("`{path}`: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        source: Box<NpyError>,
    },
}

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_npy(&bytes).map_err(|e| NpyError::File {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

/// Writes a tensor as a `.npy` file (see [`encode_npy`]).
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    std::fs::write(path, encode_npy(t)).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The element type descriptor as npy writes it, with the element count conversion.
fn descr(dtype: DType) -> (&'static str, DType) {
    match dtype {
        DType::F32 => ("<f4", DType::F32),
        DType::F16 => ("<f2", DType::F16),
        DType::I64 => ("<i8", DType::I64),
        DType::I32 => ("<i4", DType::I32),
        DType::I8 => ("|i1", DType::I8),
        DType::U8 => ("|u1", DType::U8),
        DType::Bool => ("|b1", DType::Bool),
        DType::BF16 | DType::F8E4M3FN | DType::F8E5M2 | DType::E8M0 | DType::F4E2M1 => {
            ("<f4", DType::F32)
        }
    }
}

/// Encodes a tensor as version 1.0 `.npy` bytes (bf16 and the 8/4-bit float types as `f32`).
pub fn encode_npy(t: &Tensor) -> Vec<u8> {
    let (descr, stored) = descr(t.dtype());
    let shape = match t.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that the data starts at a multiple of 64 bytes; end with a newline.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + stored.storage_bytes(t.numel()));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    if stored == t.dtype() {
        out.extend_from_slice(t.bytes());
    } else {
        out.extend(t.to_f32_vec().into_iter().flat_map(f32::to_le_bytes));
    }
    out
}

/// The value text of `key` in a header dictionary (up to the next top-level comma or brace).
fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let bad = |reason: String| NpyError::Header {
        header: header.to_string(),
        reason,
    };
    let pattern_single = format!("'{key}'");
    let pattern_double = format!("\"{key}\"");
    let start = header
        .find(&pattern_single)
        .map(|p| p + pattern_single.len())
        .or_else(|| {
            header
                .find(&pattern_double)
                .map(|p| p + pattern_double.len())
        })
        .ok_or_else(|| bad(format!("no `{key}` key")))?;
    let rest = header[start..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| bad(format!("no `:` after `{key}`")))?
        .trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth < 0 {
                    return Ok(rest[..i].trim());
                }
            }
            ',' | '}' if depth == 0 => return Ok(rest[..i].trim()),
            _ => {}
        }
    }
    Err(bad(format!("unterminated `{key}` value")))
}

/// Decodes `.npy` bytes.
pub fn decode_npy(bytes: &[u8]) -> Result<Tensor, NpyError> {
    if bytes.len() < 8 {
        return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(6)]) {
            NpyError::Truncated("the preamble is incomplete".into())
        } else {
            NpyError::BadMagic
        });
    }
    if &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => {
            let b = bytes
                .get(8..10)
                .ok_or_else(|| NpyError::Truncated("no header length".into()))?;
            (u16::from_le_bytes([b[0], b[1]]) as usize, 10)
        }
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| NpyError::Truncated("no header length".into()))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        _ => return Err(NpyError::Version(major, minor)),
    };
    let header_bytes = bytes
        .get(header_start..header_start + header_len)
        .ok_or_else(|| {
            NpyError::Truncated(format!(
                "the header announces {header_len} bytes, {} are present",
                bytes.len().saturating_sub(header_start)
            ))
        })?;
    let header = std::str::from_utf8(header_bytes).map_err(|_| NpyError::Header {
        header: String::from_utf8_lossy(header_bytes).into_owned(),
        reason: "not UTF-8".into(),
    })?;
    let bad = |reason: &str| NpyError::Header {
        header: header.trim_end().to_string(),
        reason: reason.to_string(),
    };
    let descr = header_field(header, "descr")?.trim_matches(|c| c == '\'' || c == '"');
    match header_field(header, "fortran_order")? {
        "False" => {}
        "True" => return Err(NpyError::FortranOrder),
        _ => return Err(bad("fortran_order is neither True nor False")),
    }
    let shape_text = header_field(header, "shape")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad("shape is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("a shape entry is not a non-negative integer"))?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("the shape's element count overflows"))?;
    let (dtype, element_bytes, from_f64) = match descr {
        "<f4" => (DType::F32, 4, false),
        "<f8" => (DType::F32, 8, true),
        "<f2" => (DType::F16, 2, false),
        "<i8" => (DType::I64, 8, false),
        "<i4" => (DType::I32, 4, false),
        "|i1" | "<i1" | "i1" => (DType::I8, 1, false),
        "|u1" | "<u1" | "u1" => (DType::U8, 1, false),
        "|b1" | "<b1" | "b1" => (DType::Bool, 1, false),
        other => return Err(NpyError::UnsupportedDType(other.to_string())),
    };
    let data_start = header_start + header_len;
    let expected = count
        .checked_mul(element_bytes)
        .ok_or_else(|| bad("the data size overflows"))?;
    let data = &bytes[data_start..];
    if data.len() < expected {
        return Err(NpyError::Truncated(format!(
            "{count} elements need {expected} bytes, {} are present",
            data.len()
        )));
    }
    if data.len() > expected {
        return Err(NpyError::TrailingBytes {
            expected,
            extra: data.len() - expected,
        });
    }
    if from_f64 {
        let values: Vec<f64> = data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        return Ok(Tensor::from_f64(DType::F32, shape, &values));
    }
    if dtype == DType::Bool && data.iter().any(|&b| b > 1) {
        return Err(NpyError::InvalidBool);
    }
    Tensor::from_bytes(dtype, shape, data.to_vec()).map_err(|e| NpyError::Truncated(e.to_string()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A shape of up to 4 axes and the bit patterns of its elements.
    fn shape_and_bits() -> impl Strategy<Value = (Vec<usize>, Vec<u32>)> {
        prop::collection::vec(0usize..4, 0..4).prop_flat_map(|shape| {
            let n = shape.iter().product::<usize>();
            (Just(shape), prop::collection::vec(any::<u32>(), n))
        })
    }

    proptest! {
        #[test]
        fn any_f32_or_i64_tensor_round_trips((shape, bits) in shape_and_bits()) {
            let f32s = Tensor::from_bytes(
                DType::F32,
                shape.clone(),
                bits.iter().flat_map(|b| b.to_le_bytes()).collect::<Vec<u8>>(),
            )
            .unwrap();
            prop_assert_eq!(decode_npy(&encode_npy(&f32s)).unwrap(), f32s);
            let ints: Vec<i64> = bits.iter().map(|&b| (b as i64) << 31 | b as i64).collect();
            let i64s = Tensor::from_i64(DType::I64, shape, &ints);
            prop_assert_eq!(decode_npy(&encode_npy(&i64s)).unwrap(), i64s);
        }
    }

    #[test]
    fn round_trips_every_native_dtype() {
        let cases = [
            Tensor::from_f32(
                DType::F32,
                vec![2, 3],
                &[1.0, -2.5, 0.0, 3.25, f32::MAX, -0.0],
            ),
            Tensor::from_f32(DType::F16, vec![3], &[1.0, -0.5, 65504.0]),
            Tensor::from_i64(DType::I64, vec![2], &[i64::MIN, i64::MAX]),
            Tensor::from_i64(DType::I32, vec![1, 2], &[-7, 1 << 30]),
            Tensor::from_i64(DType::I8, vec![2], &[-128, 127]),
            Tensor::from_i64(DType::U8, vec![2], &[0, 255]),
            Tensor::from_i64(DType::Bool, vec![3], &[1, 0, 1]),
            Tensor::from_f32(DType::F32, vec![], &[4.0]),
            Tensor::from_f32(DType::F32, vec![0, 3], &[]),
        ];
        for t in cases {
            let bytes = encode_npy(&t);
            assert_eq!(bytes[..6], *MAGIC);
            let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!(header_end % 64, 0, "data is 64-byte aligned");
            assert_eq!(decode_npy(&bytes).unwrap(), t);
        }
    }

    #[test]
    fn narrow_floats_are_written_as_f32() {
        for dtype in [DType::BF16, DType::F8E4M3FN, DType::F8E5M2, DType::F4E2M1] {
            let t = Tensor::from_f32(dtype, vec![3], &[1.5, -2.0, 0.5]);
            let back = decode_npy(&encode_npy(&t)).unwrap();
            assert_eq!(back.dtype(), DType::F32);
            assert_eq!(back.to_f32_vec(), vec![1.5, -2.0, 0.5]);
        }
    }

    #[test]
    fn reports_malformed_data() {
        let good = encode_npy(&Tensor::from_f32(DType::F32, vec![2], &[1.0, 2.0]));
        assert!(matches!(
            decode_npy(b"hello world"),
            Err(NpyError::BadMagic)
        ));
        assert!(matches!(
            decode_npy(&good[..5]),
            Err(NpyError::Truncated(_))
        ));
        assert!(matches!(
            decode_npy(&good[..40]),
            Err(NpyError::Truncated(_))
        ));
        let short = &good[..good.len() - 1];
        assert!(matches!(decode_npy(short), Err(NpyError::Truncated(_))));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode_npy(&long),
            Err(NpyError::TrailingBytes { extra: 1, .. })
        ));
        let mut version = good.clone();
        version[6] = 9;
        assert!(matches!(decode_npy(&version), Err(NpyError::Version(9, 0))));
        let with_header = |header: &str| {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
            b.extend_from_slice(header.as_bytes());
            b
        };
        let complex = with_header("{'descr': '<c8', 'fortran_order': False, 'shape': (), }");
        assert!(matches!(decode_npy(&complex), Err(NpyError::UnsupportedDType(d)) if d == "<c8"));
        let fortran = with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (0,), }");
        assert!(matches!(decode_npy(&fortran), Err(NpyError::FortranOrder)));
        let no_shape = with_header("{'descr': '<f4', 'fortran_order': False, }");
        assert!(matches!(
            decode_npy(&no_shape),
            Err(NpyError::Header { .. })
        ));
        let bad_shape = with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (x,), }");
        assert!(matches!(
            decode_npy(&bad_shape),
            Err(NpyError::Header { .. })
        ));
        let mut bad_bool = with_header("{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }");
        bad_bool.push(2);
        assert!(matches!(decode_npy(&bad_bool), Err(NpyError::InvalidBool)));
    }
}
