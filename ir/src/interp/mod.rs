//! The reference interpreter: runs a graph on concrete tensors, one op at a time.
//!
//! It is the oracle every optimisation and back end is compared against, so it favours
//! straightforward, exactly specified arithmetic over speed: floats are computed in `f32` (sums,
//! means, variances and dot products of reductions in `f64` where noted) and every result is rounded
//! once to its value's dtype; integer ops are exact in `i64`. The semantics of each op are the doc
//! comments of [`crate::op::Op`].
//!
//! [`run`] binds the symbolic dimensions of the graph from its inputs, loads weights
//! (memory-mapping external files once per run), evaluates the nodes in
//! [`Graph::topological_order`], checks every result against its declared type, and frees each
//! intermediate tensor after its last use. [`run_all`] keeps every value for node-by-node
//! comparisons; [`eval_op`] evaluates a single op (constant folding).

mod attention;
mod elementwise;
mod index;
mod layout;
mod linalg;
mod moe;
mod norm;
mod quant;
mod reduce;
mod util;
mod weights;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::dtype::DType;
use crate::graph::{Graph, NodeId, ValueId};
use crate::op::Op;
use crate::shape::{Dim, DimBindings, Shape};
use crate::tensor::Tensor;

/// Options of a run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Base directory for [`crate::graph::WeightData::External`] weights with relative paths
    /// (the current directory when `None`).
    pub weight_dir: Option<PathBuf>,
}

/// Why one op could not be evaluated on its operands.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// A required operand is absent.
    #[error("operand {0} is required but absent")]
    MissingOperand(usize),
    /// More operands than the op takes.
    #[error("{got} operands given, the op takes at most {max}")]
    TooManyOperands {
        /// Operands given.
        got: usize,
        /// The op's maximum.
        max: usize,
    },
    /// An operand has a dtype the op does not accept.
    #[error("operand {operand} has dtype {got}, expected {expected}")]
    DType {
        /// Operand position.
        operand: usize,
        /// What the op needs.
        expected: String,
        /// The operand's dtype.
        got: DType,
    },
    /// Operand shapes do not fit the op.
    #[error("{0}")]
    Shape(String),
    /// An axis attribute is out of range.
    #[error("axis {axis} is out of range for rank {rank}")]
    Axis {
        /// The attribute.
        axis: i64,
        /// The rank it applies to.
        rank: usize,
    },
    /// An index operand holds an out-of-range index.
    #[error("index {index} is out of range for an axis of size {size}")]
    Index {
        /// The index as given.
        index: i64,
        /// The axis size.
        size: usize,
    },
    /// An integer division or remainder by zero.
    #[error("integer division by zero")]
    DivisionByZero,
    /// A dimension attribute mentions a symbol with no value.
    #[error("dimension `{0}` cannot be evaluated: a symbol in it is unbound")]
    UnboundDim(String),
    /// An attribute value the op cannot use.
    #[error("invalid attribute: {0}")]
    Attribute(String),
}

