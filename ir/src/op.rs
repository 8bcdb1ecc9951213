//! The operations of the graph IR and their attributes.
//!
//! Each variant documents its operands (in order), its results and its semantics; shape and dtype
//! inference for all of them lives in [`crate::infer`], the reference semantics in
//! [`crate::interp`]. Axis attributes may be negative (counted from the end) unless a variant says
//! otherwise. Elementwise operations broadcast their operands numpy-style.

use crate::dtype::DType;
use crate::shape::Dim;

/// An elementwise function of one tensor. The result has the operand's dtype and shape, except
/// `IsNaN`/`IsInf`, whose result is `bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// `√x`.
    Sqrt,
    /// `1/√x`.
    Rsqrt,
    /// `1/x`.
    Reciprocal,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Hyperbolic tangent.
    Tanh,
    /// Error function.
    Erf,
    /// `1/(1+e^-x)`.
    Sigmoid,
    /// `max(x, 0)`.
    Relu,
    /// `x·sigmoid(x)`.
    Silu,
    /// Exact GELU, `x·Φ(x)`.
    Gelu,
    /// GELU with the tanh approximation.
    GeluTanh,
    /// `ln(1+e^x)`.
    Softplus,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
    /// Round half to even.
    Round,
    /// −1, 0 or 1.
    Sign,
    /// Logical not (bool operand).
    Not,
    /// Whether the element is NaN (bool result).
    IsNaN,
    /// Whether the element is ±∞ (bool result).
    IsInf,
}

/// An elementwise function of two broadcast tensors of the same dtype. Arithmetic results keep the
/// dtype; comparisons give `bool`; logical ops take and give `bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integers: truncated toward zero, like ONNX).
    Div,
    /// `a^b`.
    Pow,
    /// Remainder with the sign of the divisor for integers, `fmod` for floats (ONNX `Mod`,
    /// `fmod=1` semantics are selected by the frontend through `FMod`).
    Mod,
    /// C `fmod`: remainder with the sign of the dividend.
    FMod,
    /// Elementwise maximum (NaN propagates).
    Max,
    /// Elementwise minimum (NaN propagates).
    Min,
    /// `a == b` (bool result).
    Equal,
    /// `a < b` (bool result).
    Less,
    /// `a <= b` (bool result).
    LessOrEqual,
    /// `a > b` (bool result).
    Greater,
    /// `a >= b` (bool result).
    GreaterOrEqual,
    /// Logical and.
    And,
    /// Logical or.
    Or,
    /// Logical exclusive or.
    Xor,
}

impl BinaryOp {
    /// Every binary op, in declaration order.
    pub const ALL: [BinaryOp; 17] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Mod,
        BinaryOp::FMod,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Equal,
        BinaryOp::Less,
        BinaryOp::LessOrEqual,
        BinaryOp::Greater,
        BinaryOp::GreaterOrEqual,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
    ];

    /// Whether the result is `bool` whatever the operand dtype.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
        )
    }

    /// Whether the operands and result are `bool`.
    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
}

impl UnaryOp {
    /// Every unary op, in declaration order.
    pub const ALL: [UnaryOp; 24] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Tanh,
        UnaryOp::Erf,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Softplus,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::Sign,
        UnaryOp::Not,
        UnaryOp::IsNaN,
        UnaryOp::IsInf,
    ];
}

/// How a reduction combines the elements along its axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceOp {
    /// Sum (accumulated in f64 for floats).
    Sum,
    /// Arithmetic mean (accumulated in f64).
    Mean,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Product.
    Prod,
}

impl ReduceOp {
    /// Every reduction, in declaration order.
    pub const ALL: [ReduceOp; 5] = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::Prod,
    ];
}

/// How a scatter combines an update with the element already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScatterReduction {
    /// Replace the element.
    None,
    /// Add to it.
    Add,
    /// Multiply it.
    Mul,
    /// Keep the larger.
    Max,
    /// Keep the smaller.
    Min,
}

