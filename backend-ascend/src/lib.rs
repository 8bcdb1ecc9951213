//! cubevec AscendC back end for Ascend 910B/910C.
//!
//! This crate currently ships the header-only C++ CPU emulation of the AscendC API subset that
//! emitted kernels use (see `docs/ascendc-emulation.md`). Emitted kernels include
//! `kernel_operator.h`; compiled against these headers with a host C++17 compiler they run on the
//! CPU with device semantics and loud checks of API misuse, and compiled against the CANN headers
//! they build for the NPU.

use std::path::{Path, PathBuf};

/// Name of the single header emitted kernels include.
pub const EMULATOR_ENTRY_HEADER: &str = "kernel_operator.h";

/// The emulation headers as `(file name, contents)` pairs, embedded at build time, so that a
/// caller can write them next to emitted kernels (see [`write_emulator_headers`]).
pub const EMULATOR_HEADERS: &[(&str, &str)] = &[
    (
        "kernel_operator.h",
        include_str!("../emu/kernel_operator.h"),
    ),
    ("emu_types.h", include_str!("../emu/emu_types.h")),
    ("emu_core.h", include_str!("../emu/emu_core.h")),
    ("emu_data_copy.h", include_str!("../emu/emu_data_copy.h")),
    ("emu_cube.h", include_str!("../emu/emu_cube.h")),
    ("emu_vector.h", include_str!("../emu/emu_vector.h")),
    ("emu_sync.h", include_str!("../emu/emu_sync.h")),
    ("emu_launch.h", include_str!("../emu/emu_launch.h")),
];

/// Directory holding the emulation headers in the source tree (pass it as `-I` to the C++
/// compiler). Only meaningful where the crate sources are present, e.g. in tests.
pub fn emulator_include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("emu")
}

/// Error writing the emulation headers.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A header could not be written.
    #[error("cannot write emulation header {path}: {source}")]
    Write {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
}

/// Writes every header of [`EMULATOR_HEADERS`] into `dir` (which must exist) and returns the
/// paths written, in the order of [`EMULATOR_HEADERS`].
pub fn write_emulator_headers(dir: &Path) -> Result<Vec<PathBuf>, EmulatorError> {
    EMULATOR_HEADERS
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| EmulatorError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}