/// Why a run failed. Messages name the node, value, input or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// No tensor was given for a graph input.
    #[error("no tensor given for graph input `{0}`")]
    MissingInput(String),
    /// A graph input tensor has the wrong dtype.
    #[error("graph input `{input}` is declared {expected}, the tensor given is {got}")]
    InputDType {
        /// The input's name.
        input: String,
        /// The declared dtype.
        expected: DType,
        /// The given tensor's dtype.
        got: DType,
    },
    /// A graph input tensor's shape does not match the declared shape.
    #[error("graph input `{input}` is declared {expected}, the tensor given has shape {got:?}")]
    InputShape {
        /// The input's name.
        input: String,
        /// The declared shape.
        expected: Shape,
        /// The given tensor's sizes.
        got: Vec<usize>,
    },
    /// Two inputs give one symbolic dimension different sizes.
    #[error(
        "graph input `{input}` gives symbol `{symbol}` the size {got}, but it is already {bound}"
    )]
    SymbolMismatch {
        /// The input giving the conflicting size.
        input: String,
        /// The symbol.
        symbol: String,
        /// The size bound earlier.
        bound: u64,
        /// The size this input gives.
        got: u64,
    },
    /// The graph has a cycle through this node.
    #[error("the graph has a cycle through {0}")]
    Cycle(String),
    /// A value is used but nothing computes it.
    #[error("{node} reads value `{value}`, which nothing defines")]
    Undefined {
        /// The reading node.
        node: String,
        /// The value's name.
        value: String,
    },
    /// A graph output was not computed.
    #[error("graph output `{0}` is not defined by any input, weight or node")]
    UndefinedOutput(String),
    /// A weight has no data.
    #[error("weight `{0}` has no data: graph built from shapes only")]
    AbsentWeight(String),
    /// A weight file could not be opened or mapped.
    #[error("weight `{weight}`: cannot read `{path}`: {source}")]
    WeightFile {
        /// The weight's name.
        weight: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A weight's byte range goes past the end of its file.
    #[error(
        "weight `{weight}`: bytes {offset}..{end} are past the end of `{path}` ({file_len} bytes)"
    )]
    WeightOutOfFile {
        /// The weight's name.
        weight: String,
        /// The file.
        path: PathBuf,
        /// First byte.
        offset: u64,
        /// One past the last byte.
        end: u64,
        /// The file's size.
        file_len: u64,
    },
    /// A weight's bytes do not match its declared type.
    #[error("weight `{weight}`: {source}")]
    WeightSize {
        /// The weight's name.
        weight: String,
        /// The size mismatch.
        source: crate::tensor::TensorSizeError,
    },
    /// A value's declared shape cannot be evaluated with the symbols bound so far.
    #[error("value `{value}` has shape {shape}, which cannot be evaluated: a symbol is unbound")]
    UnboundShape {
        /// The value's name.
        value: String,
        /// The declared shape.
        shape: Shape,
    },
    /// An op failed on its operands.
    #[error("{node}: {source}")]
    Op {
        /// The node (see [`Graph::describe_node`]), or the op's name for [`eval_op`].
        node: String,
        /// What went wrong.
        source: OpError,
    },
    /// A result's dtype differs from its value's declared dtype.
    #[error("{node}: result `{value}` is {got}, but the value is declared {expected}")]
    ResultDType {
        /// The node.
        node: String,
        /// The value's name.
        value: String,
        /// The declared dtype.
        expected: DType,
        /// The computed dtype.
        got: DType,
    },
    /// A result's shape differs from its value's declared shape.
    #[error("{node}: result `{value}` has shape {got:?}, but the value is declared {expected}")]
    ResultShape {
        /// The node.
        node: String,
        /// The value's name.
        value: String,
        /// The declared shape.
        expected: Shape,
        /// The computed sizes.
        got: Vec<usize>,
    },
}

/// Runs a (verified) graph on `inputs` (by graph-input name) and returns the graph outputs in
/// order. Intermediate tensors are freed after their last use.
pub fn run(
    graph: &Graph,
    inputs: &HashMap<String, Tensor>,
    options: &RunOptions,
) -> Result<Vec<Tensor>, InterpError> {
    let values = execute(graph, inputs, options, false)?;
    graph
        .outputs
        .iter()
        .map(|&v| {
            values[v.index()]
                .clone()
                .ok_or_else(|| InterpError::UndefinedOutput(graph.value(v).name.clone()))
        })
        .collect()
}

/// Like [`run`], but returns every value computed, indexed by [`ValueId`] (`None` for values not
/// computed), for comparing back ends node by node. Inputs and weights are included.
pub fn run_all(
    graph: &Graph,
    inputs: &HashMap<String, Tensor>,
    options: &RunOptions,
) -> Result<Vec<Option<Tensor>>, InterpError> {
    execute(graph, inputs, options, true)
}

