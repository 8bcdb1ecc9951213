//! The expert activation between the up (and gate) projections and the down projection, as an
//! elementwise chain over the grouped rows ([`crate::tile::vector`]).
//!
//! `Relu` needs no chain: the up GEMM applies it in its Fixpipe.

use cubevec_ir::DType;
use cubevec_ir::kernel::VecOp;
use cubevec_ir::op::ExpertActivation;

use crate::tile::vector::{ChainArg, ChainStep, ElementwiseChain};

use ChainArg::{Imm, Input, Temp};

fn step(op: VecOp, dst: usize, srcs: Vec<ChainArg>) -> ChainStep {
    ChainStep { op, dst, srcs }
}

/// `temps[dst] = arg / (1 + exp(-arg))`, using `temps[dst]` as the only scratch.
fn silu(dst: usize, arg: ChainArg) -> Vec<ChainStep> {
    vec![
        step(VecOp::Muls, dst, vec![arg, Imm(-1.0)]),
        step(VecOp::Exp, dst, vec![Temp(dst)]),
        step(VecOp::Adds, dst, vec![Temp(dst), Imm(1.0)]),
        step(VecOp::Div, dst, vec![arg, Temp(dst)]),
    ]
}

/// Exact GELU `x · Φ(x)` = `(x + |x| · erf(|x| / √2)) / 2`, with erf from Abramowitz–Stegun
/// 7.1.26 (absolute error below 1.5e-7): `erf(z) = 1 - t·(a1 + t·(a2 + … + t·a5)) · exp(-z²)`,
/// `t = 1 / (1 + p·z)`.
fn gelu() -> Vec<ChainStep> {
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
        step(VecOp::Abs, 0, vec![x]),
        step(
            VecOp::Muls,
            1,
            vec![Temp(0), Imm(P * std::f64::consts::FRAC_1_SQRT_2)],
        ),
        step(VecOp::Adds, 1, vec![Temp(1), Imm(1.0)]),
        step(VecOp::Reciprocal, 1, vec![Temp(1)]),
        step(VecOp::Muls, 2, vec![Temp(1), Imm(A[4])]),
    ];
    for a in A[..4].iter().rev() {
        s.push(step(VecOp::Adds, 2, vec![Temp(2), Imm(*a)]));
        s.push(step(VecOp::Mul, 2, vec![Temp(2), Temp(1)]));
    }
    s.extend([
        step(VecOp::Mul, 3, vec![x, x]),
        step(VecOp::Muls, 3, vec![Temp(3), Imm(-0.5)]),
        step(VecOp::Exp, 3, vec![Temp(3)]),
        step(VecOp::Mul, 2, vec![Temp(2), Temp(3)]),
        step(VecOp::Muls, 2, vec![Temp(2), Imm(-1.0)]),
        step(VecOp::Adds, 2, vec![Temp(2), Imm(1.0)]),
        step(VecOp::Mul, 2, vec![Temp(2), Temp(0)]),
        step(VecOp::Add, 2, vec![Temp(2), x]),
        step(VecOp::Muls, 2, vec![Temp(2), Imm(0.5)]),
    ]);
    s
}

/// The chain for `activation` over `len` elements: inputs `gate, up` for gated activations,
/// `up` otherwise. `None` for `Relu`, which the up GEMM applies.
pub fn chain(
    name: &str,
    len: u64,
    dtype: DType,
    activation: &ExpertActivation,
) -> Option<ElementwiseChain> {
    let (inputs, steps, output) = match activation {
        ExpertActivation::SwiGlu => {
            return Some(ElementwiseChain::swiglu(name, len, dtype));
        }
        ExpertActivation::SwiGluClamped { limit_bits } => {
            let l = f64::from(f32::from_bits(*limit_bits));
            let mut s = vec![step(VecOp::Mins, 1, vec![Input(0), Imm(l)])];
            s.extend(silu(0, Temp(1)));
            s.extend([
                step(VecOp::Maxs, 1, vec![Input(1), Imm(-l)]),
                step(VecOp::Mins, 1, vec![Temp(1), Imm(l)]),
                step(VecOp::Mul, 0, vec![Temp(0), Temp(1)]),
            ]);
            (2, s, 0)
        }
        ExpertActivation::Silu => (1, silu(0, Input(0)), 0),
        ExpertActivation::Gelu => (1, gelu(), 2),
        ExpertActivation::Relu => return None,
    };
    Some(ElementwiseChain {
        name: name.to_string(),
        len,
        dtype,
        inputs,
        steps,
        output,
    })
}
