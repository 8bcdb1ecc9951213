//! Partitioning a graph into a [`Program`]: GM tensors and the kernel launches that fill them.
//!
//! Symbolic dimensions are bound first, so kernels are shape-specialised. Values computed from
//! weights and bound shapes alone (stacked expert matrices, dequantised FP8 weights, rope
//! tables) are program constants, evaluated once by the caller, not kernels of the forward
//! pass. Every other node is lowered by [`crate::lower`]: reshape-like ops become views of their
//! operand, the rest one or more tiled kernels; an op without a lowering is an error naming the
//! node. Kernels that come out identical for identical layers are emitted once and launched
//! many times.
//!
//! A `MatMul` or `Gemm` followed by elementwise nodes (a bias, a residual add, an activation)
//! becomes one MIX kernel, and a `Moe` block followed by binary nodes with whole operands (the
//! residual add) applies them in its combine kernel, when the cost model finds that faster than
//! the kernels apart (module `fusion` finds the chains; not done when user lowerings are
//! registered, which must see every node). Other nodes are lowered one by one.

mod custom;
mod fusion;
mod layout;
pub mod memory;
mod report;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cubevec_ir::graph::{TensorType, ValueId, WeightData};
use cubevec_ir::kernel::{
    Binding, CoreType, GmTensor, Kernel, Launch, Program, TensorId, TensorKind,
};
use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::tensor::Tensor;
use cubevec_ir::{DType, Graph, NodeId, Op};
use serde::Serialize;

use crate::cost::KernelCost;
use crate::lower::epilogue::{EpilogueNode, lower_gemm_epilogue};
use crate::lower::{
    ArgRef, LowerError, Lowering, OpContext, Scratch, TensorShape, attention, elementwise, linear,
    moe, movement, rope, rows,
};
use fusion::Chain;

pub use custom::{LowerFn, Lowerings};
pub use report::{KernelReport, PartitionReport, report};

/// Errors of the partitioner.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The op (or this form of it) has no kernel mapping, or tiling it failed.
    #[error("{node}: {source}")]
    Lower {
        /// The node, described.
        node: String,
        /// Why.
        source: Box<LowerError>,
    },
    /// A shape has an unbound symbol.
    #[error(
        "{node}: the shape of operand {operand} has dimensions without a size: {missing} \
         (bind each with `--dim NAME=N`)"
    )]
    Unbound {
        /// The node, described.
        node: String,
        /// Operand or result index.
        operand: usize,
        /// The unbound symbols, comma-separated.
        missing: String,
    },
    /// A value's shape has a symbol the given dimensions do not bind.
    #[error(
        "the shape {shape} of `{value}` has dimensions without a size: {missing} \
         (bind each with `--dim NAME=N`)"
    )]
    UnboundValue {
        /// The value.
        value: String,
        /// Its symbolic shape.
        shape: String,
        /// The unbound symbols, comma-separated.
        missing: String,
    },
}

/// Which cores a launch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KernelKind {
    /// Cube cores only.
    Cube,
    /// Vector cores only.
    Vector,
    /// One cube core with its two vector cores per block.
    Mix,
}

impl KernelKind {
    /// The kind of a kernel's core type.
    pub fn of(kernel: &Kernel) -> KernelKind {
        match kernel.core {
            CoreType::Aic => KernelKind::Cube,
            CoreType::Aiv => KernelKind::Vector,
            CoreType::Mix1To2 => KernelKind::Mix,
        }
    }
}

/// What the partitioner knows about one launch of the program.
#[derive(Clone, Debug)]
pub struct PlannedKernel {
    /// The node it implements.
    pub node: NodeId,
    /// Index in [`Program::launches`].
    pub launch: usize,
    /// Cube, vector or MIX.
    pub kind: KernelKind,
    /// Its modelled cost.
    pub cost: KernelCost,
    /// Assumptions the plan rests on (e.g. the routing profile of a grouped GEMM).
    pub assumptions: Vec<String>,
}

