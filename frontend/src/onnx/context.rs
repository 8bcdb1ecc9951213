//! The import state shared by the op importers: the graph being built, the ONNX values seen so
//! far (with what is known of their contents), node attributes, and op emission with constant
//! folding.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cubevec_ir::graph::Node;
use cubevec_ir::infer::infer_types;
use cubevec_ir::interp::eval_op;
use cubevec_ir::op::ReduceOp;
use cubevec_ir::shape::DimBindings;
use cubevec_ir::{DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId, WeightData};

use super::error::{NodeContext, OnnxError};
use super::proto::{AttributeProto, AttributeType, NodeProto, TensorProto};
use super::reader::{self, TensorData};
use super::symbolic::{Known, SymInt};

/// Constants up to this many elements are folded at import time; larger ones (weights) are
/// only read when an importer needs their contents.
pub const FOLD_LIMIT: usize = 1 << 16;

/// An ONNX value during import: the graph value computing it (if any), what is known of its
/// contents, and its type.
#[derive(Clone, Debug)]
pub struct Val {
    /// The graph value, once one exists.
    pub id: Option<ValueId>,
    /// The contents, when known at import time.
    pub known: Option<Known>,
    /// The initializer data, for weights whose contents were not read.
    pub weight: Option<Arc<TensorData>>,
    /// Dtype and shape.
    pub ty: TensorType,
    /// The ONNX name, for values bound to one.
    pub name: Option<String>,
}

impl Val {
    /// A value known at import time, with no graph value yet.
    pub fn known(known: Known) -> Val {
        let ty = match &known {
            Known::Tensor(t) => TensorType::new(
                t.dtype(),
                Shape::known(&t.shape().iter().map(|&d| d as u64).collect::<Vec<_>>()),
            ),
            Known::Ints {
                values,
                scalar,
                dtype,
            } => TensorType::new(
                *dtype,
                if *scalar {
                    Shape::scalar()
                } else {
                    Shape::known(&[values.len() as u64])
                },
            ),
        };
        Val {
            id: None,
            known: Some(known),
            weight: None,
            ty,
            name: None,
        }
    }

    /// A constant tensor value.
    pub fn tensor(t: Tensor) -> Val {
        Val::known(Known::Tensor(t))
    }

    /// The fully known contents, if any.
    pub fn const_tensor(&self) -> Option<&Tensor> {
        self.known.as_ref().and_then(Known::tensor)
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.ty.shape.rank()
    }

    /// The dimensions.
    pub fn dims(&self) -> &[Dim] {
        self.ty.shape.dims()
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.ty.dtype
    }
}

/// One node being imported, with attribute accessors whose errors name the node.
pub struct NodeCx<'a> {
    /// The node.
    pub proto: &'a NodeProto,
    /// Its position in the graph (used when it has no name).
    pub index: usize,
    /// The schema version of the op in force at the model's opset.
    pub version: i64,
    /// The model file, for messages.
    pub file: &'a Path,
    /// The value names some node or graph output reads.
    pub consumed: &'a HashSet<&'a str>,
}

