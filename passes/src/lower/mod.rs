//! Lowering one graph op to kernel launches.
//!
//! Every op the partitioner maps becomes a [`Lowering`]: kernels, each with the tensors its
//! parameters bind to, in launch order. Operands, results and scratch tensors the lowering
//! declares itself are named by [`ArgRef`], so a lowering never sees the program it ends up in.
//! One module per family of ops:
//!
//! - [`linear`]: `MatMul` and `Gemm` on the Cube.
//! - [`epilogue`]: a `MatMul` or `Gemm` with the elementwise nodes after it, as one MIX kernel.
//! - [`rows`]: `RmsNorm` and `Softmax` over the last axis.
//! - [`elementwise`]: unary ops, same-shape binary ops, `SwiGlu`.
//! - [`movement`]: gathers, transposes, concatenation, splits, slices, broadcasts, casts,
//!   broadcasting arithmetic, comparisons, logical ops and `Where`; reshapes as views.
//! - [`reduce`]: `Reduce` (sum, mean, max, min) over one contiguous block of axes.
//! - [`rope`]: rotary position embeddings (rotate-half and interleaved).
//! - [`attention`]: grouped-query attention as score GEMM, masked softmax and value GEMM.
//! - [`misc`]: `MatMul` with broadcast batch dimensions or 32-bit operands (copy, then GEMM);
//!   clamped `SwiGlu`; inner-axis `Softmax`.
//! - [`moe`]: the fused MoE op (routing, token permutation, grouped expert GEMMs over the
//!   routed row counts, combine) and `GroupedMatMul`.
//! - [`norm_scale`]: `RmsNorm` with a scale broadcast over the row.
//! - [`scatter`]: `ScatterElements` along any axis, with every reduction.
//! - [`topk`]: `TopK` along any axis (values and indices, ties to the lower index), and `ArgMax`
//!   as a top-1 search.
//! - [`clip`]: `Clip` with run-time bounds, as broadcasting `Max` and `Min`.

pub mod attention;
pub mod clip;
pub mod elementwise;
pub mod epilogue;
pub mod linear;
pub mod misc;
pub mod moe;
pub mod movement;
pub mod norm_scale;
pub mod reduce;
pub mod rope;
pub mod rows;
pub mod scatter;
pub mod topk;

use cubevec_ir::kernel::Kernel;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op};

use crate::cost::KernelCost;
use crate::tile::TileError;

/// A concrete operand or result: dtype and bound shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorShape {
    /// Element type.
    pub dtype: DType,
    /// Sizes.
    pub shape: Vec<u64>,
}

impl TensorShape {
    /// A shape of `dtype`.
    pub fn new(dtype: DType, shape: Vec<u64>) -> TensorShape {
        TensorShape { dtype, shape }
    }

    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// Everything a lowering needs to know about the node it lowers.
#[derive(Clone, Debug)]
pub struct OpContext<'a> {
    /// Prefix for kernel names: a C identifier unique to the node (`k12_layer0_attn`).
    pub name: &'a str,
    /// The op with its attributes.
    pub op: &'a Op,
    /// Operands in order (`None` for an absent optional operand).
    pub inputs: Vec<Option<TensorShape>>,
    /// Results in order.
    pub outputs: Vec<TensorShape>,
    /// The target the kernels are tiled for.
    pub target: &'a Target,
}

impl OpContext<'_> {
    /// Operand `i`, or an error naming it when absent.
    pub fn input(&self, i: usize) -> Result<&TensorShape, LowerError> {
        self.inputs
            .get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| LowerError::Unsupported(format!("operand {i} is absent")))
    }

    /// Result `i`.
    pub fn output(&self, i: usize) -> Result<&TensorShape, LowerError> {
        self.outputs
            .get(i)
            .ok_or_else(|| LowerError::Unsupported(format!("result {i} is missing")))
    }
}

/// The tensor a kernel parameter binds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgRef {
    /// Operand `i` of the node.
    Operand(usize),
    /// Result `i` of the node.
    Result(usize),
    /// Scratch tensor `i` of [`Lowering::scratch`].
    Scratch(usize),
}

/// A GM scratch tensor a lowering needs between its kernels (routing indices, permuted rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scratch {
    /// Suffix of its name (the program prefixes the node's name).
    pub name: String,
    /// Dtype and shape.
    pub tensor: TensorShape,
}

/// One launch of a lowering.
#[derive(Clone, Debug)]
pub struct KernelCall {
    /// The verified kernel.
    pub kernel: Kernel,
    /// Its modelled cost.
    pub cost: KernelCost,
    /// What each parameter binds to, in parameter order.
    pub args: Vec<ArgRef>,
    /// Assumptions the tiling rests on (a routing profile), for the report.
    pub assumptions: Vec<String>,
}

impl KernelCall {
    /// A launch of `kernel` binding `args`, with no assumptions.
    pub fn new(kernel: Kernel, cost: KernelCost, args: Vec<ArgRef>) -> KernelCall {
        KernelCall {
            kernel,
            cost,
            args,
            assumptions: Vec::new(),
        }
    }
}

/// The kernels of one op, in launch order.
#[derive(Clone, Debug, Default)]
pub struct Lowering {
    /// Scratch tensors, referenced by [`ArgRef::Scratch`].
    pub scratch: Vec<Scratch>,
    /// Launches in order. Empty for views (the result aliases operand 0: see [`Lowering::view`]).
    pub calls: Vec<KernelCall>,
    /// The result is operand 0 reinterpreted (reshape-like): no kernel, no copy.
    pub view: bool,
}

impl Lowering {
    /// A lowering whose result is a view of operand 0.
    pub fn view() -> Lowering {
        Lowering {
            view: true,
            ..Lowering::default()
        }
    }

    /// A single launch.
    pub fn single(call: KernelCall) -> Lowering {
        Lowering {
            calls: vec![call],
            ..Lowering::default()
        }
    }

    /// The modelled time of all launches, in microseconds.
    pub fn modeled_time_us(&self) -> f64 {
        self.calls.iter().map(|c| c.cost.modeled_time_us).sum()
    }
}

/// Why an op could not be lowered.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// The op, or this form of it, has no kernel mapping.
    #[error("{0}")]
    Unsupported(String),
    /// Tiling failed.
    #[error(transparent)]
    Tile(#[from] TileError),
}
