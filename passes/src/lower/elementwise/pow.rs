//! `Pow` of floats on the Vector unit, following the graph interpreter (`powf`, rounded to the
//! element type).
//!
//! An exponent known when planning (an inline constant whose elements are all equal) picks a
//! short chain: `2` → `x·x`, `0.5` → `sqrt(x)`, `1` → `x`, `0` → `1`, `-1` → `1/x`; another
//! integer `n` → `exp(n·ln|x|)` (even) or `x·exp((n-1)·ln|x|)` (odd, reciprocal for negative `n`),
//! so negative bases keep their sign; any other value → `exp(y·ln x)` (a negative base gives
//! NaN, like `powf`). A tensor exponent runs `exp(y·ln|x|)` times a sign found on the vector
//! unit: `d = y - 2·round(y/2)` (rounding by adding and subtracting `1.5·2²³`) is `0` for even,
//! `±1` for odd and anything else for non-integer `y`; `q = |d|·[x < 0]`; the factor
//! `1 - 2q + exp(ln(q² - q))` is `1`, `-1`, or NaN (`ln` of a negative number) exactly as
//! `powf` wants. Differences from `powf`, all at special values: `sqrt(-0) = -0` and
//! `sqrt(-∞) = NaN` on the `0.5` chain; on the tensor chain a zero or infinite base with a zero
//! exponent gives NaN (not 1), a negative zero base gives `+0`/`+∞`, infinite exponents give
//! NaN, and the parity of exponents of magnitude ≥ 2²³ is not exact.
//! Operands whose shape differs from the result's are broadcast into scratch first.

use cubevec_ir::kernel::VecOp;
use cubevec_ir::op::BinaryOp;
use cubevec_ir::tensor::Tensor;
use cubevec_ir::{Dim, Op};

use super::{add_scratch, append_sub};
use crate::lower::{ArgRef, KernelCall, LowerError, Lowering, OpContext};
use crate::tile::vector::ChainArg::{Imm, Input, Temp};
use crate::tile::vector::{ChainArg, ChainStep, ElementwiseChain, plan_chain};

/// `1.5·2²³`: adding and subtracting it rounds an f32 of magnitude below 2²² to an integer.
const ROUNDER: f64 = 12_582_912.0;
/// `2¹²⁷`: twice scaling by it takes any nonzero f32 magnitude to at least 1.
const HUGE: f64 = 1.701_411_834_604_692_3e38;

fn step(op: VecOp, dst: usize, srcs: Vec<ChainArg>) -> ChainStep {
    ChainStep { op, dst, srcs }
}

/// The value every element of `t` has, if they are all equal.
fn splat(t: &Tensor) -> Option<f64> {
    let first = t.get_f64(0);
    (t.numel() > 0 && (1..t.numel()).all(|i| t.get_f64(i).to_bits() == first.to_bits()))
        .then_some(first)
}

/// The chain of `x^y` for an exponent `y` known when planning (one input, `x`).
fn constant_steps(y: f64) -> Vec<ChainStep> {
    let x = Input(0);
    let magnitude = |n: f64| {
        vec![
            step(VecOp::Abs, 0, vec![x]),
            step(VecOp::Ln, 0, vec![Temp(0)]),
            step(VecOp::Muls, 0, vec![Temp(0), Imm(n)]),
            step(VecOp::Exp, 0, vec![Temp(0)]),
        ]
    };
    match y {
        2.0 => vec![step(VecOp::Mul, 0, vec![x, x])],
        0.5 => vec![step(VecOp::Sqrt, 0, vec![x])],
        1.0 => vec![step(VecOp::Muls, 0, vec![x, Imm(1.0)])],
        0.0 => vec![step(VecOp::Duplicate, 0, vec![Imm(1.0)])],
        -1.0 => vec![step(VecOp::Reciprocal, 0, vec![x])],
        _ if y.fract() == 0.0 && y.rem_euclid(2.0) == 0.0 => magnitude(y),
        _ if y.fract() == 0.0 => {
            let mut steps = magnitude(y.abs() - 1.0);
            steps.push(step(VecOp::Mul, 0, vec![Temp(0), x]));
            if y < 0.0 {
                steps.push(step(VecOp::Reciprocal, 0, vec![Temp(0)]));
            }
            steps
        }
        _ => vec![
            step(VecOp::Ln, 0, vec![x]),
            step(VecOp::Muls, 0, vec![Temp(0), Imm(y)]),
            step(VecOp::Exp, 0, vec![Temp(0)]),
        ],
    }
}

