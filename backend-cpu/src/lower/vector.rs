//! Count-form vector ops and reductions on UB runs: SIMD loops over four elements at a time,
//! the last partial group handled by a masked read-modify-write of whole lanes (UB is private
//! to the instance, and arenas have slack for the extra lanes read).
//! `Exp` and `Ln`, and the index-returning maximum, call a Rust helper once per statement.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::FloatCC, condcodes::IntCC, types};
use cubevec_ir::DType;
use cubevec_ir::kernel::{Expr, ReduceKind, Slice, VecArg, VecOp};

use super::Lowerer;
use super::convert::compute_ty;
use super::region::esize;
use crate::error::CpuError;
use crate::helpers::{OP_EXP, OP_LN, dtype_code};
use crate::numeric::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

/// A prepared operand: a run to load from, or a scalar (kept scalar, splatted on use).
enum Operand {
    Run { ptr: Value, dtype: DType },
    Scalar(Value),
}

/// `x` rounded to `dtype` at compile time, as the `f32` the vector unit computes with.
fn imm_f32(dtype: DType, x: f64) -> f32 {
    let x = x as f32;
    match dtype {
        DType::F16 => f16_to_f32(f32_to_f16(x)),
        DType::BF16 => bf16_to_f32(f32_to_bf16(x)),
        _ => x,
    }
}

fn legal(op: VecOp, dt: DType) -> bool {
    match op {
        VecOp::Cast => true,
        VecOp::Duplicate => matches!(dt, DType::F16 | DType::BF16 | DType::F32 | DType::I32),
        VecOp::Add
        | VecOp::Sub
        | VecOp::Mul
        | VecOp::Max
        | VecOp::Min
        | VecOp::Adds
        | VecOp::Muls
        | VecOp::Maxs
        | VecOp::Mins
        | VecOp::Relu => matches!(dt, DType::F16 | DType::F32 | DType::I32),
        _ => matches!(dt, DType::F16 | DType::F32),
    }
}