/// How a token's router logits become the experts it visits and their weights.
///
/// In every mode the router produces `k` expert indices and `k` weights per token; the expert
/// outputs are summed with those weights.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoutingMode {
    /// Mixtral / Qwen-MoE: `p = softmax(logits)`, pick top-k of `p`; if `normalize`, divide the k
    /// weights by their sum.
    SoftmaxTopK {
        /// Renormalise the selected weights to sum to one.
        normalize: bool,
    },
    /// Top-k of the raw logits, then softmax over the k selected (ONNX Runtime's `MoE` with
    /// `normalize_routing_weights=1` is the same as `SoftmaxTopK { normalize: true }`).
    TopKSoftmax,
    /// DeepSeek-V3: `s = sigmoid(logits)`; selection uses `s + bias` (the `bias` operand): experts
    /// are split into `n_group` groups, each scored by the sum of its top-2, the best `topk_group`
    /// groups kept, and top-k taken among their experts. Weights are the unbiased `s` of the
    /// chosen experts, divided by their sum if `normalize`, times `scaling`.
    SigmoidGroupLimited {
        /// Number of expert groups (1 disables the group limit).
        n_group: u32,
        /// Groups kept per token.
        topk_group: u32,
        /// Divide the weights by their sum.
        normalize: bool,
        /// `routed_scaling_factor`, stored as the bits of an `f32` so the mode is `Eq + Hash`.
        scaling_bits: u32,
    },
    /// DeepSeek-V4: `s = sqrt(softplus(logits))`, selection by top-k of `s + bias`, weights `s` of
    /// the chosen experts, divided by their sum if `normalize`, times `scaling`.
    SqrtSoftplus {
        /// Divide the weights by their sum.
        normalize: bool,
        /// `routed_scaling_factor` as `f32` bits.
        scaling_bits: u32,
    },
    /// DeepSeek-V4 hash layers: experts come from the `table` operand (`i64 [vocab, k]`) indexed by
    /// the token id operand; weights are `sqrt(softplus(logits))` of those experts, normalised if
    /// `normalize`, times `scaling`.
    Hash {
        /// Divide the weights by their sum.
        normalize: bool,
        /// `routed_scaling_factor` as `f32` bits.
        scaling_bits: u32,
    },
}

/// The activation an MoE expert applies between its projections.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExpertActivation {
    /// Gated: `down(silu(gate·x) * (up·x))`.
    SwiGlu,
    /// Gated and clamped (DeepSeek-V4): `down(silu(min(gate·x, limit)) * clamp(up·x, -limit, limit))`;
    /// the limit is stored as `f32` bits.
    SwiGluClamped {
        /// `swiglu_limit` as `f32` bits.
        limit_bits: u32,
    },
    /// Ungated: `down(silu(up·x))` (no gate weight).
    Silu,
    /// Ungated: `down(gelu(up·x))` (no gate weight).
    Gelu,
    /// Ungated: `down(relu(up·x))` (no gate weight).
    Relu,
}

impl ExpertActivation {
    /// Whether the expert has a separate gate projection.
    pub fn is_gated(&self) -> bool {
        matches!(
            self,
            ExpertActivation::SwiGlu | ExpertActivation::SwiGluClamped { .. }
        )
    }
}

