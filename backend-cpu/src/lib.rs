//! cubevec's CPU back end: kernel IR → cranelift IR → native code.
//!
//! It runs the very schedule the Ascend back end emits: the same loops and tails, every
//! on-chip buffer in its real layout (L1 NZ fractals, L0A ZZ, L0B ZN, L0C NZ in f32, UB ND) at
//! its planned byte offset in a per-instance arena, blocks in parallel on threads, and the cube
//! and vector instances of a MIX block concurrently with real cross-core flags. A tiling,
//! layout or synchronisation bug therefore shows up as a wrong answer (or a deadlock report),
//! not as a silently correct result.
//!
//! Arithmetic is done in `f32` (`i32` for int8 Cube work): 16-bit floats are widened when
//! loaded and rounded to nearest even when stored. Every region a statement touches is checked
//! at run time; a failed check stops the instance and is reported as [`CpuError::Runtime`]
//! naming the kernel, instance and statement.
//!
//! ```no_run
//! # fn demo(kernel: &cubevec_ir::kernel::Kernel, target: &cubevec_ir::target::Target,
//! #         a: &mut [u8], b: &mut [u8], c: &mut [u8]) -> Result<(), cubevec_backend_cpu::CpuError> {
//! let backend = cubevec_backend_cpu::CpuBackend::new(target)?;
//! let compiled = backend.compile_kernel(kernel)?;
//! compiled.run(&mut [a, b, c])?;
//! # Ok(()) }
//! ```

mod error;
mod helpers;
mod kernel;
mod layout;
mod lower;
mod numeric;
mod plan;
mod program;

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cubevec_ir::kernel::{CoreType, Kernel, Program, Side};
use cubevec_ir::target::Target;

pub use error::CpuError;
pub use kernel::{CompiledKernel, set_max_threads};
pub use program::{CompiledProgram, run_program};

use kernel::{EntryFn, SideCode};
use lower::{Helpers, helper_symbols, lower_side};
use plan::{Alignments, plan};

/// Compiles kernels for the host CPU.
pub struct CpuBackend {
    align: Alignments,
    fma: bool,
}

/// Whether the host has a fused multiply-add instruction cranelift can use.
fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        cfg!(target_arch = "aarch64")
    }
}

impl CpuBackend {
    /// A back end for kernels tiled for `target` (its buffer alignments give the stage
    /// strides). Fails when cranelift has no code generator for the host.
    pub fn new(target: &Target) -> Result<CpuBackend, CpuError> {
        cranelift_native::builder().map_err(|e| CpuError::Host(e.to_string()))?;
        Ok(CpuBackend {
            align: Alignments::of(target),
            fma: host_has_fma(),
        })
    }

    fn module(&self) -> Result<JITModule, CpuError> {
        let host = |e: &dyn std::fmt::Display| CpuError::Host(e.to_string());
        let mut flags = settings::builder();
        // The generator schedules its own loops; cranelift's mid-end reordering only adds
        // register pressure to the micro-kernels (measured).
        for (name, value) in [
            ("opt_level", "none"),
            ("is_pic", "false"),
            ("use_colocated_libcalls", "false"),
            ("enable_verifier", "true"),
        ] {
            flags.set(name, value).map_err(|e| host(&e))?;
        }
        let isa = cranelift_native::builder()
            .map_err(|e| host(&e))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| host(&e))?;
        let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        for (name, ptr) in helper_symbols() {
            jb.symbol(name, ptr);
        }
        Ok(JITModule::new(jb))
    }

    /// Compiles both programs of `kernel` to native code.
    pub fn compile_kernel(&self, kernel: &Kernel) -> Result<CompiledKernel, CpuError> {
        let unsupported = |message: String| CpuError::Unsupported {
            kernel: kernel.name.clone(),
            message,
        };
        if kernel.blocks == 0 {
            return Err(unsupported("a launch of zero blocks".into()));
        }
        let (cube, vector) = match kernel.core {
            CoreType::Aic => (true, false),
            CoreType::Aiv => (false, true),
            CoreType::Mix1To2 => (true, true),
        };
        let local = plan(kernel, &self.align)?;
        let mut module = self.module()?;
        let helpers = Helpers::declare(&mut module)?;
        let mut ids = Vec::new();
        for (side, present) in [(Side::Cube, cube), (Side::Vector, vector)] {
            if present {
                ids.push((
                    side,
                    lower_side(&mut module, &helpers, kernel, side, &local, self.fma)?,
                ));
            }
        }
        module
            .finalize_definitions()
            .map_err(|e| CpuError::Codegen {
                kernel: kernel.name.clone(),
                message: e.to_string(),
            })?;
        let mut compiled = CompiledKernel {
            kernel: kernel.clone(),
            plan: local,
            cube: None,
            vector: None,
            module: std::sync::Mutex::new(None),
        };
        for (side, (id, checks)) in ids {
            let ptr = module.get_finalized_function(id);
            // SAFETY: `lower_side` generated the function with exactly this signature.
            let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(ptr) };
            let code = Some(SideCode { entry, checks });
            match side {
                Side::Cube => compiled.cube = code,
                Side::Vector => compiled.vector = code,
            }
        }
        compiled.module = std::sync::Mutex::new(Some(module));
        Ok(compiled)
    }

    /// Checks `program` and compiles each of its kernels.
    pub fn compile_program(&self, program: &Program) -> Result<CompiledProgram, CpuError> {
        program.check().map_err(Box::new)?;
        let kernels = program
            .kernels
            .iter()
            .map(|k| self.compile_kernel(k))
            .collect::<Result<_, _>>()?;
        Ok(CompiledProgram {
            program: program.clone(),
            kernels,
        })
    }
}
