//! The ONNX reader: a `.onnx` model (plus its external-data files) to a verified graph.
//!
//! - [`proto`]: the protobuf messages, declared for `prost`.
//! - [`reader`]: element types, value types, initializer bytes in every storage form.
//! - [`symbolic`]: import-time known values, including shape vectors with symbolic dimensions.
//! - `context`: the import state and op emission with constant folding.
//! - `ops`: one importer per ONNX operator, grouped by family, and the registry mapping
//!   `(domain, op_type)` to them.
//!
//! Supported: the default domain at opsets 1 to 28 as long as each op's schema in force is the
//! one of opsets 13 to 23 or a later one whose changes the importer handles (see
//! `docs/conformance.md`), and `com.microsoft` opset 1 for ONNX Runtime's fused `MoE`,
//! `MultiHeadAttention`, `RotaryEmbedding` and `SkipSimplifiedLayerNormalization`.
//!
//! Operands that fix a shape (reshape and expand targets, axes, `k`, slice bounds) must be
//! known at import time: constants, or values folded from `Shape` with symbolic dimensions.
//! Model-local functions, control flow (subgraph attributes) and sparse tensors are rejected.

mod context;
pub mod error;
mod ops;
pub mod proto;
pub mod reader;
pub mod symbolic;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use bytes::Bytes;
use cubevec_ir::{Graph, Tensor};
use prost::Message;

pub use error::{NodeContext, OnnxError};

use context::{Importer, NodeCx};
use proto::{ModelProto, NodeProto};

/// The newest default-domain opset the reader knows.
pub const MAX_OPSET: i64 = 28;

/// The domain name of Microsoft contrib ops.
pub const MS_DOMAIN: &str = "com.microsoft";

/// Options of an import.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Graph inputs fixed to these values: they become constants (folded into the ops that use
    /// them, such as a reshape target or an axes operand) instead of graph inputs.
    pub constant_inputs: BTreeMap<String, Tensor>,
}

/// Reads the model at `path`; external data is resolved relative to its directory.
pub fn load(path: &Path) -> Result<Graph, OnnxError> {
    load_with(path, &LoadOptions::default())
}

/// Reads a model from its serialized bytes; external data is resolved relative to `base_dir`.
pub fn load_bytes(bytes: &[u8], base_dir: &Path) -> Result<Graph, OnnxError> {
    import(
        Bytes::copy_from_slice(bytes),
        Path::new("<memory>"),
        base_dir,
        &LoadOptions::default(),
    )
}

/// [`load`] with options.
pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Graph, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    import(bytes.into(), path, base_dir, options)
}

/// Reads a serialized `TensorProto` file (ONNX test data) as its name and tensor.
pub fn read_tensor_file(path: &Path) -> Result<(String, Tensor), OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    reader::tensor_from_pb(path, &bytes)
}