/// A graph operation with its attributes.
///
/// Operands are listed as `name: description`; optional operands are marked `?` and are absent
/// (`None` in [`crate::graph::Node::inputs`]) when not given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `x` → `op(x)`.
    Unary(UnaryOp),
    /// `a, b` → `op(a, b)` with broadcasting.
    Binary(BinaryOp),
    /// `x, lo?, hi?` → `min(max(x, lo), hi)`; `lo`/`hi` are scalars of `x`'s dtype.
    Clip,
    /// `cond: bool, a, b` → `cond ? a : b`, all three broadcast.
    Where,
    /// `x` → `x` converted to `to`. Floats round to nearest even and saturate for fp8/fp4 (ONNX
    /// `saturate=1`); float → int truncates toward zero; to `bool` is `x != 0`.
    Cast {
        /// Target dtype.
        to: DType,
    },
    /// `a [..., m, k], b [..., k, n]` → `[..., m, n]` (numpy `matmul`: batch dims broadcast, a
    /// rank-1 operand is promoted and the added axis removed). Accumulates in f32.
    MatMul,
    /// `a, b, c?` → `alpha·op(a)·op(b) + beta·c` for 2-D `a`, `b` (`op` transposes when asked);
    /// `c` broadcasts to `[m, n]`. Scalars stored as `f32` bits.
    Gemm {
        /// `alpha` as `f32` bits.
        alpha_bits: u32,
        /// `beta` as `f32` bits.
        beta_bits: u32,
        /// Transpose `a` first.
        trans_a: bool,
        /// Transpose `b` first.
        trans_b: bool,
    },
    /// `x` → softmax along `axis`.
    Softmax {
        /// The normalised axis.
        axis: i64,
    },
    /// `x` → log-softmax along `axis`.
    LogSoftmax {
        /// The normalised axis.
        axis: i64,
    },
    /// `x` → reduction over `axes` (all axes when empty).
    Reduce {
        /// The combining function.
        op: ReduceOp,
        /// Reduced axes; empty means every axis.
        axes: Vec<i64>,
        /// Keep reduced axes as size 1.
        keep_dims: bool,
    },
    /// `x, scale` → `x / sqrt(mean(x², axes ≥ axis) + eps) * scale`; `scale` broadcasts over the
    /// normalised trailing axes. Statistics in f32.
    RmsNorm {
        /// First normalised axis; every later axis is normalised too.
        axis: i64,
        /// `epsilon` as `f32` bits.
        epsilon_bits: u32,
    },
    /// `x, scale, bias?` → `(x - mean) / sqrt(var + eps) * scale + bias` over the axes ≥ `axis`.
    LayerNorm {
        /// First normalised axis.
        axis: i64,
        /// `epsilon` as `f32` bits.
        epsilon_bits: u32,
    },
    /// `x` → `values, indices: i64`: the `k` largest (or smallest) along `axis`; ties keep the
    /// lower index first, like ONNX.
    TopK {
        /// Number of elements kept.
        k: u64,
        /// Axis searched.
        axis: i64,
        /// Largest (true) or smallest (false).
        largest: bool,
        /// Results in sorted order (otherwise any order; the interpreter always sorts).
        sorted: bool,
    },
    /// `x, indices` → `x` indexed along `axis` (ONNX `Gather`; negative indices count from the end).
    Gather {
        /// Indexed axis.
        axis: i64,
    },
    /// `x, indices` → `out[i][j]… = x[…][indices[i][j]…][…]` along `axis` (ONNX `GatherElements`).
    GatherElements {
        /// Indexed axis.
        axis: i64,
    },
    /// `x, indices` → ONNX `GatherND` with `batch_dims` leading batch axes.
    GatherNd {
        /// Number of leading batch axes shared by `x` and `indices`.
        batch_dims: u64,
    },
    /// `x, indices, updates` → copy of `x` with `updates` scattered along `axis`
    /// (ONNX `ScatterElements`).
    ScatterElements {
        /// Scattered axis.
        axis: i64,
        /// How an update combines with the existing element.
        reduction: ScatterReduction,
    },
    /// `x, indices, updates` → ONNX `ScatterND`.
    ScatterNd {
        /// How an update combines with the existing element.
        reduction: ScatterReduction,
    },
    /// `x` → the same elements in row-major order with shape `shape` (element counts equal).
    Reshape {
        /// The result shape; no `-1` or `0` placeholders (the frontend resolves them).
        shape: Vec<Dim>,
    },
    /// `x` → axes permuted: result axis `i` is operand axis `perm[i]`.
    Transpose {
        /// A permutation of `0..rank`.
        perm: Vec<u64>,
    },
    /// `xs…` → concatenation along `axis` (at least one operand).
    Concat {
        /// Concatenated axis.
        axis: i64,
    },
    /// `x` → one result per entry of `sizes`, consecutive pieces along `axis`.
    Split {
        /// Split axis.
        axis: i64,
        /// Sizes of the pieces; they add up to the axis size.
        sizes: Vec<Dim>,
    },
    /// `x` → the strided slice. `starts`/`ends` follow ONNX clamping rules and may be negative;
    /// `i64::MAX`/`i64::MIN` mean "to the end". Symbolic-size axes take only steps of 1 with
    /// non-negative starts and `ends` of `i64::MAX` unless the frontend resolved them.
    Slice {
        /// Sliced axes (one entry per axis in the other lists).
        axes: Vec<i64>,
        /// First index per axis.
        starts: Vec<i64>,
        /// One past the last index per axis.
        ends: Vec<i64>,
        /// Step per axis (non-zero).
        steps: Vec<i64>,
    },
    /// `x` → `x` with the listed size-1 axes removed.
    Squeeze {
        /// Removed axes (of the operand).
        axes: Vec<i64>,
    },
    /// `x` → `x` with size-1 axes inserted at the listed positions (of the result).
    Unsqueeze {
        /// Inserted axes (of the result).
        axes: Vec<i64>,
    },
    /// `x` → `x` broadcast to `broadcast(shape(x), shape)` (ONNX `Expand`).
    Expand {
        /// The target shape (broadcast with the operand's).
        shape: Vec<Dim>,
    },
    /// `start, limit, delta` (scalars) → `[start, start+delta, …)` below `limit`, of length `len`.
    Range {
        /// The result length: known, symbolic, or a fresh symbol bound when the op runs.
        len: Dim,
    },
    /// `x` → cumulative sum along `axis`.
    CumSum {
        /// Summed axis.
        axis: i64,
        /// Exclude the element itself.
        exclusive: bool,
        /// Sum from the end.
        reverse: bool,
    },
    /// `x` → index (`i64`) of the largest element along `axis`.
    ArgMax {
        /// Searched axis.
        axis: i64,
        /// Keep the axis as size 1.
        keep_dims: bool,
        /// On ties pick the last index instead of the first.
        select_last_index: bool,
    },
    /// `x` → the upper or lower triangle of the last two axes, the rest zero; diagonal offset `k`.
    Trilu {
        /// Keep the upper triangle (else the lower).
        upper: bool,
        /// Diagonal offset.
        k: i64,
    },
    /// `xs…` → Einstein summation (`"bij,bjk->bik"`; explicit output required).
    Einsum {
        /// The equation with an explicit `->` output.
        equation: String,
    },
    /// `x, scale, zero_point?` → `(x - zero_point) * scale` as `to`. `scale` has the rank of `x`
    /// (a scalar for per-tensor); along axis `i` one scale covers `block[i]` elements, the last
    /// block of an axis possibly shorter. `zero_point` has the shape of `scale` and `x`'s dtype.
    Dequantize {
        /// Elements per scale along each axis (empty for a scalar scale).
        block: Vec<u64>,
        /// Result dtype.
        to: DType,
    },
    /// `x [..., 2n]` → `silu(x[..., :n]) * x[..., n:]` when `split` is true; with `split` false the
    /// operands are `gate, up` of equal shape → `silu(gate) * up`. `limit`, when present,
    /// clamps like [`ExpertActivation::SwiGluClamped`].
    SwiGlu {
        /// One concatenated operand (true) or separate `gate, up` operands (false).
        split: bool,
        /// Optional clamp limit as `f32` bits.
        limit_bits: Option<u32>,
    },
    /// `x [..., d], cos, sin` → rotary position embedding of the first `2·r` features of the last
    /// axis, where `r` is the last dimension of `cos`/`sin` (both broadcast to `[..., r]`); the
    /// other features pass through. `interleaved` rotates pairs `(x[2i], x[2i+1])`; otherwise
    /// halves `(x[i], x[i+r])` (rotate-half form).
    Rope {
        /// Pairs adjacent features instead of the two halves.
        interleaved: bool,
    },
    /// `q [b, h, s, d], k [b, hk, t, d], v [b, hk, t, dv], mask?` → `[b, h, s, dv]`:
    /// `softmax(q·kᵀ·scale + mask) · v` with grouped heads (`h` a multiple of `hk`); a bool mask
    /// keeps `true` positions, a float mask is added; `causal` masks `j > i + (t - s)`.
    Attention {
        /// Score scale as `f32` bits.
        scale_bits: u32,
        /// Apply the causal mask.
        causal: bool,
    },
    /// `x [t, k], w [e, n, k], group_sizes: i64 [e]` → `[t, n]`: rows of `x` are grouped by
    /// expert in order (`group_sizes[i]` rows for expert `i`, summing to `t`) and each group is
    /// multiplied by its expert's weight transposed (`x_g · w[i]ᵀ`). Accumulates in f32.
    GroupedMatMul,
    /// `x [t, h], logits [t, e], gate [e, i, h]?, up [e, i, h], down [e, h, i], bias [e]?,
    /// token_ids [t]?, table [vocab, k]?` → `[t, h]`: a full MoE block. Routing per
    /// [`RoutingMode`] (`bias` is the selection bias; `token_ids` and `table` are used by
    /// [`RoutingMode::Hash`]), then each token's output is `Σ_j w_j · expert_{e_j}(x)` with the
    /// expert per [`ExpertActivation`] (`gate` absent for ungated activations).
    Moe {
        /// Experts per token.
        top_k: u32,
        /// How logits choose experts and weights.
        routing: RoutingMode,
        /// The expert's activation.
        activation: ExpertActivation,
    },
}

