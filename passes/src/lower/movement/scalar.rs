//! Element-at-a-time kernels on the scalar unit: comparisons, logical ops, `IsNaN`, `IsInf` and
//! `Where`.
//!
//! The kernel IR has no vector compare or select, so these ops go through the scalar unit,
//! which is slow but exact. Each block owns chunks of the flattened output; for every element
//! the operands (broadcast numpy-style) are read from GM with `LoadScalar`:
//!
//! * comparisons and logical ops compute 0 or 1 with integer expressions and store it into a
//!   bool UB row with `SetValue`, copied out per chunk; casts from integers and bools store the
//!   value itself (`SetValue` converts it to the row's type), casts from floats to bool store
//!   whether the bit pattern is a non-zero number, `IsNaN` and `IsInf` compare the magnitude
//!   bits with those of infinity. Float operands arrive as their bit
//!   patterns, which [`order_key`] maps to integers ordered like the values (−0 equals +0; NaN
//!   compares like a large value, not unordered);
//! * `Where` copies the chosen element itself: a one-element `DataCopyPad` from `a` or `b`
//!   (guarded by a loop of `cond` or `1 − cond` trips) into its own 32-byte UB block, and the
//!   chunk's blocks go back to GM as one `DataCopyPad` of one-element chunks, so any element
//!   type is moved bit for bit.

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufferPlanner, Expr, Kernel, Param, ParamRole, Pipe, ScalarSrc, Stmt, VecArg,
};
use cubevec_ir::op::BinaryOp;
use cubevec_ir::target::Target;

use super::build::{
    bytes, c, call, deal, digits, dot, for_, gm, handoff, let_, pitch, set, slice, tile, ub, v,
    vector_work, wait,
};
use crate::lower::{ArgRef, KernelCall, LowerError};

/// What an element-at-a-time kernel computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScalarOp {
    /// A comparison or logical binary op (bool result).
    Binary(BinaryOp),
    /// Logical not (bool operand and result).
    Not,
    /// Conversion from an integer or bool (to any integer, bool or f32/f16/bf16), or from a
    /// float to bool.
    Cast,
    /// `cond ? a : b`.
    Where,
    /// Whether a float is NaN (bool result).
    IsNan,
    /// Whether a float is ±∞ (bool result).
    IsInf,
}

/// An element-at-a-time kernel over operands broadcast to `out`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Elementwise {
    /// Kernel name.
    pub name: String,
    /// The op.
    pub op: ScalarOp,
    /// Operands: dtype, elements and strides over the output axes (0 where broadcast).
    pub operands: Vec<(DType, u64, Vec<u64>)>,
    /// Output dtype.
    pub out: DType,
    /// Output shape.
    pub shape: Vec<u64>,
}

/// Integer expression ordered like the float whose `bits`-wide pattern `u` holds (sign
/// magnitude to offset binary, with −0 folded onto +0).
fn order_key(u: Expr, bits: u64) -> Expr {
    let half = 1u64 << (bits - 1);
    let full = half * 2;
    // ±0 → 0, everything else unchanged.
    let u = u.clone().mul(u.rem(c(half)).min(c(1)));
    let sign = u.clone().div(c(half));
    let positive = c(1).sub(sign.clone()).mul(u.clone().add(c(half)));
    let negative = sign.mul(c(full - 1).sub(u));
    positive.add(negative)
}

/// The comparable integer for an operand element `x` of `dtype`.
fn key(x: Expr, dtype: DType) -> Expr {
    if dtype.is_float() {
        order_key(x, dtype.bits() as u64)
    } else {
        x
    }
}

/// `a < b` as 0 or 1.
fn less(a: Expr, b: Expr) -> Expr {
    b.sub(a).max(c(0)).min(c(1))
}

/// The 0/1 result of `op` on the operand values `a`, `b` of `dtype`.
fn binary(op: BinaryOp, a: Expr, b: Expr, dtype: DType) -> Result<Expr, String> {
    let (ka, kb) = (key(a.clone(), dtype), key(b.clone(), dtype));
    Ok(match op {
        BinaryOp::Less => less(ka, kb),
        BinaryOp::Greater => less(kb, ka),
        BinaryOp::LessOrEqual => c(1).sub(less(kb, ka)),
        BinaryOp::GreaterOrEqual => c(1).sub(less(ka, kb)),
        BinaryOp::Equal => c(1).sub(less(ka.clone(), kb.clone()).add(less(kb, ka))),
        BinaryOp::And => a.mul(b),
        BinaryOp::Or => a.add(b).min(c(1)),
        BinaryOp::Xor => a.add(b).rem(c(2)),
        other => return Err(format!("{other:?} is not a comparison or logical op")),
    })
}