impl NodeCx<'_> {
    /// The node's description for messages.
    pub fn context(&self) -> Box<NodeContext> {
        let domain = if self.proto.domain.is_empty() {
            "ai.onnx".to_string()
        } else {
            self.proto.domain.clone()
        };
        Box::new(NodeContext {
            node: self.display_name(),
            op_type: self.proto.op_type.clone(),
            domain,
        })
    }

    /// The node's name, or `#index` when it has none.
    pub fn display_name(&self) -> String {
        if self.proto.name.is_empty() {
            format!("#{}", self.index)
        } else {
            self.proto.name.clone()
        }
    }

    /// An "unsupported form" error for this node.
    pub fn unsupported(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Unsupported {
            file: self.file.to_path_buf(),
            node: self.context(),
            reason: reason.into(),
        }
    }

    /// A "bad attribute" error for this node.
    pub fn bad_attr(&self, attribute: &str, reason: impl Into<String>) -> OnnxError {
        OnnxError::BadAttribute {
            file: self.file.to_path_buf(),
            node: self.context(),
            attribute: attribute.to_string(),
            reason: reason.into(),
        }
    }

    /// The attribute with this name.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name == name)
    }

    fn check_type(&self, a: &AttributeProto, want: AttributeType) -> Result<(), OnnxError> {
        if !a.ref_attr_name.is_empty() {
            return Err(self.bad_attr(
                &a.name,
                "references a function attribute outside a function",
            ));
        }
        if a.r#type == want as i32 || a.r#type == AttributeType::Undefined as i32 {
            Ok(())
        } else {
            let found = AttributeType::try_from(a.r#type)
                .map(|t| format!("{t:?}").to_uppercase())
                .unwrap_or_else(|_| format!("code {}", a.r#type));
            Err(self.bad_attr(
                &a.name,
                format!(
                    "expected {}, found {found}",
                    format!("{want:?}").to_uppercase()
                ),
            ))
        }
    }

    /// An integer attribute, or `default` when absent.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        match self.attr(name) {
            Some(a) => self.check_type(a, AttributeType::Int).map(|()| a.i),
            None => Ok(default),
        }
    }

    /// A required integer attribute.
    pub fn req_int(&self, name: &str) -> Result<i64, OnnxError> {
        match self.attr(name) {
            Some(a) => self.check_type(a, AttributeType::Int).map(|()| a.i),
            None => Err(self.bad_attr(name, "required but absent")),
        }
    }

    /// A float attribute, or `default` when absent.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        match self.attr(name) {
            Some(a) => self.check_type(a, AttributeType::Float).map(|()| a.f),
            None => Ok(default),
        }
    }

    /// A float attribute when present.
    pub fn opt_float(&self, name: &str) -> Result<Option<f32>, OnnxError> {
        match self.attr(name) {
            Some(a) => self.check_type(a, AttributeType::Float).map(|()| Some(a.f)),
            None => Ok(None),
        }
    }

    /// An integer-list attribute when present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        match self.attr(name) {
            Some(a) => self
                .check_type(a, AttributeType::Ints)
                .map(|()| Some(a.ints.clone())),
            None => Ok(None),
        }
    }

    /// A string attribute when present.
    pub fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        match self.attr(name) {
            Some(a) => {
                self.check_type(a, AttributeType::String)?;
                String::from_utf8(a.s.clone())
                    .map(Some)
                    .map_err(|_| self.bad_attr(name, "not valid UTF-8"))
            }
            None => Ok(None),
        }
    }

    /// A boolean (0/1 integer) attribute.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, OnnxError> {
        match self.int(name, default as i64)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.bad_attr(name, format!("must be 0 or 1, got {v}"))),
        }
    }

    /// A dtype attribute (an ONNX element type code).
    pub fn dtype_attr(&self, name: &str) -> Result<DType, OnnxError> {
        let code = self.req_int(name)?;
        let code = i32::try_from(code)
            .map_err(|_| self.bad_attr(name, format!("invalid type code {code}")))?;
        reader::dtype_from_onnx(code)
            .map_err(|t| self.bad_attr(name, format!("element type {t} is not supported")))
    }

    /// The number of (named or empty) operands.
    pub fn num_inputs(&self) -> usize {
        self.proto.input.len()
    }

    /// Whether result `i` is named and read by a node or a graph output (optional results
    /// nothing reads are not computed).
    pub fn has_output(&self, i: usize) -> bool {
        self.proto
            .output
            .get(i)
            .is_some_and(|s| !s.is_empty() && self.consumed.contains(s.as_str()))
    }
}

/// The import state.
pub struct Importer {
    /// The graph being built.
    pub graph: Graph,
    /// The model file (for messages).
    pub file: PathBuf,
    /// The directory external data is relative to.
    pub base_dir: PathBuf,
    values: HashMap<String, Val>,
    generated: HashSet<ValueId>,
    counter: usize,
}

impl Importer {
    /// A fresh import into a graph named `name`.
    pub fn new(name: &str, file: &Path, base_dir: &Path) -> Importer {
        Importer {
            graph: Graph::new(name),
            file: file.to_path_buf(),
            base_dir: base_dir.to_path_buf(),
            values: HashMap::new(),
            generated: HashSet::new(),
            counter: 0,
        }
    }

