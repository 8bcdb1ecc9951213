//! The cost extraction minimises: a first analytic, Ascend-flavoured roofline per operation.
//!
//! Each op costs `max(compute time, memory time) + launch overhead`, where compute time is its
//! FLOPs at Cube throughput (matrix products) or Vector throughput (everything else), and memory
//! time is the bytes it reads and writes at HBM bandwidth. Pure data movement that folds into a
//! consumer's layout (reshape, squeeze, unsqueeze, expand, split, tuple projections) is free, and
//! so is anything computed from weights alone (done once at load time). [`CostModel`] is the seam
//! where the full cost model of the tiling pass can replace this one.

use std::collections::BTreeMap;

use cubevec_ir::graph::TensorType;
use cubevec_ir::op::{ExpertActivation, Op};
use cubevec_ir::{DType, Dim};
use rustc_hash::FxHashMap;

/// Estimates the run time of one operation, in seconds.
pub trait CostModel: Send + Sync {
    /// The time of `op` on operands of `inputs` types (`None` for absent optional operands)
    /// producing `outputs`.
    fn op_cost(&self, op: &Op, inputs: &[Option<&TensorType>], outputs: &[&TensorType]) -> f64;
}

/// The analytic roofline model (figures of an Ascend 910B-class device).
#[derive(Clone, Debug)]
pub struct RooflineCost {
    /// Cube throughput for 16-bit and 8-bit floats, FLOP/s.
    pub cube_flops: f64,
    /// Cube throughput for `f32` operands, FLOP/s.
    pub cube_flops_f32: f64,
    /// Vector unit throughput, FLOP/s.
    pub vector_flops: f64,
    /// HBM bandwidth, bytes/s.
    pub hbm_bytes_per_s: f64,
    /// Fixed cost of launching one kernel, seconds.
    pub launch_s: f64,
    /// Sizes assumed for symbolic dimensions (`batch`, `seq`) when costing.
    pub symbols: BTreeMap<String, u64>,
    /// Size assumed for a symbol not in `symbols`.
    pub default_symbol: u64,
}

impl Default for RooflineCost {
    fn default() -> RooflineCost {
        RooflineCost {
            cube_flops: 280e12,
            cube_flops_f32: 70e12,
            vector_flops: 10e12,
            hbm_bytes_per_s: 1.6e12,
            launch_s: 4e-6,
            symbols: BTreeMap::new(),
            default_symbol: 1,
        }
    }
}

impl RooflineCost {
    /// The size a dimension is costed at.
    pub fn dim(&self, d: &Dim) -> f64 {
        let symbol = |s: &str| Some(self.symbols.get(s).copied().unwrap_or(self.default_symbol));
        d.eval_with(&symbol).unwrap_or(self.default_symbol) as f64
    }

    /// Number of elements of a type.
    pub fn numel(&self, ty: &TensorType) -> f64 {
        ty.shape.dims().iter().map(|d| self.dim(d)).product()
    }

    /// Bytes a tensor of this type occupies.
    pub fn bytes(&self, ty: &TensorType) -> f64 {
        self.numel(ty) * ty.dtype.bits() as f64 / 8.0
    }

    fn cube_rate(&self, dtype: DType) -> f64 {
        if dtype == DType::F32 {
            self.cube_flops_f32
        } else {
            self.cube_flops
        }
    }

    /// FLOPs of `[.., m, k] x [.., k, n]` (batch taken from the output).
    fn matmul_flops(&self, a: &TensorType, out: &TensorType) -> f64 {
        let k = a.shape.dims().last().map(|d| self.dim(d)).unwrap_or(1.0);
        2.0 * self.numel(out) * k
    }
}

/// Ops that only change how elements are addressed and fold into their consumer's layout.
fn is_layout_only(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Expand { .. }
            | Op::Split { .. }
    )
}