/// Decodes and imports a model. The initializers' raw data are views of `bytes`, each copied
/// once into its weight.
fn import(
    bytes: Bytes,
    file: &Path,
    base_dir: &Path,
    options: &LoadOptions,
) -> Result<Graph, OnnxError> {
    let mut model = ModelProto::decode(bytes).map_err(|source| OnnxError::Decode {
        file: file.to_path_buf(),
        source,
    })?;
    // Taken out of the model, so that decoding each takes its raw data instead of cloning it.
    let initializers = (model.graph.as_mut())
        .map(|g| std::mem::take(&mut g.initializer))
        .unwrap_or_default();
    let opsets = opsets(&model, file)?;
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::NoGraph {
        file: file.to_path_buf(),
    })?;
    if !graph.sparse_initializer.is_empty() {
        return Err(OnnxError::BadTensorData {
            file: file.to_path_buf(),
            tensor: graph.sparse_initializer.len().to_string() + " sparse initializer(s)",
            reason: "sparse initializers are not supported".into(),
        });
    }
    let name = if graph.name.is_empty() {
        "main"
    } else {
        graph.name.as_str()
    };
    let mut imp = Importer::new(name, file, base_dir);
    for mut init in initializers {
        let name = std::mem::take(&mut init.name);
        let data = reader::decode_tensor(file, base_dir, &mut init, &name)?;
        imp.add_initializer(&name, data)?;
    }
    for input in &graph.input {
        if imp.is_bound(&input.name) {
            // An input with an initializer is a default value: treated as the constant.
            continue;
        }
        let ty = reader::value_type(file, &input.name, input.r#type.as_ref())?;
        match options.constant_inputs.get(&input.name) {
            Some(t) => {
                if t.dtype() != ty.dtype || t.shape().len() != ty.shape.rank() {
                    return Err(OnnxError::BadValueType {
                        file: file.to_path_buf(),
                        value: input.name.clone(),
                        reason: format!(
                            "declared {ty}, the constant given is {} of shape {:?}",
                            t.dtype(),
                            t.shape()
                        ),
                    });
                }
                imp.add_constant(&input.name, t.clone());
            }
            None => imp.add_input(&input.name, ty),
        }
    }
    let consumed: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .chain(graph.output.iter().map(|o| &o.name))
        .map(String::as_str)
        .collect();
    for (index, node) in graph.node.iter().enumerate() {
        import_node(&mut imp, &opsets, node, index, file, &consumed)?;
    }
    let placeholder = NodeProto {
        name: "graph outputs".into(),
        op_type: "Output".into(),
        ..NodeProto::default()
    };
    let cx = NodeCx {
        proto: &placeholder,
        index: graph.node.len(),
        version: 0,
        file,
        consumed: &consumed,
    };
    for info in graph.value_info.iter().chain(&graph.output) {
        check_declared_type(&imp, file, info)?;
    }
    for output in &graph.output {
        imp.add_output(&output.name, &cx)?;
    }
    let graph = imp.graph;
    cubevec_ir::verify::verify(&graph).map_err(|e| OnnxError::Verify {
        file: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(graph)
}

/// Checks a `value_info` or graph-output declaration against the imported value: same dtype,
/// same rank, and equal sizes where both are known. Declarations without a usable tensor type
/// and values the import folded away are not checked.
fn check_declared_type(
    imp: &Importer,
    file: &Path,
    info: &proto::ValueInfoProto,
) -> Result<(), OnnxError> {
    let Ok(declared) = reader::value_type(file, &info.name, info.r#type.as_ref()) else {
        return Ok(());
    };
    let Some(val) = imp.lookup(&info.name) else {
        return Ok(());
    };
    let inferred = &val.ty;
    let sizes_differ = declared
        .shape
        .dims()
        .iter()
        .zip(inferred.shape.dims())
        .any(|(d, i)| matches!((d.as_known(), i.as_known()), (Some(a), Some(b)) if a != b));
    if declared.dtype != inferred.dtype
        || declared.shape.rank() != inferred.shape.rank()
        || sizes_differ
    {
        return Err(OnnxError::BadValueType {
            file: file.to_path_buf(),
            value: info.name.clone(),
            reason: format!("declared {declared}, but the imported graph computes {inferred}"),
        });
    }
    Ok(())
}

/// The imported opset version per domain (`""` for the default domain), checked.
fn opsets(model: &ModelProto, file: &Path) -> Result<HashMap<String, i64>, OnnxError> {
    let mut out = HashMap::new();
    for o in &model.opset_import {
        let domain = if o.domain == "ai.onnx" {
            ""
        } else {
            o.domain.as_str()
        };
        let unsupported = |supported: &str| OnnxError::UnsupportedOpset {
            file: file.to_path_buf(),
            domain: if domain.is_empty() { "ai.onnx" } else { domain }.to_string(),
            version: o.version,
            supported: supported.to_string(),
        };
        match domain {
            "" if !(1..=MAX_OPSET).contains(&o.version) => {
                return Err(unsupported("1 to 28, per-op limits apply"));
            }
            MS_DOMAIN if o.version != 1 => return Err(unsupported("1")),
            _ => {}
        }
        out.insert(domain.to_string(), o.version);
    }
    Ok(out)
}

fn import_node(
    imp: &mut Importer,
    opsets: &HashMap<String, i64>,
    node: &NodeProto,
    index: usize,
    file: &Path,
    consumed: &HashSet<&str>,
) -> Result<(), OnnxError> {
    let domain = if node.domain == "ai.onnx" {
        ""
    } else {
        node.domain.as_str()
    };
    let mut cx = NodeCx {
        proto: node,
        index,
        version: 0,
        file,
        consumed,
    };
    let spec = ops::lookup(domain, &node.op_type).ok_or_else(|| OnnxError::UnknownOp {
        file: file.to_path_buf(),
        node: cx.context(),
    })?;
    let Some(&opset) = opsets.get(domain) else {
        return Err(OnnxError::UnsupportedOpset {
            file: file.to_path_buf(),
            domain: cx.context().domain,
            version: 0,
            supported: "the model does not import this domain".into(),
        });
    };
    cx.version = spec
        .check_version(opset)
        .map_err(|reason| OnnxError::UnsupportedOpVersion {
            file: file.to_path_buf(),
            node: cx.context(),
            version: opset,
            reason,
        })?;
    let results = (spec.import)(imp, &cx)?;
    for (i, out) in node.output.iter().enumerate() {
        if out.is_empty() {
            continue;
        }
        match results.get(i).cloned().flatten() {
            Some(val) => imp.bind(out, val),
            // A result nothing reads need not be produced.
            None if !consumed.contains(out.as_str()) => {}
            None => {
                return Err(cx.unsupported(format!(
                    "result {i} (`{out}`) is not supported by the importer"
                )));
            }
        }
    }
    Ok(())
}
