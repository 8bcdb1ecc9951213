//! `Mmad`: `c[m×n] (+)= a[m×k] · b[k×n]` with a from L0A (ZZ), b from L0B (ZN) and c in L0C
//! (NZ, f32 or i32).
//!
//! Both operands are first packed from their fractal layouts into the arena's scratch,
//! widened to `f32` (or `i32` for int8), four depths of four lines at a time (4 × 4 transposes
//! in registers): a in row blocks of 12, 8 or 4 rows stored `[k][rows]`, b in column blocks of
//! 4 stored `[k][4]`. The micro-kernel then keeps a block of up to
//! 12 × 4 results in f32x4 registers over the whole depth (k unrolled four times), broadcasting
//! one element of a per row and step, and reads and writes c in its NZ layout once per block.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC, types};
use cranelift_frontend::Variable;
use cubevec_ir::DType;
use cubevec_ir::kernel::stmt::mmad_accumulator;
use cubevec_ir::kernel::{BufId, Expr, MemLevel};

use super::region::esize;
use super::{Lowerer, mem};
use crate::error::CpuError;
use crate::layout::Addressing;

/// Rows of the largest micro-kernel; smaller blocks (8, 4) finish rows left over.
const MR: i64 = 12;
/// Depth steps per iteration of the micro-kernel's main loop.
const KU: i64 = 4;

/// An operand of the packing step.
struct Operand {
    base: Value,
    dtype: DType,
    addr: Addressing,
}