impl CostModel for RooflineCost {
    fn op_cost(&self, op: &Op, inputs: &[Option<&TensorType>], outputs: &[&TensorType]) -> f64 {
        if is_layout_only(op) {
            return 0.0;
        }
        let bytes: f64 = inputs.iter().flatten().map(|t| self.bytes(t)).sum::<f64>()
            + outputs.iter().map(|t| self.bytes(t)).sum::<f64>();
        let out_elems: f64 = outputs.iter().map(|t| self.numel(t)).sum();
        let in_elems: f64 = inputs.iter().flatten().map(|t| self.numel(t)).sum();
        let input = |i: usize| inputs.get(i).copied().flatten();
        let (cube, vector, bytes) = match op {
            Op::MatMul | Op::Gemm { .. } | Op::GroupedMatMul => match (input(0), outputs.first()) {
                (Some(a), Some(out)) => {
                    let k = if let Op::Gemm { trans_a: true, .. } = op {
                        a.shape.dims().first().map(|d| self.dim(d)).unwrap_or(1.0)
                    } else {
                        a.shape.dims().last().map(|d| self.dim(d)).unwrap_or(1.0)
                    };
                    let flops = 2.0 * self.numel(out) * k;
                    (
                        flops / self.cube_rate(a.dtype),
                        out_elems / self.vector_flops,
                        bytes,
                    )
                }
                _ => (0.0, 0.0, bytes),
            },
            Op::Einsum { .. } => (0.0, in_elems * 2.0 / self.vector_flops, bytes),
            Op::Attention { .. } => match (input(0), input(1), outputs.first()) {
                (Some(q), Some(k), Some(out)) => {
                    let t = k.shape.dims().get(2).map(|d| self.dim(d)).unwrap_or(1.0);
                    let d = q.shape.dims().last().map(|d| self.dim(d)).unwrap_or(1.0);
                    let scores = self.numel(q) / d * t;
                    let flops = 2.0 * scores * d + self.matmul_flops(q, out) / d * t;
                    (
                        flops / self.cube_rate(q.dtype),
                        5.0 * scores / self.vector_flops,
                        bytes,
                    )
                }
                _ => (0.0, 0.0, bytes),
            },
            Op::Moe {
                top_k, activation, ..
            } => match (input(0), input(3), outputs.first()) {
                (Some(x), Some(up), Some(out)) => {
                    let dims: Vec<f64> = up.shape.dims().iter().map(|d| self.dim(d)).collect();
                    let (experts, inter) = (
                        dims.first().copied().unwrap_or(1.0),
                        dims.get(1).copied().unwrap_or(1.0),
                    );
                    let hidden = x.shape.dims().last().map(|d| self.dim(d)).unwrap_or(1.0);
                    let tokens = self.numel(out) / hidden.max(1.0);
                    let projections = if activation.is_gated() { 3.0 } else { 2.0 };
                    let k = f64::from(*top_k);
                    let flops = 2.0 * tokens * k * projections * hidden * inter;
                    // Only the experts some token visits are read.
                    let visited = (tokens * k).min(experts) / experts.max(1.0);
                    let weights: f64 = (2..5).filter_map(input).map(|t| self.bytes(t)).sum();
                    let moved = self.bytes(x) + self.bytes(out) + weights * visited;
                    let activation_cost = match activation {
                        ExpertActivation::SwiGlu | ExpertActivation::SwiGluClamped { .. } => 6.0,
                        _ => 4.0,
                    };
                    (
                        flops / self.cube_rate(x.dtype),
                        tokens * k * inter * activation_cost / self.vector_flops,
                        moved,
                    )
                }
                _ => (0.0, 0.0, bytes),
            },
            Op::Unary(_)
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::RmsNorm { .. }
            | Op::LayerNorm { .. }
            | Op::Rope { .. }
            | Op::SwiGlu { .. } => (
                0.0,
                4.0 * out_elems.max(in_elems) / self.vector_flops,
                bytes,
            ),
            _ => (0.0, out_elems.max(in_elems) / self.vector_flops, bytes),
        };
        cube.max(vector).max(bytes / self.hbm_bytes_per_s) + self.launch_s
    }
}

/// The modelled run time of a whole graph (nodes in topological order, as a verified graph has
/// them): the sum of its op costs, nodes computed from weights alone excluded.
pub fn graph_cost(graph: &cubevec_ir::Graph, cost: &dyn CostModel) -> f64 {
    graph_cost_keyed(graph, cost, |_| None)
}

/// [`graph_cost`] where nodes given the same key by `key_of` (called with each node's index) have
/// operands and results of the same types, so each key's op is costed once: the nodes of the
/// segments replaying one template.
pub(crate) fn graph_cost_keyed(
    graph: &cubevec_ir::Graph,
    cost: &dyn CostModel,
    key_of: impl Fn(usize) -> Option<(usize, usize)>,
) -> f64 {
    let mut weight_only = vec![false; graph.values.len()];
    for init in &graph.initializers {
        if let Some(w) = weight_only.get_mut(init.value.index()) {
            *w = true;
        }
    }
    let mut costed: FxHashMap<(usize, usize), f64> = FxHashMap::default();
    let mut total = 0.0;
    for (i, node) in graph.nodes.iter().enumerate() {
        let from_weights = node
            .inputs
            .iter()
            .flatten()
            .all(|v| weight_only.get(v.index()).copied().unwrap_or(false));
        for &out in &node.outputs {
            if let Some(w) = weight_only.get_mut(out.index()) {
                *w = from_weights;
            }
        }
        if from_weights {
            continue;
        }
        let op_cost = || {
            let inputs: Vec<Option<&TensorType>> = node
                .inputs
                .iter()
                .map(|v| v.map(|v| &graph.value(v).ty))
                .collect();
            let outputs: Vec<&TensorType> =
                node.outputs.iter().map(|&v| &graph.value(v).ty).collect();
            cost.op_cost(&node.op, &inputs, &outputs)
        };
        total += match key_of(i) {
            Some(key) => *costed.entry(key).or_insert_with(op_cost),
            None => op_cost(),
        };
    }
    total
}
