//! The library's error type.

use std::path::PathBuf;

/// Everything that can go wrong when loading, compiling or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model path does not exist or could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The model path is neither a textual IR file, an ONNX file nor a checkpoint directory.
    #[error(
        "`{0}` is not a model cubevec can read (expected a .cvir textual IR file, an .onnx file, or a Hugging Face checkpoint directory)"
    )]
    UnknownFormat(PathBuf),
    /// The textual IR did not parse.
    #[error("{path}:{source}")]
    Parse {
        /// The file (or `<text>` for in-memory text).
        path: PathBuf,
        /// The parse error, with line and column.
        source: Box<cubevec_ir::text::ParseError>,
    },
    /// Building a graph in code failed.
    #[error("building the graph: {0}")]
    Build(Box<cubevec_ir::builder::BuildError>),
    /// A rewrite rule could not be registered.
    #[error(transparent)]
    Rule(Box<cubevec_passes::optimize::custom::DuplicateRule>),
    /// The ONNX reader failed.
    #[error(transparent)]
    Onnx(Box<cubevec_frontend::onnx::OnnxError>),
    /// The Hugging Face checkpoint reader failed.
    #[error(transparent)]
    HuggingFace(Box<cubevec_frontend::hf::HfError>),
    /// The e-graph optimiser failed.
    #[error("optimisation failed: {0}")]
    Optimize(Box<cubevec_passes::optimize::OptimizeError>),
    /// Splitting the graph into tiled kernels failed.
    #[error("kernel planning failed: {0}")]
    Partition(Box<cubevec_passes::partition::PartitionError>),
    /// The graph failed verification.
    #[error("invalid graph in `{path}`: {source}")]
    Verify {
        /// Where the graph came from.
        path: PathBuf,
        /// What the verifier found.
        source: Box<cubevec_ir::verify::VerifyError>,
    },
    /// The reference interpreter failed.
    #[error("reference run failed: {0}")]
    Interp(Box<cubevec_ir::interp::InterpError>),
    /// A kernel failed in the kernel IR reference executor.
    #[error("kernel run failed: {0}")]
    KernelRun(Box<cubevec_ir::kernel::eval::EvalError>),
    /// Compiling or running kernels on the CPU back end failed.
    #[error("CPU back end: {0}")]
    Cpu(Box<cubevec_backend_cpu::CpuError>),
    /// Emitting the AscendC project failed.
    #[error("AscendC emission failed: {0}")]
    Emit(Box<cubevec_backend_ascend::EmitError>),
    /// Building or running the emitted project against the AscendC emulation failed.
    #[error("emulated run failed: {0}")]
    Emulate(Box<cubevec_backend_ascend::EmulateError>),
    /// An input named on the command line or in the inputs map is not a graph input, or one is
    /// missing.
    #[error("{0}")]
    Inputs(String),
}

/// `From` conversions for the variants that box their source (the sources are large; boxing
/// keeps `Result<_, Error>` small).
macro_rules! boxed_from {
    ($($variant:ident($source:ty)),* $(,)?) => {
        $(impl From<$source> for Error {
            fn from(source: $source) -> Error {
                Error::$variant(Box::new(source))
            }
        })*
    };
}

boxed_from!(
    Build(cubevec_ir::builder::BuildError),
    Rule(cubevec_passes::optimize::custom::DuplicateRule),
    Onnx(cubevec_frontend::onnx::OnnxError),
    HuggingFace(cubevec_frontend::hf::HfError),
    Optimize(cubevec_passes::optimize::OptimizeError),
    Interp(cubevec_ir::interp::InterpError),
    Partition(cubevec_passes::partition::PartitionError),
    KernelRun(cubevec_ir::kernel::eval::EvalError),
    Emit(cubevec_backend_ascend::EmitError),
    Cpu(cubevec_backend_cpu::CpuError),
    Emulate(cubevec_backend_ascend::EmulateError),
);