/// Evaluates `wanted` values that depend on weights and dimensions alone (stacked expert
/// matrices, dequantised weights, rope tables), with the graph's symbols bound by `bindings`.
/// Only the initializers and nodes they need are loaded and run; a wanted value that depends on
/// a graph input is an [`InterpError::Undefined`] error naming the node.
pub fn evaluate_constants(
    graph: &Graph,
    wanted: &[ValueId],
    bindings: &DimBindings,
    options: &RunOptions,
) -> Result<Vec<Tensor>, InterpError> {
    let order = graph
        .topological_order()
        .map_err(|n| InterpError::Cycle(graph.describe_node(n)))?;
    let definitions = graph.definitions();
    let mut needed = vec![false; graph.values.len()];
    let mut stack: Vec<ValueId> = wanted.to_vec();
    while let Some(v) = stack.pop() {
        if std::mem::replace(&mut needed[v.index()], true) {
            continue;
        }
        if let Some(crate::graph::Definition::Node { node: n, .. }) = definitions[v.index()] {
            stack.extend(graph.node(n).inputs.iter().flatten().copied());
        }
    }
    let mut values: Vec<Option<Tensor>> = vec![None; graph.values.len()];
    let mut bindings = bindings.clone();
    load_initializers(
        graph,
        |v| needed[v.index()],
        &bindings,
        options,
        &mut values,
    )?;
    for &node_id in &order {
        let node = graph.node(node_id);
        if !node.outputs.iter().any(|v| needed[v.index()]) {
            continue;
        }
        let results = run_node(graph, node_id, &values, &mut bindings)?;
        for (&out, result) in node.outputs.iter().zip(results) {
            values[out.index()] = Some(result);
        }
    }
    wanted
        .iter()
        .map(|&v| {
            values[v.index()]
                .clone()
                .ok_or_else(|| InterpError::UndefinedOutput(graph.value(v).name.clone()))
        })
        .collect()
}

/// Evaluates one op on concrete operands (absent optional operands are `None`), as frontends do
/// to fold constants. `bindings` gives the values of symbols in dimension attributes (`Reshape`,
/// `Expand`, `Split`, `Range`); a `Range` whose `len` cannot be evaluated takes the length its
/// operands give.
///
/// The result dtypes follow the op: comparisons, logical ops, `IsNaN`/`IsInf` give `bool`;
/// `TopK` gives the operand's dtype and `i64`; `ArgMax` gives `i64`; `Cast` and `Dequantize` give
/// `to`; `Where` gives its second operand's dtype; every other op gives the dtype of its first
/// operand (`Range`: of `start`).
pub fn eval_op(
    op: &Op,
    inputs: &[Option<&Tensor>],
    bindings: &DimBindings,
) -> Result<Vec<Tensor>, InterpError> {
    evaluate(op, inputs, bindings).map_err(|source| InterpError::Op {
        node: op.name().to_string(),
        source,
    })
}

