//! Tiling kernels for the Ascend memory hierarchy.
//!
//! - [`gemm`]: Cube GEMM tiling (plain, transposed B, batched and grouped-by-expert), with the
//!   tile sizes chosen by searching candidates under the cost model.
//! - [`vector`]: vector-core tiling for elementwise chains and row-wise kernels (RMSNorm,
//!   softmax, SwiGLU) under the UB budget with double buffering.
//! - [`long_rows`]: RMSNorm and softmax over rows longer than UB, streamed in chunks.
//!
//! Both produce verified [`cubevec_ir::kernel::Kernel`]s.

pub(crate) mod build;
pub mod epilogue;
pub mod gemm;
pub mod long_rows;
pub mod vector;

use cubevec_ir::DType;
use cubevec_ir::kernel::KernelError;

use crate::cost::CostError;

/// Errors of the tilers.
#[derive(Debug, thiserror::Error)]
pub enum TileError {
    /// The problem description is invalid.
    #[error("invalid problem `{name}`: {message}")]
    Invalid {
        /// Kernel name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The Cube cannot multiply this dtype (or the layout needs an unsupported transpose).
    #[error("kernel `{name}`: unsupported {dtype} {what}")]
    Unsupported {
        /// Kernel name.
        name: String,
        /// The dtype.
        dtype: DType,
        /// What is unsupported.
        what: String,
    },
    /// No candidate tiling fits the buffers.
    #[error("kernel `{name}`: no tiling fits the on-chip buffers ({reason})")]
    NoFit {
        /// Kernel name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A generated kernel failed verification (a tiler bug).
    #[error("generated kernel failed verification: {0}")]
    Verify(#[from] KernelError),
    /// The cost model failed.
    #[error(transparent)]
    Cost(#[from] CostError),
}
