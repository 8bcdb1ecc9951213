//! Errors of the Hugging Face checkpoint reader.

use std::path::PathBuf;

/// What can go wrong reading a Hugging Face model directory. Every message names the file and,
/// where there is one, the tensor or config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A file could not be opened or read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `config.json` (or the shard index) is not valid JSON.
    #[error("`{path}` is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A config key is missing or has the wrong type or value.
    #[error("`{path}`: key `{key}`: {message}")]
    ConfigKey {
        /// The config file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// `model_type` names an architecture cubevec does not build.
    #[error(
        "`{path}`: unknown model_type `{model_type}` (supported: mixtral, qwen2_moe, qwen3_moe, deepseek_v3, deepseek_v4)"
    )]
    UnknownModelType {
        /// The config file.
        path: PathBuf,
        /// The value found.
        model_type: String,
    },
    /// The shard index is malformed.
    #[error("`{path}`: {message}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The shard index names a shard file that does not exist.
    #[error("`{index}` maps tensor `{tensor}` to shard `{shard}`, which does not exist")]
    MissingShard {
        /// The index file.
        index: PathBuf,
        /// A tensor mapped to the shard.
        tensor: String,
        /// The missing shard file name.
        shard: String,
    },
    /// A safetensors file is malformed (truncated, header larger than the file, bad JSON header).
    #[error("`{path}` is not a valid safetensors file: {message}")]
    Shard {
        /// The shard file.
        path: PathBuf,
        /// What the safetensors reader found.
        message: String,
    },
    /// The directory has no `*.safetensors` weights (and `--shapes-only` was not asked for).
    #[error(
        "`{dir}` has no model.safetensors or model.safetensors.index.json (use shapes-only mode to compile from config.json alone)"
    )]
    NoWeights {
        /// The model directory.
        dir: PathBuf,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("tensor `{tensor}` is missing from the checkpoint in `{dir}`")]
    MissingTensor {
        /// The model directory.
        dir: PathBuf,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor's shape differs from what the config implies.
    #[error(
        "tensor `{tensor}` in `{file}` has shape {found:?}, but the config implies {expected:?}"
    )]
    TensorShape {
        /// The shard file.
        file: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<u64>,
        /// The shape in the file.
        found: Vec<u64>,
    },
    /// A tensor has a dtype cubevec cannot use there.
    #[error("tensor `{tensor}` in `{file}` has dtype {dtype}, which is not supported here")]
    TensorDtype {
        /// The shard file.
        file: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The dtype in the file.
        dtype: String,
    },
    /// Building the graph failed: the config describes a model the IR cannot express.
    #[error("building `{node}`: {source}")]
    Graph {
        /// The node being built.
        node: String,
        /// The IR's complaint.
        source: Box<cubevec_ir::builder::BuildError>,
    },
}