/// The bit pattern of +∞ in `dtype`.
fn infinity_bits(dtype: DType) -> Result<u64, LowerError> {
    match dtype {
        DType::F32 => Ok(0x7f80_0000),
        DType::F16 => Ok(0x7c00),
        DType::BF16 => Ok(0x7f80),
        other => Err(LowerError::Unsupported(format!(
            "no infinity in {other:?} for the scalar unit"
        ))),
    }
}

impl Elementwise {
    fn elements(&self) -> u64 {
        self.shape.iter().product()
    }

    fn check(&self) -> Result<(), LowerError> {
        let fail = |m: String| Err(LowerError::Unsupported(format!("`{}`: {m}", self.name)));
        let (arity, out_ok) = match self.op {
            ScalarOp::Binary(_) => (2, self.out == DType::Bool),
            ScalarOp::Not => (1, self.out == DType::Bool),
            ScalarOp::IsNan | ScalarOp::IsInf => (
                1,
                self.out == DType::Bool && self.operands.first().is_some_and(|o| o.0.is_float()),
            ),
            ScalarOp::Cast => (
                1,
                self.operands.first().is_some_and(|o| !o.0.is_float()) || self.out == DType::Bool,
            ),
            ScalarOp::Where => (
                3,
                self.operands.len() == 3
                    && self.operands[0].0 == DType::Bool
                    && self.operands[1].0 == self.out
                    && self.operands[2].0 == self.out,
            ),
        };
        if self.operands.len() != arity || !out_ok || self.elements() == 0 {
            return fail("operands do not fit the op".into());
        }
        let scalar_type = |d: DType| {
            d.is_int() || d == DType::Bool || matches!(d, DType::F32 | DType::F16 | DType::BF16)
        };
        if self.op != ScalarOp::Where && !self.operands.iter().all(|o| scalar_type(o.0)) {
            return fail("the scalar unit compares integers, bools and f32/f16/bf16".into());
        }
        if let ScalarOp::Binary(op) = self.op {
            binary(op, c(0), c(0), self.operands[0].0).map_err(LowerError::Unsupported)?;
        }
        Ok(())
    }
}

/// Reads operand `i` at output element `e0 + j` into variable `x{i}`.
fn load(e: &Elementwise, i: usize) -> Stmt {
    let (_, elements, strides) = &e.operands[i];
    let index = dot(&digits(v("e0").add(v("j")), &e.shape), strides);
    Stmt::LoadScalar {
        var: format!("x{i}"),
        src: ScalarSrc::Gm { param: i, index },
        planned: if i == 0 && e.op == ScalarOp::Where {
            v("j").rem(c(2))
        } else {
            v("j").rem(c(*elements))
        },
    }
}

