//! The header-only C++ CPU emulation of the AscendC API subset cubevec emits (see
//! `docs/ascendc-emulation.md`), embedded so that it can be written next to emitted code.

use std::path::{Path, PathBuf};

/// Name of the single header emitted kernels include.
pub const EMULATOR_ENTRY_HEADER: &str = "kernel_operator.h";

/// The emulation headers as `(relative path, contents)` pairs, embedded at build time, so that
/// a caller can write them next to emitted kernels (see [`write_emulator_headers`]). Host
/// programs include `acl/acl.h`, the emulated ACL runtime.
pub const EMULATOR_HEADERS: &[(&str, &str)] = &[
    (
        "kernel_operator.h",
        include_str!("../emu/kernel_operator.h"),
    ),
    ("emu_types.h", include_str!("../emu/emu_types.h")),
    ("emu_core.h", include_str!("../emu/emu_core.h")),
    ("emu_gm.h", include_str!("../emu/emu_gm.h")),
    ("emu_data_copy.h", include_str!("../emu/emu_data_copy.h")),
    ("emu_cube.h", include_str!("../emu/emu_cube.h")),
    ("emu_vector.h", include_str!("../emu/emu_vector.h")),
    ("emu_sync.h", include_str!("../emu/emu_sync.h")),
    ("emu_launch.h", include_str!("../emu/emu_launch.h")),
    ("acl/acl.h", include_str!("../emu/acl/acl.h")),
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

/// Writes every header of [`EMULATOR_HEADERS`] below `dir` (which must exist), creating the
/// subdirectories they need, and returns the paths written, in the order of
/// [`EMULATOR_HEADERS`].
pub fn write_emulator_headers(dir: &Path) -> Result<Vec<PathBuf>, EmulatorError> {
    EMULATOR_HEADERS
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            let write = |path: &Path| -> std::io::Result<()> {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, text)
            };
            write(&path).map_err(|source| EmulatorError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}