    /// Whether an ONNX name is bound.
    pub fn is_bound(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Binds an ONNX name to a value; a generated graph value takes the ONNX name.
    pub fn bind(&mut self, name: &str, mut val: Val) {
        if let Some(id) = val.id
            && self.generated.remove(&id)
        {
            self.graph.values[id.index()].name = name.to_string();
        }
        val.name = Some(name.to_string());
        self.values.insert(name.to_string(), val);
    }

    /// The value bound to an ONNX name.
    pub fn lookup(&self, name: &str) -> Option<&Val> {
        self.values.get(name)
    }

    /// Declares a graph input.
    pub fn add_input(&mut self, name: &str, ty: TensorType) {
        let id = self.graph.add_input(name, ty.clone());
        self.bind(
            name,
            Val {
                id: Some(id),
                known: None,
                weight: None,
                ty,
                name: None,
            },
        );
    }

    /// Declares a graph input fixed to a constant.
    pub fn add_constant(&mut self, name: &str, t: Tensor) {
        self.bind(name, Val::tensor(t));
    }

    /// Declares an initializer: small inline constants are known (and folded), the others are
    /// weights added to the graph as they are.
    pub fn add_initializer(&mut self, name: &str, data: TensorData) -> Result<(), OnnxError> {
        let numel: usize = data.sizes.iter().product();
        if matches!(data.data, WeightData::Inline(_)) && numel <= FOLD_LIMIT {
            let t = reader::read_tensor(&self.file, &self.base_dir, name, &data)?;
            self.bind(name, Val::tensor(t));
            return Ok(());
        }
        let id = self
            .graph
            .add_initializer(name, data.ty.clone(), data.data.clone());
        let ty = data.ty.clone();
        self.bind(
            name,
            Val {
                id: Some(id),
                known: None,
                weight: Some(Arc::new(data)),
                ty,
                name: None,
            },
        );
        Ok(())
    }

    /// Operand `i` of the node, `None` when absent (empty name or past the end).
    pub fn input(&self, n: &NodeCx, i: usize) -> Result<Option<Val>, OnnxError> {
        match n.proto.input.get(i) {
            None => Ok(None),
            Some(name) if name.is_empty() => Ok(None),
            Some(name) => {
                self.values
                    .get(name)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| OnnxError::UndefinedValue {
                        file: self.file.clone(),
                        node: n.context(),
                        value: name.clone(),
                    })
            }
        }
    }

    /// Required operand `i`.
    pub fn req(&self, n: &NodeCx, i: usize) -> Result<Val, OnnxError> {
        self.input(n, i)?
            .ok_or_else(|| n.unsupported(format!("operand {i} is required but absent")))
    }

    /// The contents of a value that must be known at import time (an axes, shape or `k`
    /// operand); weights are read from their storage.
    pub fn const_of(&self, n: &NodeCx, v: &Val, what: &str) -> Result<Tensor, OnnxError> {
        if let Some(t) = v.const_tensor() {
            return Ok(t.clone());
        }
        if let Some(w) = &v.weight {
            let name = v.name.clone().unwrap_or_default();
            return reader::read_tensor(&self.file, &self.base_dir, &name, w);
        }
        Err(OnnxError::NotConstant {
            file: self.file.clone(),
            node: n.context(),
            what: what.to_string(),
            value: v.name.clone().unwrap_or_default(),
        })
    }

    /// A constant integer list operand (`axes`, `pads`, ...).
    pub fn const_ints(&self, n: &NodeCx, v: &Val, what: &str) -> Result<Vec<i64>, OnnxError> {
        let t = self.const_of(n, v, what)?;
        if !t.dtype().is_int() {
            return Err(n.unsupported(format!("{what} must be integers, got {}", t.dtype())));
        }
        Ok(t.to_i64_vec())
    }

    /// The shape-like integer elements of an operand (constant or folded from `Shape`).
    pub fn sym_ints(&self, n: &NodeCx, v: &Val, what: &str) -> Result<Vec<SymInt>, OnnxError> {
        if let Some((values, _, _)) = v.known.as_ref().and_then(Known::ints) {
            return Ok(values);
        }
        Ok(self
            .const_ints(n, v, what)?
            .into_iter()
            .map(SymInt::Int)
            .collect())
    }

