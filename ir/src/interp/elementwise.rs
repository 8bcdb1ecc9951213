//! Elementwise ops: unary and binary functions, `Clip`, `Where`, `Cast` and `SwiGlu`.
//!
//! Float functions are evaluated in `f64` from the `f32`-widened operands and rounded once to the
//! result dtype; integer arithmetic is exact in `i64` (wrapping on overflow).

use super::OpError;
use super::util::{self, Num};
use crate::dtype::DType;
use crate::op::{BinaryOp, UnaryOp};
use crate::tensor::Tensor;

/// `erf(x)`: the Maclaurin series below |x| = 4 (accurate to f64 rounding there), ±1 beyond,
/// where `1 - erf(x) < 2^-26` is below half an f32 ulp of 1.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() >= 4.0 {
        return x.signum();
    }
    let x2 = x * x;
    let mut term = x; // (-1)^n x^(2n+1) / n!
    let mut sum = x;
    let mut n = 0.0;
    loop {
        n += 1.0;
        term *= -x2 / n;
        let contribution = term / (2.0 * n + 1.0);
        sum += contribution;
        if contribution.abs() < 1e-17 * sum.abs().max(1e-300) {
            break;
        }
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

/// `1 / (1 + e^-x)`, without overflow for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + e^x)`, without overflow for large x.
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `x · sigmoid(x)`.
pub fn silu(x: f64) -> f64 {
    x * sigmoid(x)
}

/// Exact GELU, `x · Φ(x)`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))
}

/// A float unary function.
fn float_fn(op: UnaryOp) -> Option<fn(f64) -> f64> {
    Some(match op {
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Rsqrt => |x| 1.0 / x.sqrt(),
        UnaryOp::Reciprocal => |x| 1.0 / x,
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Erf => erf,
        UnaryOp::Sigmoid => sigmoid,
        UnaryOp::Relu => |x| if x < 0.0 { 0.0 } else { x },
        UnaryOp::Silu => silu,
        UnaryOp::Gelu => gelu,
        UnaryOp::GeluTanh => |x| {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + inner.tanh())
        },
        UnaryOp::Softplus => softplus,
        UnaryOp::Floor => f64::floor,
        UnaryOp::Ceil => f64::ceil,
        UnaryOp::Round => f64::round_ties_even,
        UnaryOp::Sign => |x| {
            if x.is_nan() || x == 0.0 {
                x
            } else {
                x.signum()
            }
        },
        UnaryOp::Not | UnaryOp::IsNaN | UnaryOp::IsInf => return None,
    })
}

/// `op(x)` elementwise.
pub fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor, OpError> {
    let shape = x.shape().to_vec();
    match op {
        UnaryOp::Not => {
            util::expect_dtype(x, 0, DType::Bool)?;
            let v: Vec<i64> = x.to_i64_vec().iter().map(|&b| (b == 0) as i64).collect();
            return Ok(Tensor::from_i64(DType::Bool, shape, &v));
        }
        UnaryOp::IsNaN | UnaryOp::IsInf => {
            let test = if op == UnaryOp::IsNaN {
                f32::is_nan
            } else {
                f32::is_infinite
            };
            let v: Vec<i64> = if x.dtype().is_float() {
                x.to_f32_vec().into_iter().map(|v| test(v) as i64).collect()
            } else {
                vec![0; x.numel()]
            };
            return Ok(Tensor::from_i64(DType::Bool, shape, &v));
        }
        _ => {}
    }
    match util::num(x) {
        Num::F(v) => {
            let f = float_fn(op).ok_or(OpError::DType {
                operand: 0,
                expected: "bool".into(),
                got: x.dtype(),
            })?;
            let out: Vec<f64> = v.into_iter().map(|e| f(e as f64)).collect();
            Ok(Tensor::from_f64(x.dtype(), shape, &out))
        }
        Num::I(v) => {
            if x.dtype() == DType::Bool {
                return Err(OpError::DType {
                    operand: 0,
                    expected: "a number type".into(),
                    got: x.dtype(),
                });
            }
            let f: fn(i64) -> i64 = match op {
                UnaryOp::Neg => i64::wrapping_neg,
                UnaryOp::Abs => i64::wrapping_abs,
                UnaryOp::Sign => i64::signum,
                UnaryOp::Relu => |e| e.max(0),
                UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => |e| e,
                _ => {
                    return Err(OpError::DType {
                        operand: 0,
                        expected: "a float type".into(),
                        got: x.dtype(),
                    });
                }
            };
            let out: Vec<i64> = v.into_iter().map(f).collect();
            Ok(Tensor::from_i64(x.dtype(), shape, &out))
        }
    }
}