/// A partitioned graph: the program and the plan of each launch.
#[derive(Clone, Debug)]
pub struct Partition {
    /// The graph that was lowered: the input graph after the weight layout rewrites. The
    /// program's constants are values of this graph, by name.
    pub graph: Graph,
    /// GM tensors, kernels and launches.
    pub program: Program,
    /// One entry per launch, in launch order.
    pub launches: Vec<PlannedKernel>,
}

/// The symbols of `ty`'s shape that `bindings` leaves without a size, comma-separated.
fn unbound_symbols(ty: &TensorType, bindings: &DimBindings) -> String {
    let mut missing: Vec<&str> = Vec::new();
    for dim in ty.shape.dims() {
        for s in dim.symbols() {
            if !bindings.contains_key(s) && !missing.contains(&s) {
                missing.push(s);
            }
        }
    }
    missing.join(", ")
}

/// Which values depend on initializers alone (indexed by value id).
fn constant_values(graph: &Graph, order: &[NodeId]) -> Vec<bool> {
    let mut constant = vec![false; graph.values.len()];
    for init in &graph.initializers {
        constant[init.value.index()] = true;
    }
    for &id in order {
        let node = graph.node(id);
        if node.inputs.iter().flatten().all(|v| constant[v.index()]) {
            for v in &node.outputs {
                constant[v.index()] = true;
            }
        }
    }
    constant
}

/// The value of `value` when it is an initializer held inline (a small constant the lowering may
/// specialise on: a pow exponent, scatter indices).
fn inline_value(
    graph: &Graph,
    inline: &HashMap<ValueId, &WeightData>,
    value: ValueId,
    bindings: &DimBindings,
) -> Option<Tensor> {
    let WeightData::Inline(bytes) = inline.get(&value)? else {
        return None;
    };
    let ty = &graph.value(value).ty;
    let shape = ty.shape.eval(bindings)?;
    Tensor::from_bytes(
        ty.dtype,
        shape.iter().map(|&d| d as usize).collect(),
        bytes.clone(),
    )
    .ok()
}

/// The operand whose constant value the built-in lowering of `op` specialises on (a pow
/// exponent, scatter indices), when it is an inline constant.
fn specialised_operand(op: &Op) -> Option<usize> {
    matches!(op, Op::Binary(BinaryOp::Pow) | Op::ScatterNd { .. }).then_some(1)
}

/// Lowers one node (see [`crate::lower`]); `known` is the value of its
/// [`specialised_operand`], when that is an inline constant.
fn lower_node(ctx: &OpContext, known: Option<&Tensor>) -> Result<Lowering, LowerError> {
    match ctx.op {
        op if op.is_view() => movement::lower_view(ctx),
        Op::MatMul if crate::lower::misc::broadcasts_batches(ctx) => {
            crate::lower::misc::lower_broadcast_matmul(ctx)
        }
        Op::MatMul => linear::lower_matmul(ctx),
        Op::Gemm { .. } => linear::lower_gemm(ctx),
        Op::Softmax { axis } | Op::LogSoftmax { axis }
            if ctx
                .inputs
                .first()
                .cloned()
                .flatten()
                .is_some_and(|x| *axis != -1 && *axis != x.shape.len() as i64 - 1) =>
        {
            crate::lower::misc::lower_inner_softmax(ctx)
        }
        Op::RmsNorm { .. } if crate::lower::norm_scale::handles(ctx) => {
            crate::lower::norm_scale::lower_rms_norm(ctx)
        }
        Op::RmsNorm { .. } | Op::Softmax { .. } | Op::LogSoftmax { .. } | Op::LayerNorm { .. } => {
            rows::lower_rows(ctx)
        }
        _ if elementwise::handles(ctx) => elementwise::lower_elementwise(ctx),
        Op::Binary(BinaryOp::Pow) => elementwise::lower_pow(ctx, known),
        Op::ScatterNd { reduction } => movement::lower_scatter_nd(ctx, *reduction, known),
        Op::Binary(b) if b.is_comparison() || b.is_logical() => movement::lower_compare(ctx),
        Op::Binary(_) => movement::lower_binary(ctx),
        Op::Unary(UnaryOp::Not) => movement::lower_not(ctx),
        Op::Unary(UnaryOp::IsNaN | UnaryOp::IsInf) => movement::lower_classify(ctx),
        Op::Where => movement::lower_where(ctx),
        Op::Clip => crate::lower::clip::lower_clip(ctx),
        Op::Gather { .. } => movement::lower_gather(ctx),
        Op::Transpose { .. } => movement::lower_transpose(ctx),
        Op::Concat { .. } => movement::lower_concat(ctx),
        Op::Split { .. } => movement::lower_split(ctx),
        Op::Slice { .. } => movement::lower_slice(ctx),
        Op::Expand { .. } => movement::lower_expand(ctx),
        Op::Cast { .. } => movement::lower_cast(ctx),
        Op::Reduce { .. } => crate::lower::reduce::lower_reduce(ctx),
        Op::SwiGlu {
            split: false,
            limit_bits: Some(_),
        } => crate::lower::misc::lower_clamped_swiglu(ctx),
        Op::SwiGlu { split: true, .. } => elementwise::lower_split_swiglu(ctx),
        Op::Rope { .. } => rope::lower_rope(ctx),
        Op::Attention { .. } => attention::lower_attention(ctx),
        Op::Moe { .. } => moe::lower_moe(ctx, &[]),
        Op::GroupedMatMul => moe::lower_grouped_matmul(ctx),
        Op::TopK { .. } => crate::lower::topk::lower_topk(ctx),
        Op::ArgMax { .. } => crate::lower::topk::lower_argmax(ctx),
        Op::ScatterElements { .. } => crate::lower::scatter::lower_scatter_elements(ctx),
        other => Err(LowerError::Unsupported(format!(
            "`{}` has no kernel mapping yet",
            other.name()
        ))),
    }
}

