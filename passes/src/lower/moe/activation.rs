//! The expert activation between the up (and gate) projections and the down projection, as an
//! elementwise chain over the grouped rows ([`crate::tile::vector`]).
//!
//! `Relu` needs no chain: the up GEMM applies it in its Fixpipe.

use cubevec_ir::DType;
use cubevec_ir::kernel::VecOp;
use cubevec_ir::op::ExpertActivation;

use crate::lower::elementwise::gelu;
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
        ExpertActivation::Gelu => {
            let (steps, output) = gelu();
            (1, steps, output)
        }
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
