//! Elementwise ops over equally shaped operands on the Vector unit: unary ops, same-shape
//! binary ops and `SwiGlu` with separate gate and up operands, each one tiled chain; `Pow`
//! (module `pow`) and `SwiGlu` of one concatenated operand, whose halves are split first.

mod pow;

use cubevec_ir::kernel::VecOp;
use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::{Dim, Op};

use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, TensorShape};
use crate::tile::vector::{ChainArg, ChainStep, ElementwiseChain, plan_chain};

pub use pow::lower_pow;

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
            let (steps, output) = unary_steps(*u).ok_or_else(|| {
                LowerError::Unsupported(format!("no vector lowering of {}", ctx.op.name()))
            })?;
            (
                ElementwiseChain {
                    name: ctx.name.to_string(),
                    len,
                    dtype: out.dtype,
                    inputs: 1,
                    steps,
                    output,
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
    Ok(Lowering::single(KernelCall::new(
        chosen.kernel,
        chosen.cost,
        args,
    )))
}

/// `temps[2] = erf(|x| · scale)` for input 0, with `temps[0] = |x|` kept and `temps[1]`,
/// `temps[3]` as scratch: Abramowitz–Stegun 7.1.26 (absolute error below 1.5e-7),
/// `erf(z) = 1 - t·(a1 + t·(a2 + … + t·a5)) · exp(-z²)`, `t = 1 / (1 + p·z)`.
fn erf_of_abs(scale: f64) -> Vec<ChainStep> {
    use ChainArg::{Imm, Input, Temp};
    const P: f64 = 0.327_591_1;
    const A: [f64; 5] = [
        0.254_829_592,
        -0.284_496_736,
        1.421_413_741,
        -1.453_152_027,
        1.061_405_429,
    ];
    let x = Input(0);
    let mut s = vec![
        chain_step(VecOp::Abs, 0, vec![x]),
        chain_step(VecOp::Muls, 1, vec![Temp(0), Imm(P * scale)]),
        chain_step(VecOp::Adds, 1, vec![Temp(1), Imm(1.0)]),
        chain_step(VecOp::Reciprocal, 1, vec![Temp(1)]),
        chain_step(VecOp::Muls, 2, vec![Temp(1), Imm(A[4])]),
    ];
    for a in A[..4].iter().rev() {
        s.push(chain_step(VecOp::Adds, 2, vec![Temp(2), Imm(*a)]));
        s.push(chain_step(VecOp::Mul, 2, vec![Temp(2), Temp(1)]));
    }
    s.extend([
        chain_step(VecOp::Mul, 3, vec![x, x]),
        chain_step(VecOp::Muls, 3, vec![Temp(3), Imm(-scale * scale)]),
        chain_step(VecOp::Exp, 3, vec![Temp(3)]),
        chain_step(VecOp::Mul, 2, vec![Temp(2), Temp(3)]),
        chain_step(VecOp::Muls, 2, vec![Temp(2), Imm(-1.0)]),
        chain_step(VecOp::Adds, 2, vec![Temp(2), Imm(1.0)]),
    ]);
    s
}

/// Exact GELU `x · Φ(x)` = `(x + |x| · erf(|x| / √2)) / 2` ([`erf_of_abs`]); the result is
/// temporary 2.
pub(crate) fn gelu() -> (Vec<ChainStep>, usize) {
    use ChainArg::{Imm, Input, Temp};
    let mut s = erf_of_abs(std::f64::consts::FRAC_1_SQRT_2);
    s.extend([
        chain_step(VecOp::Mul, 2, vec![Temp(2), Temp(0)]),
        chain_step(VecOp::Add, 2, vec![Temp(2), Input(0)]),
        chain_step(VecOp::Muls, 2, vec![Temp(2), Imm(0.5)]),
    ]);
    (s, 2)
}

/// `erf(x)` = `sign(x) · erf(|x|)` ([`erf_of_abs`]), the sign as `x / max(|x|, 1e-30)` (0 at
/// 0); the result is temporary 2.
fn erf() -> (Vec<ChainStep>, usize) {
    use ChainArg::{Imm, Input, Temp};
    let mut s = erf_of_abs(1.0);
    s.extend([
        chain_step(VecOp::Maxs, 0, vec![Temp(0), Imm(1e-30)]),
        chain_step(VecOp::Div, 0, vec![Input(0), Temp(0)]),
        chain_step(VecOp::Mul, 2, vec![Temp(2), Temp(0)]),
    ]);
    (s, 2)
}

/// `temps[dst] = op(srcs)`.
fn chain_step(op: VecOp, dst: usize, srcs: Vec<ChainArg>) -> ChainStep {
    ChainStep { op, dst, srcs }
}

/// Beyond ±10, tanh rounds to ±1 in every float type the vector unit computes.
const TANH_SATURATES: f64 = 10.0;

/// `temps[dst] = tanh(arg)` with `temps[scratch]` as scratch: `(1 - e) / (1 + e)` with
/// `e = exp(-2x)`, `x` clamped to ±10 (where tanh already rounds to ±1) so `e` stays finite.
fn tanh(dst: usize, scratch: usize, arg: ChainArg) -> Vec<ChainStep> {
    use ChainArg::{Imm, Temp};
    vec![
        chain_step(VecOp::Maxs, dst, vec![arg, Imm(-TANH_SATURATES)]),
        chain_step(VecOp::Mins, dst, vec![Temp(dst), Imm(TANH_SATURATES)]),
        chain_step(VecOp::Muls, dst, vec![Temp(dst), Imm(-2.0)]),
        chain_step(VecOp::Exp, dst, vec![Temp(dst)]),
        chain_step(VecOp::Muls, scratch, vec![Temp(dst), Imm(-1.0)]),
        chain_step(VecOp::Adds, scratch, vec![Temp(scratch), Imm(1.0)]),
        chain_step(VecOp::Adds, dst, vec![Temp(dst), Imm(1.0)]),
        chain_step(VecOp::Div, dst, vec![Temp(scratch), Temp(dst)]),
    ]
}

/// The chain of a unary op and the temporary holding its result.
pub(crate) fn unary_steps(op: UnaryOp) -> Option<(Vec<ChainStep>, usize)> {
    use ChainArg::{Imm, Input, Temp};
    let step = |op, srcs| ChainStep { op, dst: 0, srcs };
    let one = |op| Some((vec![step(op, vec![Input(0)])], 0));
    match op {
        UnaryOp::Exp => one(VecOp::Exp),
        UnaryOp::Log => one(VecOp::Ln),
        UnaryOp::Abs => one(VecOp::Abs),
        UnaryOp::Sqrt => one(VecOp::Sqrt),
        UnaryOp::Rsqrt => one(VecOp::Rsqrt),
        UnaryOp::Reciprocal => one(VecOp::Reciprocal),
        UnaryOp::Relu => one(VecOp::Relu),
        UnaryOp::Floor => one(VecOp::Floor),
        UnaryOp::Ceil => one(VecOp::Ceil),
        UnaryOp::Round => one(VecOp::Rint),
        UnaryOp::Neg => Some((vec![step(VecOp::Muls, vec![Input(0), Imm(-1.0)])], 0)),
        UnaryOp::Tanh => Some((tanh(0, 1, Input(0)), 0)),
        UnaryOp::Gelu => Some(gelu()),
        UnaryOp::Erf => Some(erf()),
        UnaryOp::GeluTanh => {
            // x · (1 + tanh(√(2/π) · x · (1 + 0.044715 x²))) / 2.
            let x = Input(0);
            let mut steps = vec![
                chain_step(VecOp::Mul, 1, vec![x, x]),
                chain_step(VecOp::Muls, 1, vec![Temp(1), Imm(0.044_715)]),
                chain_step(VecOp::Adds, 1, vec![Temp(1), Imm(1.0)]),
                chain_step(VecOp::Mul, 1, vec![Temp(1), x]),
                chain_step(
                    VecOp::Muls,
                    1,
                    vec![Temp(1), Imm((2.0 / std::f64::consts::PI).sqrt())],
                ),
            ];
            steps.extend(tanh(1, 0, Temp(1)));
            steps.extend([
                chain_step(VecOp::Adds, 1, vec![Temp(1), Imm(1.0)]),
                chain_step(VecOp::Mul, 1, vec![Temp(1), x]),
                chain_step(VecOp::Muls, 1, vec![Temp(1), Imm(0.5)]),
            ]);
            Some((steps, 1))
        }
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
            Some((steps, 0))
        }
        _ => None,
    }
}