/// What makes two nodes lower to the same kernels: the op with its attributes, the bound
/// operand and result shapes, and the constant the lowering specialises on.
#[derive(PartialEq, Eq, Hash)]
struct LoweringKey {
    op: String,
    inputs: Vec<Option<TensorShape>>,
    outputs: Vec<TensorShape>,
    known: Option<(DType, Vec<usize>, Arc<[u8]>)>,
}

/// A built-in lowering done once and launched again for every identical node (the layers of a
/// model): the program's kernel index of each call replaces its kernel.
#[derive(Clone)]
struct LoweredNode {
    scratch: Vec<Scratch>,
    calls: Vec<LoweredCall>,
    view: bool,
}

/// One call of a [`LoweredNode`].
#[derive(Clone)]
struct LoweredCall {
    kernel: usize,
    kind: KernelKind,
    cost: KernelCost,
    args: Vec<ArgRef>,
    assumptions: Vec<String>,
}

/// What the partitioner lowers in one step: a node, or a GEMM or MoE block with its epilogue
/// chain.
struct Unit<'g> {
    /// The node kernels and errors are named after (the start of a chain).
    anchor: NodeId,
    op: &'g Op,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<ValueId>,
    epilogue: Option<&'g [EpilogueNode]>,
}

impl<'g> Unit<'g> {
    fn node(graph: &'g Graph, id: NodeId) -> Unit<'g> {
        let node = graph.node(id);
        Unit {
            anchor: id,
            op: &node.op,
            inputs: node.inputs.clone(),
            outputs: node.outputs.clone(),
            epilogue: None,
        }
    }

    fn fused(graph: &'g Graph, chain: &'g Chain) -> Unit<'g> {
        Unit {
            anchor: chain.start,
            op: &graph.node(chain.start).op,
            inputs: chain.inputs.clone(),
            outputs: vec![chain.output],
            epilogue: Some(&chain.ops),
        }
    }

    /// The name of its kernels.
    fn kernel_name(&self, graph: &Graph) -> String {
        let node = graph.node(self.anchor);
        kernel_name(self.anchor.0 as usize, &node.name, node.op.name())
    }

