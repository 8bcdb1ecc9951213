//! The tensors of a checkpoint: one `model.safetensors` or shards listed by
//! `model.safetensors.index.json`, indexed by name from their headers alone.
//!
//! Only headers are read (through a memory map, so a 5 GB shard costs a few pages); tensor data
//! stays on disk and is referenced by file, offset and length.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cubevec_ir::DType;
use safetensors::{Dtype as StDtype, SafeTensors};
use serde_json::Value;

use super::HfError;

/// Name of the single-file checkpoint.
const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index.
const INDEX_FILE: &str = "model.safetensors.index.json";

/// Where one tensor's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The shard's file name, relative to the model directory.
    pub file: PathBuf,
    /// Element type, or the safetensors name of a type cubevec does not read.
    pub dtype: Result<DType, String>,
    /// Shape.
    pub shape: Vec<u64>,
    /// Byte offset of the data from the start of the file.
    pub offset: u64,
    /// Byte length of the data.
    pub length: u64,
}

/// Every tensor of a checkpoint directory by name.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    tensors: BTreeMap<String, TensorEntry>,
}

impl Checkpoint {
    /// Indexes the checkpoint in `dir`: the shard index if there is one, else `model.safetensors`.
    pub fn open(dir: &Path) -> Result<Checkpoint, HfError> {
        let index_path = dir.join(INDEX_FILE);
        let mut tensors = BTreeMap::new();
        if index_path.is_file() {
            let weight_map = read_weight_map(&index_path)?;
            let shards: BTreeSet<&str> = weight_map.values().map(String::as_str).collect();
            for shard in shards {
                let path = dir.join(shard);
                if !path.is_file() {
                    let tensor = weight_map
                        .iter()
                        .find(|(_, s)| s.as_str() == shard)
                        .map(|(t, _)| t.clone())
                        .unwrap_or_default();
                    return Err(HfError::MissingShard {
                        index: index_path,
                        tensor,
                        shard: shard.to_string(),
                    });
                }
                read_shard_header(&path, Path::new(shard), &mut tensors)?;
            }
            for (tensor, shard) in &weight_map {
                match tensors.get(tensor) {
                    Some(entry) if entry.file == Path::new(shard) => {}
                    _ => {
                        return Err(HfError::Index {
                            path: index_path,
                            message: format!(
                                "tensor `{tensor}` is mapped to `{shard}`, but that shard does not hold it"
                            ),
                        });
                    }
                }
            }
        } else if dir.join(SINGLE_FILE).is_file() {
            read_shard_header(&dir.join(SINGLE_FILE), Path::new(SINGLE_FILE), &mut tensors)?;
        } else {
            return Err(HfError::NoWeights {
                dir: dir.to_path_buf(),
            });
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            tensors,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry for a tensor name.
    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// Whether the checkpoint has a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Reads `weight_map` from a shard index.
fn read_weight_map(path: &Path) -> Result<BTreeMap<String, String>, HfError> {
    let text = std::fs::read_to_string(path).map_err(|source| HfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|source| HfError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let Some(map) = value.get("weight_map").and_then(Value::as_object) else {
        return Err(HfError::Index {
            path: path.to_path_buf(),
            message: "no `weight_map` object".to_string(),
        });
    };
    map.iter()
        .map(|(tensor, shard)| match shard.as_str() {
            Some(s) if !s.contains("..") && !Path::new(s).is_absolute() => {
                Ok((tensor.clone(), s.to_string()))
            }
            _ => Err(HfError::Index {
                path: path.to_path_buf(),
                message: format!("tensor `{tensor}` maps to {shard}, not a shard file name"),
            }),
        })
        .collect()
}

/// Adds the tensors of one shard's header to `tensors`.
fn read_shard_header(
    path: &Path,
    relative: &Path,
    tensors: &mut BTreeMap<String, TensorEntry>,
) -> Result<(), HfError> {
    let shard_error = |message: String| HfError::Shard {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| HfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let len = file
        .metadata()
        .map_err(|source| HfError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if len < 8 {
        return Err(shard_error(format!(
            "the file is {len} bytes, shorter than the 8-byte header length"
        )));
    }
    // SAFETY: the map is read-only and dropped before this function returns; a checkpoint
    // modified while we read its header gives a parse error at worst.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| HfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (header_len, metadata) =
        SafeTensors::read_metadata(&map).map_err(|e| shard_error(describe(&e, len)))?;
    let data_start = 8 + header_len as u64;
    let mut infos: Vec<_> = metadata.tensors().into_iter().collect();
    infos.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, info) in infos {
        let (begin, end) = info.data_offsets;
        let entry = TensorEntry {
            file: relative.to_path_buf(),
            dtype: convert_dtype(info.dtype),
            shape: info.shape.iter().map(|&d| d as u64).collect(),
            offset: data_start + begin as u64,
            length: (end - begin) as u64,
        };
        if tensors.insert(name.clone(), entry).is_some() {
            return Err(shard_error(format!(
                "tensor `{name}` also appears in another shard"
            )));
        }
    }
    Ok(())
}

/// A readable message for a safetensors error, with the file length for size problems.
fn describe(error: &safetensors::SafeTensorError, file_len: u64) -> String {
    use safetensors::SafeTensorError as E;
    match error {
        E::InvalidHeaderLength => {
            format!("the header length is larger than the file ({file_len} bytes)")
        }
        E::MetadataIncompleteBuffer => {
            format!("the file ({file_len} bytes) is truncated: tensor data extends past its end")
        }
        other => other.to_string(),
    }
}

/// The IR dtype of a safetensors dtype, or its name when cubevec has no equivalent.
fn convert_dtype(dtype: StDtype) -> Result<DType, String> {
    Ok(match dtype {
        StDtype::F32 => DType::F32,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::F8_E4M3 => DType::F8E4M3FN,
        StDtype::F8_E5M2 => DType::F8E5M2,
        StDtype::F8_E8M0 => DType::E8M0,
        StDtype::F4 => DType::F4E2M1,
        StDtype::I8 => DType::I8,
        StDtype::U8 => DType::U8,
        StDtype::I32 => DType::I32,
        StDtype::I64 => DType::I64,
        StDtype::BOOL => DType::Bool,
        other => return Err(format!("{other:?}")),
    })
}
