//! cubevec AscendC back end for Ascend 910B/910C.
//!
//! - [`emit`]: a kernel-IR program becomes a CANN kernel-launch project — AscendC C++ kernels,
//!   an ACL host program, `CMakeLists.txt` and `manifest.json` (`docs/ascendc-backend.md`).
//! - [`emulate`]: builds an emitted project with the host C++ compiler against the header-only
//!   CPU emulation of the AscendC API ([`EMULATOR_HEADERS`], `docs/ascendc-emulation.md`) and
//!   runs it, so that emitted kernels are checked for numbers and API misuse without an NPU.

pub mod emit;
pub mod emulate;
mod headers;

pub use emit::{EmitError, Manifest, Project, emit_project};
pub use emulate::{EmulateError, EmulateOptions, EmulationRun, build_and_run};
pub use headers::{
    EMULATOR_ENTRY_HEADER, EMULATOR_HEADERS, EmulatorError, emulator_include_dir,
    write_emulator_headers,
};
