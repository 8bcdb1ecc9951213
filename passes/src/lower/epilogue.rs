//! A GEMM (`MatMul` or `Gemm`) with the elementwise nodes that follow it, as one MIX kernel
//! (see [`crate::tile::epilogue`]).
//!
//! The partitioner finds the chains ([`EpilogueNode`]s: unary ops, binary ops whose other
//! operand is a whole `[m, n]` tensor, an `[n]` row or an `[m, 1]` column, and casts) and asks
//! [`lower_gemm_epilogue`] for the fused launch; [`fusible_unary`], [`fusible_binary`] and
//! [`fusible_cast`] say which ops a chain may hold.

use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::{DType, Op};

use super::elementwise::{binary_op, unary_steps};
use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, TensorShape, linear};
use crate::tile::epilogue::{Epilogue, EpilogueOperand};
use crate::tile::gemm::{GemmProblem, Halves, plan};
use crate::tile::vector::{ChainArg, ChainStep, ElementwiseChain};

/// One elementwise node applied to the running value of a GEMM epilogue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EpilogueNode {
    /// `silu(gate) · up` of two products of the same A, as the first node: the GEMM's B stacks
    /// the gate and up matrices along N (`up: None`, `SwiGlu` of one operand), or context
    /// input `up` is the up projection's B (`SwiGlu` of two GEMMs).
    SwiGlu {
        /// The up projection's B, when it is not stacked with the gate's.
        up: Option<usize>,
    },
    /// A unary op of the running value.
    Unary(UnaryOp),
    /// A cast of the running value from `from` to `to`: exact widenings (to f32) anywhere, any
    /// other cast between f32, f16 and bf16 as the last node (the store rounds).
    Cast {
        /// The running value's dtype before.
        from: DType,
        /// Its dtype after.
        to: DType,
    },
    /// A binary op of the running value and operand `operand` of the fused context.
    Binary {
        /// The op.
        op: BinaryOp,
        /// Index of the other operand in the fused context's inputs.
        operand: usize,
        /// The running value is the op's first operand (`x - b`, not `b - x`).
        product_first: bool,
    },
}

/// Whether an epilogue may apply unary op `op`.
pub fn fusible_unary(op: UnaryOp) -> bool {
    unary_steps(op).is_some()
}

/// Whether an epilogue may apply binary op `op`.
pub fn fusible_binary(op: BinaryOp) -> bool {
    binary_op(op).is_some()
}

/// Whether an epilogue may cast from `from` to `to`: both f32, f16 or bf16.
pub fn fusible_cast(from: DType, to: DType) -> bool {
    let float = |d: DType| matches!(d, DType::F32 | DType::F16 | DType::BF16);
    float(from) && float(to)
}

/// Whether the cast from `from` to `to` keeps every value (f16 and bf16 widened to f32): such a
/// cast may come anywhere in a chain, which computes in f32.
pub fn widens_exactly(from: DType, to: DType) -> bool {
    from == to || to == DType::F32
}