/// Integer power with a non-negative exponent by squaring (wrapping), truncated reciprocal for a
/// negative one.
fn int_pow(base: i64, exp: i64) -> i64 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 => {
                if exp % 2 == 0 {
                    1
                } else {
                    -1
                }
            }
            _ => 0,
        };
    }
    let mut result: i64 = 1;
    let mut b = base;
    let mut e = exp;
    while e > 0 {
        if e & 1 == 1 {
            result = result.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    result
}

/// Float binary arithmetic (`None` for comparisons and logical ops).
fn float_binary(op: BinaryOp) -> Option<fn(f32, f32) -> f32> {
    Some(match op {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::Pow => |a, b| (a as f64).powf(b as f64) as f32,
        BinaryOp::Mod | BinaryOp::FMod => |a, b| a % b,
        BinaryOp::Max => |a, b| {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.max(b)
            }
        },
        BinaryOp::Min => |a, b| {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.min(b)
            }
        },
        _ => return None,
    })
}

/// Integer binary arithmetic (wrapping on overflow); `None` marks a division by zero.
fn int_binary(op: BinaryOp, a: i64, b: i64) -> Option<i64> {
    Some(match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        BinaryOp::Div => (b != 0).then(|| a.wrapping_div(b))?,
        BinaryOp::Pow => int_pow(a, b),
        BinaryOp::Mod => {
            let r = (b != 0).then(|| a.wrapping_rem(b))?;
            if r != 0 && (r < 0) != (b < 0) {
                r + b
            } else {
                r
            }
        }
        BinaryOp::FMod => (b != 0).then(|| a.wrapping_rem(b))?,
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::And => ((a != 0) && (b != 0)) as i64,
        BinaryOp::Or => ((a != 0) || (b != 0)) as i64,
        BinaryOp::Xor => ((a != 0) != (b != 0)) as i64,
        BinaryOp::Equal => (a == b) as i64,
        BinaryOp::Less => (a < b) as i64,
        BinaryOp::LessOrEqual => (a <= b) as i64,
        BinaryOp::Greater => (a > b) as i64,
        BinaryOp::GreaterOrEqual => (a >= b) as i64,
    })
}

/// Float comparison.
fn float_compare(op: BinaryOp, a: f32, b: f32) -> bool {
    match op {
        BinaryOp::Equal => a == b,
        BinaryOp::Less => a < b,
        BinaryOp::LessOrEqual => a <= b,
        BinaryOp::Greater => a > b,
        _ => a >= b,
    }
}

/// `op(a, b)` with numpy broadcasting.
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    if a.dtype() != b.dtype() {
        return Err(OpError::DType {
            operand: 1,
            expected: a.dtype().to_string(),
            got: b.dtype(),
        });
    }
    if op.is_logical() {
        util::expect_dtype(a, 0, DType::Bool)?;
    }
    let shape = util::broadcast_shape(a.shape(), b.shape())?;
    let ia = util::broadcast_index(a.shape(), &shape)?;
    let ib = util::broadcast_index(b.shape(), &shape)?;
    let out_dtype = if op.is_comparison() {
        DType::Bool
    } else {
        a.dtype()
    };
    match (util::num(a), util::num(b)) {
        (Num::F(va), Num::F(vb)) => {
            if op.is_comparison() {
                let out: Vec<i64> = ia
                    .iter()
                    .zip(&ib)
                    .map(|(&i, &j)| float_compare(op, va[i], vb[j]) as i64)
                    .collect();
                Ok(Tensor::from_i64(DType::Bool, shape, &out))
            } else {
                let f = float_binary(op).ok_or(OpError::DType {
                    operand: 0,
                    expected: "bool".into(),
                    got: a.dtype(),
                })?;
                let out: Vec<f32> = ia.iter().zip(&ib).map(|(&i, &j)| f(va[i], vb[j])).collect();
                Ok(Tensor::from_f32(out_dtype, shape, &out))
            }
        }
        (Num::I(va), Num::I(vb)) => {
            let out = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| int_binary(op, va[i], vb[j]).ok_or(OpError::DivisionByZero))
                .collect::<Result<Vec<i64>, _>>()?;
            Ok(Tensor::from_i64(out_dtype, shape, &out))
        }
        _ => unreachable!("operands of one dtype have one numeric view"),
    }
}

