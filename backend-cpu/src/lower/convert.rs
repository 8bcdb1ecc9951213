//! Loads, stores and dtype conversions, one element (`i32`/`f32`) or four (`i32x4`/`f32x4`)
//! at a time. No arithmetic happens in a 16-bit float type: f16 and bf16 are widened to `f32`
//! when loaded and rounded to nearest even when stored, with the integer algorithms of
//! [`crate::numeric`].

use cranelift_codegen::ir::{
    Endianness, InstBuilder, MemFlagsData, Type, Value, condcodes::IntCC, types,
};
use cubevec_ir::DType;

use super::{Lowerer, mem};

fn cast_flags() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// The type computations on `dtype` use: `f32` lanes for floats, `i32` lanes for integers.
pub(super) fn compute_ty(dtype: DType, vector: bool) -> Type {
    match (dtype.is_float(), vector) {
        (true, false) => types::F32,
        (true, true) => types::F32X4,
        (false, false) => types::I32,
        (false, true) => types::I32X4,
    }
}

/// The integer type of the same width as `ty`.
fn int_ty(ty: Type) -> Type {
    if ty.is_vector() {
        types::I32X4
    } else {
        types::I32
    }
}

impl Lowerer<'_> {
    /// An `i32` constant (the low 32 bits of `v`), splatted when `ty` is a vector type.
    pub(super) fn ci(&mut self, ty: Type, v: i64) -> Value {
        let c = self.b.ins().iconst(types::I32, v as u32 as i64);
        if ty.is_vector() {
            self.b.ins().splat(types::I32X4, c)
        } else {
            c
        }
    }

    /// An `f32` constant, splatted when `ty` is a vector type.
    pub(super) fn cf(&mut self, ty: Type, v: f32) -> Value {
        let c = self.b.ins().f32const(v);
        if ty.is_vector() {
            self.b.ins().splat(types::F32X4, c)
        } else {
            c
        }
    }

    /// `cond ? a : b` for a scalar truth value or a lane mask of the operands' width.
    pub(super) fn sel(&mut self, cond: Value, a: Value, b: Value) -> Value {
        let ty = self.b.func.dfg.value_type(a);
        if ty.is_vector() {
            let mask_ty = self.b.func.dfg.value_type(cond);
            let mask = if mask_ty == ty {
                cond
            } else {
                self.b.ins().bitcast(ty, cast_flags(), cond)
            };
            self.b.ins().bitselect(mask, a, b)
        } else {
            self.b.ins().select(cond, a, b)
        }
    }

    /// Reinterprets the bits of `v` as `ty` (same width).
    pub(super) fn reinterpret(&mut self, ty: Type, v: Value) -> Value {
        self.b.ins().bitcast(ty, cast_flags(), v)
    }

    fn float_of(&mut self, bits: Value) -> Value {
        let ty = if self.b.func.dfg.value_type(bits).is_vector() {
            types::F32X4
        } else {
            types::F32
        };
        self.reinterpret(ty, bits)
    }

    fn bits_of(&mut self, x: Value) -> Value {
        let ty = int_ty(self.b.func.dfg.value_type(x));
        self.reinterpret(ty, x)
    }

    /// f16 bit patterns (low 16 bits of `i32` lanes) to `f32`, exactly.
    pub(super) fn widen_f16(&mut self, h: Value) -> Value {
        let ty = self.b.func.dfg.value_type(h);
        let shifted_exp = 0x7c00 << 13;
        let m = self.ci(ty, 0x7fff);
        let t = self.b.ins().band(h, m);
        let t = self.b.ins().ishl_imm_s(t, 13);
        let se = self.ci(ty, shifted_exp);
        let e = self.b.ins().band(t, se);
        let adj = self.ci(ty, (127 - 15) << 23);
        let t = self.b.ins().iadd(t, adj);
        let infnan = self.b.ins().icmp(IntCC::Equal, e, se);
        let zero = self.ci(ty, 0);
        let tiny = self.b.ins().icmp(IntCC::Equal, e, zero);
        let adj_inf = self.ci(ty, (128 - 16) << 23);
        let t_inf = self.b.ins().iadd(t, adj_inf);
        let one_exp = self.ci(ty, 1 << 23);
        let t_den = self.b.ins().iadd(t, one_exp);
        let f_den = self.float_of(t_den);
        let magic = self.cf(ty, f32::from_bits(113 << 23));
        let f_den = self.b.ins().fsub(f_den, magic);
        let t_den = self.bits_of(f_den);
        let r = self.sel(tiny, t_den, t);
        let r = self.sel(infnan, t_inf, r);
        let sm = self.ci(ty, 0x8000);
        let sign = self.b.ins().band(h, sm);
        let sign = self.b.ins().ishl_imm_s(sign, 16);
        let r = self.b.ins().bor(r, sign);
        self.float_of(r)
    }

    /// bf16 bit patterns to `f32`, exactly.
    pub(super) fn widen_bf16(&mut self, h: Value) -> Value {
        let t = self.b.ins().ishl_imm_s(h, 16);
        self.float_of(t)
    }

    /// `f32` to f16 bit patterns, rounded to nearest even.
    pub(super) fn narrow_f16(&mut self, x: Value) -> Value {
        let u = self.bits_of(x);
        let ty = self.b.func.dfg.value_type(u);
        let sm = self.ci(ty, 0x8000_0000u32 as i32 as i64);
        let sign = self.b.ins().band(u, sm);
        let a = self.b.ins().bxor(u, sign);
        // Infinity or NaN (or too large): keep a NaN's payload, never letting it become empty.
        let kept = self.b.ins().ushr_imm_s(a, 13);
        let pm = self.ci(ty, 0x3ff);
        let kept = self.b.ins().band(kept, pm);
        let zero = self.ci(ty, 0);
        let empty = self.b.ins().icmp(IntCC::Equal, kept, zero);
        let quiet = self.ci(ty, 0x200);
        let payload = self.sel(empty, quiet, kept);
        let inf = self.ci(ty, 0x7c00);
        let nan = self.b.ins().bor(payload, inf);
        let f32inf = self.ci(ty, 0x7f80_0000);
        let is_nan = self.b.ins().icmp(IntCC::SignedGreaterThan, a, f32inf);
        let big = self.sel(is_nan, nan, inf);
        // Subnormal results: let the FPU round by adding a magic number.
        let magic_bits = ((127 - 15) + (23 - 10) + 1) << 23;
        let fa = self.float_of(a);
        let magic = self.cf(ty, f32::from_bits(magic_bits));
        let sum = self.b.ins().fadd(fa, magic);
        let sum = self.bits_of(sum);
        let mb = self.ci(ty, magic_bits as i64);
        let den = self.b.ins().isub(sum, mb);
        // Normal results: rebias and round to nearest even by hand.
        let odd = self.b.ins().ushr_imm_s(a, 13);
        let one = self.ci(ty, 1);
        let odd = self.b.ins().band(odd, one);
        let rebias = self.ci(ty, (((15i64 - 127) << 23) + 0xfff) as i32 as i64);
        let n = self.b.ins().iadd(a, rebias);
        let n = self.b.ins().iadd(n, odd);
        let norm = self.b.ins().ushr_imm_s(n, 13);
        let min_normal = self.ci(ty, 113 << 23);
        let is_den = self.b.ins().icmp(IntCC::SignedLessThan, a, min_normal);
        let small = self.sel(is_den, den, norm);
        let f16max = self.ci(ty, (127 + 16) << 23);
        let is_big = self
            .b
            .ins()
            .icmp(IntCC::SignedGreaterThanOrEqual, a, f16max);
        let o = self.sel(is_big, big, small);
        let s = self.b.ins().ushr_imm_s(sign, 16);
        self.b.ins().bor(o, s)
    }

    /// `f32` to bf16 bit patterns, rounded to nearest even.
    pub(super) fn narrow_bf16(&mut self, x: Value) -> Value {
        let u = self.bits_of(x);
        let ty = self.b.func.dfg.value_type(u);
        let kept = self.b.ins().ushr_imm_s(u, 16);
        let one = self.ci(ty, 1);
        let odd = self.b.ins().band(kept, one);
        let bias = self.ci(ty, 0x7fff);
        let r = self.b.ins().iadd(u, bias);
        let r = self.b.ins().iadd(r, odd);
        let rne = self.b.ins().ushr_imm_s(r, 16);
        let pm = self.ci(ty, 0x7f);
        let payload = self.b.ins().band(kept, pm);
        let zero = self.ci(ty, 0);
        let empty = self.b.ins().icmp(IntCC::Equal, payload, zero);
        let q = self.ci(ty, 0x40);
        let quieted = self.b.ins().bor(kept, q);
        let nan = self.sel(empty, quieted, kept);
        let am = self.ci(ty, 0x7fff_ffff);
        let abs = self.b.ins().band(u, am);
        let inf = self.ci(ty, 0x7f80_0000);
        let is_nan = self.b.ins().icmp(IntCC::SignedGreaterThan, abs, inf);
        self.sel(is_nan, nan, rne)
    }

    /// Loads the bit patterns of one element (`i32`) or four (`i32x4`) of an 8-, 16- or 32-bit
    /// type: 16-bit patterns zero-extended, 8-bit integers extended by their signedness.
    pub(super) fn load_bits(&mut self, dtype: DType, p: Value, off: i32, vector: bool) -> Value {
        let unsigned = dtype == DType::U8;
        match (dtype.bits(), vector) {
            (8, false) if unsigned => self.b.ins().uload8(types::I32, mem(), p, off),
            (8, false) => self.b.ins().sload8(types::I32, mem(), p, off),
            (8, true) => {
                let word = self.b.ins().load(types::I32, mem(), p, off);
                let v = self.b.ins().scalar_to_vector(types::I32X4, word);
                let bytes = self.reinterpret(types::I8X16, v);
                if unsigned {
                    let halves = self.b.ins().uwiden_low(bytes);
                    self.b.ins().uwiden_low(halves)
                } else {
                    let halves = self.b.ins().swiden_low(bytes);
                    self.b.ins().swiden_low(halves)
                }
            }
            (16, false) => self.b.ins().uload16(types::I32, mem(), p, off),
            (16, true) => self.b.ins().uload16x4(mem(), p, off),
            (_, false) => self.b.ins().load(types::I32, mem(), p, off),
            (_, true) => self.b.ins().load(types::I32X4, mem(), p, off),
        }
    }

    /// Stores bit patterns produced by [`Lowerer::narrow`] (or loaded by `load_bits`); 8-bit
    /// integers saturate to their range, as a narrowing `Cast` does.
    pub(super) fn store_bits(&mut self, dtype: DType, p: Value, off: i32, bits: Value) {
        let vector = self.b.func.dfg.value_type(bits).is_vector();
        match (dtype.bits(), vector) {
            (8, false) => {
                let (lo, hi) = if dtype == DType::U8 {
                    (0, 255)
                } else {
                    (-128, 127)
                };
                let lo = self.ci(types::I32, lo);
                let hi = self.ci(types::I32, hi);
                let clamped = self.b.ins().smax(bits, lo);
                let clamped = self.b.ins().smin(clamped, hi);
                self.b.ins().istore8(mem(), clamped, p, off);
            }
            (8, true) => {
                let halves = self.b.ins().snarrow(bits, bits);
                let bytes = if dtype == DType::U8 {
                    self.b.ins().unarrow(halves, halves)
                } else {
                    self.b.ins().snarrow(halves, halves)
                };
                let words = self.reinterpret(types::I32X4, bytes);
                let low = self.b.ins().extractlane(words, 0);
                self.b.ins().store(mem(), low, p, off);
            }
            (16, false) => {
                self.b.ins().istore16(mem(), bits, p, off);
            }
            (16, true) => {
                let packed = self.b.ins().unarrow(bits, bits);
                let wide = self.b.ins().bitcast(types::I64X2, cast_flags(), packed);
                let low = self.b.ins().extractlane(wide, 0);
                self.b.ins().store(mem(), low, p, off);
            }
            _ => {
                self.b.ins().store(mem(), bits, p, off);
            }
        }
    }

    /// Bit patterns to the compute type of `dtype`.
    pub(super) fn widen(&mut self, dtype: DType, bits: Value) -> Value {
        match dtype {
            DType::F16 => self.widen_f16(bits),
            DType::BF16 => self.widen_bf16(bits),
            DType::F32 => self.float_of(bits),
            _ => bits,
        }
    }

    /// A compute value to the bit patterns of `dtype`.
    pub(super) fn narrow(&mut self, dtype: DType, x: Value) -> Value {
        match dtype {
            DType::F16 => self.narrow_f16(x),
            DType::BF16 => self.narrow_bf16(x),
            DType::F32 => self.bits_of(x),
            _ => x,
        }
    }

    /// Loads and widens one element or four.
    pub(super) fn load_val(&mut self, dtype: DType, p: Value, off: i32, vector: bool) -> Value {
        let bits = self.load_bits(dtype, p, off, vector);
        self.widen(dtype, bits)
    }

    /// Narrows and stores one element or four.
    pub(super) fn store_val(&mut self, dtype: DType, p: Value, off: i32, x: Value) {
        let bits = self.narrow(dtype, x);
        self.store_bits(dtype, p, off, bits);
    }

    /// `x` rounded to `dtype` and widened back (the value a store and a load would give).
    pub(super) fn quantize(&mut self, dtype: DType, x: Value) -> Value {
        match dtype {
            DType::F16 | DType::BF16 => {
                let bits = self.narrow(dtype, x);
                self.widen(dtype, bits)
            }
            _ => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cubevec_ir::DType;
    use cubevec_ir::kernel::{
        Buffer, BufferPlanner, CoreType, Expr, GmTile, Kernel, Layout, MemLevel, Param, ParamRole,
        ReduceKind, Slice, Stmt, Tile, VecArg, VecOp,
    };
    use cubevec_ir::target::Target;

    use crate::CpuBackend;
    use crate::numeric::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

    const LEN: u64 = 1 << 16;

    fn target() -> Target {
        Target::by_name("ascend910b2").expect("target")
    }

    fn param(name: &str, dtype: DType, role: ParamRole) -> Param {
        Param {
            name: name.into(),
            dtype,
            shape: vec![LEN],
            role,
        }
    }

    fn ub(name: &str, dtype: DType) -> Buffer {
        Buffer {
            name: name.into(),
            level: MemLevel::Ub,
            dtype,
            layout: Layout::Nd,
            rows: 1,
            cols: LEN,
            stages: 1,
            offset: 0,
        }
    }

    fn whole_gm(param: usize) -> GmTile {
        GmTile {
            param,
            batch: Expr::c(0),
            row: Expr::c(0),
            col: Expr::c(0),
            rows: Expr::c(1),
            cols: Expr::c(LEN),
        }
    }

    fn whole_ub(buf: cubevec_ir::kernel::BufId) -> Tile {
        Tile {
            buf,
            stage: Expr::c(0),
            row: Expr::c(0),
            col: Expr::c(0),
            rows: Expr::c(1),
            cols: Expr::c(LEN),
        }
    }

    fn at(buf: cubevec_ir::kernel::BufId, offset: Expr) -> Slice {
        Slice {
            buf,
            stage: Expr::c(0),
            offset,
        }
    }

    /// `in: from[LEN]` → `out: to[LEN]` through the statements `body(x, y)` on UB copies.
    fn run_unary(
        from: DType,
        to: DType,
        input: &[u8],
        body: impl Fn(cubevec_ir::kernel::BufId, cubevec_ir::kernel::BufId) -> Vec<Stmt>,
    ) -> Vec<u8> {
        let t = target();
        let mut planner = BufferPlanner::new();
        let x = planner.add(&t, ub("x", from));
        let y = planner.add(&t, ub("y", to));
        let mut vector = vec![Stmt::CopyIn {
            dst: whole_ub(x),
            src: whole_gm(0),
        }];
        vector.extend(body(x, y));
        vector.push(Stmt::CopyOut {
            dst: whole_gm(1),
            src: whole_ub(y),
        });
        let kernel = Kernel {
            name: "convert".into(),
            core: CoreType::Aiv,
            blocks: 1,
            params: vec![
                param("in", from, ParamRole::Input),
                param("out", to, ParamRole::Output),
            ],
            buffers: planner.finish(),
            cube: Vec::new(),
            vector,
            tiling: BTreeMap::new(),
        };
        let compiled = CpuBackend::new(&t)
            .expect("backend")
            .compile_kernel(&kernel)
            .expect("compile");
        let mut src = input.to_vec();
        let mut dst = vec![0u8; (LEN * to.bits() as u64 / 8) as usize];
        compiled.run(&mut [&mut src, &mut dst]).expect("run");
        dst
    }

    /// A `Cast` over all elements but the last three, then one over those (the masked tail).
    fn cast(x: cubevec_ir::kernel::BufId, y: cubevec_ir::kernel::BufId) -> Vec<Stmt> {
        let part = |off: u64, count: u64| Stmt::Vector {
            op: VecOp::Cast,
            dst: at(y, Expr::c(off)),
            srcs: vec![VecArg::Slice(at(x, Expr::c(off)))],
            count: Expr::c(count),
        };
        vec![part(0, LEN - 3), part(LEN - 3, 3)]
    }

    fn u16s(bytes: &[u8]) -> Vec<u16> {
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    fn u32s(bytes: &[u8]) -> Vec<u32> {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn every_u16() -> Vec<u8> {
        (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect()
    }

    #[test]
    fn vector_widening_and_narrowing_of_every_16_bit_pattern() {
        for (dtype, widen) in [
            (DType::F16, f16_to_f32 as fn(u16) -> f32),
            (DType::BF16, bf16_to_f32),
        ] {
            let wide = run_unary(dtype, DType::F32, &every_u16(), cast);
            for (h, w) in u32s(&wide).into_iter().enumerate() {
                assert_eq!(w, widen(h as u16).to_bits(), "{dtype} {h:#06x}");
            }
            let back = run_unary(DType::F32, dtype, &wide, cast);
            for (h, b) in u16s(&back).into_iter().enumerate() {
                assert_eq!(b, h as u16, "{dtype} {h:#06x} -> f32 -> {dtype}");
            }
        }
    }

    #[test]
    fn vector_casts_between_8_bit_integers_and_f16_are_exact_and_saturate() {
        for (dtype, lo, hi) in [(DType::I8, -128.0, 127.0), (DType::U8, 0.0, 255.0)] {
            let value = |b: u8| {
                if dtype == DType::I8 {
                    f32::from(b as i8)
                } else {
                    f32::from(b)
                }
            };
            let bytes: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
            let half = run_unary(dtype, DType::F16, &bytes, cast);
            for (b, h) in bytes.iter().zip(u16s(&half)) {
                assert_eq!(f16_to_f32(h), value(*b), "{dtype} {b:#04x} -> f16");
            }
            let back = run_unary(DType::F16, dtype, &half, cast);
            assert_eq!(back, bytes, "{dtype} -> f16 -> {dtype}");
            // Every f16 pattern: nearest even, saturated to the range, NaN to 0.
            let narrowed = run_unary(DType::F16, dtype, &every_u16(), cast);
            for (h, got) in narrowed.into_iter().enumerate() {
                let x = f16_to_f32(h as u16);
                let want = if x.is_nan() {
                    0.0
                } else {
                    x.round_ties_even().clamp(lo, hi)
                };
                assert_eq!(value(got), want, "f16 {h:#06x} -> {dtype}");
            }
        }
    }

    #[test]
    fn vector_narrowing_of_f32_patterns_rounds_like_the_reference() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let patterns: Vec<u32> = (0..LEN)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u32
            })
            .collect();
        let bytes: Vec<u8> = patterns.iter().flat_map(|p| p.to_le_bytes()).collect();
        for (dtype, narrow) in [
            (DType::F16, f32_to_f16 as fn(f32) -> u16),
            (DType::BF16, f32_to_bf16),
        ] {
            let out = run_unary(DType::F32, dtype, &bytes, cast);
            for (p, h) in patterns.iter().zip(u16s(&out)) {
                assert_eq!(h, narrow(f32::from_bits(*p)), "{dtype} of {p:#x}");
            }
        }
    }

    #[test]
    fn scalar_widening_and_narrowing_roundtrip_every_16_bit_pattern() {
        // Duplicate of an element: scalar widening, vector narrowing. A one-element sum:
        // vector widening, scalar narrowing (f16 only: reductions take f16 or f32).
        let each = |op: fn(cubevec_ir::kernel::BufId, cubevec_ir::kernel::BufId) -> Stmt| {
            move |x, y| {
                vec![Stmt::For {
                    var: "i".into(),
                    extent: Expr::c(LEN),
                    pipelined: false,
                    body: vec![op(x, y)],
                }]
            }
        };
        let duplicate = each(|x, y| Stmt::Vector {
            op: VecOp::Duplicate,
            dst: at(y, Expr::var("i")),
            srcs: vec![VecArg::Element(at(x, Expr::var("i")))],
            count: Expr::c(1),
        });
        let sum = each(|x, y| Stmt::Reduce {
            kind: ReduceKind::Sum,
            dst: at(y, Expr::var("i")),
            src: at(x, Expr::var("i")),
            count: Expr::c(1),
        });
        for dtype in [DType::F16, DType::BF16] {
            let out = run_unary(dtype, dtype, &every_u16(), duplicate);
            for (h, b) in u16s(&out).into_iter().enumerate() {
                assert_eq!(b, h as u16, "duplicate of {dtype} {h:#06x}");
            }
        }
        let out = run_unary(DType::F16, DType::F16, &every_u16(), sum);
        for (h, b) in u16s(&out).into_iter().enumerate() {
            let x = f16_to_f32(h as u16);
            // Adding the zero lanes turns -0 into +0 and quiets signalling NaNs.
            let expected = f32_to_f16(x + 0.0 + 0.0);
            assert_eq!(b, expected, "sum of f16 {h:#06x}");
        }
    }
}