/// The fused launch of a GEMM and its epilogue: `ctx` is the GEMM's context with the other
/// operands of `nodes` appended to its inputs and the chain's last result as its one result.
/// The product keeps its dtype (the result's, or the first cast's source) between the GEMM and
/// the chain, as unfused.
pub fn lower_gemm_epilogue(
    ctx: &OpContext,
    nodes: &[EpilogueNode],
) -> Result<Lowering, LowerError> {
    let (mut problem, bias) = linear::gemm_problem(ctx)?;
    let first_cast = nodes.iter().find_map(|node| match node {
        EpilogueNode::Cast { from, .. } => Some(*from),
        _ => None,
    });
    problem.output = first_cast.unwrap_or(problem.output);
    let up = match nodes.first() {
        Some(EpilogueNode::SwiGlu { up }) => {
            pair_halves(ctx, &mut problem, *up, bias.is_some())?;
            *up
        }
        _ => None,
    };
    let out = ctx.output(0)?;
    let (m, n) = (problem.total_m(), problem.n);
    if out.elements() != m * n || out.shape.last() != Some(&n) {
        return Err(LowerError::Unsupported(format!(
            "`{}`: the epilogue result {:?} is not the {m} × {n} product",
            ctx.name, out.shape
        )));
    }
    let mut builder = ChainBuilder::new(problem.output);
    if let Some(c) = bias {
        builder.binary(ctx, BinaryOp::Add, c, true)?;
    }
    for (i, node) in nodes.iter().enumerate() {
        match node {
            EpilogueNode::SwiGlu { .. } => builder.swiglu()?,
            EpilogueNode::Unary(op) => builder.unary(*op)?,
            EpilogueNode::Cast { from, to } => {
                builder.cast(ctx, (*from, *to), i + 1 == nodes.len())?
            }
            EpilogueNode::Binary {
                op,
                operand,
                product_first,
            } => builder.binary(ctx, *op, *operand, *product_first)?,
        }
    }
    if nodes.is_empty() && bias.is_none() {
        return Err(LowerError::Unsupported(format!(
            "`{}`: an empty epilogue",
            ctx.name
        )));
    }
    if builder.dtype != out.dtype {
        return Err(LowerError::Unsupported(format!(
            "`{}`: the epilogue computes {}, not the result's {}",
            ctx.name, builder.dtype, out.dtype
        )));
    }
    let operands: Vec<usize> = builder.operands.iter().map(|&(i, ..)| i).collect();
    problem.epilogue = Some(builder.finish());
    let chosen = plan(&problem, ctx.target)?;
    let (dtype, ws) = chosen.workspace().unwrap_or((problem.output, Vec::new()));
    let mut args = vec![ArgRef::Operand(0), ArgRef::Operand(1), ArgRef::Result(0)];
    args.extend(up.map(ArgRef::Operand));
    args.extend(operands.into_iter().map(ArgRef::Operand));
    args.push(ArgRef::Scratch(0));
    Ok(Lowering {
        scratch: vec![Scratch {
            name: "workspace".into(),
            tensor: TensorShape::new(dtype, ws),
        }],
        calls: vec![KernelCall::new(chosen.kernel, chosen.cost, args)],
        view: false,
    })
}

/// Makes `problem` the paired GEMM of a SwiGLU epilogue: B's two stacked halves, or B and
/// context input `up`.
fn pair_halves(
    ctx: &OpContext,
    problem: &mut GemmProblem,
    up: Option<usize>,
    bias: bool,
) -> Result<(), LowerError> {
    let refuse = |why: &str| {
        Err(LowerError::Unsupported(format!(
            "`{}`: no SwiGLU epilogue: {why}",
            ctx.name
        )))
    };
    if bias || problem.groups.len() != 1 {
        return refuse("the GEMM has a bias or several groups");
    }
    match up {
        None if problem.n.is_multiple_of(2) => {
            problem.n /= 2;
            problem.halves = Some(Halves::Stacked);
        }
        None => return refuse("the product has an odd number of columns"),
        Some(i) if ctx.input(i)? == ctx.input(1)? => problem.halves = Some(Halves::Separate),
        Some(_) => return refuse("the up projection's weight differs from the gate's in shape"),
    }
    Ok(())
}

/// Builds the epilogue's steps node by node.
struct ChainBuilder {
    steps: Vec<ChainStep>,
    /// The product is paired (a SwiGLU came first).
    paired: bool,
    /// The running value: the product (input 0) or a temporary.
    running: Option<usize>,
    /// The running value's dtype in the graph (the chain computes in f32).
    dtype: DType,
    /// Context input index, kind and dtype of each epilogue operand, in parameter order.
    operands: Vec<(usize, EpilogueOperand, DType)>,
}

impl ChainBuilder {
    /// A chain over a product of `dtype`.
    fn new(dtype: DType) -> ChainBuilder {
        ChainBuilder {
            steps: Vec::new(),
            paired: false,
            running: None,
            dtype,
            operands: Vec::new(),
        }
    }

    fn current(&self) -> ChainArg {
        self.running.map_or(ChainArg::Input(0), ChainArg::Temp)
    }