    fn fresh_name(&mut self, n: &NodeCx, what: &str) -> String {
        self.counter += 1;
        let base = n
            .proto
            .output
            .iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| n.display_name());
        format!("{base}.{what}{}", self.counter)
    }

    /// The graph value of an operand, adding an initializer for a constant and computing a
    /// symbolic shape vector when needed.
    pub fn materialize(&mut self, n: &NodeCx, v: &Val) -> Result<ValueId, OnnxError> {
        if let Some(id) = v.id {
            return Ok(id);
        }
        if let Some(name) = &v.name
            && let Some(id) = self.values.get(name).and_then(|b| b.id)
        {
            return Ok(id);
        }
        let id = match &v.known {
            Some(Known::Tensor(t)) => {
                let name = match &v.name {
                    Some(name) => name.clone(),
                    None => self.fresh_name(n, "const"),
                };
                let id = self.graph.add_initializer(
                    name,
                    v.ty.clone(),
                    WeightData::Inline(Arc::from(t.bytes())),
                );
                if v.name.is_none() {
                    self.generated.insert(id);
                }
                id
            }
            Some(Known::Ints {
                values,
                scalar,
                dtype,
            }) => self.materialize_ints(n, values, *scalar, *dtype)?,
            None => {
                return Err(n.unsupported(format!(
                    "value `{}` has no definition",
                    v.name.as_deref().unwrap_or("?")
                )));
            }
        };
        if let Some(name) = &v.name
            && let Some(bound) = self.values.get_mut(name)
        {
            bound.id = Some(id);
        }
        Ok(id)
    }

    /// Computes a shape vector with symbolic elements at run time: each symbolic element `d`
    /// is the sum of `d` ones (`reduce_sum(expand(1, [d]))`), since the IR has no shape-reading op.
    fn materialize_ints(
        &mut self,
        n: &NodeCx,
        values: &[SymInt],
        scalar: bool,
        dtype: DType,
    ) -> Result<ValueId, OnnxError> {
        let mut parts = Vec::with_capacity(values.len());
        for v in values {
            let part = match v {
                SymInt::Int(i) => Val::tensor(Tensor::from_i64(DType::I64, vec![1], &[*i])),
                SymInt::Dim(d) => {
                    let one = Val::tensor(Tensor::from_i64(DType::I64, vec![1], &[1]));
                    let ones = self.emit1(
                        n,
                        Op::Expand {
                            shape: vec![d.clone()],
                        },
                        &[Some(&one)],
                    )?;
                    self.emit1(
                        n,
                        Op::Reduce {
                            op: ReduceOp::Sum,
                            axes: vec![0],
                            keep_dims: true,
                        },
                        &[Some(&ones)],
                    )?
                }
            };
            parts.push(part);
        }
        let refs: Vec<Option<&Val>> = parts.iter().map(Some).collect();
        let mut out = self.emit1(n, Op::Concat { axis: 0 }, &refs)?;
        if scalar {
            out = self.emit1(n, Op::Reshape { shape: vec![] }, &[Some(&out)])?;
        }
        if dtype != DType::I64 {
            out = self.emit1(n, Op::Cast { to: dtype }, &[Some(&out)])?;
        }
        self.materialize(n, &out)
    }

    /// Applies `op` to the operands: folded when every operand is a known small constant,
    /// otherwise added to the graph with inferred result types. Results get generated names
    /// until they are bound to ONNX names.
    pub fn emit(
        &mut self,
        n: &NodeCx,
        op: Op,
        inputs: &[Option<&Val>],
    ) -> Result<Vec<Val>, OnnxError> {
        let consts: Option<Vec<Option<&Tensor>>> = inputs
            .iter()
            .map(|v| match v {
                None => Some(None),
                Some(v) => v
                    .const_tensor()
                    .filter(|t| t.numel() <= FOLD_LIMIT)
                    .map(Some),
            })
            .collect();
        if let Some(consts) = consts
            && !inputs.is_empty()
            && self.small_results(&op, inputs)
        {
            let results =
                eval_op(&op, &consts, &DimBindings::new()).map_err(|e| OnnxError::Fold {
                    file: self.file.clone(),
                    node: n.context(),
                    reason: e.to_string(),
                })?;
            return Ok(results.into_iter().map(Val::tensor).collect());
        }
        let mut ids = Vec::with_capacity(inputs.len());
        for v in inputs {
            ids.push(match v {
                Some(v) => Some(self.materialize(n, v)?),
                None => None,
            });
        }
        let types: Vec<Option<&TensorType>> = ids
            .iter()
            .map(|id| id.map(|id| &self.graph.value(id).ty))
            .collect();
        let out_types = infer_types(&op, &types).map_err(|e| OnnxError::Build {
            file: self.file.clone(),
            node: n.context(),
            reason: e.to_string(),
        })?;
        let mut outputs = Vec::with_capacity(out_types.len());
        let mut vals = Vec::with_capacity(out_types.len());
        for ty in out_types {
            let name = self.fresh_name(n, op.name());
            let id = self.graph.add_value(name, ty.clone());
            self.generated.insert(id);
            outputs.push(id);
            vals.push(Val {
                id: Some(id),
                known: None,
                weight: None,
                ty,
                name: None,
            });
        }
        self.graph.add_node(Node {
            name: n.display_name(),
            op,
            inputs: ids,
            outputs,
        });
        Ok(vals)
    }

    /// Whether every result of `op` on these operands has a known size of at most
    /// [`FOLD_LIMIT`] elements, so folding it cannot allocate without bound.
    fn small_results(&self, op: &Op, inputs: &[Option<&Val>]) -> bool {
        let types: Vec<Option<&TensorType>> = inputs.iter().map(|v| v.map(|v| &v.ty)).collect();
        infer_types(op, &types).is_ok_and(|tys| {
            tys.iter().all(|t| {
                t.shape
                    .as_known()
                    .and_then(|dims| dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)))
                    .is_some_and(|n| n <= FOLD_LIMIT as u64)
            })
        })
    }

    /// [`Importer::emit`] for single-result ops.
    pub fn emit1(&mut self, n: &NodeCx, op: Op, inputs: &[Option<&Val>]) -> Result<Val, OnnxError> {
        let name = op.name();
        self.emit(n, op, inputs)?
            .into_iter()
            .next()
            .ok_or_else(|| n.unsupported(format!("{name} produced no result")))
    }

    /// Makes graph output `name` from its bound value, copying it (a same-dtype cast) when the
    /// value is a graph input, another output, or carries another name.
    pub fn add_output(&mut self, name: &str, n: &NodeCx) -> Result<(), OnnxError> {
        let val = self
            .values
            .get(name)
            .cloned()
            .ok_or_else(|| OnnxError::UndefinedOutput {
                file: self.file.clone(),
                output: name.to_string(),
            })?;
        let mut id = self.materialize(n, &val)?;
        let reuse = self.graph.value(id).name == name
            && !self.graph.inputs.contains(&id)
            && !self.graph.outputs.contains(&id);
        if !reuse {
            let copy = Val {
                id: Some(id),
                known: None,
                weight: None,
                ty: self.graph.value(id).ty.clone(),
                name: None,
            };
            let out = self.emit1(n, Op::Cast { to: copy.ty.dtype }, &[Some(&copy)])?;
            id = self.materialize(n, &out)?;
            self.generated.remove(&id);
            self.graph.values[id.index()].name = name.to_string();
        }
        self.graph.outputs.push(id);
        Ok(())
    }
}

/// Decodes a tensor attribute (`Constant`, `ConstantOfShape`) into a tensor.
pub fn attr_tensor(
    file: &Path,
    base_dir: &Path,
    n: &NodeCx,
    proto: &TensorProto,
) -> Result<Tensor, OnnxError> {
    let name = if proto.name.is_empty() {
        n.display_name()
    } else {
        proto.name.clone()
    };
    // The attribute stays with its node: decode a copy (attribute tensors are small).
    let data = reader::decode_tensor(file, base_dir, &mut proto.clone(), &name)?;
    reader::read_tensor(file, base_dir, &name, &data)
}
