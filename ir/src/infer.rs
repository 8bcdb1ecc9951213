//! Shape and dtype inference for every op.
//!
//! [`infer_types`] is the single place where the result types of an [`Op`] are derived from its
//! operand types; the graph builder ([`crate::builder`]) and the verifier ([`crate::verify`]) both
//! use it, so a graph that verifies has exactly the types inference gives.
//!
//! Dtype families used below: *compute floats* are `f32`, `f16` and `bf16` (the low-precision
//! float formats only appear as quantised storage and take part in data movement, [`Op::Cast`]
//! and [`Op::Dequantize`] only); *numeric* types are the compute floats and the integers; *index*
//! types are `i32` and `i64`.
//!
//! Where an op's documentation leaves operand dtypes open, operands share the dtype of the first
//! (`x`, `a`, `q`): norm scales and biases, rope tables, attention keys and values, clip bounds,
//! expert weights. The exceptions are MoE router `logits` and selection `bias`, which may be any
//! compute float (routers commonly run in `f32` beside `bf16` experts), attention masks (`bool` or
//! any compute float), and indices (`i32` or `i64`; `GroupedMatMul` group sizes are `i64`). MoE
//! operands the routing mode does not read (`bias` outside the sigmoid and sqrt-softplus modes,
//! `token_ids`/`table` outside hash routing) must be absent, as must `gate` for ungated experts.
//!
//! Dimensions that must be equal (a matmul's contraction dimension, concatenated shapes) must be
//! provably equal: equal expressions, or expressions with the same polynomial normal form (so
//! `(seq-1)+1` equals `seq`). Constraints on sums and products (split sizes, reshape element
//! counts) are rejected only when the two sides provably differ and accepted when undecidable.
//!
//! ## Slicing symbolic axes
//!
//! A slice of an axis of known size follows ONNX's clamping exactly. On an axis of symbolic size
//! `d` the start is assumed to lie within the axis (the convention of [`Dim::Sub`]: a valid graph
//! never makes a difference negative), which makes these lengths exact:
//!
//! | start `s` | end `e`            | length (step 1)      |
//! |-----------|--------------------|----------------------|
//! | `s ≥ 0`   | `i64::MAX`         | `d - s`              |
//! | `s ≥ 0`   | `e ≥ 0`            | `min(d, e) - s` (0 if `e ≤ s`) |
//! | `s ≥ 0`   | `e < 0`            | `d - (s - e)`        |
//! | `s < 0`   | `i64::MAX`         | `-s`                 |
//! | `s < 0`   | `e < 0`            | `e - s` (0 if `e ≤ s`) |
//!
//! `i64::MIN` as a start means 0 and as an end means an empty slice; a step above 1 divides the
//! length, rounding up. Negative steps, and a negative start with a non-negative end, have no
//! exact form and are rejected.

use std::collections::BTreeMap;

use crate::dtype::DType;
use crate::graph::TensorType;
use crate::op::{BinaryOp, ExpertActivation, Op, RoutingMode, ScatterReduction, UnaryOp};
use crate::shape::{Dim, DimRelation, Shape, broadcast_shapes, normalize_axis};

/// Why an op cannot be applied to operands of the given types. Every variant names the op; those
/// about an operand give its index and role, and shape errors its shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferError {
    /// Too few or too many operand slots.
    #[error("{op} takes {expected} operands, got {got}")]
    OperandCount {
        /// The op's name.
        op: &'static str,
        /// The accepted counts, e.g. `2`, `2 to 3`, `at least 1`.
        expected: String,
        /// The number of operand slots given.
        got: usize,
    },
    /// A required operand is absent.
    #[error("{op} operand {index} (`{operand}`) is required but absent")]
    MissingOperand {
        /// The op's name.
        op: &'static str,
        /// Operand position.
        index: usize,
        /// Operand role.
        operand: &'static str,
    },
    /// An optional operand is present where the op's attributes forbid it.
    #[error("{op} operand {index} (`{operand}`) must be absent: {reason}")]
    UnexpectedOperand {
        /// The op's name.
        op: &'static str,
        /// Operand position.
        index: usize,
        /// Operand role.
        operand: &'static str,
        /// Why it must be absent.
        reason: String,
    },
    /// An operand has a dtype the op does not accept.
    #[error("{op} operand {index} (`{operand}`) has dtype {found}, expected {expected}")]
    DType {
        /// The op's name.
        op: &'static str,
        /// Operand position.
        index: usize,
        /// Operand role.
        operand: &'static str,
        /// The operand's dtype.
        found: DType,
        /// What was expected.
        expected: String,
    },
    /// An operand's shape does not fit the op or the other operands.
    #[error("{op} operand {index} (`{operand}`) of shape {shape}: {reason}")]
    Shape {
        /// The op's name.
        op: &'static str,
        /// Operand position.
        index: usize,
        /// Operand role.
        operand: &'static str,
        /// The operand's shape.
        shape: Shape,
        /// What is wrong with it.
        reason: String,
    },
    /// An attribute is invalid by itself or for the operand shapes.
    #[error("{op} attribute `{attribute}`: {reason}")]
    Attribute {
        /// The op's name.
        op: &'static str,
        /// The attribute.
        attribute: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result types of `op` applied to operands of these types (None = absent optional operand).
///
/// `inputs` has one entry per operand slot; trailing optional slots may be left out. The result
/// has [`Op::num_outputs`] types.
pub fn infer_types(op: &Op, inputs: &[Option<&TensorType>]) -> Result<Vec<TensorType>, InferError> {
    let args = Args {
        op,
        name: op.name(),
        inputs,
    };
    args.check_slots()?;
    let single = |ty: TensorType| vec![ty];
    Ok(match op {
        Op::Unary(u) => single(unary(&args, *u)?),
        Op::Binary(b) => single(binary(&args, *b)?),
        Op::Clip => single(clip(&args)?),
        Op::Where => single(where_(&args)?),
        Op::Cast { to } => single(TensorType::new(*to, args.get(0)?.shape.clone())),
        Op::MatMul => single(matmul(&args)?),
        Op::Gemm {
            trans_a, trans_b, ..
        } => single(gemm(&args, *trans_a, *trans_b)?),
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let x = args.expect_dtype(0, &COMPUTE_FLOATS)?;
            args.axis(0, *axis)?;
            single(x.clone())
        }
        Op::Reduce {
            axes, keep_dims, ..
        } => single(reduce(&args, axes, *keep_dims)?),
        Op::RmsNorm { axis, .. } | Op::LayerNorm { axis, .. } => single(norm(&args, *axis)?),
        Op::TopK { k, axis, .. } => topk(&args, *k, *axis)?,
        Op::Gather { axis } => single(gather(&args, *axis)?),
        Op::GatherElements { axis } => single(gather_elements(&args, *axis)?),
        Op::GatherNd { batch_dims } => single(gather_nd(&args, *batch_dims)?),
        Op::ScatterElements { axis, reduction } => {
            single(scatter_elements(&args, *axis, *reduction)?)
        }
        Op::ScatterNd { reduction } => single(scatter_nd(&args, *reduction)?),
        Op::Reshape { shape } => single(reshape(&args, shape)?),
        Op::Transpose { perm } => single(transpose(&args, perm)?),
        Op::Concat { axis } => single(concat(&args, *axis)?),
        Op::Split { axis, sizes } => split(&args, *axis, sizes)?,
        Op::Slice {
            axes,
            starts,
            ends,
            steps,
        } => single(slice(&args, axes, starts, ends, steps)?),
        Op::Squeeze { axes } => single(squeeze(&args, axes)?),
        Op::Unsqueeze { axes } => single(unsqueeze(&args, axes)?),
        Op::Expand { shape } => single(expand(&args, shape)?),
        Op::Range { len } => single(range(&args, len)?),
        Op::CumSum { axis, .. } => {
            let x = args.expect_dtype(0, &NUMERIC)?;
            args.axis(0, *axis)?;
            single(x.clone())
        }
        Op::ArgMax {
            axis, keep_dims, ..
        } => single(argmax(&args, *axis, *keep_dims)?),
        Op::Trilu { .. } => {
            let x = args.get(0)?;
            if x.shape.rank() < 2 {
                return Err(args.shape_error(0, "trilu needs rank at least 2"));
            }
            single(x.clone())
        }
        Op::Einsum { equation } => single(einsum(&args, equation)?),
        Op::Dequantize { block, to } => single(dequantize(&args, block, *to)?),
        Op::SwiGlu { split, .. } => single(swiglu(&args, *split)?),
        Op::Rope { .. } => single(rope(&args)?),
        Op::Attention { .. } => single(attention(&args)?),
        Op::GroupedMatMul => single(grouped_matmul(&args)?),
        Op::Moe {
            top_k,
            routing,
            activation,
        } => single(moe(&args, *top_k, routing, activation)?),
    })
}