/// The chain of `x^y` for a tensor exponent (inputs `x`, `y` of one shape; see the module docs).
fn tensor_steps() -> Vec<ChainStep> {
    let (x, y) = (Input(0), Input(1));
    vec![
        // |x|^y
        step(VecOp::Abs, 0, vec![x]),
        step(VecOp::Ln, 0, vec![Temp(0)]),
        step(VecOp::Mul, 0, vec![Temp(0), y]),
        step(VecOp::Exp, 0, vec![Temp(0)]),
        // |d| = |y - 2·round(y/2)|
        step(VecOp::Muls, 1, vec![y, Imm(0.5)]),
        step(VecOp::Adds, 1, vec![Temp(1), Imm(ROUNDER)]),
        step(VecOp::Adds, 1, vec![Temp(1), Imm(-ROUNDER)]),
        step(VecOp::Muls, 1, vec![Temp(1), Imm(-2.0)]),
        step(VecOp::Add, 1, vec![Temp(1), y]),
        step(VecOp::Abs, 1, vec![Temp(1)]),
        // [x < 0]
        step(VecOp::Muls, 2, vec![x, Imm(-HUGE)]),
        step(VecOp::Muls, 2, vec![Temp(2), Imm(HUGE)]),
        step(VecOp::Mins, 2, vec![Temp(2), Imm(1.0)]),
        step(VecOp::Maxs, 2, vec![Temp(2), Imm(0.0)]),
        // q = |d|·[x < 0]; exp(ln(q² - q)) is 0, or NaN for a fractional q
        step(VecOp::Mul, 1, vec![Temp(1), Temp(2)]),
        step(VecOp::Mul, 2, vec![Temp(1), Temp(1)]),
        step(VecOp::Sub, 2, vec![Temp(2), Temp(1)]),
        step(VecOp::Ln, 2, vec![Temp(2)]),
        step(VecOp::Exp, 2, vec![Temp(2)]),
        // sign = 1 - 2q + that
        step(VecOp::Muls, 1, vec![Temp(1), Imm(-2.0)]),
        step(VecOp::Adds, 1, vec![Temp(1), Imm(1.0)]),
        step(VecOp::Add, 1, vec![Temp(1), Temp(2)]),
        step(VecOp::Mul, 0, vec![Temp(0), Temp(1)]),
    ]
}

/// `Pow(x, y)` with broadcasting; `exponent` is the value of `y` when it is known while planning
/// (see the module docs).
pub fn lower_pow(ctx: &OpContext, exponent: Option<&Tensor>) -> Result<Lowering, LowerError> {
    if ctx.op != &Op::Binary(BinaryOp::Pow) {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not a pow",
            ctx.name
        )));
    }
    let (x, y, out) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    if !x.dtype.is_float() || x.dtype != y.dtype || out.dtype != x.dtype {
        return Err(LowerError::Unsupported(format!(
            "pow `{}`: only float operands and results of one type have a vector lowering",
            ctx.name
        )));
    }
    let known = exponent.and_then(splat);
    let (steps, operands) = match known {
        Some(value) => (constant_steps(value), 1),
        None => (tensor_steps(), 2),
    };
    let mut lowering = Lowering::default();
    let mut args = Vec::new();
    for (i, t) in [x, y].into_iter().enumerate().take(operands) {
        if t.elements() == out.elements() {
            args.push(ArgRef::Operand(i));
            continue;
        }
        let full = add_scratch(&mut lowering, &format!("operand{i}"), out.clone());
        let expand = Op::Expand {
            shape: out.shape.iter().map(|&d| Dim::Known(d)).collect(),
        };
        append_sub(
            ctx,
            &mut lowering,
            &format!("broadcast{i}"),
            &expand,
            (vec![t.clone()], vec![out.clone()]),
            (&[ArgRef::Operand(i)], &[full]),
            crate::lower::movement::lower_expand,
        )?;
        args.push(full);
    }
    let chain = ElementwiseChain {
        name: ctx.name.to_string(),
        len: out.elements(),
        dtype: out.dtype,
        inputs: operands,
        steps,
        output: 0,
    };
    let chosen = plan_chain(&chain, ctx.target)?;
    args.push(ArgRef::Result(0));
    lowering
        .calls
        .push(KernelCall::new(chosen.kernel, chosen.cost, args));
    Ok(lowering)
}