    /// The built-in lowering; `known` as for [`lower_node`].
    fn lower(&self, ctx: &OpContext, known: Option<&Tensor>) -> Result<Lowering, LowerError> {
        match (self.epilogue, self.op) {
            (Some(ops), Op::Moe { .. }) => moe::lower_moe(ctx, ops),
            (Some(ops), _) => lower_gemm_epilogue(ctx, ops),
            (None, _) => lower_node(ctx, known),
        }
    }

    /// What makes another unit lower to the same kernels: see [`LoweringKey`].
    fn key(&self, ctx: &OpContext, known: Option<&Tensor>) -> LoweringKey {
        LoweringKey {
            op: match self.epilogue {
                None => format!("{:?}", self.op),
                Some(ops) => format!("{:?} then {ops:?}", self.op),
            },
            inputs: ctx.inputs.clone(),
            outputs: ctx.outputs.clone(),
            known: known.map(|t| (t.dtype(), t.shape().to_vec(), Arc::from(t.bytes()))),
        }
    }
}

/// Builds the program while nodes are lowered.
struct ProgramBuilder<'g> {
    graph: &'g Graph,
    bindings: &'g DimBindings,
    program: Program,
    tensor_of: HashMap<ValueId, TensorId>,
    kernel_index: HashMap<String, usize>,
}

impl ProgramBuilder<'_> {
    fn concrete(&self, ty: &TensorType) -> Option<Vec<u64>> {
        ty.shape.eval(self.bindings)
    }

    fn add_tensor(&mut self, name: String, shape: TensorShape, kind: TensorKind) -> TensorId {
        self.program.tensors.push(GmTensor {
            name,
            dtype: shape.dtype,
            shape: shape.shape,
            kind,
        });
        TensorId(self.program.tensors.len() as u32 - 1)
    }

    /// The bound operand and result shapes of `unit`.
    fn shapes(
        &self,
        unit: &Unit,
    ) -> Result<(Vec<Option<TensorShape>>, Vec<TensorShape>), PartitionError> {
        let shape_of = |slot: usize, v: ValueId| -> Result<TensorShape, PartitionError> {
            let ty = &self.graph.value(v).ty;
            let shape = self.concrete(ty).ok_or_else(|| PartitionError::Unbound {
                node: self.graph.describe_node(unit.anchor),
                operand: slot,
                missing: unbound_symbols(ty, self.bindings),
            })?;
            Ok(TensorShape::new(ty.dtype, shape))
        };
        let mut inputs = Vec::new();
        for (slot, v) in unit.inputs.iter().enumerate() {
            inputs.push(v.map(|v| shape_of(slot, v)).transpose()?);
        }
        let mut outputs = Vec::new();
        for (slot, &v) in unit.outputs.iter().enumerate() {
            outputs.push(shape_of(unit.inputs.len() + slot, v)?);
        }
        Ok((inputs, outputs))
    }

    /// The lowering context of `unit`, its kernels named `name`.
    fn context<'u>(
        &self,
        unit: &'u Unit,
        name: &'u str,
        target: &'u Target,
    ) -> Result<OpContext<'u>, PartitionError> {
        let (inputs, outputs) = self.shapes(unit)?;
        Ok(OpContext {
            name,
            op: unit.op,
            inputs,
            outputs,
            target,
        })
    }

    /// How much faster `chain` runs fused (one MIX launch, or the MoE block's combine) than as
    /// its start and its vector kernels apart, in modelled microseconds (an unfused node without
    /// a lowering counts as infinitely slow; `None` when the fused form has no lowering). The
    /// GEMM plans this makes are cached, so lowering the chosen form again later costs little.
    fn fusion_saving(&self, chain: &Chain, target: &Target) -> Option<f64> {
        let time = |unit: &Unit| -> Option<f64> {
            let name = unit.kernel_name(self.graph);
            let ctx = self.context(unit, &name, target).ok()?;
            unit.lower(&ctx, None).ok().map(|l| l.modeled_time_us())
        };
        let fused = time(&Unit::fused(self.graph, chain))?;
        let apart: f64 = std::iter::once(chain.start)
            .chain(chain.up_gemm)
            .chain(chain.nodes.iter().copied())
            .filter(|&id| !self.graph.node(id).op.is_view())
            .map(|id| time(&Unit::node(self.graph, id)).unwrap_or(f64::INFINITY))
            .sum();
        Some(apart - fused)
    }

    /// The tensor holding `value`, created on first use with `kind`.
    fn tensor_for(&mut self, value: ValueId, kind: TensorKind) -> Result<TensorId, PartitionError> {
        if let Some(&t) = self.tensor_of.get(&value) {
            return Ok(t);
        }
        let v = self.graph.value(value);
        let shape = self
            .concrete(&v.ty)
            .ok_or_else(|| PartitionError::UnboundValue {
                value: v.name.clone(),
                shape: v.ty.shape.to_string(),
                missing: unbound_symbols(&v.ty, self.bindings),
            })?;
        let t = self.add_tensor(v.name.clone(), TensorShape::new(v.ty.dtype, shape), kind);
        self.tensor_of.insert(value, t);
        Ok(t)
    }

    /// Interns the kernels of a fresh lowering (see [`ProgramBuilder::intern_kernel`]).
    fn intern_lowering(&mut self, lowering: Lowering) -> LoweredNode {
        let calls = lowering
            .calls
            .into_iter()
            .map(|call| LoweredCall {
                kind: KernelKind::of(&call.kernel),
                kernel: self.intern_kernel(call.kernel),
                cost: call.cost,
                args: call.args,
                assumptions: call.assumptions,
            })
            .collect();
        LoweredNode {
            scratch: lowering.scratch,
            calls,
            view: lowering.view,
        }
    }

    /// The kernel's index, reusing an identical kernel (up to its name) lowered before.
    fn intern_kernel(&mut self, kernel: Kernel) -> usize {
        let mut anonymous = kernel.clone();
        anonymous.name.clear();
        let key = anonymous.to_string();
        if let Some(&i) = self.kernel_index.get(&key) {
            return i;
        }
        self.program.kernels.push(kernel);
        let i = self.program.kernels.len() - 1;
        self.kernel_index.insert(key, i);
        i
    }
}

