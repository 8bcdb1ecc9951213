//! Scalar-unit statements: `LoadScalar`, `SetValue` and the cross-core flags of MIX kernels.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC, types};
use cubevec_ir::DType;
use cubevec_ir::kernel::{ScalarSrc, Slice, VecArg};

use super::region::esize;
use super::{Lowerer, mem};
use crate::error::CpuError;
use crate::helpers::CROSS_FLAGS;
use crate::numeric::{f32_to_bf16, f32_to_f16};

impl Lowerer<'_> {
    /// Reads one element as an `i64`: integers by value, floats as their unsigned bit pattern.
    fn read_scalar(&mut self, dtype: DType, p: Value) -> Result<Value, CpuError> {
        let ins = self.b.ins();
        Ok(match dtype {
            DType::I8 => ins.sload8(types::I64, mem(), p, 0),
            DType::I32 => ins.sload32(mem(), p, 0),
            DType::I64 => ins.load(types::I64, mem(), p, 0),
            DType::F32 => ins.uload32(mem(), p, 0),
            DType::F16 | DType::BF16 => ins.uload16(types::I64, mem(), p, 0),
            DType::U8 | DType::Bool | DType::F8E4M3FN | DType::F8E5M2 | DType::E8M0 => {
                ins.uload8(types::I64, mem(), p, 0)
            }
            DType::F4E2M1 => return Err(self.unsupported("scalar loads of packed f4e2m1")),
        })
    }

    /// `LoadScalar`: the real element, read from GM or UB.
    pub(super) fn load_scalar(&mut self, src: &ScalarSrc) -> Result<Value, CpuError> {
        match src {
            ScalarSrc::Gm { param, index } => {
                let kernel = self.kernel;
                let p = kernel
                    .params
                    .get(*param)
                    .ok_or_else(|| self.unsupported(format!("no parameter {param}")))?;
                if p.dtype.bits() < 8 {
                    return Err(self.unsupported(format!("scalar loads of {}", p.dtype)));
                }
                let len = p.shape.iter().product::<u64>() as i64;
                let i = self.expr(index)?;
                let one = self.iconst(1);
                self.check_range(
                    i,
                    one,
                    1,
                    len,
                    format!("element outside `{}` of {len} elements", p.name),
                );
                let ptr = self.at(self.params[*param], i, esize(p.dtype));
                self.read_scalar(p.dtype, ptr)
            }
            ScalarSrc::Ub(slice) => {
                let one = self.iconst(1);
                let (ptr, buf) = self.slice(slice, one)?;
                self.read_scalar(buf.dtype, ptr)
            }
        }
    }

    /// `SetValue`: writes one UB element, converting the value to the buffer's dtype.
    pub(super) fn set_value(&mut self, dst: &Slice, value: &VecArg) -> Result<(), CpuError> {
        let one = self.iconst(1);
        let (p, buf) = self.slice(dst, one)?;
        let dt = buf.dtype;
        match value {
            VecArg::Imm(x) => {
                let bits = match dt {
                    DType::F32 => (*x as f32).to_bits() as i64,
                    DType::F16 => f32_to_f16(*x as f32) as i64,
                    DType::BF16 => f32_to_bf16(*x as f32) as i64,
                    d if d.is_int() || d == DType::Bool => *x as i64,
                    other => return Err(self.unsupported(format!("SetValue on {other}"))),
                };
                let v = self.iconst(bits);
                self.write_int(dt, p, v)
            }
            VecArg::Scalar(e) => {
                let v = self.expr(e)?;
                match dt {
                    DType::F32 | DType::F16 | DType::BF16 => {
                        let x = self.b.ins().fcvt_from_sint(types::F32, v);
                        self.store_val(dt, p, 0, x);
                        Ok(())
                    }
                    d if d.is_int() || d == DType::Bool => self.write_int(dt, p, v),
                    other => Err(self.unsupported(format!("SetValue on {other}"))),
                }
            }
            _ => Err(self.unsupported("SetValue takes an immediate or a scalar expression")),
        }
    }

    /// Stores the low bytes of the `i64` `v` as one element of `dtype`.
    fn write_int(&mut self, dtype: DType, p: Value, v: Value) -> Result<(), CpuError> {
        let ins = self.b.ins();
        match dtype.bits() {
            8 => ins.istore8(mem(), v, p, 0),
            16 => ins.istore16(mem(), v, p, 0),
            32 => ins.istore32(mem(), v, p, 0),
            _ => ins.store(mem(), v, p, 0),
        };
        Ok(())
    }

    fn flag(&self, flag: u8) -> Result<i64, CpuError> {
        if flag as usize >= CROSS_FLAGS {
            return Err(self.unsupported(format!("cross-core flag {flag} outside 0..=10")));
        }
        Ok(flag as i64)
    }

    /// `CrossCoreSetFlag`.
    pub(super) fn cross_set(&mut self, flag: u8) -> Result<(), CpuError> {
        let flag = self.flag(flag)?;
        let flag = self.iconst(flag);
        let f = self.fns.cross_set;
        self.b.ins().call(f, &[self.ctx, flag]);
        Ok(())
    }

    /// `CrossCoreWaitFlag`: blocks until the partner core sets the flag.
    pub(super) fn cross_wait(&mut self, flag: u8) -> Result<(), CpuError> {
        let id = self.flag(flag)?;
        let id = self.iconst(id);
        let f = self.fns.cross_wait;
        let call = self.b.ins().call(f, &[self.ctx, id]);
        let r = self.b.inst_results(call)[0];
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, r, 0);
        self.check(
            ok,
            format!(
                "waits for cross-core flag {flag}, which no core of the block can set any more (deadlock)"
            ),
        );
        Ok(())
    }
}