/// Dispatches one op to its kernel.
fn evaluate(
    op: &Op,
    inputs: &[Option<&Tensor>],
    bindings: &DimBindings,
) -> Result<Vec<Tensor>, OpError> {
    let (_, max) = op.arity();
    if let Some(max) = max
        && inputs.len() > max
    {
        return Err(OpError::TooManyOperands {
            got: inputs.len(),
            max,
        });
    }
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Unary(u) => one(elementwise::unary(*u, util::operand(inputs, 0)?)?),
        Op::Binary(b) => one(elementwise::binary(
            *b,
            util::operand(inputs, 0)?,
            util::operand(inputs, 1)?,
        )?),
        Op::Clip => one(elementwise::clip(inputs)?),
        Op::Where => one(elementwise::select(inputs)?),
        Op::Cast { to } => one(elementwise::cast(util::operand(inputs, 0)?, *to)),
        Op::MatMul => one(linalg::matmul(
            util::operand(inputs, 0)?,
            util::operand(inputs, 1)?,
        )?),
        Op::Gemm {
            alpha_bits,
            beta_bits,
            trans_a,
            trans_b,
        } => one(linalg::gemm(
            inputs,
            f32::from_bits(*alpha_bits),
            f32::from_bits(*beta_bits),
            *trans_a,
            *trans_b,
        )?),
        Op::Softmax { axis } => one(reduce::softmax(util::operand(inputs, 0)?, *axis, false)?),
        Op::LogSoftmax { axis } => one(reduce::softmax(util::operand(inputs, 0)?, *axis, true)?),
        Op::Reduce {
            op,
            axes,
            keep_dims,
        } => one(reduce::reduce(
            *op,
            util::operand(inputs, 0)?,
            axes,
            *keep_dims,
        )?),
        Op::RmsNorm { axis, epsilon_bits } => one(norm::rms_norm(
            util::operand(inputs, 0)?,
            util::operand(inputs, 1)?,
            *axis,
            f32::from_bits(*epsilon_bits),
        )?),
        Op::LayerNorm { axis, epsilon_bits } => one(norm::layer_norm(
            inputs,
            *axis,
            f32::from_bits(*epsilon_bits),
        )?),
        Op::TopK {
            k, axis, largest, ..
        } => reduce::top_k(util::operand(inputs, 0)?, *k, *axis, *largest),
        Op::Gather { axis } => one(index::gather(
            util::operand(inputs, 0)?,
            util::operand(inputs, 1)?,
            *axis,
        )?),
        Op::GatherElements { axis } => one(index::gather_elements(
            util::operand(inputs, 0)?,
            util::operand(inputs, 1)?,
            *axis,
        )?),
        Op::GatherNd { batch_dims } => one(index::gather_nd(
            util::operand(inputs, 0)?,
            util::operand(inputs, 1)?,
            *batch_dims,
        )?),
        Op::ScatterElements { axis, reduction } => {
            one(index::scatter_elements(inputs, *axis, *reduction)?)
        }
        Op::ScatterNd { reduction } => one(index::scatter_nd(inputs, *reduction)?),
        Op::Reshape { shape } => one(layout::reshape(util::operand(inputs, 0)?, shape, bindings)?),
        Op::Transpose { perm } => one(layout::transpose(util::operand(inputs, 0)?, perm)?),
        Op::Concat { axis } => one(layout::concat(inputs, *axis)?),
        Op::Split { axis, sizes } => {
            layout::split(util::operand(inputs, 0)?, *axis, sizes, bindings)
        }
        Op::Slice {
            axes,
            starts,
            ends,
            steps,
        } => one(layout::slice(
            util::operand(inputs, 0)?,
            axes,
            starts,
            ends,
            steps,
        )?),
        Op::Squeeze { axes } => one(layout::squeeze(util::operand(inputs, 0)?, axes)?),
        Op::Unsqueeze { axes } => one(layout::unsqueeze(util::operand(inputs, 0)?, axes)?),
        Op::Expand { shape } => one(layout::expand(util::operand(inputs, 0)?, shape, bindings)?),
        Op::Range { len } => one(layout::range(inputs, len, bindings)?),
        Op::CumSum {
            axis,
            exclusive,
            reverse,
        } => one(reduce::cumsum(
            util::operand(inputs, 0)?,
            *axis,
            *exclusive,
            *reverse,
        )?),
        Op::ArgMax {
            axis,
            keep_dims,
            select_last_index,
        } => one(reduce::arg_max(
            util::operand(inputs, 0)?,
            *axis,
            *keep_dims,
            *select_last_index,
        )?),
        Op::Trilu { upper, k } => one(layout::trilu(util::operand(inputs, 0)?, *upper, *k)?),
        Op::Einsum { equation } => one(linalg::einsum(inputs, equation)?),
        Op::Dequantize { block, to } => one(quant::dequantize(inputs, block, *to)?),
        Op::SwiGlu { split, limit_bits } => one(elementwise::swiglu(
            inputs,
            *split,
            limit_bits.map(f32::from_bits),
        )?),
        Op::Rope { interleaved } => one(attention::rope(inputs, *interleaved)?),
        Op::Attention { scale_bits, causal } => one(attention::attention(
            inputs,
            f32::from_bits(*scale_bits),
            *causal,
        )?),
        Op::GroupedMatMul => one(linalg::grouped_matmul(inputs)?),
        Op::Moe {
            top_k,
            routing,
            activation,
        } => one(moe::moe(inputs, *top_k, routing, activation)?),
    }
}