pub(crate) fn binary_op(op: BinaryOp) -> Option<VecOp> {
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

/// Rebinds the launches of a sub-lowering: its operand `i` becomes `operands[i]`, its result
/// `j` becomes `results[j]`.
pub(crate) fn rebind(
    lowering: Lowering,
    operands: &[ArgRef],
    results: &[ArgRef],
) -> Vec<KernelCall> {
    lowering
        .calls
        .into_iter()
        .map(|mut call| {
            for arg in &mut call.args {
                *arg = match *arg {
                    ArgRef::Operand(i) => operands[i],
                    ArgRef::Result(j) => results[j],
                    scratch => scratch,
                };
            }
            call
        })
        .collect()
}

/// Appends scratch tensor `name` to `out` and returns its reference.
pub(crate) fn add_scratch(out: &mut Lowering, name: &str, tensor: TensorShape) -> ArgRef {
    out.scratch.push(Scratch {
        name: name.to_string(),
        tensor,
    });
    ArgRef::Scratch(out.scratch.len() - 1)
}

/// Runs `lower` on a sub-node `op` of `ctx` from `inputs` to `outputs` and appends its launches
/// to `out`, bound to `operands` and `results`. The sub-lowering must be kernels without
/// scratch of its own.
pub(crate) fn append_sub(
    ctx: &OpContext,
    out: &mut Lowering,
    suffix: &str,
    op: &Op,
    shapes: (Vec<TensorShape>, Vec<TensorShape>),
    binds: (&[ArgRef], &[ArgRef]),
    lower: fn(&OpContext) -> Result<Lowering, LowerError>,
) -> Result<(), LowerError> {
    let name = format!("{}_{suffix}", ctx.name);
    let sub = OpContext {
        name: &name,
        op,
        inputs: shapes.0.into_iter().map(Some).collect(),
        outputs: shapes.1,
        target: ctx.target,
    };
    let lowering = lower(&sub)?;
    if lowering.view || !lowering.scratch.is_empty() {
        return Err(LowerError::Unsupported(format!(
            "`{}`: the {suffix} step is a view or needs scratch",
            ctx.name
        )));
    }
    out.calls.extend(rebind(lowering, binds.0, binds.1));
    Ok(())
}

/// `SwiGlu` of one operand `x [..., 2n]`: a split of the last axis into `gate` and `up`
/// scratch tensors `[..., n]`, then the two-operand SwiGLU (clamped when the op has a limit).
pub fn lower_split_swiglu(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::SwiGlu {
        split: true,
        limit_bits,
    } = ctx.op
    else {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not a one-operand SwiGLU",
            ctx.name
        )));
    };
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    let rank = x.shape.len();
    let half = y.shape.last().copied().unwrap_or(0);
    if rank == 0 || y.shape.len() != rank || x.shape[rank - 1] != 2 * half || x.dtype != y.dtype {
        return Err(LowerError::Unsupported(format!(
            "`{}`: {:?} does not split into two halves of {:?}",
            ctx.name, x.shape, y.shape
        )));
    }
    let mut out = Lowering::default();
    let gate = add_scratch(&mut out, "gate", y.clone());
    let up = add_scratch(&mut out, "up", y.clone());
    let split = Op::Split {
        axis: -1,
        sizes: vec![Dim::Known(half); 2],
    };
    append_sub(
        ctx,
        &mut out,
        "halves",
        &split,
        (vec![x.clone()], vec![y.clone(), y.clone()]),
        (&[ArgRef::Operand(0)], &[gate, up]),
        super::movement::lower_split,
    )?;
    let pair = Op::SwiGlu {
        split: false,
        limit_bits: *limit_bits,
    };
    let lower = if limit_bits.is_some() {
        super::misc::lower_clamped_swiglu
    } else {
        lower_elementwise
    };
    append_sub(
        ctx,
        &mut out,
        "act",
        &pair,
        (vec![y.clone(), y.clone()], vec![y.clone()]),
        (&[gate, up], &[ArgRef::Result(0)]),
        lower,
    )?;
    Ok(out)
}