/// Lowers every node of `graph` to kernels for `target`, with the graph's symbolic dimensions
/// bound by `bindings`, and assembles the [`Program`] that runs them.
pub fn partition(
    graph: &Graph,
    target: &Target,
    bindings: &DimBindings,
) -> Result<Partition, PartitionError> {
    partition_with(graph, target, bindings, &Lowerings::new())
}

/// [`partition`], asking the user's `lowerings` for each node before the built-in ones.
pub fn partition_with(
    graph: &Graph,
    target: &Target,
    bindings: &DimBindings,
    lowerings: &Lowerings,
) -> Result<Partition, PartitionError> {
    let order = graph
        .topological_order()
        .unwrap_or_else(|_| (0..graph.nodes.len() as u32).map(NodeId).collect());
    let constant = constant_values(graph, &order);
    let rewritten = layout::transpose_constant_b(graph, &constant);
    let graph = &rewritten;
    let order = graph
        .topological_order()
        .unwrap_or_else(|_| (0..graph.nodes.len() as u32).map(NodeId).collect());
    let constant = constant_values(graph, &order);
    let mut b = ProgramBuilder {
        graph,
        bindings,
        program: Program {
            name: graph.name.clone(),
            ..Program::default()
        },
        tensor_of: HashMap::new(),
        kernel_index: HashMap::new(),
    };
    for &input in &graph.inputs {
        let t = b.tensor_for(input, TensorKind::Input)?;
        let shape = b.program.tensor(t).shape.clone();
        b.program.inputs.push(Binding {
            name: graph.value(input).name.clone(),
            tensor: t,
            shape,
        });
    }
    let inline: HashMap<ValueId, &WeightData> = graph
        .initializers
        .iter()
        .map(|i| (i.value, &i.data))
        .collect();
    let chains = if lowerings.is_empty() {
        fusion::find_chains(graph, &constant, &|v| b.concrete(&graph.value(v).ty))
    } else {
        Vec::new()
    };
    // The chains worth fusing, at their last node; the nodes before it run in that launch.
    // Chains may overlap (a GEMM's epilogue and a MoE block's both reaching the add of their
    // results): the largest modelled savings are taken first, ties in node order, and a chain
    // sharing a node with one taken is left apart.
    let mut saving_of: HashMap<LoweringKey, Option<f64>> = HashMap::new();
    let mut worth: Vec<(f64, &Chain)> = Vec::new();
    for chain in &chains {
        let unit = Unit::fused(graph, chain);
        let name = unit.kernel_name(graph);
        let Ok(ctx) = b.context(&unit, &name, target) else {
            continue;
        };
        let key = unit.key(&ctx, None);
        let saving = *saving_of
            .entry(key)
            .or_insert_with(|| b.fusion_saving(chain, target));
        if let Some(saving) = saving.filter(|&s| s > 0.0) {
            worth.push((saving, chain));
        }
    }
    worth.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut fused_at: HashMap<NodeId, &Chain> = HashMap::new();
    let mut absorbed: HashSet<NodeId> = HashSet::new();
    let mut claimed: HashSet<NodeId> = HashSet::new();
    for (_, chain) in worth {
        let members = || {
            std::iter::once(chain.start)
                .chain(chain.up_gemm)
                .chain(chain.nodes.iter().copied())
        };
        if members().any(|id| claimed.contains(&id)) {
            continue;
        }
        claimed.extend(members());
        if let Some((&last, before)) = chain.nodes.split_last() {
            fused_at.insert(last, chain);
            absorbed.insert(chain.start);
            absorbed.extend(chain.up_gemm);
            absorbed.extend(before.iter().copied());
        }
    }
    let mut launches = Vec::new();
    let mut lowered_before: HashMap<LoweringKey, LoweredNode> = HashMap::new();
    for &id in &order {
        if absorbed.contains(&id) {
            continue;
        }
        let unit = match fused_at.get(&id) {
            Some(chain) => Unit::fused(graph, chain),
            None => Unit::node(graph, id),
        };
        if unit.inputs.iter().flatten().all(|v| constant[v.index()]) {
            continue;
        }
        let describe = || graph.describe_node(unit.anchor);
        let name = unit.kernel_name(graph);
        let ctx = b.context(&unit, &name, target)?;
        let user = match unit.epilogue {
            None => lowerings.lower(&ctx),
            Some(_) => None,
        };
        let lowered = match user {
            Some(user) => user.map(|l| b.intern_lowering(l)),
            None => {
                let specialised = specialised_operand(unit.op)
                    .and_then(|i| unit.inputs.get(i).copied().flatten())
                    .and_then(|v| inline_value(graph, &inline, v, bindings));
                let key = unit.key(&ctx, specialised.as_ref());
                match lowered_before.get(&key) {
                    Some(done) => Ok(done.clone()),
                    None => unit.lower(&ctx, specialised.as_ref()).map(|l| {
                        let done = b.intern_lowering(l);
                        lowered_before.insert(key, done.clone());
                        done
                    }),
                }
            }
        };
        let lowering = lowered.map_err(|source| PartitionError::Lower {
            node: describe(),
            source: Box::new(source),
        })?;
        if lowering.view {
            let operand = unit.inputs.first().copied().flatten();
            if let (Some(operand), Some(&result)) = (operand, unit.outputs.first()) {
                let kind = if constant[operand.index()] {
                    TensorKind::Constant
                } else {
                    TensorKind::Intermediate
                };
                let t = b.tensor_for(operand, kind)?;
                b.tensor_of.insert(result, t);
            }
            continue;
        }
        let scratch: Vec<TensorId> = lowering
            .scratch
            .iter()
            .map(|s| {
                b.add_tensor(
                    format!("{name}.{}", s.name),
                    s.tensor.clone(),
                    TensorKind::Intermediate,
                )
            })
            .collect();
        for call in lowering.calls {
            let mut args = Vec::with_capacity(call.args.len());
            for arg in &call.args {
                let t = match *arg {
                    ArgRef::Operand(i) => {
                        let v = unit.inputs.get(i).copied().flatten().ok_or_else(|| {
                            PartitionError::Lower {
                                node: describe(),
                                source: Box::new(LowerError::Unsupported(format!(
                                    "a kernel reads operand {i}, which is absent"
                                ))),
                            }
                        })?;
                        let kind = if constant[v.index()] {
                            TensorKind::Constant
                        } else {
                            TensorKind::Intermediate
                        };
                        b.tensor_for(v, kind)?
                    }
                    ArgRef::Result(i) => b.tensor_for(unit.outputs[i], TensorKind::Intermediate)?,
                    ArgRef::Scratch(i) => scratch[i],
                };
                args.push(t);
            }
            b.program.launches.push(Launch {
                kernel: call.kernel,
                args,
            });
            launches.push(PlannedKernel {
                node: unit.anchor,
                launch: b.program.launches.len() - 1,
                kind: call.kind,
                cost: call.cost,
                assumptions: call.assumptions,
            });
        }
    }
    for &output in &graph.outputs {
        let kind = if constant[output.index()] {
            TensorKind::Constant
        } else {
            TensorKind::Intermediate
        };
        let t = b.tensor_for(output, kind)?;
        let v = graph.value(output);
        let shape = b
            .concrete(&v.ty)
            .ok_or_else(|| PartitionError::UnboundValue {
                value: v.name.clone(),
                shape: v.ty.shape.to_string(),
                missing: unbound_symbols(&v.ty, bindings),
            })?;
        b.program.outputs.push(Binding {
            name: v.name.clone(),
            tensor: t,
            shape,
        });
    }
    let mut program = b.program;
    program.memory = memory::plan_memory(&program);
    Ok(Partition {
        graph: rewritten,
        program,
        launches,
    })
}

