//! Decoding of ONNX tensors and value types: element types, dimensions, initializer bytes in
//! every storage form (`raw_data`, typed fields, external data) and reading them back as
//! [`Tensor`]s when a constant must be known at import time.

use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cubevec_ir::graph::FileSlice;
use cubevec_ir::{DType, Dim, Shape, Tensor, TensorType, WeightData};

use super::error::OnnxError;
use super::proto::{
    DataLocation, DataType, TensorProto, TypeProto, tensor_shape_proto::dimension, type_proto,
};

/// The graph-IR dtype of an ONNX element type code, or the ONNX type's name when there is none.
pub fn dtype_from_onnx(code: i32) -> Result<DType, String> {
    let data_type = DataType::try_from(code).map_err(|_| format!("code {code}"))?;
    Ok(match data_type {
        DataType::Float => DType::F32,
        DataType::Float16 => DType::F16,
        DataType::Bfloat16 => DType::BF16,
        DataType::Float8e4m3fn => DType::F8E4M3FN,
        DataType::Float8e5m2 => DType::F8E5M2,
        DataType::Float8e8m0 => DType::E8M0,
        DataType::Float4e2m1 => DType::F4E2M1,
        DataType::Int8 => DType::I8,
        DataType::Uint8 => DType::U8,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Bool => DType::Bool,
        other => return Err(format!("{other:?}").to_uppercase()),
    })
}

/// The tensor type of a graph input or output. Dimensions with `dim_param` become
/// [`Dim::Sym`]; dimensions with neither a value nor a name get a fresh symbol
/// `<value>_d<axis>`.
pub fn value_type(
    file: &Path,
    name: &str,
    ty: Option<&TypeProto>,
) -> Result<TensorType, OnnxError> {
    let bad = |reason: &str| OnnxError::BadValueType {
        file: file.to_path_buf(),
        value: name.to_string(),
        reason: reason.to_string(),
    };
    let tensor = match ty.and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        Some(_) => return Err(bad("only dense tensor values are supported")),
        None => return Err(bad("the value has no type")),
    };
    let dtype = dtype_from_onnx(tensor.elem_type)
        .map_err(|t| bad(&format!("element type {t} is not supported")))?;
    let shape = tensor
        .shape
        .as_ref()
        .ok_or_else(|| bad("the value has no shape (unknown rank)"))?;
    let mut dims = Vec::with_capacity(shape.dim.len());
    for (axis, d) in shape.dim.iter().enumerate() {
        dims.push(match &d.value {
            Some(dimension::Value::DimValue(v)) => {
                let v = u64::try_from(*v).map_err(|_| bad(&format!("negative dimension {v}")))?;
                Dim::Known(v)
            }
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::sym(p.as_str()),
            _ => Dim::sym(format!("{name}_d{axis}")),
        });
    }
    Ok(TensorType::new(dtype, Shape(dims)))
}

/// A decoded tensor: its type and where its bytes are.
#[derive(Clone, Debug)]
pub struct TensorData {
    /// Dtype and (known) shape.
    pub ty: TensorType,
    /// Sizes as numbers.
    pub sizes: Vec<usize>,
    /// The bytes: inline or a range of an external file relative to the model directory.
    pub data: WeightData,
}

/// Decodes a `TensorProto` (initializer, attribute or test data) without reading external data.
/// External files are checked to exist and to be long enough. The inline `raw_data` is taken
/// out of `proto` and copied once, into the weight.
pub fn decode_tensor(
    file: &Path,
    base_dir: &Path,
    proto: &mut TensorProto,
    name: &str,
) -> Result<TensorData, OnnxError> {
    let bad = |reason: String| OnnxError::BadTensorData {
        file: file.to_path_buf(),
        tensor: name.to_string(),
        reason,
    };
    let dtype = dtype_from_onnx(proto.data_type).map_err(|t| OnnxError::UnsupportedDType {
        file: file.to_path_buf(),
        tensor: name.to_string(),
        data_type: t,
    })?;
    if proto.segment.is_some() {
        return Err(bad("segmented tensors are not supported".into()));
    }
    let mut sizes = Vec::with_capacity(proto.dims.len());
    for &d in &proto.dims {
        sizes.push(usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}")))?);
    }
    let numel = sizes
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {:?} overflow", proto.dims)))?;
    let expected = (numel as u128 * dtype.bits() as u128).div_ceil(8);
    let expected = usize::try_from(expected).map_err(|_| bad("tensor too large".into()))?;
    let ty = TensorType::new(
        dtype,
        Shape::known(&sizes.iter().map(|&s| s as u64).collect::<Vec<_>>()),
    );
    if proto.data_location == DataLocation::External as i32 {
        let data = external(file, base_dir, proto, name, expected)?;
        return Ok(TensorData { ty, sizes, data });
    }
    let bytes: Arc<[u8]> = match proto.raw_data.take() {
        Some(raw) => Arc::from(&raw[..]),
        None => Arc::from(typed_bytes(proto, dtype, numel).map_err(bad)?),
    };
    if bytes.len() != expected {
        return Err(bad(format!(
            "{dtype} tensor of shape {sizes:?} needs {expected} bytes, the data holds {}",
            bytes.len()
        )));
    }
    Ok(TensorData {
        ty,
        sizes,
        data: WeightData::Inline(bytes),
    })
}

