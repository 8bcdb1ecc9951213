//! Compute, scalar and synchronisation statements: `Mmad`, count-form vector ops, reductions,
//! scalar loads and stores, flags, barriers and cross-core flags.

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, Expr, ParamRole, Pipe, ReduceKind, ScalarSrc, Slice, VecArg, VecOp,
};

use super::EmitError;
use super::kernel::KernelSource;
use super::types::{bits_type, cast_mode, cpp_type, hard_event, integral_mode, pipe_t};

impl KernelSource<'_> {
    /// `Mmad(c, a, b, MmadParams(m, n, k, unitFlag 0, cmatrixSource false, init))`, on whole
    /// stages of the three L0 buffers.
    pub(crate) fn mmad(
        &mut self,
        [c, a, b]: [(BufId, &Expr); 3],
        [m, n, k]: [&Expr; 3],
        init: &Expr,
    ) -> Result<(), EmitError> {
        let view =
            |s: &Self, (buf, stage): (BufId, &Expr)| s.local(buf, &s.stage_offset(buf, stage));
        let line = format!(
            "AscendC::Mmad({}, {}, {}, AscendC::MmadParams({}, {}, {}, 0, false, {}));",
            view(self, c),
            view(self, a),
            view(self, b),
            self.int("uint16_t", m),
            self.int("uint16_t", n),
            self.int("uint16_t", k),
            match init.as_const() {
                Some(0) => "false".to_string(),
                Some(_) => "true".to_string(),
                None => format!("{} != 0", self.operand(init)),
            }
        );
        self.code.line(line);
        Ok(())
    }

    /// One count-form vector op.
    pub(crate) fn vector(
        &mut self,
        op: VecOp,
        dst: &Slice,
        srcs: &[VecArg],
        count: &Expr,
    ) -> Result<(), EmitError> {
        let dtype = self.buffer(dst.buf)?.dtype;
        if srcs.len() != op.operand_kinds().len() {
            return Err(self.unsupported(format!(
                "{} takes {} operands, found {}",
                op.name(),
                op.operand_kinds().len(),
                srcs.len()
            )));
        }
        let mut args = vec![self.slice_view(dst)];
        for a in srcs {
            args.push(self.vec_arg(a, dtype)?);
        }
        let count32 = self.int("int32_t", count);
        let count = self.int("uint32_t", count);
        let line = match op {
            VecOp::Cast => {
                let Some(VecArg::Slice(src)) = srcs.first() else {
                    return Err(self.unsupported("Cast takes one slice operand".into()));
                };
                let from = self.buffer(src.buf)?.dtype;
                format!(
                    "AscendC::Cast({}, {}, {}, {count});",
                    args[0],
                    args[1],
                    cast_mode(from, dtype)
                )
            }
            _ if let Some(mode) = integral_mode(op) => {
                format!("AscendC::Cast({}, {}, {mode}, {count});", args[0], args[1])
            }
            _ => format!("AscendC::{}({}, {count32});", op.name(), args.join(", ")),
        };
        self.code.line(line);
        Ok(())
    }

    /// `ReduceSum` / `ReduceMax` (with `calIndex` for `MaxIndex`) with the kernel's work area.
    pub(crate) fn reduce(
        &mut self,
        kind: ReduceKind,
        dst: &Slice,
        src: &Slice,
        count: &Expr,
    ) -> Result<(), EmitError> {
        let dtype = self.buffer(src.buf)?.dtype;
        let scratch = self.scratch(dtype)?.to_string();
        let (name, tail) = match kind {
            ReduceKind::Sum => ("ReduceSum", ""),
            ReduceKind::Max => ("ReduceMax", ", false"),
            ReduceKind::MaxIndex => ("ReduceMax", ", true"),
        };
        let line = format!(
            "AscendC::{name}({}, {}, {scratch}, {}{tail});",
            self.slice_view(dst),
            self.slice_view(src),
            self.int("int32_t", count)
        );
        self.code.line(line);
        Ok(())
    }

    /// Binds `var` to one element: `GetValue` of UB, or of GM after invalidating the data cache
    /// line (the element may come from an earlier kernel or another core). Float elements are
    /// read through an unsigned view of the same width, giving their bits.
    pub(crate) fn load_scalar(&mut self, var: &str, src: &ScalarSrc) -> Result<(), EmitError> {
        let value = match src {
            ScalarSrc::Ub(s) => {
                let b = self.buffer(s.buf)?;
                let at = self.e(&self.slice_offset(s));
                let tensor = self.local(s.buf, &Expr::c(0));
                if b.dtype.is_float() {
                    format!(
                        "static_cast<int64_t>({tensor}.ReinterpretCast<{}>().GetValue({at}))",
                        bits_type(b.dtype)
                    )
                } else {
                    format!("static_cast<int64_t>({tensor}.GetValue({at}))")
                }
            }
            ScalarSrc::Gm { param, index } => {
                let p = self.param(*param)?;
                let ty = cpp_type(p.dtype).unwrap_or("uint8_t");
                // Inputs were invalidated once at the kernel's start; a parameter the kernel
                // also writes is refreshed before each read.
                if p.role != ParamRole::Input {
                    let element = self.global(*param, index);
                    self.code.line(format!(
                        "AscendC::DataCacheCleanAndInvalid<{ty}, AscendC::CacheLine::SINGLE_CACHE_LINE, AscendC::DcciDst::CACHELINE_OUT>({element});"
                    ));
                }
                let view = match self.gm_bits(*param) {
                    Some(bits) => bits.to_string(),
                    None => self.global(*param, &Expr::c(0)),
                };
                format!("static_cast<int64_t>({view}.GetValue({}))", self.e(index))
            }
        };
        if self.is_used(var) {
            self.bind(var, &value);
        } else {
            self.code.line(format!("(void){value};"));
        }
        Ok(())
    }

    /// `LocalTensor::SetValue` of one UB element.
    pub(crate) fn set_value(&mut self, dst: &Slice, value: &VecArg) -> Result<(), EmitError> {
        let dtype = self.buffer(dst.buf)?.dtype;
        let value = match value {
            VecArg::Imm(_) | VecArg::Scalar(_) => self.vec_arg(value, dtype)?,
            _ => return Err(self.unsupported("SetValue takes an immediate or a scalar".into())),
        };
        let line = format!(
            "{}.SetValue({}, {value});",
            self.local(dst.buf, &Expr::c(0)),
            self.e(&self.slice_offset(dst))
        );
        self.code.line(line);
        Ok(())
    }

    /// `SetFlag` / `WaitFlag` of the `HardEvent` between two pipes.
    pub(crate) fn flag(
        &mut self,
        call: &str,
        from: Pipe,
        to: Pipe,
        event: &Expr,
    ) -> Result<(), EmitError> {
        let Some(ev) = hard_event(from, to) else {
            return Err(self.unsupported(format!("no HardEvent {}_{}", from.name(), to.name())));
        };
        let line = format!("AscendC::{call}<{ev}>({});", self.int("int32_t", event));
        self.code.line(line);
        Ok(())
    }

    /// `PipeBarrier<PIPE_x>()`.
    pub(crate) fn barrier(&mut self, pipe: Pipe) -> Result<(), EmitError> {
        if pipe == Pipe::S {
            return Err(self.unsupported("PipeBarrier<PIPE_S> does not exist".into()));
        }
        self.code
            .line(format!("AscendC::PipeBarrier<{}>();", pipe_t(pipe)));
        Ok(())
    }

    /// `CrossCoreSetFlag<2, PIPE_x>(flag)`: mode 2 signals between an AIC and its two AIVs.
    pub(crate) fn cross_core_set(&mut self, pipe: Pipe, flag: u8) -> Result<(), EmitError> {
        if matches!(pipe, Pipe::S | Pipe::All) {
            return Err(self.unsupported("a cross-core set needs a real pipe".into()));
        }
        self.code.line(format!(
            "AscendC::CrossCoreSetFlag<2, {}>({flag});",
            pipe_t(pipe)
        ));
        Ok(())
    }

    /// A run of elements as a `LocalTensor` view.
    fn slice_view(&self, s: &Slice) -> String {
        self.local(s.buf, &self.slice_offset(s))
    }

    /// A vector operand: a view, or a scalar of the operation's element type.
    fn vec_arg(&self, a: &VecArg, dtype: DType) -> Result<String, EmitError> {
        let ty = cpp_type(dtype).unwrap_or("float");
        Ok(match a {
            VecArg::Slice(s) => self.slice_view(s),
            VecArg::Element(s) => format!(
                "{}.GetValue({})",
                self.local(s.buf, &Expr::c(0)),
                self.e(&self.slice_offset(s))
            ),
            VecArg::Imm(v) => immediate(*v, dtype, ty),
            VecArg::Scalar(e) if dtype == DType::F32 => {
                format!("static_cast<float>({})", self.e(e))
            }
            VecArg::Scalar(e) if dtype.is_float() => {
                format!("static_cast<{ty}>(static_cast<float>({}))", self.e(e))
            }
            VecArg::Scalar(e) => format!("static_cast<{ty}>({})", self.e(e)),
        })
    }
}