/// A C identifier for the kernels of node `index`.
fn kernel_name(index: usize, node_name: &str, op: &str) -> String {
    let clean: String = node_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if clean.is_empty() {
        format!("k{index}_{op}")
    } else {
        format!("k{index}_{clean}")
    }
}

#[cfg(test)]
mod tests {
    use cubevec_ir::graph::{TensorType, WeightData};
    use cubevec_ir::kernel::verify;
    use cubevec_ir::{DType, Dim, Shape};

    use super::*;

    fn ty(dtype: DType, dims: Vec<Dim>) -> TensorType {
        TensorType::new(dtype, Shape(dims))
    }

    /// norm → up-projection → silu → softmax, with a reshape view in the middle and a
    /// weight-only cast feeding the projection.
    fn small_block() -> Graph {
        let mut g = Graph::new("block");
        let mut b = g.builder();
        let seq = Dim::sym("seq");
        let x = b
            .add_input("x", ty(DType::BF16, vec![seq.clone(), Dim::Known(256)]))
            .expect("x");
        let gamma = b
            .add_initializer(
                "gamma",
                ty(DType::BF16, vec![Dim::Known(256)]),
                WeightData::Absent,
            )
            .expect("gamma");
        let w1 = b
            .add_initializer(
                "w1",
                ty(DType::F32, vec![Dim::Known(256), Dim::Known(512)]),
                WeightData::Absent,
            )
            .expect("w1");
        let w1 = b
            .add_op(
                "w1_bf16",
                Op::Cast { to: DType::BF16 },
                vec![Some(w1)],
                vec![],
            )
            .expect("cast")[0];
        let normed = b
            .add_op(
                "norm",
                Op::RmsNorm {
                    axis: -1,
                    epsilon_bits: 1e-6f32.to_bits(),
                },
                vec![Some(x), Some(gamma)],
                vec![],
            )
            .expect("norm")[0];
        let h = b
            .add_op("up", Op::MatMul, vec![Some(normed), Some(w1)], vec![])
            .expect("matmul")[0];
        let act = b
            .add_op("act", Op::Unary(UnaryOp::Silu), vec![Some(h)], vec![])
            .expect("silu")[0];
        let flat = b
            .add_op(
                "flat",
                Op::Reshape {
                    shape: vec![Dim::Known(2), seq.clone(), Dim::Known(256)],
                },
                vec![Some(act)],
                vec![],
            )
            .expect("reshape")[0];
        let probs = b
            .add_op("probs", Op::Softmax { axis: -1 }, vec![Some(flat)], vec![])
            .expect("softmax")[0];
        b.add_output(probs).expect("out");
        g
    }