/// Runs the graph; keeps every value when `keep_all`, else frees intermediates after last use.
fn execute(
    graph: &Graph,
    inputs: &HashMap<String, Tensor>,
    options: &RunOptions,
    keep_all: bool,
) -> Result<Vec<Option<Tensor>>, InterpError> {
    let order = graph
        .topological_order()
        .map_err(|n| InterpError::Cycle(graph.describe_node(n)))?;
    let mut values: Vec<Option<Tensor>> = vec![None; graph.values.len()];
    let mut bindings = bind_inputs(graph, inputs)?;
    for &v in &graph.inputs {
        let name = &graph.value(v).name;
        values[v.index()] = inputs.get(name).cloned();
    }
    load_initializers(graph, |_| true, &bindings, options, &mut values)?;

    let last_use = last_uses(graph, &order);
    for (position, &node_id) in order.iter().enumerate() {
        let node = graph.node(node_id);
        let results = run_node(graph, node_id, &values, &mut bindings)?;
        for (&out, result) in node.outputs.iter().zip(results) {
            let keep = keep_all || last_use[out.index()].is_some_and(|p| p > position);
            if keep {
                values[out.index()] = Some(result);
            }
        }
        if !keep_all {
            for v in node.inputs.iter().flatten() {
                if last_use[v.index()] == Some(position) {
                    values[v.index()] = None;
                }
            }
        }
    }
    Ok(values)
}

/// Loads the initializers whose value `wanted` accepts into `values`, at the shapes `bindings`
/// give them.
fn load_initializers(
    graph: &Graph,
    wanted: impl Fn(ValueId) -> bool,
    bindings: &DimBindings,
    options: &RunOptions,
    values: &mut [Option<Tensor>],
) -> Result<(), InterpError> {
    let mut loader = weights::WeightLoader::new(options.weight_dir.as_deref());
    for init in graph.initializers.iter().filter(|i| wanted(i.value)) {
        let value = graph.value(init.value);
        let shape = value
            .ty
            .shape
            .eval(bindings)
            .ok_or_else(|| InterpError::UnboundShape {
                value: value.name.clone(),
                shape: value.ty.shape.clone(),
            })?;
        let shape = shape.into_iter().map(|d| d as usize).collect();
        values[init.value.index()] =
            Some(loader.load(&value.name, value.ty.dtype, shape, &init.data)?);
    }
    Ok(())
}

/// Evaluates node `node_id` on the operands in `values` and checks each result against its
/// declared type (binding symbols first seen there).
fn run_node(
    graph: &Graph,
    node_id: NodeId,
    values: &[Option<Tensor>],
    bindings: &mut DimBindings,
) -> Result<Vec<Tensor>, InterpError> {
    let node = graph.node(node_id);
    let mut operands = Vec::with_capacity(node.inputs.len());
    for input in &node.inputs {
        match input {
            None => operands.push(None),
            Some(v) => match &values[v.index()] {
                Some(t) => operands.push(Some(t)),
                None => {
                    return Err(InterpError::Undefined {
                        node: graph.describe_node(node_id),
                        value: graph.value(*v).name.clone(),
                    });
                }
            },
        }
    }
    let results = evaluate(&node.op, &operands, bindings).map_err(|source| InterpError::Op {
        node: graph.describe_node(node_id),
        source,
    })?;
    for (&out, result) in node.outputs.iter().zip(&results) {
        check_result(graph, node_id, out, result, bindings)?;
    }
    Ok(results)
}

