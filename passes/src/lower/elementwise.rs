//! Elementwise ops over equally shaped operands on the Vector unit: unary ops, same-shape
//! binary ops and `SwiGlu` with separate gate and up operands, each one tiled chain.

use cubevec_ir::Op;
use cubevec_ir::kernel::VecOp;
use cubevec_ir::op::{BinaryOp, UnaryOp};

use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext};
use crate::tile::vector::{ChainArg, ChainStep, ElementwiseChain, plan_chain};

/// Whether [`lower_elementwise`] handles this node: a mapped unary op, a binary op whose
/// operands both have the result's shape, or a two-operand `SwiGlu` without a clamp.
pub fn handles(ctx: &OpContext) -> bool {
    match ctx.op {
        Op::Unary(u) => unary_steps(*u).is_some(),
        Op::Binary(b) => {
            binary_op(*b).is_some()
                && ctx.outputs.first().is_some_and(|out| {
                    (0..2).all(|i| {
                        ctx.inputs
                            .get(i)
                            .and_then(Option::as_ref)
                            .is_some_and(|t| t.shape == out.shape)
                    })
                })
        }
        Op::SwiGlu {
            split: false,
            limit_bits: None,
        } => true,
        _ => false,
    }
}

/// One tiled elementwise chain for the node (see [`handles`]).
pub fn lower_elementwise(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let out = ctx.output(0)?;
    let len = out.elements();
    let (chain, inputs) = match ctx.op {
        Op::Unary(u) => {
            let steps = unary_steps(*u).ok_or_else(|| {
                LowerError::Unsupported(format!("no vector lowering of {}", ctx.op.name()))
            })?;
            (
                ElementwiseChain {
                    name: ctx.name.to_string(),
                    len,
                    dtype: out.dtype,
                    inputs: 1,
                    steps,
                    output: 0,
                },
                1,
            )
        }
        Op::Binary(b) => {
            let op = binary_op(*b).ok_or_else(|| {
                LowerError::Unsupported(format!("no vector lowering of {}", ctx.op.name()))
            })?;
            (
                ElementwiseChain {
                    name: ctx.name.to_string(),
                    len,
                    dtype: out.dtype,
                    inputs: 2,
                    steps: vec![ChainStep {
                        op,
                        dst: 0,
                        srcs: vec![ChainArg::Input(0), ChainArg::Input(1)],
                    }],
                    output: 0,
                },
                2,
            )
        }
        Op::SwiGlu {
            split: false,
            limit_bits: None,
        } => (ElementwiseChain::swiglu(ctx.name, len, out.dtype), 2),
        other => {
            return Err(LowerError::Unsupported(format!(
                "`{}` is not an elementwise chain",
                other.name()
            )));
        }
    };
    let chosen = plan_chain(&chain, ctx.target)?;
    let mut args: Vec<ArgRef> = (0..inputs).map(ArgRef::Operand).collect();
    args.push(ArgRef::Result(0));
    Ok(Lowering::single(KernelCall {
        kernel: chosen.kernel,
        cost: chosen.cost,
        args,
        assumptions: Vec::new(),
    }))
}

fn unary_steps(op: UnaryOp) -> Option<Vec<ChainStep>> {
    use ChainArg::{Imm, Input, Temp};
    let step = |op, srcs| ChainStep { op, dst: 0, srcs };
    let one = |op| Some(vec![step(op, vec![Input(0)])]);
    match op {
        UnaryOp::Exp => one(VecOp::Exp),
        UnaryOp::Log => one(VecOp::Ln),
        UnaryOp::Abs => one(VecOp::Abs),
        UnaryOp::Sqrt => one(VecOp::Sqrt),
        UnaryOp::Rsqrt => one(VecOp::Rsqrt),
        UnaryOp::Reciprocal => one(VecOp::Reciprocal),
        UnaryOp::Relu => one(VecOp::Relu),
        UnaryOp::Neg => Some(vec![step(VecOp::Muls, vec![Input(0), Imm(-1.0)])]),
        UnaryOp::Sigmoid | UnaryOp::Silu => {
            let mut steps = vec![
                step(VecOp::Muls, vec![Input(0), Imm(-1.0)]),
                step(VecOp::Exp, vec![Temp(0)]),
                step(VecOp::Adds, vec![Temp(0), Imm(1.0)]),
            ];
            if op == UnaryOp::Sigmoid {
                steps.push(step(VecOp::Reciprocal, vec![Temp(0)]));
            } else {
                steps.push(step(VecOp::Div, vec![Input(0), Temp(0)]));
            }
            Some(steps)
        }
        _ => None,
    }
}

fn binary_op(op: BinaryOp) -> Option<VecOp> {
    Some(match op {
        BinaryOp::Add => VecOp::Add,
        BinaryOp::Sub => VecOp::Sub,
        BinaryOp::Mul => VecOp::Mul,
        BinaryOp::Div => VecOp::Div,
        BinaryOp::Max => VecOp::Max,
        BinaryOp::Min => VecOp::Min,
        _ => return None,
    })
}