/// The role of operand `index` of `op`, as the op's documentation names it.
pub fn operand_name(op: &Op, index: usize) -> &'static str {
    let names: &[&'static str] = match op {
        Op::Binary(_) | Op::MatMul => &["a", "b"],
        Op::Gemm { .. } => &["a", "b", "c"],
        Op::Clip => &["x", "lo", "hi"],
        Op::Where => &["cond", "a", "b"],
        Op::RmsNorm { .. } | Op::LayerNorm { .. } => &["x", "scale", "bias"],
        Op::Gather { .. } | Op::GatherElements { .. } | Op::GatherNd { .. } => &["x", "indices"],
        Op::ScatterElements { .. } | Op::ScatterNd { .. } => &["x", "indices", "updates"],
        Op::Range { .. } => &["start", "limit", "delta"],
        Op::Dequantize { .. } => &["x", "scale", "zero_point"],
        Op::SwiGlu { split: false, .. } => &["gate", "up"],
        Op::Rope { .. } => &["x", "cos", "sin"],
        Op::Attention { .. } => &["q", "k", "v", "mask"],
        Op::GroupedMatMul => &["x", "w", "group_sizes"],
        Op::Moe { .. } => &[
            "x",
            "logits",
            "gate",
            "up",
            "down",
            "bias",
            "token_ids",
            "table",
        ],
        _ => &["x"],
    };
    names.get(index).or(names.last()).copied().unwrap_or("x")
}

/// Whether operand slot `index` of `op` may be absent.
pub fn slot_is_optional(op: &Op, index: usize) -> bool {
    let (required, max) = op.arity();
    match op {
        Op::Moe { activation, .. } if index == 2 => !activation.is_gated(),
        _ => index >= required && max.is_some(),
    }
}

const COMPUTE_FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
const NUMERIC: [DType; 7] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I8,
    DType::U8,
    DType::I32,
    DType::I64,
];
const NUMERIC_OR_BOOL: [DType; 8] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::I8,
    DType::U8,
    DType::I32,
    DType::I64,
    DType::Bool,
];
const INDEX: [DType; 2] = [DType::I32, DType::I64];
const QUANTISED: [DType; 5] = [
    DType::F8E4M3FN,
    DType::F8E5M2,
    DType::F4E2M1,
    DType::I8,
    DType::U8,
];
const SCALES: [DType; 4] = [DType::F32, DType::F16, DType::BF16, DType::E8M0];

/// `f32, f16 or bf16`.
fn describe_dtypes(allowed: &[DType]) -> String {
    match allowed {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(|d| d.name()).collect();
            format!("{} or {last}", init.join(", "))
        }
    }
}

/// The operands of one op application, with error constructors that name the op and operand.
struct Args<'a> {
    op: &'a Op,
    name: &'static str,
    inputs: &'a [Option<&'a TensorType>],
}

impl<'a> Args<'a> {
    /// Checks the operand count and that every required slot is present.
    fn check_slots(&self) -> Result<(), InferError> {
        let (required, max) = self.op.arity();
        let got = self.inputs.len();
        if got < required || max.is_some_and(|m| got > m) {
            let expected = match max {
                Some(m) if m == required => m.to_string(),
                Some(m) => format!("{required} to {m}"),
                None => format!("at least {required}"),
            };
            return Err(InferError::OperandCount {
                op: self.name,
                expected,
                got,
            });
        }
        for (index, slot) in self.inputs.iter().enumerate() {
            if slot.is_none() && !slot_is_optional(self.op, index) {
                return Err(self.missing(index));
            }
        }
        Ok(())
    }