impl Lowerer<'_> {
    /// A scalar operand in the compute type of `dt` (before splatting).
    fn scalar_operand(&mut self, arg: &VecArg, dt: DType) -> Result<Value, CpuError> {
        Ok(match arg {
            VecArg::Imm(x) => {
                if dt.is_float() {
                    self.b.ins().f32const(imm_f32(dt, *x))
                } else {
                    self.b.ins().iconst(types::I32, *x as i32 as u32 as i64)
                }
            }
            VecArg::Element(s) => {
                let one = self.iconst(1);
                let (p, buf) = self.slice(s, one)?;
                if buf.dtype != dt {
                    return Err(self.unsupported(format!(
                        "scalar operand type {} differs from {dt}",
                        buf.dtype
                    )));
                }
                self.load_val(dt, p, 0, false)
            }
            VecArg::Scalar(e) => {
                let v = self.expr(e)?;
                if dt.is_float() {
                    let x = self.b.ins().fcvt_from_sint(types::F32, v);
                    self.quantize(dt, x)
                } else {
                    self.b.ins().ireduce(types::I32, v)
                }
            }
            VecArg::Slice(_) => return Err(self.unsupported("a run where a scalar is expected")),
        })
    }

    /// Lowers a count-form vector op.
    pub(super) fn vector(
        &mut self,
        op: VecOp,
        dst: &Slice,
        srcs: &[VecArg],
        count: &Expr,
    ) -> Result<(), CpuError> {
        let kinds = op.operand_kinds();
        if kinds.len() != srcs.len() {
            return Err(self.unsupported(format!("{} takes {} operands", op.name(), kinds.len())));
        }
        let n = self.expr(count)?;
        let (dptr, dbuf) = self.slice(dst, n)?;
        let dt = dbuf.dtype;
        if !legal(op, dt) {
            return Err(self.unsupported(format!("{} on {dt}", op.name())));
        }
        let mut operands = Vec::new();
        for (arg, &is_run) in srcs.iter().zip(kinds) {
            operands.push(match (arg, is_run) {
                (VecArg::Slice(s), true) => {
                    let (ptr, buf) = self.slice(s, n)?;
                    let ok = if op == VecOp::Cast {
                        matches!(
                            (buf.dtype, dt),
                            (DType::F16 | DType::BF16 | DType::I32, DType::F32)
                                | (DType::F32, DType::F16 | DType::BF16 | DType::I32)
                                | (DType::I8 | DType::U8, DType::F16)
                                | (DType::F16, DType::I8 | DType::U8)
                        )
                    } else {
                        buf.dtype == dt
                    };
                    if !ok {
                        return Err(self.unsupported(format!(
                            "{} of {} into {dt}",
                            op.name(),
                            buf.dtype
                        )));
                    }
                    Operand::Run {
                        ptr,
                        dtype: buf.dtype,
                    }
                }
                (arg, false) if !matches!(arg, VecArg::Slice(_)) => {
                    Operand::Scalar(self.scalar_operand(arg, dt)?)
                }
                _ => return Err(self.unsupported(format!("operand kinds of {}", op.name()))),
            });
        }
        if matches!(op, VecOp::Exp | VecOp::Ln) {
            let Operand::Run { ptr, .. } = operands[0] else {
                return Err(self.unsupported("Exp and Ln take a run"));
            };
            let code = if op == VecOp::Exp { OP_EXP } else { OP_LN };
            let code = self.iconst(code);
            let ty = self.iconst(dtype_code(dt));
            let f = self.fns.unary;
            self.b.ins().call(f, &[code, ty, dptr, ptr, n]);
            return Ok(());
        }
        let de = esize(dt);
        let full = self.b.ins().ushr_imm_s(n, 2);
        self.for_n(full, |l, i| {
            let first = l.b.ins().ishl_imm_s(i, 2);
            let v = l.apply(op, dt, &operands, first)?;
            let dp = l.at(dptr, first, de);
            l.store_val(dt, dp, 0, v);
            Ok(())
        })?;
        let rest = self.b.ins().band_imm_s(n, 3);
        let partial = self.b.ins().icmp_imm_s(IntCC::NotEqual, rest, 0);
        self.if_then(partial, |l| {
            let first = l.b.ins().band_imm_s(n, !3);
            let v = l.apply(op, dt, &operands, first)?;
            let dp = l.at(dptr, first, de);
            let new = l.narrow(dt, v);
            let old = l.load_bits(dt, dp, 0, true);
            let mask = l.lane_mask(rest);
            let bits = l.sel(mask, new, old);
            l.store_bits(dt, dp, 0, bits);
            Ok(())
        })
    }

    /// Lanes `0..rest` set (`rest` an `i64` in 1..=3).
    fn lane_mask(&mut self, rest: Value) -> Value {
        let lanes = self.b.func.dfg.constants.insert(
            [0u32, 1, 2, 3]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        );
        let lanes = self.b.ins().vconst(types::I32X4, lanes);
        let r = self.b.ins().ireduce(types::I32, rest);
        let r = self.b.ins().splat(types::I32X4, r);
        self.b.ins().icmp(IntCC::SignedLessThan, lanes, r)
    }

    /// The four results of `op` for elements `first..first + 4`, in the compute type of `dt`.
    fn apply(
        &mut self,
        op: VecOp,
        dt: DType,
        operands: &[Operand],
        first: Value,
    ) -> Result<Value, CpuError> {
        let ty = compute_ty(dt, true);
        let mut vals = Vec::new();
        for o in operands {
            vals.push(match *o {
                Operand::Run { ptr, dtype } => {
                    let p = self.at(ptr, first, esize(dtype));
                    self.load_val(dtype, p, 0, true)
                }
                Operand::Scalar(s) => self.b.ins().splat(ty, s),
            });
        }
        let float = dt.is_float();
        Ok(match (op, float) {
            (VecOp::Add | VecOp::Adds, true) => self.b.ins().fadd(vals[0], vals[1]),
            (VecOp::Sub, true) => self.b.ins().fsub(vals[0], vals[1]),
            (VecOp::Mul | VecOp::Muls, true) => self.b.ins().fmul(vals[0], vals[1]),
            (VecOp::Div, true) => self.b.ins().fdiv(vals[0], vals[1]),
            (VecOp::Max | VecOp::Maxs, true) => self.b.ins().fmax(vals[0], vals[1]),
            (VecOp::Min | VecOp::Mins, true) => self.b.ins().fmin(vals[0], vals[1]),
            (VecOp::Abs, true) => self.b.ins().fabs(vals[0]),
            (VecOp::Sqrt, true) => self.b.ins().sqrt(vals[0]),
            (VecOp::Floor, true) => self.b.ins().floor(vals[0]),
            (VecOp::Ceil, true) => self.b.ins().ceil(vals[0]),
            (VecOp::Rint, true) => self.b.ins().nearest(vals[0]),
            (VecOp::Rsqrt, true) => {
                let one = self.cf(ty, 1.0);
                let r = self.b.ins().sqrt(vals[0]);
                self.b.ins().fdiv(one, r)
            }
            (VecOp::Reciprocal, true) => {
                let one = self.cf(ty, 1.0);
                self.b.ins().fdiv(one, vals[0])
            }
            (VecOp::Relu, true) => {
                let zero = self.cf(ty, 0.0);
                let neg = self.b.ins().fcmp(FloatCC::LessThan, vals[0], zero);
                self.sel(neg, zero, vals[0])
            }
            (VecOp::Add | VecOp::Adds, false) => self.b.ins().iadd(vals[0], vals[1]),
            (VecOp::Sub, false) => self.b.ins().isub(vals[0], vals[1]),
            (VecOp::Mul | VecOp::Muls, false) => self.b.ins().imul(vals[0], vals[1]),
            (VecOp::Max | VecOp::Maxs, false) => self.b.ins().smax(vals[0], vals[1]),
            (VecOp::Min | VecOp::Mins, false) => self.b.ins().smin(vals[0], vals[1]),
            (VecOp::Relu, false) => {
                let zero = self.ci(ty, 0);
                self.b.ins().smax(vals[0], zero)
            }
            (VecOp::Duplicate, _) => vals[0],
            (VecOp::Cast, _) => {
                let Operand::Run { dtype: from, .. } = operands[0] else {
                    return Err(self.unsupported("Cast takes a run"));
                };
                match (from, dt) {
                    (DType::I32 | DType::I8 | DType::U8, _) => {
                        self.b.ins().fcvt_from_sint(types::F32X4, vals[0])
                    }
                    (_, DType::I32 | DType::I8 | DType::U8) => {
                        let r = self.b.ins().nearest(vals[0]);
                        self.b.ins().fcvt_to_sint_sat(types::I32X4, r)
                    }
                    _ => vals[0],
                }
            }
            _ => return Err(self.unsupported(format!("{} on {dt}", op.mnemonic()))),
        })
    }

    /// Lowers a reduction to one element (two for `MaxIndex`).
    pub(super) fn reduce(
        &mut self,
        kind: ReduceKind,
        dst: &Slice,
        src: &Slice,
        count: &Expr,
    ) -> Result<(), CpuError> {
        let n = self.expr(count)?;
        let (sp, sbuf) = self.slice(src, n)?;
        let len = self.iconst(if kind == ReduceKind::MaxIndex { 2 } else { 1 });
        let (dp, dbuf) = self.slice(dst, len)?;
        let dt = sbuf.dtype;
        if dbuf.dtype != dt || !matches!(dt, DType::F16 | DType::F32) {
            return Err(self.unsupported(format!(
                "reductions take f16 or f32 with equal types, not {dt} -> {}",
                dbuf.dtype
            )));
        }
        if kind == ReduceKind::MaxIndex {
            let ty = self.iconst(dtype_code(dt));
            let f = self.fns.max_index;
            self.b.ins().call(f, &[ty, dp, sp, n]);
            return Ok(());
        }
        let sum = kind == ReduceKind::Sum;
        let neutral = self.cf(types::F32X4, if sum { 0.0 } else { f32::NEG_INFINITY });
        let acc = self.b.declare_var(types::F32X4);
        self.b.def_var(acc, neutral);
        let combine = |l: &mut Self, a: Value, b: Value| {
            if sum {
                l.b.ins().fadd(a, b)
            } else {
                l.b.ins().fmax(a, b)
            }
        };
        let e = esize(dt);
        let full = self.b.ins().ushr_imm_s(n, 2);
        self.for_n(full, |l, i| {
            let first = l.b.ins().ishl_imm_s(i, 2);
            let p = l.at(sp, first, e);
            let v = l.load_val(dt, p, 0, true);
            let old = l.b.use_var(acc);
            let new = combine(l, old, v);
            l.b.def_var(acc, new);
            Ok(())
        })?;
        let rest = self.b.ins().band_imm_s(n, 3);
        let partial = self.b.ins().icmp_imm_s(IntCC::NotEqual, rest, 0);
        self.if_then(partial, |l| {
            let first = l.b.ins().band_imm_s(n, !3);
            let p = l.at(sp, first, e);
            let v = l.load_val(dt, p, 0, true);
            let mask = l.lane_mask(rest);
            let v = l.sel(mask, v, neutral);
            let old = l.b.use_var(acc);
            let new = combine(l, old, v);
            l.b.def_var(acc, new);
            Ok(())
        })?;
        let v = self.b.use_var(acc);
        let lanes: Vec<Value> = (0..4).map(|i| self.b.ins().extractlane(v, i)).collect();
        let lo = combine(self, lanes[0], lanes[1]);
        let hi = combine(self, lanes[2], lanes[3]);
        let r = combine(self, lo, hi);
        self.store_val(dt, dp, 0, r);
        Ok(())
    }
}