impl Lowerer<'_> {
    /// Lowers one `Mmad`.
    pub(super) fn mmad(
        &mut self,
        c: (BufId, &Expr),
        a: (BufId, &Expr),
        b: (BufId, &Expr),
        (m, n, k): (&Expr, &Expr, &Expr),
        init: &Expr,
    ) -> Result<(), CpuError> {
        let (a_base, abuf) = self.stage_base(a.0, a.1)?;
        let (b_base, bbuf) = self.stage_base(b.0, b.1)?;
        let (c_base, cbuf) = self.stage_base(c.0, c.1)?;
        if abuf.level != MemLevel::L0A || bbuf.level != MemLevel::L0B || cbuf.level != MemLevel::L0C
        {
            return Err(self.unsupported("Mmad operands must be in L0A, L0B and L0C"));
        }
        if abuf.dtype != bbuf.dtype || mmad_accumulator(abuf.dtype) != Some(cbuf.dtype) {
            return Err(self.unsupported(format!(
                "no Mmad for {} x {} -> {}",
                abuf.dtype, bbuf.dtype, cbuf.dtype
            )));
        }
        let (m, n, k) = (self.expr(m)?, self.expr(n)?, self.expr(k)?);
        let zero = self.iconst(0);
        let m_max = abuf.rows.min(cbuf.rows) as i64;
        let n_max = bbuf.cols.min(cbuf.cols) as i64;
        let k_max = abuf.cols.min(bbuf.rows) as i64;
        self.check_range(zero, m, 16, m_max, format!("m outside 16..={m_max}"));
        self.check_aligned(m, 16, "m is not a multiple of 16");
        self.check_range(zero, n, 16, n_max, format!("n outside 16..={n_max}"));
        self.check_aligned(n, 16, "n is not a multiple of 16");
        self.check_range(zero, k, 1, k_max, format!("k outside 1..={k_max}"));
        let init = self.expr(init)?;
        let overwrite = self.b.ins().icmp_imm_s(IntCC::NotEqual, init, 0);
        let ones = self.b.ins().iconst(types::I32, u32::MAX as i64);
        let nothing = self.b.ins().iconst(types::I32, 0);
        // Kept in a general register: an XMM register live across the micro-kernels would
        // push an accumulator out to the stack.
        let overwrite = self.b.ins().select(overwrite, ones, nothing);

        let arena = self.plan.arena(self.side);
        let (pack_a, pack_b) = (arena.pack_a as i64, arena.pack_b as i64);
        let pa = self.b.ins().iadd_imm_s(self.arena, pack_a);
        let pb = self.b.ins().iadd_imm_s(self.arena, pack_b);
        let int = cbuf.dtype == DType::I32;
        let a_op = Operand {
            base: a_base,
            dtype: abuf.dtype,
            addr: Addressing::of(abuf),
        };
        let b_op = Operand {
            base: b_base,
            dtype: bbuf.dtype,
            addr: Addressing::of(bbuf),
        };
        let c_addr = Addressing::of(cbuf);

        // Both packs run over the depth rounded up to 4: the extra depths are read from inside
        // the operands' fractals (whole fractals of at least 8 depths) and never used.
        let k4 = self.b.ins().iadd_imm_s(k, 3);
        let k4 = self.b.ins().band_imm_s(k4, !3);
        let quads = self.b.ins().ushr_imm_s(k4, 2);
        // Pack a: block (r0, s) at pa + r0·k4·4, laid out [k4][s].
        self.row_blocks(m, &mut |l, r0, s| {
            let rows: Vec<Value> = (0..s)
                .map(|i| {
                    let r = l.b.ins().iadd_imm_s(r0, i);
                    l.part(a_op.addr.rows, r)
                })
                .collect();
            let dst = l.b.ins().imul(r0, k4);
            let dst = l.at(pa, dst, 4);
            l.for_n(quads, |l, q| {
                let kk = l.b.ins().ishl_imm_s(q, 2);
                let cp = l.part(a_op.addr.cols, kk);
                let d = l.at(dst, q, 16 * s);
                for g in 0..s as usize / 4 {
                    let lines = [0, 1, 2, 3].map(|u| l.b.ins().iadd(rows[4 * g + u], cp));
                    l.pack_quad(&a_op, lines, d, 4 * s, 16 * g as i64);
                }
                Ok(())
            })
        })?;
        // Pack b: column block nb at pb + nb·k4·16, laid out [k4][4].
        let col_blocks = self.b.ins().ushr_imm_s(n, 2);
        self.for_n(col_blocks, |l, nb| {
            let c0 = l.b.ins().ishl_imm_s(nb, 2);
            let cols = [0, 1, 2, 3].map(|j| {
                let c = l.b.ins().iadd_imm_s(c0, j);
                l.part(b_op.addr.cols, c)
            });
            let dst = l.b.ins().imul(nb, k4);
            let dst = l.at(pb, dst, 16);
            l.for_n(quads, |l, q| {
                let kk = l.b.ins().ishl_imm_s(q, 2);
                let rp = l.part(b_op.addr.rows, kk);
                let d = l.at(dst, q, 64);
                let lines = cols.map(|cp| l.b.ins().iadd(rp, cp));
                l.pack_quad(&b_op, lines, d, 16, 0);
                Ok(())
            })
        })?;
        // Multiply block by block.
        self.row_blocks(m, &mut |l, r0, s| {
            let a_blk = l.b.ins().imul(r0, k4);
            let a_blk = l.at(pa, a_blk, 4);
            let c_rows = l.part(c_addr.rows, r0);
            l.for_n(col_blocks, |l, nb| {
                let col = l.b.ins().ishl_imm_s(nb, 2);
                let cp = l.part(c_addr.cols, col);
                let off = l.b.ins().iadd(c_rows, cp);
                let c_ptr = l.at(c_base, off, 4);
                let b_blk = l.b.ins().imul(nb, k4);
                let b_blk = l.at(pb, b_blk, 16);
                l.micro_kernel(s, a_blk, b_blk, c_ptr, k, overwrite, int)
            })
        })
    }

    /// Packs four lines (rows of a, columns of b) of four consecutive depths each, starting at
    /// element offsets `lines` of the operand (contiguous in its layout), as four vectors of
    /// the four lines at one depth: depth `w` goes to `dst + off + w·stride` bytes.
    fn pack_quad(&mut self, op: &Operand, lines: [Value; 4], dst: Value, stride: i64, off: i64) {
        let e = esize(op.dtype);
        if op.dtype == DType::I8 {
            for (u, &line) in lines.iter().enumerate() {
                let p = self.at(op.base, line, e);
                for w in 0..4 {
                    let v = self.b.ins().sload8(types::I32, mem(), p, w as i32);
                    let at = off + w * stride + 4 * u as i64;
                    self.b.ins().store(mem(), v, dst, at as i32);
                }
            }
            return;
        }
        let quads = lines.map(|line| {
            let p = self.at(op.base, line, e);
            self.load_val(op.dtype, p, 0, true)
        });
        for (w, v) in self.transpose4(quads).into_iter().enumerate() {
            let at = off + w as i64 * stride;
            self.b.ins().store(mem(), v, dst, at as i32);
        }
    }

    /// The transpose of a 4 × 4 block held as four 32-bit-lane vectors (rows in, columns out).
    fn transpose4(&mut self, rows: [Value; 4]) -> [Value; 4] {
        let ty = self.b.func.dfg.value_type(rows[0]);
        let bytes = rows.map(|r| self.reinterpret(types::I8X16, r));
        // Byte masks of unpack-low/high of 32-bit and of 64-bit lanes.
        let mask = |l: &mut Self, lane: usize, high: bool| {
            let half = if high { 8 } else { 0 };
            let m: Vec<u8> = (0..16usize)
                .map(|i| {
                    let (group, byte) = (i / lane, i % lane);
                    let from_b = group % 2 == 1;
                    (half + (group / 2) * lane + byte + if from_b { 16 } else { 0 }) as u8
                })
                .collect();
            l.b.func.dfg.immediates.push(m.into())
        };
        let (lo32, hi32) = (mask(self, 4, false), mask(self, 4, true));
        let (lo64, hi64) = (mask(self, 8, false), mask(self, 8, true));
        let mut shuffle = |a, b, m| self.b.ins().shuffle(a, b, m);
        let t0 = shuffle(bytes[0], bytes[1], lo32);
        let t1 = shuffle(bytes[0], bytes[1], hi32);
        let t2 = shuffle(bytes[2], bytes[3], lo32);
        let t3 = shuffle(bytes[2], bytes[3], hi32);
        let out = [
            shuffle(t0, t2, lo64),
            shuffle(t0, t2, hi64),
            shuffle(t1, t3, lo64),
            shuffle(t1, t3, hi64),
        ];
        out.map(|o| self.reinterpret(ty, o))
    }

    /// Calls `f(r0, s)` for row blocks covering `0..m` (`m` a multiple of 4): blocks of
    /// [`MR`] rows, then at most one of 8 and one of 4.
    fn row_blocks(
        &mut self,
        m: Value,
        f: &mut dyn FnMut(&mut Self, Value, i64) -> Result<(), CpuError>,
    ) -> Result<(), CpuError> {
        let mr = self.iconst(MR);
        let full = self.b.ins().udiv(m, mr);
        self.for_n(full, |l, i| {
            let r0 = l.b.ins().imul_imm_s(i, MR);
            f(l, r0, MR)
        })?;
        let base = self.b.ins().imul_imm_s(full, MR);
        let rest = self.b.ins().isub(m, base);
        let eight = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, rest, 8);
        self.if_then(eight, |l| f(l, base, 8))?;
        let after = self.b.ins().iadd_imm_s(base, 8);
        let next = self.b.ins().select(eight, after, base);
        let left = self.b.ins().isub(m, next);
        let four = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, left, 4);
        self.if_then(four, |l| f(l, next, 4))
    }

    /// `s × 4` results at `c` (rows 64 bytes apart) over depth `k` from packed blocks, added to
    /// `c`'s contents unless `overwrite` (an `i32`, all ones or all zeros).
    #[allow(clippy::too_many_arguments)]
    fn micro_kernel(
        &mut self,
        s: i64,
        a: Value,
        b: Value,
        c: Value,
        k: Value,
        overwrite: Value,
        int: bool,
    ) -> Result<(), CpuError> {
        let ty = if int { types::I32X4 } else { types::F32X4 };
        // Start from zero (first depth step) or from the accumulator's contents: a lane select
        // rather than a branch, which keeps the accumulators' registers stable.
        let zero = if int {
            self.ci(ty, 0)
        } else {
            self.cf(ty, 0.0)
        };
        let mask = self.b.ins().splat(types::I32X4, overwrite);
        let accs: Vec<Variable> = (0..s)
            .map(|i| {
                let old = self.b.ins().load(ty, mem(), c, (64 * i) as i32);
                let v = self.sel(mask, zero, old);
                let var = self.b.declare_var(ty);
                self.b.def_var(var, v);
                var
            })
            .collect();
        let pa = self.b.declare_var(types::I64);
        let pb = self.b.declare_var(types::I64);
        self.b.def_var(pa, a);
        self.b.def_var(pb, b);
        let steps = |l: &mut Self, count: i64| {
            let (a, b) = (l.b.use_var(pa), l.b.use_var(pb));
            for u in 0..count {
                let bv = l.b.ins().load(ty, mem(), b, (16 * u) as i32);
                for (i, &acc) in accs.iter().enumerate() {
                    let at = (4 * (u * s + i as i64)) as i32;
                    let x = l.b.ins().load(ty.lane_type(), mem(), a, at);
                    let x = l.b.ins().splat(ty, x);
                    let old = l.b.use_var(acc);
                    let new = if int {
                        let p = l.b.ins().imul(x, bv);
                        l.b.ins().iadd(old, p)
                    } else if l.fma {
                        l.b.ins().fma(x, bv, old)
                    } else {
                        let p = l.b.ins().fmul(x, bv);
                        l.b.ins().fadd(old, p)
                    };
                    l.b.def_var(acc, new);
                }
            }
            let a = l.b.ins().iadd_imm_s(a, 4 * count * s);
            let b = l.b.ins().iadd_imm_s(b, 16 * count);
            l.b.def_var(pa, a);
            l.b.def_var(pb, b);
        };
        let main = self.b.ins().ushr_imm_s(k, KU.trailing_zeros() as i64);
        self.for_n(main, |l, _| {
            steps(l, KU);
            Ok(())
        })?;
        let rest = self.b.ins().band_imm_s(k, KU - 1);
        self.for_n(rest, |l, _| {
            steps(l, 1);
            Ok(())
        })?;
        for (i, &acc) in accs.iter().enumerate() {
            let v = self.b.use_var(acc);
            self.b.ins().store(mem(), v, c, (64 * i) as i32);
        }
        Ok(())
    }
}