    #[test]
    fn a_block_becomes_a_checked_program_of_verified_kernels() {
        let graph = small_block();
        let target = Target::by_name("ascend910b2").expect("target");
        let bindings: DimBindings = [("seq".to_string(), 64)].into_iter().collect();
        let part = partition(&graph, &target, &bindings).expect("partition");
        let program = &part.program;
        program.check().expect("program");
        let launched: Vec<(&str, KernelKind)> = part
            .launches
            .iter()
            .map(|l| {
                let k = &program.kernels[program.launches[l.launch].kernel];
                (k.name.as_str(), l.kind)
            })
            .collect();
        assert_eq!(
            launched,
            [
                ("k1_norm", KernelKind::Vector),
                // The SiLU runs on the AIVs of the projection's kernel.
                ("k2_up", KernelKind::Mix),
                ("k5_probs", KernelKind::Vector),
            ]
        );
        for k in &program.kernels {
            verify(k, &target).expect("verify");
        }
        // The cast of w1 depends on a weight alone: a constant, not a launch.
        let w1 = &program.tensors[program.launches[1].args[1].index()];
        assert_eq!(
            (w1.name.as_str(), &w1.kind),
            ("w1_bf16:0", &TensorKind::Constant)
        );
        // The reshape is a view: softmax reads the tensor the fused SiLU wrote, and the
        // projection's product exists only in the kernel's workspace.
        assert_eq!(program.launches[2].args[0], program.launches[1].args[2]);
        assert_eq!(
            program.tensors[program.launches[1].args[2].index()].name,
            "act:0"
        );
        assert!(program.tensors.iter().all(|t| t.name != "up:0"));
        assert_eq!(program.outputs[0].shape, [2, 64, 256]);
        let rep = report(&target, &part);
        let json = serde_json::to_string(&rep).expect("json");
        assert!(json.contains("\"modeled_time_us\""), "{json}");
        assert_eq!(rep.kernels[1].flops, 2.0 * 64.0 * 256.0 * 512.0);
    }