    /// The first temporary the next node may write: above the running value's.
    fn base(&self) -> usize {
        self.running.map_or(0, |t| t + 1)
    }

    /// `silu(gate) · up` of the paired product's halves (inputs 0 and 1).
    fn swiglu(&mut self) -> Result<(), LowerError> {
        if self.paired || !self.steps.is_empty() {
            return Err(LowerError::Unsupported(
                "a SwiGLU epilogue must come first".into(),
            ));
        }
        self.paired = true;
        let chain = ElementwiseChain::swiglu("", 1, DType::F32);
        self.steps = chain.steps;
        self.running = Some(chain.output);
        Ok(())
    }

    fn unary(&mut self, op: UnaryOp) -> Result<(), LowerError> {
        let (steps, result) = unary_steps(op).ok_or_else(|| {
            LowerError::Unsupported(format!("no vector lowering of {op:?} in an epilogue"))
        })?;
        let (x, base) = (self.current(), self.base());
        let shift = |a: &ChainArg| match *a {
            ChainArg::Input(0) => x,
            ChainArg::Temp(j) => ChainArg::Temp(base + j),
            other => other,
        };
        self.steps.extend(steps.iter().map(|s| ChainStep {
            op: s.op,
            dst: base + s.dst,
            srcs: s.srcs.iter().map(shift).collect(),
        }));
        self.running = Some(base + result);
        Ok(())
    }

    fn binary(
        &mut self,
        ctx: &OpContext,
        op: BinaryOp,
        operand: usize,
        product_first: bool,
    ) -> Result<(), LowerError> {
        let vec_op = binary_op(op).ok_or_else(|| {
            LowerError::Unsupported(format!("no vector lowering of {op:?} in an epilogue"))
        })?;
        let other = ctx.input(operand)?;
        let out = ctx.output(0)?;
        let Some(kind) = EpilogueOperand::of(&other.shape, &out.shape) else {
            return Err(LowerError::Unsupported(format!(
                "`{}`: an epilogue operand of shape {:?} is not the product's shape, a row or a \
                 column",
                ctx.name, other.shape
            )));
        };
        if other.dtype != self.dtype {
            return Err(LowerError::Unsupported(format!(
                "`{}`: an epilogue operand of type {} with a {} product",
                ctx.name, other.dtype, self.dtype
            )));
        }
        let index = match self.operands.iter().position(|&(i, ..)| i == operand) {
            Some(p) => p,
            None => {
                self.operands.push((operand, kind, other.dtype));
                self.operands.len() - 1
            }
        };
        let first = 1 + usize::from(self.paired);
        let (x, y) = (self.current(), ChainArg::Input(first + index));
        let dst = self.base();
        self.steps.push(ChainStep {
            op: vec_op,
            dst,
            srcs: if product_first {
                vec![x, y]
            } else {
                vec![y, x]
            },
        });
        self.running = Some(dst);
        Ok(())
    }

    /// A cast of the running value: an exact widening adds no step (the chain is in f32 already),
    /// any other cast must be the `last` node, whose rounding the store does.
    fn cast(
        &mut self,
        ctx: &OpContext,
        (from, to): (DType, DType),
        last: bool,
    ) -> Result<(), LowerError> {
        if from != self.dtype || !fusible_cast(from, to) || !(last || widens_exactly(from, to)) {
            return Err(LowerError::Unsupported(format!(
                "`{}`: no epilogue cast from {from} to {to} after a {} value{}",
                ctx.name,
                self.dtype,
                if last { "" } else { " before other nodes" }
            )));
        }
        self.dtype = to;
        Ok(())
    }

    /// The epilogue: with nothing but casts, no steps (the store converts the product).
    fn finish(self) -> Epilogue {
        Epilogue {
            paired: self.paired,
            operands: self.operands.iter().map(|&(_, k, d)| (k, d)).collect(),
            steps: self.steps,
            output: self.running.unwrap_or(0),
            result: self.dtype,
        }
    }
}

/// Whether `op` is a GEMM an epilogue can follow.
pub fn fusible_gemm(op: &Op) -> bool {
    matches!(op, Op::MatMul | Op::Gemm { .. })
}