fn build(e: &Elementwise, chunk: u64, target: &Target) -> Result<Kernel, LowerError> {
    e.check()?;
    let n_out = e.elements();
    let mut params: Vec<Param> = e
        .operands
        .iter()
        .enumerate()
        .map(|(i, (dtype, elements, _))| Param {
            name: format!("in{i}"),
            dtype: *dtype,
            shape: vec![*elements, 1],
            role: ParamRole::Input,
        })
        .collect();
    let out = params.len();
    let mut planner = BufferPlanner::new();
    let (buf, to) = if e.op == ScalarOp::Where {
        params.push(Param {
            name: "out".into(),
            dtype: e.out,
            shape: vec![n_out, 1],
            role: ParamRole::Output,
        });
        let b = planner.add(target, ub("slots", e.out, chunk, pitch(1, e.out), 2));
        (b, Pipe::Mte2)
    } else {
        params.push(Param {
            name: "out".into(),
            dtype: e.out,
            shape: vec![1, n_out],
            role: ParamRole::Output,
        });
        let b = planner.add(target, ub("bits", e.out, 1, pitch(chunk, e.out), 2));
        (b, Pipe::S)
    };
    let buffers = planner.finish();
    let units = n_out.div_ceil(chunk);
    let blocks = units.clamp(1, target.cores.aiv as u64);
    let (first, trips) = deal(units, blocks, 0);
    let s = || v("s");
    let mut element = Vec::new();
    let (region, out_region) = match e.op {
        ScalarOp::Where => {
            element.push(load(e, 0));
            for (i, trips) in [(1, v("x0")), (2, c(1).sub(v("x0")))] {
                let index = dot(&digits(v("e0").add(v("j")), &e.shape), &e.operands[i].2);
                element.push(for_(
                    "z",
                    trips,
                    false,
                    vec![Stmt::CopyIn {
                        dst: tile(buf, s(), (v("j"), c(0)), (c(1), c(1))),
                        src: gm(i, (index, c(0)), (c(1), c(1))),
                    }],
                ));
            }
            (
                tile(buf, s(), (c(0), c(0)), (v("n"), c(1))),
                gm(out, (v("e0"), c(0)), (v("n"), c(1))),
            )
        }
        ScalarOp::Not
        | ScalarOp::Binary(_)
        | ScalarOp::Cast
        | ScalarOp::IsNan
        | ScalarOp::IsInf => {
            element.push(load(e, 0));
            let from = e.operands[0].0;
            let value = match e.op {
                ScalarOp::Binary(op) => {
                    element.push(load(e, 1));
                    binary(op, v("x0"), v("x1"), from).map_err(LowerError::Unsupported)?
                }
                ScalarOp::Cast if from.is_float() => {
                    // Non-zero unless the pattern is ±0.
                    v("x0").rem(c(1u64 << (from.bits() - 1))).min(c(1))
                }
                ScalarOp::Not => c(1).sub(v("x0")),
                ScalarOp::IsNan | ScalarOp::IsInf => {
                    let magnitude = v("x0").rem(c(1u64 << (from.bits() - 1)));
                    let inf = c(infinity_bits(from)?);
                    let above = less(inf.clone(), magnitude.clone());
                    if e.op == ScalarOp::IsNan {
                        above
                    } else {
                        c(1).sub(above.add(less(magnitude, inf)))
                    }
                }
                _ => v("x0"),
            };
            element.push(Stmt::SetValue {
                dst: slice(buf, s(), v("j")),
                value: VecArg::Scalar(value),
            });
            (
                tile(buf, s(), (c(0), c(0)), (c(1), v("n"))),
                gm(out, (c(0), v("e0")), (c(1), v("n"))),
            )
        }
    };
    let mut body = vec![
        let_("u", first.add(v("t").mul(c(blocks)))),
        let_("e0", v("u").mul(c(chunk))),
        let_("n", c(n_out).sub(v("e0")).min(c(chunk))),
        let_("s", v("t").rem(c(2))),
        wait(Pipe::Mte3, to, s()),
        for_("j", v("n"), false, element),
    ];
    body.extend(handoff(to, Pipe::Mte3, s()));
    body.push(Stmt::CopyOut {
        dst: out_region,
        src: region,
    });
    body.push(set(Pipe::Mte3, to, s()));
    let mut vector = vec![set(Pipe::Mte3, to, c(0)), set(Pipe::Mte3, to, c(1))];
    vector.push(for_("t", trips, true, body));
    vector.push(wait(Pipe::Mte3, to, c(0)));
    vector.push(wait(Pipe::Mte3, to, c(1)));
    let tiling = [("chunk", chunk), ("units", units)];
    Ok(Kernel::vector(
        &e.name,
        blocks as u32,
        params,
        buffers,
        vector,
        &tiling,
    ))
}

/// Chunks of the output spread over the vector cores (at most 2048 elements each).
pub(crate) fn plan(
    e: &Elementwise,
    args: Vec<ArgRef>,
    target: &Target,
) -> Result<KernelCall, LowerError> {
    let n = e.elements();
    let chunk = n
        .div_ceil(target.cores.aiv as u64)
        .div_ceil(32)
        .clamp(1, 64)
        * 32;
    let kernel = build(e, chunk, target)?;
    let moved: u64 = e
        .operands
        .iter()
        .map(|(d, elements, _)| bytes(*elements, *d))
        .sum::<u64>()
        + bytes(n, e.out);
    let work = vector_work(n as f64, moved as f64, e.out);
    call(kernel, args, target, &work)
}