impl Op {
    /// The operation's name in the textual IR (`matmul`, `reduce_sum`, `moe`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(u) => match u {
                UnaryOp::Neg => "neg",
                UnaryOp::Abs => "abs",
                UnaryOp::Exp => "exp",
                UnaryOp::Log => "log",
                UnaryOp::Sqrt => "sqrt",
                UnaryOp::Rsqrt => "rsqrt",
                UnaryOp::Reciprocal => "reciprocal",
                UnaryOp::Sin => "sin",
                UnaryOp::Cos => "cos",
                UnaryOp::Tanh => "tanh",
                UnaryOp::Erf => "erf",
                UnaryOp::Sigmoid => "sigmoid",
                UnaryOp::Relu => "relu",
                UnaryOp::Silu => "silu",
                UnaryOp::Gelu => "gelu",
                UnaryOp::GeluTanh => "gelu_tanh",
                UnaryOp::Softplus => "softplus",
                UnaryOp::Floor => "floor",
                UnaryOp::Ceil => "ceil",
                UnaryOp::Round => "round",
                UnaryOp::Sign => "sign",
                UnaryOp::Not => "not",
                UnaryOp::IsNaN => "isnan",
                UnaryOp::IsInf => "isinf",
            },
            Op::Binary(b) => match b {
                BinaryOp::Add => "add",
                BinaryOp::Sub => "sub",
                BinaryOp::Mul => "mul",
                BinaryOp::Div => "div",
                BinaryOp::Pow => "pow",
                BinaryOp::Mod => "mod",
                BinaryOp::FMod => "fmod",
                BinaryOp::Max => "max",
                BinaryOp::Min => "min",
                BinaryOp::Equal => "equal",
                BinaryOp::Less => "less",
                BinaryOp::LessOrEqual => "less_equal",
                BinaryOp::Greater => "greater",
                BinaryOp::GreaterOrEqual => "greater_equal",
                BinaryOp::And => "and",
                BinaryOp::Or => "or",
                BinaryOp::Xor => "xor",
            },
            Op::Clip => "clip",
            Op::Where => "where",
            Op::Cast { .. } => "cast",
            Op::MatMul => "matmul",
            Op::Gemm { .. } => "gemm",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Reduce { op, .. } => match op {
                ReduceOp::Sum => "reduce_sum",
                ReduceOp::Mean => "reduce_mean",
                ReduceOp::Max => "reduce_max",
                ReduceOp::Min => "reduce_min",
                ReduceOp::Prod => "reduce_prod",
            },
            Op::RmsNorm { .. } => "rms_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::TopK { .. } => "topk",
            Op::Gather { .. } => "gather",
            Op::GatherElements { .. } => "gather_elements",
            Op::GatherNd { .. } => "gather_nd",
            Op::ScatterElements { .. } => "scatter_elements",
            Op::ScatterNd { .. } => "scatter_nd",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Concat { .. } => "concat",
            Op::Split { .. } => "split",
            Op::Slice { .. } => "slice",
            Op::Squeeze { .. } => "squeeze",
            Op::Unsqueeze { .. } => "unsqueeze",
            Op::Expand { .. } => "expand",
            Op::Range { .. } => "range",
            Op::CumSum { .. } => "cumsum",
            Op::ArgMax { .. } => "argmax",
            Op::Trilu { .. } => "trilu",
            Op::Einsum { .. } => "einsum",
            Op::Dequantize { .. } => "dequantize",
            Op::SwiGlu { .. } => "swiglu",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::GroupedMatMul => "grouped_matmul",
            Op::Moe { .. } => "moe",
        }
    }

    /// Whether the result is operand 0's elements, in order, under another shape (`Reshape`,
    /// `Squeeze`, `Unsqueeze`).
    pub fn is_view(&self) -> bool {
        matches!(
            self,
            Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. }
        )
    }

    /// How many operand slots the op has: `(required, maximum)`; `None` maximum means variadic.
    pub fn arity(&self) -> (usize, Option<usize>) {
        match self {
            Op::Unary(_) | Op::Cast { .. } | Op::Softmax { .. } | Op::LogSoftmax { .. } => {
                (1, Some(1))
            }
            Op::Reduce { .. }
            | Op::TopK { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Expand { .. }
            | Op::CumSum { .. }
            | Op::ArgMax { .. }
            | Op::Trilu { .. } => (1, Some(1)),
            Op::Binary(_)
            | Op::MatMul
            | Op::RmsNorm { .. }
            | Op::Gather { .. }
            | Op::GatherElements { .. }
            | Op::GatherNd { .. } => (2, Some(2)),
            Op::Clip => (1, Some(3)),
            Op::Where | Op::Range { .. } | Op::Rope { .. } | Op::GroupedMatMul => (3, Some(3)),
            Op::Gemm { .. } | Op::LayerNorm { .. } | Op::Dequantize { .. } => (2, Some(3)),
            Op::ScatterElements { .. } | Op::ScatterNd { .. } => (3, Some(3)),
            Op::Concat { .. } | Op::Einsum { .. } => (1, None),
            Op::SwiGlu { split, .. } => {
                if *split {
                    (1, Some(1))
                } else {
                    (2, Some(2))
                }
            }
            Op::Attention { .. } => (3, Some(4)),
            Op::Moe { .. } => (5, Some(8)),
        }
    }

    /// Number of results.
    pub fn num_outputs(&self) -> usize {
        match self {
            Op::TopK { .. } => 2,
            Op::Split { sizes, .. } => sizes.len(),
            _ => 1,
        }
    }
}

/// Reads back an attribute stored as `f32` bits.
pub fn f32_attr(bits: u32) -> f32 {
    f32::from_bits(bits)
}
