//! The AscendC emitter: a kernel-IR [`Program`] becomes a CANN kernel-launch project.
//!
//! [`emit_project`] verifies the program and every kernel, then produces (see
//! `docs/ascendc-backend.md`):
//!
//! | path | contents |
//! |---|---|
//! | `kernels/<k>.cpp` | one AscendC kernel per IR kernel (modules `kernel`, `moves`, `compute`) |
//! | `include/cubevec_tiling.h` | the POD tiling struct of every kernel |
//! | `include/cubevec_kernel.h` | integer helpers and the tiling copy shared by the kernels |
//! | `include/cubevec_launch.h` | the host-side launch functions |
//! | `launch/<k>.cpp` | kernel + `<<<blocks, nullptr, stream>>>` launch, compiled by bisheng |
//! | `emulate/<k>.cpp` | kernel + launch on the CPU emulation |
//! | `emulate.cpp` | the whole program as one translation unit for the emulation |
//! | `host/main.cpp` | the ACL host program (module `host`) |
//! | `CMakeLists.txt` | the device build (module `cmake`) |
//! | `manifest.json` | the [`Manifest`] |
//!
//! Output is deterministic: the same program and target give byte-identical files. Names from
//! the model never reach C++ or file names unescaped (module `names`).

mod cmake;
mod code;
mod compute;
mod expr;
mod host;
mod kernel;
mod launch;
mod manifest;
mod moves;
mod names;
mod plan;
mod types;

use std::collections::BTreeMap;
use std::path::Path;

use cubevec_ir::kernel::{KernelError, Program, ProgramError, verify};
use cubevec_ir::target::Target;

pub use manifest::{
    MANIFEST_FORMAT, Manifest, ManifestFile, ManifestKernel, ManifestLaunch, ManifestParam,
    ManifestTarget, ManifestTensor, ManifestWorkspace,
};

/// Path of the manifest inside a project.
pub const MANIFEST_PATH: &str = "manifest.json";
/// Path of the single translation unit of an emulated build inside a project.
pub const EMULATION_UNIT_PATH: &str = "emulate.cpp";

/// Why a program could not be emitted.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// Launches, kernels and tensors do not fit together.
    #[error("the program is inconsistent: {0}")]
    Program(#[source] Box<ProgramError>),
    /// A kernel breaks a rule of the kernel IR.
    #[error("kernel verification failed: {0}")]
    Verify(#[source] Box<KernelError>),
    /// A kernel uses something the emitter cannot express in AscendC.
    #[error("kernel `{kernel}`: {message}")]
    Unsupported {
        /// The kernel name.
        kernel: String,
        /// What cannot be emitted.
        message: String,
    },
    /// The target has no CANN `SOC_VERSION`.
    #[error("no CANN SOC_VERSION is known for target `{0}`")]
    UnknownSoc(String),
    /// The manifest could not be serialised.
    #[error("cannot serialise manifest.json: {0}")]
    Manifest(#[source] serde_json::Error),
}

/// An emitted project: relative path (`/`-separated) → file contents, in path order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Project {
    /// The files.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Project {
    /// The contents of a file as text, if the project has it and it is UTF-8.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.files
            .get(path)
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(self.files.get(MANIFEST_PATH).map_or(&[][..], Vec::as_slice))
    }

    /// Writes every file below `dir` (which must exist), creating subdirectories. Not atomic:
    /// callers that need that write into a temporary directory and rename it.
    pub fn write_into(&self, dir: &Path) -> std::io::Result<()> {
        for (path, bytes) in &self.files {
            let full = dir.join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&full, bytes)?;
        }
        Ok(())
    }

    fn add(&mut self, path: String, text: String) {
        self.files.insert(path, text.into_bytes());
    }
}

/// Emits the AscendC project of `program` for `target`: checks the program, verifies every
/// kernel against the target, and generates every file.
pub fn emit_project(program: &Program, target: &Target) -> Result<Project, EmitError> {
    program
        .check()
        .map_err(|e| EmitError::Program(Box::new(e)))?;
    for kernel in &program.kernels {
        verify(kernel, target).map_err(|e| EmitError::Verify(Box::new(e)))?;
    }
    let soc =
        cmake::soc_version(target).ok_or_else(|| EmitError::UnknownSoc(target.name.clone()))?;
    let plans = plan::plan_kernels(program);
    let manifest = manifest::build_manifest(program, target, soc, &plans);
    let mut project = Project::default();
    for (k, p) in program.kernels.iter().zip(&plans) {
        project.add(
            format!("kernels/{}.cpp", p.stem),
            kernel::kernel_source(k, target, p)?,
        );
        project.add(
            format!("launch/{}.cpp", p.stem),
            launch::device_launch(k, p),
        );
        project.add(
            format!("emulate/{}.cpp", p.stem),
            launch::emulated_launch(k, p),
        );
    }
    project.add(
        "include/cubevec_tiling.h".into(),
        launch::tiling_header(program, &plans),
    );
    project.add(
        "include/cubevec_kernel.h".into(),
        launch::kernel_support_header(),
    );
    project.add(
        "include/cubevec_launch.h".into(),
        launch::launch_header(program, &plans),
    );
    project.add(EMULATION_UNIT_PATH.into(), launch::emulation_unit(&plans));
    project.add(
        "host/main.cpp".into(),
        host::host_source(program, &manifest, &plans),
    );
    project.add(
        "CMakeLists.txt".into(),
        cmake::cmake_lists(&program.name, soc, &plans),
    );
    let mut json = serde_json::to_string_pretty(&manifest).map_err(EmitError::Manifest)?;
    json.push('\n');
    project.add(MANIFEST_PATH.into(), json);
    Ok(project)
}