    fn operand(&self, index: usize) -> &'static str {
        operand_name(self.op, index)
    }

    fn missing(&self, index: usize) -> InferError {
        InferError::MissingOperand {
            op: self.name,
            index,
            operand: self.operand(index),
        }
    }

    /// A required operand.
    fn get(&self, index: usize) -> Result<&'a TensorType, InferError> {
        self.opt(index).ok_or_else(|| self.missing(index))
    }

    /// An optional operand.
    fn opt(&self, index: usize) -> Option<&'a TensorType> {
        self.inputs.get(index).copied().flatten()
    }

    fn shape_error(&self, index: usize, reason: impl Into<String>) -> InferError {
        InferError::Shape {
            op: self.name,
            index,
            operand: self.operand(index),
            shape: self.opt(index).map(|t| t.shape.clone()).unwrap_or_default(),
            reason: reason.into(),
        }
    }

    fn dtype_error(&self, index: usize, found: DType, expected: impl Into<String>) -> InferError {
        InferError::DType {
            op: self.name,
            index,
            operand: self.operand(index),
            found,
            expected: expected.into(),
        }
    }

    fn attribute_error(&self, attribute: &'static str, reason: impl Into<String>) -> InferError {
        InferError::Attribute {
            op: self.name,
            attribute,
            reason: reason.into(),
        }
    }

    fn unexpected(&self, index: usize, reason: impl Into<String>) -> InferError {
        InferError::UnexpectedOperand {
            op: self.name,
            index,
            operand: self.operand(index),
            reason: reason.into(),
        }
    }

    /// A required operand whose dtype is one of `allowed`.
    fn expect_dtype(&self, index: usize, allowed: &[DType]) -> Result<&'a TensorType, InferError> {
        let ty = self.get(index)?;
        if allowed.contains(&ty.dtype) {
            Ok(ty)
        } else {
            Err(self.dtype_error(index, ty.dtype, describe_dtypes(allowed)))
        }
    }

    /// A required operand whose dtype equals that of operand `reference`.
    fn expect_same_dtype(
        &self,
        index: usize,
        reference: usize,
    ) -> Result<&'a TensorType, InferError> {
        let ty = self.get(index)?;
        let want = self.get(reference)?.dtype;
        if ty.dtype == want {
            Ok(ty)
        } else {
            Err(self.dtype_error(
                index,
                ty.dtype,
                format!(
                    "{want}, the dtype of operand {reference} (`{}`)",
                    self.operand(reference)
                ),
            ))
        }
    }

    /// A required operand of rank `rank`.
    fn expect_rank(&self, index: usize, rank: usize) -> Result<&'a TensorType, InferError> {
        let ty = self.get(index)?;
        if ty.shape.rank() == rank {
            Ok(ty)
        } else {
            Err(self.shape_error(index, format!("expected rank {rank}")))
        }
    }

    /// `axis` normalised against the rank of operand `index`.
    fn axis(&self, index: usize, axis: i64) -> Result<usize, InferError> {
        let rank = self.get(index)?.shape.rank();
        normalize_axis(axis, rank).ok_or_else(|| {
            self.shape_error(
                index,
                format!("axis {axis} is out of range for rank {rank}"),
            )
        })
    }

    /// Distinct axes normalised against `rank`, the rank of operand `index` (or of the result,
    /// `of_result`).
    fn axes(
        &self,
        index: usize,
        axes: &[i64],
        rank: usize,
        of_result: bool,
    ) -> Result<Vec<usize>, InferError> {
        let whose = if of_result { "result rank" } else { "rank" };
        let mut out = Vec::with_capacity(axes.len());
        for &axis in axes {
            let a = normalize_axis(axis, rank).ok_or_else(|| {
                self.shape_error(
                    index,
                    format!("axis {axis} is out of range for {whose} {rank}"),
                )
            })?;
            if out.contains(&a) {
                return Err(self.attribute_error("axes", format!("axis {axis} is repeated")));
            }
            out.push(a);
        }
        Ok(out)
    }

    /// Broadcasts operand `index` with the shape `acc` of the operands before it.
    fn broadcast_into(&self, acc: &Shape, index: usize) -> Result<Shape, InferError> {
        let ty = self.get(index)?;
        broadcast_shapes(acc, &ty.shape)
            .ok_or_else(|| self.shape_error(index, format!("does not broadcast with {acc}")))
    }

    /// Checks that operand `index` broadcasts to exactly `target` (its own dims stretch, not
    /// the target's).
    fn expect_broadcasts_to(&self, index: usize, target: &Shape) -> Result<(), InferError> {
        let ty = self.get(index)?;
        match broadcast_shapes(&ty.shape, target) {
            Some(s) if s == *target => Ok(()),
            _ => Err(self.shape_error(index, format!("does not broadcast to {target}"))),
        }
    }

    /// Checks that dimension `dim` of operand `index` is provably equal to `want`.
    fn expect_dim(
        &self,
        index: usize,
        axis: usize,
        want: &Dim,
        what: impl FnOnce() -> String,
    ) -> Result<(), InferError> {
        let ty = self.get(index)?;
        match ty.shape.dims().get(axis) {
            Some(d) if provably_equal(d, want) => Ok(()),
            Some(d) => Err(self.shape_error(
                index,
                format!("axis {axis} has size {d} but {} is {want}", what()),
            )),
            None => Err(self.shape_error(index, format!("has no axis {axis}"))),
        }
    }
}

fn unary(args: &Args, u: UnaryOp) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    match u {
        UnaryOp::Not => Ok(args.expect_dtype(0, &[DType::Bool])?.clone()),
        UnaryOp::IsNaN | UnaryOp::IsInf => {
            if !x.dtype.is_float() {
                return Err(args.dtype_error(0, x.dtype, "a float type"));
            }
            Ok(TensorType::new(DType::Bool, x.shape.clone()))
        }
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Relu => {
            Ok(args.expect_dtype(0, &NUMERIC)?.clone())
        }
        _ => Ok(args.expect_dtype(0, &COMPUTE_FLOATS)?.clone()),
    }
}

fn binary(args: &Args, b: BinaryOp) -> Result<TensorType, InferError> {
    let allowed: &[DType] = if b.is_logical() {
        &[DType::Bool]
    } else if b == BinaryOp::Equal {
        &NUMERIC_OR_BOOL
    } else {
        &NUMERIC
    };
    let a = args.expect_dtype(0, allowed)?;
    args.expect_same_dtype(1, 0)?;
    let shape = args.broadcast_into(&a.shape, 1)?;
    let dtype = if b.is_comparison() {
        DType::Bool
    } else {
        a.dtype
    };
    Ok(TensorType::new(dtype, shape))
}

fn clip(args: &Args) -> Result<TensorType, InferError> {
    let x = args.expect_dtype(0, &NUMERIC)?;
    for index in 1..3 {
        if args.opt(index).is_some() {
            args.expect_same_dtype(index, 0)?;
            args.expect_rank(index, 0)?;
        }
    }
    Ok(x.clone())
}

