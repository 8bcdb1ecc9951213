//! Loading weights: inline bytes, or slices of memory-mapped files (each file mapped once per run).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::InterpError;
use crate::dtype::DType;
use crate::graph::{FileSlice, WeightData};
use crate::tensor::Tensor;

/// Loads the weights of one run, keeping every external file it has mapped.
pub struct WeightLoader<'a> {
    /// Base directory of relative paths.
    dir: Option<&'a Path>,
    /// The files mapped so far, by resolved path.
    maps: BTreeMap<PathBuf, Mmap>,
}

impl<'a> WeightLoader<'a> {
    /// A loader resolving relative paths against `dir`.
    pub fn new(dir: Option<&'a Path>) -> Self {
        WeightLoader {
            dir,
            maps: BTreeMap::new(),
        }
    }

    /// The tensor of weight `name` with the given type.
    pub fn load(
        &mut self,
        name: &str,
        dtype: DType,
        shape: Vec<usize>,
        data: &WeightData,
    ) -> Result<Tensor, InterpError> {
        let bytes: Vec<u8> = match data {
            WeightData::Inline(bytes) => {
                return Tensor::from_bytes(dtype, shape, bytes.clone()).map_err(|source| {
                    InterpError::WeightSize {
                        weight: name.to_string(),
                        source,
                    }
                });
            }
            WeightData::Absent => return Err(InterpError::AbsentWeight(name.to_string())),
            WeightData::External(slices) => {
                // Grown slice by slice: a length is trusted only once its slice is in its file.
                let mut bytes = Vec::new();
                for slice in slices {
                    bytes.extend_from_slice(self.slice(name, slice)?);
                }
                bytes
            }
        };
        Tensor::from_bytes(dtype, shape, bytes).map_err(|source| InterpError::WeightSize {
            weight: name.to_string(),
            source,
        })
    }

    /// The bytes of one slice of weight `name`'s data.
    fn slice(&mut self, name: &str, slice: &FileSlice) -> Result<&[u8], InterpError> {
        let resolved = match self.dir {
            Some(dir) if slice.path.is_relative() => dir.join(&slice.path),
            _ => slice.path.clone(),
        };
        let map = self.map(name, resolved.clone())?;
        match slice.offset.checked_add(slice.length) {
            Some(end) if end <= map.len() as u64 => Ok(&map[slice.offset as usize..end as usize]),
            _ => Err(InterpError::WeightOutOfFile {
                weight: name.to_string(),
                path: resolved,
                offset: slice.offset,
                end: slice.offset.saturating_add(slice.length),
                file_len: map.len() as u64,
            }),
        }
    }

    /// The mapping of `path`, mapping it on first use.
    fn map(&mut self, weight: &str, path: PathBuf) -> Result<&Mmap, InterpError> {
        if !self.maps.contains_key(&path) {
            let io_error = |source| InterpError::WeightFile {
                weight: weight.to_string(),
                path: path.clone(),
                source,
            };
            let file = File::open(&path).map_err(io_error)?;
            // SAFETY: the mapping is only read while this loader lives, and weight files are not
            // modified while a model runs; a concurrent truncation is outside our contract.
            let map = unsafe { Mmap::map(&file) }.map_err(io_error)?;
            self.maps.insert(path.clone(), map);
        }
        Ok(&self.maps[&path])
    }
}