/// The little-endian bytes of a tensor stored in the typed repeated fields.
fn typed_bytes(proto: &TensorProto, dtype: DType, numel: usize) -> Result<Vec<u8>, String> {
    let count_check = |len: usize, want: usize, field: &str| {
        if len == want {
            Ok(())
        } else {
            Err(format!(
                "{field} holds {len} elements, the shape needs {want}"
            ))
        }
    };
    Ok(match dtype {
        DType::F32 => {
            count_check(proto.float_data.len(), numel, "float_data")?;
            proto
                .float_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        DType::I64 => {
            count_check(proto.int64_data.len(), numel, "int64_data")?;
            proto
                .int64_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        DType::I32 => {
            count_check(proto.int32_data.len(), numel, "int32_data")?;
            proto
                .int32_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        DType::F16 | DType::BF16 => {
            count_check(proto.int32_data.len(), numel, "int32_data")?;
            proto
                .int32_data
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect()
        }
        DType::I8 | DType::U8 | DType::Bool | DType::F8E4M3FN | DType::F8E5M2 | DType::E8M0 => {
            count_check(proto.int32_data.len(), numel, "int32_data")?;
            proto.int32_data.iter().map(|&v| v as u8).collect()
        }
        DType::F4E2M1 => {
            count_check(proto.int32_data.len(), numel.div_ceil(2), "int32_data")?;
            proto.int32_data.iter().map(|&v| v as u8).collect()
        }
    })
}

/// Resolves the `external_data` entries of a tensor into a [`WeightData::External`] whose path
/// is relative to the model directory.
fn external(
    file: &Path,
    base_dir: &Path,
    proto: &TensorProto,
    name: &str,
    expected: usize,
) -> Result<WeightData, OnnxError> {
    let bad = |reason: String| OnnxError::BadTensorData {
        file: file.to_path_buf(),
        tensor: name.to_string(),
        reason,
    };
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for entry in &proto.external_data {
        let number = || {
            entry.value.parse::<u64>().map_err(|_| {
                bad(format!(
                    "external_data `{}` is not a number: `{}`",
                    entry.key, entry.value
                ))
            })
        };
        match entry.key.as_str() {
            "location" => location = Some(entry.value.clone()),
            "offset" => offset = number()?,
            "length" => length = Some(number()?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad("external data without a `location`".into()))?;
    let relative = PathBuf::from(&location);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(bad(format!(
            "external data location `{location}` must be a path inside the model directory"
        )));
    }
    let length = length.unwrap_or(expected as u64);
    if length != expected as u64 {
        return Err(bad(format!(
            "external data length {length} does not match the {expected} bytes its type needs"
        )));
    }
    let full = base_dir.join(&relative);
    let file_len = std::fs::metadata(&full)
        .map_err(|source| OnnxError::ExternalFile {
            file: file.to_path_buf(),
            tensor: name.to_string(),
            path: full.clone(),
            source,
        })?
        .len();
    let end = offset.saturating_add(length);
    if end > file_len {
        return Err(OnnxError::ExternalRange {
            file: file.to_path_buf(),
            tensor: name.to_string(),
            path: full,
            offset,
            end,
            file_len,
        });
    }
    Ok(WeightData::file_slice(relative, offset, length))
}

/// Reads a decoded tensor's bytes: inline data is shared, external data is memory-mapped and
/// only the tensor's byte range is copied.
pub fn read_tensor(
    file: &Path,
    base_dir: &Path,
    name: &str,
    data: &TensorData,
) -> Result<Tensor, OnnxError> {
    let bytes: Arc<[u8]> = match &data.data {
        WeightData::Inline(bytes) => bytes.clone(),
        WeightData::External(slices) => {
            let mut bytes = Vec::new();
            for slice in slices {
                read_slice(file, base_dir, name, slice, &mut bytes)?;
            }
            Arc::from(bytes)
        }
        WeightData::Absent => {
            return Err(OnnxError::BadTensorData {
                file: file.to_path_buf(),
                tensor: name.to_string(),
                reason: "the tensor has no data".into(),
            });
        }
    };
    Tensor::from_bytes(data.ty.dtype, data.sizes.clone(), bytes).map_err(|e| {
        OnnxError::BadTensorData {
            file: file.to_path_buf(),
            tensor: name.to_string(),
            reason: e.to_string(),
        }
    })
}

/// Appends the bytes of one slice of tensor `name`'s external data to `out`.
fn read_slice(
    file: &Path,
    base_dir: &Path,
    name: &str,
    slice: &FileSlice,
    out: &mut Vec<u8>,
) -> Result<(), OnnxError> {
    let full = base_dir.join(&slice.path);
    let io_err = |source| OnnxError::ExternalFile {
        file: file.to_path_buf(),
        tensor: name.to_string(),
        path: full.clone(),
        source,
    };
    let handle = File::open(&full).map_err(io_err)?;
    // SAFETY: the map is read-only and dropped before this function returns; a concurrent
    // truncation of the weight file is outside what the reader defends against.
    let map = unsafe { memmap2::Mmap::map(&handle) }.map_err(io_err)?;
    let (offset, length) = (slice.offset, slice.length);
    let range_err = || OnnxError::ExternalRange {
        file: file.to_path_buf(),
        tensor: name.to_string(),
        path: full.clone(),
        offset,
        end: offset.saturating_add(length),
        file_len: map.len() as u64,
    };
    let start = usize::try_from(offset).map_err(|_| range_err())?;
    let end = usize::try_from(offset.saturating_add(length)).map_err(|_| range_err())?;
    out.extend_from_slice(map.get(start..end).ok_or_else(range_err)?);
    Ok(())
}

/// Decodes a standalone serialized `TensorProto` (a test-data `.pb` file) into a tensor.
pub fn tensor_from_pb(path: &Path, bytes: &[u8]) -> Result<(String, Tensor), OnnxError> {
    use prost::Message;
    let mut proto = TensorProto::decode(bytes).map_err(|source| OnnxError::Decode {
        file: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let name = std::mem::take(&mut proto.name);
    let data = decode_tensor(path, base, &mut proto, &name)?;
    let tensor = read_tensor(path, base, &name, &data)?;
    Ok((name, tensor))
}