/// An immediate of element type `dtype` (C++ type `ty`): a float literal that round-trips the
/// `f32` value (converted for 16-bit types), or an integer.
fn immediate(v: f64, dtype: DType, ty: &str) -> String {
    if !dtype.is_float() {
        return format!("static_cast<{ty}>({})", v as i64);
    }
    let x = v as f32;
    let literal = if x.is_nan() {
        "__builtin_nanf(\"\")".to_string()
    } else if x.is_infinite() {
        if x > 0.0 {
            "__builtin_inff()".to_string()
        } else {
            "-__builtin_inff()".to_string()
        }
    } else {
        format!("{x:?}f")
    };
    if dtype == DType::F32 {
        literal
    } else {
        format!("static_cast<{ty}>({literal})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediates_round_trip_f32() {
        assert_eq!(immediate(1e-6, DType::F32, "float"), "1e-6f");
        assert_eq!(immediate(-1.0, DType::F32, "float"), "-1.0f");
        assert_eq!(
            immediate(1.0 / 7168.0, DType::F16, "half"),
            "static_cast<half>(0.00013950893f)"
        );
        assert_eq!(
            immediate(f64::NEG_INFINITY, DType::F32, "float"),
            "-__builtin_inff()"
        );
        assert_eq!(
            immediate(3.0, DType::I32, "int32_t"),
            "static_cast<int32_t>(3)"
        );
    }
}