fn where_(args: &Args) -> Result<TensorType, InferError> {
    let cond = args.expect_dtype(0, &[DType::Bool])?;
    let a = args.get(1)?;
    args.expect_same_dtype(2, 1)?;
    let shape = args.broadcast_into(&cond.shape, 1)?;
    let shape = args.broadcast_into(&shape, 2)?;
    Ok(TensorType::new(a.dtype, shape))
}

fn matmul(args: &Args) -> Result<TensorType, InferError> {
    let a = args.expect_dtype(0, &COMPUTE_FLOATS)?;
    let b = args.expect_same_dtype(1, 0)?;
    let rank_error = |index| args.shape_error(index, "matmul operands need rank at least 1");
    let (a_batch, m, ka) = match a.shape.dims() {
        [k] => (&[][..], None, k),
        [batch @ .., m, k] => (batch, Some(m), k),
        [] => return Err(rank_error(0)),
    };
    let (b_batch, kb, n) = match b.shape.dims() {
        [k] => (&[][..], k, None),
        [batch @ .., k, n] => (batch, k, Some(n)),
        [] => return Err(rank_error(1)),
    };
    if !provably_equal(ka, kb) {
        return Err(args.shape_error(
            1,
            format!(
                "contraction size {kb} does not match {ka} of operand 0 (`a`) of shape {}",
                a.shape
            ),
        ));
    }
    let batch =
        broadcast_shapes(&Shape(a_batch.to_vec()), &Shape(b_batch.to_vec())).ok_or_else(|| {
            args.shape_error(
                1,
                format!(
                    "batch dimensions do not broadcast with those of operand 0 (`a`) of shape {}",
                    a.shape
                ),
            )
        })?;
    let mut dims = batch.0;
    dims.extend(m.cloned());
    dims.extend(n.cloned());
    Ok(TensorType::new(a.dtype, Shape(dims)))
}

fn gemm(args: &Args, trans_a: bool, trans_b: bool) -> Result<TensorType, InferError> {
    args.expect_dtype(0, &COMPUTE_FLOATS)?;
    args.expect_same_dtype(1, 0)?;
    let a = args.expect_rank(0, 2)?;
    let b = args.expect_rank(1, 2)?;
    let (ad, bd) = (a.shape.dims(), b.shape.dims());
    let (m, k) = if trans_a {
        (&ad[1], &ad[0])
    } else {
        (&ad[0], &ad[1])
    };
    let (kb, n) = if trans_b {
        (&bd[1], &bd[0])
    } else {
        (&bd[0], &bd[1])
    };
    if !provably_equal(k, kb) {
        return Err(args.shape_error(
            1,
            format!(
                "contraction size {kb} does not match {k} of operand 0 (`a`) of shape {}",
                a.shape
            ),
        ));
    }
    let out = Shape(vec![m.clone(), n.clone()]);
    if args.opt(2).is_some() {
        args.expect_same_dtype(2, 0)?;
        args.expect_broadcasts_to(2, &out)?;
    }
    Ok(TensorType::new(a.dtype, out))
}

fn reduce(args: &Args, axes: &[i64], keep_dims: bool) -> Result<TensorType, InferError> {
    let x = args.expect_dtype(0, &NUMERIC)?;
    let rank = x.shape.rank();
    let reduced = if axes.is_empty() {
        (0..rank).collect()
    } else {
        args.axes(0, axes, rank, false)?
    };
    let dims = x
        .shape
        .dims()
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (reduced.contains(&i), keep_dims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect();
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

fn norm(args: &Args, axis: i64) -> Result<TensorType, InferError> {
    let x = args.expect_dtype(0, &COMPUTE_FLOATS)?;
    let first = args.axis(0, axis)?;
    let trailing = Shape(x.shape.dims()[first..].to_vec());
    for index in 1..3 {
        if args.opt(index).is_some() {
            args.expect_same_dtype(index, 0)?;
            args.expect_broadcasts_to(index, &trailing)?;
        }
    }
    Ok(x.clone())
}

fn topk(args: &Args, k: u64, axis: i64) -> Result<Vec<TensorType>, InferError> {
    let x = args.expect_dtype(0, &NUMERIC)?;
    let a = args.axis(0, axis)?;
    let size = &x.shape.dims()[a];
    if let Some(n) = size.as_known()
        && k > n
    {
        return Err(args.attribute_error(
            "k",
            format!(
                "k = {k} exceeds the size {n} of axis {a} of operand 0 (`x`) of shape {}",
                x.shape
            ),
        ));
    }
    let mut dims = x.shape.0.clone();
    dims[a] = Dim::Known(k);
    Ok(vec![
        TensorType::new(x.dtype, Shape(dims.clone())),
        TensorType::new(DType::I64, Shape(dims)),
    ])
}

fn gather(args: &Args, axis: i64) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    let a = args.axis(0, axis)?;
    let indices = args.expect_dtype(1, &INDEX)?;
    let xd = x.shape.dims();
    let mut dims = xd[..a].to_vec();
    dims.extend_from_slice(indices.shape.dims());
    dims.extend_from_slice(&xd[a + 1..]);
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

fn gather_elements(args: &Args, axis: i64) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    let a = args.axis(0, axis)?;
    args.expect_dtype(1, &INDEX)?;
    let indices = args.expect_rank(1, x.shape.rank())?;
    expect_indices_within(args, x, indices, a)?;
    Ok(TensorType::new(x.dtype, indices.shape.clone()))
}

/// Element-wise indices address `x` position by position off the indexed axis: there, a known
/// index dimension must not exceed the known dimension of `x` (ONNX's reference implementation
/// and PyTorch require this; symbolic dimensions are accepted).
fn expect_indices_within(
    args: &Args,
    x: &TensorType,
    indices: &TensorType,
    axis: usize,
) -> Result<(), InferError> {
    let dims = indices.shape.dims().iter().zip(x.shape.dims()).enumerate();
    for (i, (di, dx)) in dims.filter(|(i, _)| *i != axis) {
        if let (Some(n), Some(limit)) = (di.as_known(), dx.as_known())
            && n > limit
        {
            return Err(args.shape_error(
                1,
                format!(
                    "axis {i} has size {n}, more than {limit} of operand 0 (`x`) of shape {}",
                    x.shape
                ),
            ));
        }
    }
    Ok(())
}

/// The known last dimension `m` of ND indices, checked to lie in `1..=max`.
fn index_depth(args: &Args, max: usize) -> Result<usize, InferError> {
    let indices = args.get(1)?;
    let last = indices
        .shape
        .dims()
        .last()
        .ok_or_else(|| args.shape_error(1, "indices need rank at least 1"))?;
    let m = last.as_known().ok_or_else(|| {
        args.shape_error(1, "the last dimension of the indices must be a known size")
    })?;
    match usize::try_from(m) {
        Ok(m) if (1..=max).contains(&m) => Ok(m),
        _ => Err(args.shape_error(
            1,
            format!("the last dimension of the indices must lie in 1..={max}"),
        )),
    }
}

fn gather_nd(args: &Args, batch_dims: u64) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    let indices = args.expect_dtype(1, &INDEX)?;
    let (r, q) = (x.shape.rank(), indices.shape.rank());
    let b = usize::try_from(batch_dims)
        .ok()
        .filter(|&b| b < r.min(q))
        .ok_or_else(|| {
            args.attribute_error(
                "batch_dims",
                format!(
                    "{batch_dims} must be below the ranks of x {} and indices {}",
                    x.shape, indices.shape
                ),
            )
        })?;
    let m = index_depth(args, r - b)?;
    for axis in 0..b {
        args.expect_dim(1, axis, &x.shape.dims()[axis], || {
            format!("batch axis {axis} of operand 0 (`x`) of shape {}", x.shape)
        })?;
    }
    let mut dims = indices.shape.dims()[..q - 1].to_vec();
    dims.extend_from_slice(&x.shape.dims()[b + m..]);
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

fn expect_reduction_dtype<'a>(
    args: &Args<'a>,
    reduction: ScatterReduction,
) -> Result<&'a TensorType, InferError> {
    if reduction == ScatterReduction::None {
        args.get(0)
    } else {
        args.expect_dtype(0, &NUMERIC)
    }
}