    #[test]
    fn unbound_symbols_and_unsupported_ops_name_the_node() {
        let graph = small_block();
        let target = Target::by_name("ascend910b2").expect("target");
        let err = partition(&graph, &target, &DimBindings::new()).expect_err("seq unbound");
        assert_eq!(
            err.to_string(),
            "the shape [seq, 256] of `x` has dimensions without a size: seq \
             (bind each with `--dim NAME=N`)"
        );

        let mut g = Graph::new("sin");
        let mut b = g.builder();
        let x = b
            .add_input("x", ty(DType::F32, vec![Dim::Known(8), Dim::Known(16)]))
            .expect("x");
        let y = b
            .add_op("sin_it", Op::Unary(UnaryOp::Sin), vec![Some(x)], vec![])
            .expect("sin")[0];
        b.add_output(y).expect("out");
        let err = partition(&g, &target, &DimBindings::new()).expect_err("sin");
        assert!(err.to_string().contains("sin_it"), "{err}");
    }

    #[test]
    fn identical_layers_share_one_kernel() {
        let mut g = Graph::new("twice");
        let mut b = g.builder();
        let x = b
            .add_input("x", ty(DType::F32, vec![Dim::Known(32), Dim::Known(64)]))
            .expect("x");
        let y = b
            .add_op("a", Op::Unary(UnaryOp::Exp), vec![Some(x)], vec![])
            .expect("a")[0];
        let z = b
            .add_op("b", Op::Unary(UnaryOp::Exp), vec![Some(y)], vec![])
            .expect("b")[0];
        b.add_output(z).expect("out");
        let target = Target::by_name("ascend910b2").expect("target");
        let part = partition(&g, &target, &DimBindings::new()).expect("partition");
        assert_eq!(part.program.kernels.len(), 1);
        assert_eq!(part.program.launches.len(), 2);
        part.program.check().expect("program");
    }
}
