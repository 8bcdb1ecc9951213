//! The errors of the ONNX reader. Every message names the model file and, for node-level
//! problems, the node, its op type and its domain.

use std::path::PathBuf;

/// Where in the model an error was found: the file and, for node-level problems, the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    /// The node's name (or `#index` when it has none).
    pub node: String,
    /// The op type.
    pub op_type: String,
    /// The op's domain (`ai.onnx` for the default domain).
    pub domain: String,
}

impl std::fmt::Display for NodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node `{}` ({}::{})",
            self.node, self.domain, self.op_type
        )
    }
}

/// Why a model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The model file could not be read.
    #[error("{file}: cannot read the model: {source}")]
    Io {
        /// The model file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid protobuf message (truncated or corrupt file).
    #[error("{file}: not a valid ONNX protobuf (truncated or corrupt): {source}")]
    Decode {
        /// The model file.
        file: PathBuf,
        /// The protobuf decoder's error.
        source: prost::DecodeError,
    },
    /// The model has no graph.
    #[error("{file}: the model has no graph")]
    NoGraph {
        /// The model file.
        file: PathBuf,
    },
    /// The model imports an opset of a domain that the reader does not support.
    #[error("{file}: {domain} opset {version} is not supported (supported: {supported})")]
    UnsupportedOpset {
        /// The model file.
        file: PathBuf,
        /// The domain.
        domain: String,
        /// The imported version.
        version: i64,
        /// The supported versions, for the message.
        supported: String,
    },
    /// An op is used at an opset version whose semantics the reader does not implement.
    #[error(
        "{file}: {node}: opset {version} gives this op a version the reader does not support ({reason})"
    )]
    UnsupportedOpVersion {
        /// The model file.
        file: PathBuf,
        /// The node.
        node: Box<NodeContext>,
        /// The domain's imported opset version.
        version: i64,
        /// Which versions are supported.
        reason: String,
    },
    /// No importer exists for this op.
    #[error("{file}: {node}: unknown or unsupported operator")]
    UnknownOp {
        /// The model file.
        file: PathBuf,
        /// The node.
        node: Box<NodeContext>,
    },
    /// An attribute is missing, of the wrong kind or has a value the reader cannot use.
    #[error("{file}: {node}: attribute `{attribute}`: {reason}")]
    BadAttribute {
        /// The model file.
        file: PathBuf,
        /// The node.
        node: Box<NodeContext>,
        /// The attribute's name.
        attribute: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node's operands or their types cannot be imported.
    #[error("{file}: {node}: {reason}")]
    Unsupported {
        /// The model file.
        file: PathBuf,
        /// The node.
        node: Box<NodeContext>,
        /// What is not supported.
        reason: String,
    },
    /// An operand that must be known at import time (a shape, axes, `k`) is computed at run
    /// time. Graph inputs can be fixed with [`super::LoadOptions::constant_inputs`].
    #[error(
        "{file}: {node}: {what} must be known when the model is imported, but `{value}` is computed at run time"
    )]
    NotConstant {
        /// The model file.
        file: PathBuf,
        /// The node.
        node: Box<NodeContext>,
        /// The operand's role.
        what: String,
        /// The operand's name.
        value: String,
    },
    /// The IR rejected the op built for a node (shape or dtype inference failed).
    #[error("{file}: {node}: {reason}")]
    Build {
        /// The model file.
        file: PathBuf,
        /// The node.
        node: Box<NodeContext>,
        /// The IR's message.
        reason: String,
    },
    /// Folding a constant node failed.
    #[error("{file}: {node}: constant folding failed: {reason}")]
    Fold {
        /// The model file.
        file: PathBuf,
        /// The node.
        node: Box<NodeContext>,
        /// The interpreter's message.
        reason: String,
    },
    /// A node reads a value that is not defined before it.
    #[error(
        "{file}: {node}: operand `{value}` is not defined by an input, initializer or earlier node"
    )]
    UndefinedValue {
        /// The model file.
        file: PathBuf,
        /// The node.
        node: Box<NodeContext>,
        /// The value's name.
        value: String,
    },
    /// A graph input or output has a type the reader cannot represent.
    #[error("{file}: value `{value}`: {reason}")]
    BadValueType {
        /// The model file.
        file: PathBuf,
        /// The value's name.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's element type has no graph-IR equivalent.
    #[error("{file}: tensor `{tensor}`: element type {data_type} is not supported")]
    UnsupportedDType {
        /// The model file.
        file: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The ONNX element type (name or code).
        data_type: String,
    },
    /// A tensor's data does not match its element type and shape.
    #[error("{file}: tensor `{tensor}`: {reason}")]
    BadTensorData {
        /// The model file.
        file: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// An external-data file is missing or unreadable.
    #[error("{file}: tensor `{tensor}`: external data file `{path}`: {source}")]
    ExternalFile {
        /// The model file.
        file: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The external file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The byte range of external data goes past the end of its file.
    #[error(
        "{file}: tensor `{tensor}`: external data `{path}` bytes {offset}..{end} are past the end of the file ({file_len} bytes)"
    )]
    ExternalRange {
        /// The model file.
        file: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The external file.
        path: PathBuf,
        /// First byte.
        offset: u64,
        /// One past the last byte.
        end: u64,
        /// The file's size.
        file_len: u64,
    },
    /// A graph output is not produced by any node, input or initializer.
    #[error("{file}: graph output `{output}` is not defined")]
    UndefinedOutput {
        /// The model file.
        file: PathBuf,
        /// The output's name.
        output: String,
    },
    /// The built graph failed verification.
    #[error("{file}: the imported graph does not verify: {reason}")]
    Verify {
        /// The model file.
        file: PathBuf,
        /// The verifier's message.
        reason: String,
    },
}