fn scatter_elements(
    args: &Args,
    axis: i64,
    reduction: ScatterReduction,
) -> Result<TensorType, InferError> {
    let x = expect_reduction_dtype(args, reduction)?;
    let a = args.axis(0, axis)?;
    args.expect_dtype(1, &INDEX)?;
    let indices = args.expect_rank(1, x.shape.rank())?;
    expect_indices_within(args, x, indices, a)?;
    args.expect_same_dtype(2, 0)?;
    expect_same_shape(args, 2, 1, &indices.shape)?;
    Ok(x.clone())
}

fn scatter_nd(args: &Args, reduction: ScatterReduction) -> Result<TensorType, InferError> {
    let x = expect_reduction_dtype(args, reduction)?;
    let indices = args.expect_dtype(1, &INDEX)?;
    let m = index_depth(args, x.shape.rank())?;
    args.expect_same_dtype(2, 0)?;
    let q = indices.shape.rank();
    let mut want = indices.shape.dims()[..q - 1].to_vec();
    want.extend_from_slice(&x.shape.dims()[m..]);
    expect_same_shape(args, 2, 1, &Shape(want))?;
    Ok(x.clone())
}

/// Checks that operand `index` has shape `want` (derived from operand `from`), dim by dim.
fn expect_same_shape(
    args: &Args,
    index: usize,
    from: usize,
    want: &Shape,
) -> Result<(), InferError> {
    let ty = args.get(index)?;
    let same = ty.shape.rank() == want.rank()
        && ty
            .shape
            .dims()
            .iter()
            .zip(want.dims())
            .all(|(a, b)| provably_equal(a, b));
    if same {
        Ok(())
    } else {
        Err(args.shape_error(
            index,
            format!(
                "expected shape {want} from operand {from} (`{}`)",
                args.operand(from)
            ),
        ))
    }
}

fn reshape(args: &Args, shape: &[Dim]) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    let target = Shape(shape.to_vec());
    let (have, want) = (x.shape.numel(), target.numel());
    if have.relate(&want) == DimRelation::Different {
        return Err(args.shape_error(
            0,
            format!("has {have} elements but the target shape {target} has {want}"),
        ));
    }
    Ok(TensorType::new(x.dtype, target))
}

fn transpose(args: &Args, perm: &[u64]) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    let rank = x.shape.rank();
    let mut seen = vec![false; rank];
    let valid = perm.len() == rank
        && perm.iter().all(|&p| {
            usize::try_from(p)
                .ok()
                .and_then(|p| seen.get_mut(p))
                .is_some_and(|s| !std::mem::replace(s, true))
        });
    if !valid {
        return Err(args.attribute_error(
            "perm",
            format!(
                "{perm:?} is not a permutation of the {rank} axes of operand 0 (`x`) of shape {}",
                x.shape
            ),
        ));
    }
    let dims = perm
        .iter()
        .map(|&p| x.shape.dims()[p as usize].clone())
        .collect();
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

fn concat(args: &Args, axis: i64) -> Result<TensorType, InferError> {
    let first = args.get(0)?;
    let a = args.axis(0, axis)?;
    let mut dims = first.shape.0.clone();
    for index in 1..args.inputs.len() {
        args.expect_same_dtype(index, 0)?;
        let ty = args.expect_rank(index, first.shape.rank())?;
        for (i, d) in ty.shape.dims().iter().enumerate() {
            if i == a {
                dims[a] = dims[a].add(d);
            } else if !provably_equal(d, &first.shape.dims()[i]) {
                return Err(args.shape_error(
                    index,
                    format!(
                        "axis {i} differs from operand 0 of shape {} (only axis {a} is concatenated)",
                        first.shape
                    ),
                ));
            }
        }
    }
    Ok(TensorType::new(first.dtype, Shape(dims)))
}

fn split(args: &Args, axis: i64, sizes: &[Dim]) -> Result<Vec<TensorType>, InferError> {
    let x = args.get(0)?;
    let a = args.axis(0, axis)?;
    if sizes.is_empty() {
        return Err(args.attribute_error("sizes", "at least one piece is needed"));
    }
    let total = sizes.iter().fold(Dim::Known(0), |acc, s| acc.add(s));
    let size = &x.shape.dims()[a];
    if total.relate(size) == DimRelation::Different {
        return Err(args.shape_error(
            0,
            format!("axis {a} has size {size} but the pieces add up to {total}"),
        ));
    }
    Ok(sizes
        .iter()
        .map(|s| {
            let mut dims = x.shape.0.clone();
            dims[a] = s.clone();
            TensorType::new(x.dtype, Shape(dims))
        })
        .collect())
}