/// `min(max(x, lo), hi)` with scalar bounds of `x`'s dtype; NaN stays NaN.
pub fn clip(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, 0)?;
    let bound = |index: usize| -> Result<Option<&Tensor>, OpError> {
        let Some(t) = util::optional(inputs, index) else {
            return Ok(None);
        };
        util::expect_dtype(t, index, x.dtype())?;
        if t.numel() != 1 {
            return Err(OpError::Shape(format!(
                "operand {index} must be a scalar, has shape {:?}",
                t.shape()
            )));
        }
        Ok(Some(t))
    };
    let (lo, hi) = (bound(1)?, bound(2)?);
    let shape = x.shape().to_vec();
    match util::num(x) {
        Num::F(v) => {
            let lo = lo.map_or(f32::NEG_INFINITY, |t| t.get_f64(0) as f32);
            let hi = hi.map_or(f32::INFINITY, |t| t.get_f64(0) as f32);
            let out: Vec<f32> = v
                .into_iter()
                .map(|e| {
                    let e = if e < lo { lo } else { e };
                    if e > hi { hi } else { e }
                })
                .collect();
            Ok(Tensor::from_f32(x.dtype(), shape, &out))
        }
        Num::I(v) => {
            let lo = lo.map_or(i64::MIN, |t| t.get_i64(0));
            let hi = hi.map_or(i64::MAX, |t| t.get_i64(0));
            let out: Vec<i64> = v.into_iter().map(|e| e.max(lo).min(hi)).collect();
            Ok(Tensor::from_i64(x.dtype(), shape, &out))
        }
    }
}

/// `cond ? a : b` with broadcasting of all three.
pub fn select(inputs: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
    let cond = util::operand(inputs, 0)?;
    let a = util::operand(inputs, 1)?;
    let b = util::operand(inputs, 2)?;
    util::expect_dtype(cond, 0, DType::Bool)?;
    util::expect_dtype(b, 2, a.dtype())?;
    let shape = util::broadcast_shape(&util::broadcast_shape(cond.shape(), a.shape())?, b.shape())?;
    let ic = util::broadcast_index(cond.shape(), &shape)?;
    let ia = util::broadcast_index(a.shape(), &shape)?;
    let ib = util::broadcast_index(b.shape(), &shape)?;
    let c = cond.bytes();
    // Pick flat indices into the concatenation `a ++ b`, then move elements exactly.
    let (ua, ub) = (util::unpack(a), util::unpack(b));
    let size = util::elem_size(a.dtype());
    let mut data = Vec::with_capacity(shape.iter().product::<usize>() * size);
    for ((&k, &i), &j) in ic.iter().zip(&ia).zip(&ib) {
        if c[k] != 0 {
            data.extend_from_slice(&ua[i * size..(i + 1) * size]);
        } else {
            data.extend_from_slice(&ub[j * size..(j + 1) * size]);
        }
    }
    Ok(util::pack(a.dtype(), shape, data))
}

/// `x` converted to `to`: floats round to nearest even (saturating for fp8/fp4), float → int
/// truncates toward zero, integers convert exactly (wrapping into narrower types), to `bool` is
/// `x != 0`.
pub fn cast(x: &Tensor, to: DType) -> Tensor {
    let shape = x.shape().to_vec();
    if x.dtype() == to {
        return x.clone();
    }
    if x.dtype().is_float() {
        Tensor::from_f32(to, shape, &x.to_f32_vec())
    } else {
        Tensor::from_i64(to, shape, &x.to_i64_vec())
    }
}

/// `silu(gate) * up`, optionally clamped: `silu(min(gate, limit)) * clamp(up, -limit, limit)`.
fn swiglu_value(gate: f32, up: f32, limit: Option<f32>) -> f32 {
    let (gate, up) = match limit {
        Some(l) => (gate.min(l), up.clamp(-l, l)),
        None => (gate, up),
    };
    (silu(gate as f64) as f32) * up
}

/// `SwiGlu`: one operand split in halves along the last axis, or separate `gate, up`.
pub fn swiglu(
    inputs: &[Option<&Tensor>],
    split: bool,
    limit: Option<f32>,
) -> Result<Tensor, OpError> {
    let x = util::operand(inputs, 0)?;
    util::expect_float(x, 0)?;
    if split {
        let Some((&last, lead)) = x.shape().split_last() else {
            return Err(OpError::Shape("operand 0 is a scalar".into()));
        };
        if last % 2 != 0 {
            return Err(OpError::Shape(format!(
                "the last axis of {:?} has odd size",
                x.shape()
            )));
        }
        let n = last / 2;
        let v = x.to_f32_vec();
        let mut out = Vec::with_capacity(v.len() / 2);
        for row in v.chunks_exact(last.max(1)) {
            out.extend((0..n).map(|i| swiglu_value(row[i], row[n + i], limit)));
        }
        let mut shape = lead.to_vec();
        shape.push(n);
        Ok(Tensor::from_f32(x.dtype(), shape, &out))
    } else {
        let up = util::operand(inputs, 1)?;
        util::expect_dtype(up, 1, x.dtype())?;
        if up.shape() != x.shape() {
            return Err(OpError::Shape(format!(
                "gate {:?} and up {:?} differ in shape",
                x.shape(),
                up.shape()
            )));
        }
        let out: Vec<f32> = x
            .to_f32_vec()
            .into_iter()
            .zip(up.to_f32_vec())
            .map(|(g, u)| swiglu_value(g, u, limit))
            .collect();
        Ok(Tensor::from_f32(x.dtype(), x.shape().to_vec(), &out))
    }
}