/// For every value, the position in `order` of the last node reading it (`usize::MAX` for graph
/// outputs, which are never freed; `None` for values nothing reads).
fn last_uses(graph: &Graph, order: &[NodeId]) -> Vec<Option<usize>> {
    let mut last = vec![None; graph.values.len()];
    for (position, &n) in order.iter().enumerate() {
        for v in graph.node(n).inputs.iter().flatten() {
            last[v.index()] = Some(position);
        }
    }
    for &v in &graph.outputs {
        last[v.index()] = Some(usize::MAX);
    }
    last
}

/// Binds the symbols of the graph inputs' shapes from the given tensors and checks every input
/// against its declared type.
pub fn bind_inputs(
    graph: &Graph,
    inputs: &HashMap<String, Tensor>,
) -> Result<DimBindings, InterpError> {
    let mut bindings = DimBindings::new();
    // First pass: plain symbols bind; second pass: every dimension must evaluate and match.
    for &v in &graph.inputs {
        let value = graph.value(v);
        let tensor = inputs
            .get(&value.name)
            .ok_or_else(|| InterpError::MissingInput(value.name.clone()))?;
        if tensor.dtype() != value.ty.dtype {
            return Err(InterpError::InputDType {
                input: value.name.clone(),
                expected: value.ty.dtype,
                got: tensor.dtype(),
            });
        }
        if tensor.shape().len() != value.ty.shape.rank() {
            return Err(InterpError::InputShape {
                input: value.name.clone(),
                expected: value.ty.shape.clone(),
                got: tensor.shape().to_vec(),
            });
        }
        for (dim, &size) in value.ty.shape.dims().iter().zip(tensor.shape()) {
            if let Dim::Sym(symbol) = dim {
                match bindings.get(&**symbol) {
                    Some(&bound) if bound != size as u64 => {
                        return Err(InterpError::SymbolMismatch {
                            input: value.name.clone(),
                            symbol: symbol.to_string(),
                            bound,
                            got: size as u64,
                        });
                    }
                    Some(_) => {}
                    None => {
                        bindings.insert(symbol.to_string(), size as u64);
                    }
                }
            }
        }
    }
    for &v in &graph.inputs {
        let value = graph.value(v);
        let tensor = &inputs[&value.name];
        let matches = value
            .ty
            .shape
            .dims()
            .iter()
            .zip(tensor.shape())
            .all(|(dim, &size)| dim.eval(&bindings) == Some(size as u64));
        if !matches {
            return Err(InterpError::InputShape {
                input: value.name.clone(),
                expected: value.ty.shape.clone(),
                got: tensor.shape().to_vec(),
            });
        }
    }
    Ok(bindings)
}

/// Checks a node result against its value's declared type, binding unbound plain symbols (a
/// `Range` with a fresh length symbol).
fn check_result(
    graph: &Graph,
    node: NodeId,
    out: ValueId,
    result: &Tensor,
    bindings: &mut DimBindings,
) -> Result<(), InterpError> {
    let value = graph.value(out);
    if result.dtype() != value.ty.dtype {
        return Err(InterpError::ResultDType {
            node: graph.describe_node(node),
            value: value.name.clone(),
            expected: value.ty.dtype,
            got: result.dtype(),
        });
    }
    let mismatch = || InterpError::ResultShape {
        node: graph.describe_node(node),
        value: value.name.clone(),
        expected: value.ty.shape.clone(),
        got: result.shape().to_vec(),
    };
    if result.shape().len() != value.ty.shape.rank() {
        return Err(mismatch());
    }
    for (dim, &size) in value.ty.shape.dims().iter().zip(result.shape()) {
        match dim.eval(bindings) {
            Some(expected) if expected == size as u64 => {}
            Some(_) => return Err(mismatch()),
            None => match dim {
                Dim::Sym(symbol) => {
                    bindings.insert(symbol.to_string(), size as u64);
                }
                _ => {
                    return Err(InterpError::UnboundShape {
                        value: value.name.clone(),
                        shape: value.ty.shape.clone(),
                    });
                }
            },
        }
    }
    Ok(())
}