fn slice(
    args: &Args,
    axes: &[i64],
    starts: &[i64],
    ends: &[i64],
    steps: &[i64],
) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
        return Err(args.attribute_error(
            "axes",
            format!(
                "axes, starts, ends and steps have lengths {}, {}, {}, {}; they must be equal",
                axes.len(),
                starts.len(),
                ends.len(),
                steps.len()
            ),
        ));
    }
    let sliced = args.axes(0, axes, x.shape.rank(), false)?;
    let mut dims = x.shape.0.clone();
    for (i, &a) in sliced.iter().enumerate() {
        if steps[i] == 0 {
            return Err(args.attribute_error("steps", format!("the step of axis {a} is zero")));
        }
        dims[a] = match dims[a].as_known() {
            Some(d) => Dim::Known(known_slice_len(d, starts[i], ends[i], steps[i])),
            None => {
                symbolic_slice_len(&dims[a], starts[i], ends[i], steps[i]).map_err(|reason| {
                    args.shape_error(
                        0,
                        format!(
                            "axis {a} of symbolic size {}: {reason} (start {}, end {}, step {})",
                            dims[a], starts[i], ends[i], steps[i]
                        ),
                    )
                })?
            }
        };
    }
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

/// The ONNX slice length of an axis of known size `d`, with ONNX's clamping.
fn known_slice_len(d: u64, start: i64, end: i64, step: i64) -> u64 {
    if d == 0 {
        return 0;
    }
    let d = i128::from(d);
    let (start, end, step) = (i128::from(start), i128::from(end), i128::from(step));
    let start = if start < 0 { start + d } else { start };
    let end = if end < 0 { end + d } else { end };
    let len = if step > 0 {
        let (s, e) = (start.clamp(0, d), end.clamp(0, d));
        (e - s + step - 1) / step
    } else {
        let (s, e) = (start.clamp(0, d - 1), end.clamp(-1, d - 1));
        (s - e - step - 1) / -step
    };
    u64::try_from(len.max(0)).unwrap_or(0)
}

/// The slice length of an axis of symbolic size `d` (see the module documentation).
fn symbolic_slice_len(d: &Dim, start: i64, end: i64, step: i64) -> Result<Dim, String> {
    if step < 0 {
        return Err("a symbolic axis takes only positive steps".into());
    }
    let start = if start == i64::MIN { 0 } else { start };
    let known = |n: i64| Dim::Known(n.unsigned_abs());
    let len = match (start >= 0, end) {
        (_, i64::MIN) => Dim::Known(0),
        (true, i64::MAX) => d.sub(&known(start)),
        (true, e) if e >= 0 => {
            if e <= start {
                Dim::Known(0)
            } else {
                d.min(&known(e)).sub(&known(start))
            }
        }
        (true, e) => d.sub(&Dim::Known(start.unsigned_abs() + e.unsigned_abs())),
        (false, i64::MAX) => known(start),
        (false, e) if e < 0 => Dim::Known(e.saturating_sub(start).max(0).unsigned_abs()),
        (false, _) => {
            return Err("a negative start with a non-negative end has no exact size".into());
        }
    };
    Ok(if step == 1 {
        len
    } else {
        len.ceil_div(&known(step))
    })
}

fn squeeze(args: &Args, axes: &[i64]) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    let removed = args.axes(0, axes, x.shape.rank(), false)?;
    for &a in &removed {
        match &x.shape.dims()[a] {
            Dim::Known(1) => {}
            Dim::Known(n) => {
                return Err(args.shape_error(0, format!("axis {a} has size {n}, not 1")));
            }
            d => {
                return Err(args.shape_error(
                    0,
                    format!("axis {a} has symbolic size {d}, which is not known to be 1"),
                ));
            }
        }
    }
    let dims = x
        .shape
        .dims()
        .iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(i))
        .map(|(_, d)| d.clone())
        .collect();
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

fn unsqueeze(args: &Args, axes: &[i64]) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    let rank = x.shape.rank() + axes.len();
    let inserted = args.axes(0, axes, rank, true)?;
    let mut rest = x.shape.dims().iter();
    let dims = (0..rank)
        .map(|i| {
            if inserted.contains(&i) {
                Dim::Known(1)
            } else {
                rest.next().cloned().unwrap_or(Dim::Known(1))
            }
        })
        .collect();
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

fn expand(args: &Args, shape: &[Dim]) -> Result<TensorType, InferError> {
    let x = args.get(0)?;
    let target = Shape(shape.to_vec());
    let out = broadcast_shapes(&x.shape, &target).ok_or_else(|| {
        args.shape_error(
            0,
            format!("does not broadcast with the target shape {target}"),
        )
    })?;
    Ok(TensorType::new(x.dtype, out))
}

fn range(args: &Args, len: &Dim) -> Result<TensorType, InferError> {
    let start = args.expect_dtype(0, &NUMERIC)?;
    for index in 0..3 {
        args.expect_same_dtype(index, 0)?;
        args.expect_rank(index, 0)?;
    }
    Ok(TensorType::new(start.dtype, Shape(vec![len.clone()])))
}

fn argmax(args: &Args, axis: i64, keep_dims: bool) -> Result<TensorType, InferError> {
    let x = args.expect_dtype(0, &NUMERIC)?;
    let a = args.axis(0, axis)?;
    let mut dims = x.shape.0.clone();
    if keep_dims {
        dims[a] = Dim::Known(1);
    } else {
        dims.remove(a);
    }
    Ok(TensorType::new(DType::I64, Shape(dims)))
}

