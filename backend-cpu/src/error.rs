//! Errors of the CPU back end.

use cubevec_ir::kernel::ProgramError;

/// Everything compiling or running a kernel on the CPU can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The host cannot run JIT code (cranelift has no back end for it, or a flag was refused).
    #[error("no cranelift code generator for this host: {0}")]
    Host(String),
    /// The kernel uses something this back end does not lower.
    #[error("kernel `{kernel}`: {message}")]
    Unsupported {
        /// Kernel name.
        kernel: String,
        /// What is not supported.
        message: String,
    },
    /// Cranelift rejected the generated function (a back-end bug).
    #[error("kernel `{kernel}`: code generation failed: {message}")]
    Codegen {
        /// Kernel name.
        kernel: String,
        /// Cranelift's message.
        message: String,
    },
    /// The buffers handed to a run do not match the kernel's parameters or the program's tensors.
    #[error("{context}: {message}")]
    Argument {
        /// The kernel or program.
        context: String,
        /// What does not match.
        message: String,
    },
    /// A statement failed a run-time check (a region outside its tensor or buffer, a division by
    /// a non-positive value, a negative loop extent, a cross-core wait nobody answers); the
    /// instance stopped at that statement without touching memory out of bounds.
    #[error("kernel `{kernel}`, {side} instance {instance}: `{stmt}`: {message}")]
    Runtime {
        /// Kernel name.
        kernel: String,
        /// `cube` or `vector`.
        side: &'static str,
        /// Core instance (block index of that side).
        instance: u64,
        /// The failing statement, printed.
        stmt: String,
        /// What failed.
        message: String,
    },
    /// The program's launches are inconsistent with its tensors.
    #[error(transparent)]
    Program(#[from] Box<ProgramError>),
}