fn einsum(args: &Args, equation: &str) -> Result<TensorType, InferError> {
    let bad = |reason: String| args.attribute_error("equation", format!("`{equation}`: {reason}"));
    let compact: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = compact
        .split_once("->")
        .ok_or_else(|| bad("the output must be given explicitly after `->`".into()))?;
    if compact.contains('.') {
        return Err(bad("ellipsis broadcasting is not supported".into()));
    }
    if let Some(c) = compact
        .chars()
        .find(|c| !c.is_ascii_alphabetic() && !matches!(c, ',' | '-' | '>'))
    {
        return Err(bad(format!("`{c}` is not a subscript letter")));
    }
    if rhs.contains(['-', '>', ',']) {
        return Err(bad("the output must be a single term".into()));
    }
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != args.inputs.len() {
        return Err(bad(format!(
            "{} input terms for {} operands",
            terms.len(),
            args.inputs.len()
        )));
    }
    let first = args.expect_dtype(0, &NUMERIC)?;
    let mut sizes: BTreeMap<char, (Dim, usize)> = BTreeMap::new();
    for (index, term) in terms.iter().enumerate() {
        args.expect_same_dtype(index, 0)?;
        let ty = args.get(index)?;
        if term.chars().count() != ty.shape.rank() {
            return Err(args.shape_error(
                index,
                format!("the equation term `{term}` has {} axes", term.len()),
            ));
        }
        for (axis, (c, d)) in term.chars().zip(ty.shape.dims()).enumerate() {
            match sizes.get(&c) {
                Some((prev, prev_index)) if !provably_equal(prev, d) => {
                    return Err(args.shape_error(
                        index,
                        format!(
                            "axis {axis} (`{c}`) has size {d} but `{c}` has size {prev} in operand {prev_index}"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    sizes.insert(c, (d.clone(), index));
                }
            }
        }
    }
    let mut dims = Vec::with_capacity(rhs.len());
    for (i, c) in rhs.char_indices() {
        if rhs[..i].contains(c) {
            return Err(bad(format!("output subscript `{c}` is repeated")));
        }
        let (d, _) = sizes
            .get(&c)
            .ok_or_else(|| bad(format!("output subscript `{c}` appears in no input")))?;
        dims.push(d.clone());
    }
    Ok(TensorType::new(first.dtype, Shape(dims)))
}

fn dequantize(args: &Args, block: &[u64], to: DType) -> Result<TensorType, InferError> {
    let x = args.expect_dtype(0, &QUANTISED)?;
    if !COMPUTE_FLOATS.contains(&to) {
        return Err(args.attribute_error(
            "to",
            format!("{to} is not {}", describe_dtypes(&COMPUTE_FLOATS)),
        ));
    }
    let scale = args.expect_dtype(1, &SCALES)?;
    if block.is_empty() {
        args.expect_rank(1, 0)?;
    } else {
        if block.len() != x.shape.rank() {
            return Err(args.attribute_error(
                "block",
                format!(
                    "{block:?} needs one entry per axis of operand 0 (`x`) of shape {}",
                    x.shape
                ),
            ));
        }
        if block.contains(&0) {
            return Err(args.attribute_error("block", format!("{block:?} has a zero block")));
        }
        args.expect_rank(1, x.shape.rank())?;
        for (axis, (d, &b)) in x.shape.dims().iter().zip(block).enumerate() {
            let want = d.ceil_div(&Dim::Known(b));
            args.expect_dim(1, axis, &want, || {
                format!(
                    "ceildiv({d}, {b}) for axis {axis} of operand 0 (`x`) of shape {}",
                    x.shape
                )
            })?;
        }
    }
    if args.opt(2).is_some() {
        args.expect_same_dtype(2, 0)?;
        expect_same_shape(args, 2, 1, &scale.shape)?;
    }
    Ok(TensorType::new(to, x.shape.clone()))
}

fn swiglu(args: &Args, split: bool) -> Result<TensorType, InferError> {
    let x = args.expect_dtype(0, &COMPUTE_FLOATS)?;
    if !split {
        args.expect_same_dtype(1, 0)?;
        expect_same_shape(args, 1, 0, &x.shape)?;
        return Ok(x.clone());
    }
    let last = x
        .shape
        .dims()
        .last()
        .ok_or_else(|| args.shape_error(0, "swiglu needs rank at least 1"))?;
    let half = match last {
        Dim::Known(n) if !n.is_multiple_of(2) => {
            return Err(args.shape_error(0, format!("the last dimension {n} is odd")));
        }
        d => d.floor_div(&Dim::Known(2)),
    };
    let mut dims = x.shape.0.clone();
    let last_axis = dims.len() - 1;
    dims[last_axis] = half;
    Ok(TensorType::new(x.dtype, Shape(dims)))
}

fn rope(args: &Args) -> Result<TensorType, InferError> {
    let x = args.expect_dtype(0, &COMPUTE_FLOATS)?;
    let Some((d, leading)) = x.shape.dims().split_last() else {
        return Err(args.shape_error(0, "rope needs rank at least 1"));
    };
    args.expect_same_dtype(1, 0)?;
    args.expect_same_dtype(2, 0)?;
    let cos = args.get(1)?;
    let r = cos
        .shape
        .dims()
        .last()
        .ok_or_else(|| args.shape_error(1, "rope needs cos of rank at least 1"))?;
    expect_same_shape(args, 2, 1, &cos.shape)?;
    if let (Some(d), Some(r)) = (d.as_known(), r.as_known())
        && d < 2 * r
    {
        return Err(args.shape_error(
            0,
            format!("the last dimension {d} is smaller than 2·{r} rotated features"),
        ));
    }
    let mut target = leading.to_vec();
    target.push(r.clone());
    args.expect_broadcasts_to(1, &Shape(target))?;
    Ok(x.clone())
}

fn attention(args: &Args) -> Result<TensorType, InferError> {
    args.expect_dtype(0, &COMPUTE_FLOATS)?;
    let q = args.expect_rank(0, 4)?;
    for index in 1..3 {
        args.expect_same_dtype(index, 0)?;
        args.expect_rank(index, 4)?;
    }
    let (k, v) = (args.get(1)?, args.get(2)?);
    let [b, h, s, d] = q.shape.dims() else {
        return Err(args.shape_error(0, "expected rank 4"));
    };
    let [_, hk, t, _] = k.shape.dims() else {
        return Err(args.shape_error(1, "expected rank 4"));
    };
    let q_desc = || format!("the size in operand 0 (`q`) of shape {}", q.shape);
    let k_desc = || format!("the size in operand 1 (`k`) of shape {}", k.shape);
    args.expect_dim(1, 0, b, q_desc)?;
    args.expect_dim(1, 3, d, q_desc)?;
    args.expect_dim(2, 0, b, q_desc)?;
    args.expect_dim(2, 1, hk, k_desc)?;
    args.expect_dim(2, 2, t, k_desc)?;
    match (h.as_known(), hk.as_known()) {
        (_, Some(0)) => return Err(args.shape_error(1, "there are no key/value heads")),
        (Some(h), Some(hk)) if !h.is_multiple_of(hk) => {
            return Err(args.shape_error(
                1,
                format!(
                    "{hk} key/value heads do not divide the {h} query heads of operand 0 (`q`)"
                ),
            ));
        }
        _ => {}
    }
    if let Some(mask) = args.opt(3) {
        if mask.dtype != DType::Bool && !COMPUTE_FLOATS.contains(&mask.dtype) {
            return Err(args.dtype_error(
                3,
                mask.dtype,
                format!("bool or {}", describe_dtypes(&COMPUTE_FLOATS)),
            ));
        }
        let scores = Shape(vec![b.clone(), h.clone(), s.clone(), t.clone()]);
        args.expect_broadcasts_to(3, &scores)?;
    }
    let dv = v.shape.dims()[3].clone();
    Ok(TensorType::new(
        q.dtype,
        Shape(vec![b.clone(), h.clone(), s.clone(), dv]),
    ))
}

fn grouped_matmul(args: &Args) -> Result<TensorType, InferError> {
    args.expect_dtype(0, &COMPUTE_FLOATS)?;
    let x = args.expect_rank(0, 2)?;
    args.expect_same_dtype(1, 0)?;
    let w = args.expect_rank(1, 3)?;
    args.expect_dtype(2, &[DType::I64])?;
    args.expect_rank(2, 1)?;
    let x_desc = || format!("the size in operand 0 (`x`) of shape {}", x.shape);
    args.expect_dim(1, 2, &x.shape.dims()[1], x_desc)?;
    args.expect_dim(2, 0, &w.shape.dims()[0], || {
        format!("the expert count of operand 1 (`w`) of shape {}", w.shape)
    })?;
    Ok(TensorType::new(
        x.dtype,
        Shape(vec![x.shape.dims()[0].clone(), w.shape.dims()[1].clone()]),
    ))
}

fn moe(
    args: &Args,
    top_k: u32,
    routing: &RoutingMode,
    activation: &ExpertActivation,
) -> Result<TensorType, InferError> {
    args.expect_dtype(0, &COMPUTE_FLOATS)?;
    let x = args.expect_rank(0, 2)?;
    let [t, h] = x.shape.dims() else {
        return Err(args.shape_error(0, "expected rank 2"));
    };
    args.expect_dtype(1, &COMPUTE_FLOATS)?;
    let logits = args.expect_rank(1, 2)?;
    let x_desc = || format!("the size in operand 0 (`x`) of shape {}", x.shape);
    args.expect_dim(1, 0, t, x_desc)?;
    let e = &logits.shape.dims()[1];
    let e_desc = || {
        format!(
            "the expert count of operand 1 (`logits`) of shape {}",
            logits.shape
        )
    };

    if activation.is_gated() != args.opt(2).is_some() {
        return Err(if activation.is_gated() {
            args.missing(2)
        } else {
            args.unexpected(2, "the expert activation is ungated")
        });
    }
    args.expect_same_dtype(3, 0)?;
    let up = args.expect_rank(3, 3)?;
    args.expect_dim(3, 0, e, e_desc)?;
    args.expect_dim(3, 2, h, x_desc)?;
    let i = &up.shape.dims()[1];
    let up_desc = || {
        format!(
            "the intermediate size in operand 3 (`up`) of shape {}",
            up.shape
        )
    };
    if args.opt(2).is_some() {
        args.expect_same_dtype(2, 0)?;
        expect_same_shape(args, 2, 3, &up.shape)?;
    }
    args.expect_same_dtype(4, 0)?;
    args.expect_rank(4, 3)?;
    args.expect_dim(4, 0, e, e_desc)?;
    args.expect_dim(4, 1, h, x_desc)?;
    args.expect_dim(4, 2, i, up_desc)?;

    let uses_bias = matches!(
        routing,
        RoutingMode::SigmoidGroupLimited { .. } | RoutingMode::SqrtSoftplus { .. }
    );
    if args.opt(5).is_some() {
        if !uses_bias {
            return Err(args.unexpected(5, "the routing mode has no selection bias"));
        }
        args.expect_dtype(5, &COMPUTE_FLOATS)?;
        args.expect_rank(5, 1)?;
        args.expect_dim(5, 0, e, e_desc)?;
    }
    let hashed = matches!(routing, RoutingMode::Hash { .. });
    for index in [6, 7] {
        match (hashed, args.opt(index).is_some()) {
            (true, false) => return Err(args.missing(index)),
            (false, true) => {
                return Err(args.unexpected(index, "only hash routing reads it"));
            }
            _ => {}
        }
    }
    if hashed {
        args.expect_dtype(6, &INDEX)?;
        args.expect_rank(6, 1)?;
        args.expect_dim(6, 0, t, x_desc)?;
        args.expect_dtype(7, &INDEX)?;
        args.expect_rank(7, 2)?;
        args.expect_dim(7, 1, &Dim::Known(u64::from(top_k)), || "top_k".into())?;
    }

    if top_k == 0 {
        return Err(args.attribute_error("top_k", "at least one expert per token is needed"));
    }
    if let Some(experts) = e.as_known() {
        if u64::from(top_k) > experts {
            return Err(args.attribute_error(
                "top_k",
                format!("{top_k} exceeds the {experts} experts of operand 1 (`logits`)"),
            ));
        }
        if let RoutingMode::SigmoidGroupLimited {
            n_group,
            topk_group,
            ..
        } = routing
        {
            check_groups(args, experts, top_k, *n_group, *topk_group)?;
        }
    }
    Ok(x.clone())
}

/// Group-limited routing: `n_group` divides the experts into groups of at least two (each group
/// is scored by its top two), `topk_group ≤ n_group` groups are kept, and they hold at least
/// `top_k` experts.
fn check_groups(
    args: &Args,
    experts: u64,
    top_k: u32,
    n_group: u32,
    topk_group: u32,
) -> Result<(), InferError> {
    let (n_group, topk_group) = (u64::from(n_group), u64::from(topk_group));
    if n_group == 0 || !experts.is_multiple_of(n_group) {
        return Err(args.attribute_error(
            "n_group",
            format!("{n_group} groups do not divide {experts} experts"),
        ));
    }
    let per_group = experts / n_group;
    if n_group > 1 && per_group < 2 {
        return Err(args.attribute_error(
            "n_group",
            format!("groups of {per_group} expert cannot be scored by their top two"),
        ));
    }
    if topk_group == 0 || topk_group > n_group || topk_group * per_group < u64::from(top_k) {
        return Err(args.attribute_error(
            "topk_group",
            format!(
                "{topk_group} of {n_group} groups of {per_group} experts cannot supply {top_k} experts"
            ),
        ));
    }
    Ok(())
}

/// Whether two dimensions are equal for every binding of their symbols.
fn provably_equal(a: &Dim, b: &Dim) -> bool {
    a.relate(b) == DimRelation::Equal
}
