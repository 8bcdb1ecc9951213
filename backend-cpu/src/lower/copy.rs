//! Data movement: GM ↔ L1/UB, L1 → L0A/L0B and the Fixpipe L0C → GM, over the real layouts.
//!
//! Fractal layouts store 32-byte rows (or, in L0B, 32-byte columns): whenever source and
//! destination agree on such runs they are copied 32 bytes at a time, otherwise element by
//! element. `LoadL0` moves whole fractals along the run direction, as the hardware does.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC, types};
use cubevec_ir::DType;
use cubevec_ir::kernel::{GmTile, MemLevel, ParamRole, Tile, fractal_cols};

use super::convert::compute_ty;
use super::region::esize;
use super::{Lowerer, mem};
use crate::error::CpuError;
use crate::layout::Part;

/// Bytes between consecutive 32-byte runs `fc` indices apart along a coordinate whose address
/// part is `p` (a fractal coordinate split at `fc`, or a linear one).
fn chunk_step(p: Part, fc: i64, e: i64) -> i64 {
    if p.shift > 0 { p.hi * e } else { p.hi * fc * e }
}

impl Lowerer<'_> {
    /// Copies `n` bytes (any `n ≥ 0`).
    fn memcpy(&mut self, dst: Value, src: Value, n: Value) -> Result<(), CpuError> {
        let blocks = self.b.ins().ushr_imm_s(n, 4);
        self.for_n(blocks, |l, i| {
            let off = l.b.ins().ishl_imm_s(i, 4);
            let s = l.b.ins().iadd(src, off);
            let d = l.b.ins().iadd(dst, off);
            let v = l.b.ins().load(types::I8X16, mem(), s, 0);
            l.b.ins().store(mem(), v, d, 0);
            Ok(())
        })?;
        let done = self.b.ins().band_imm_s(n, !15);
        let rest = self.b.ins().band_imm_s(n, 15);
        self.for_n(rest, |l, i| {
            let off = l.b.ins().iadd(done, i);
            let s = l.b.ins().iadd(src, off);
            let d = l.b.ins().iadd(dst, off);
            let v = l.b.ins().uload8(types::I32, mem(), s, 0);
            l.b.ins().istore8(mem(), v, d, 0);
            Ok(())
        })
    }

    /// Copies one 32-byte fractal row.
    fn copy32(&mut self, dst: Value, src: Value) {
        for off in [0, 16] {
            let v = self.b.ins().load(types::I8X16, mem(), src, off);
            self.b.ins().store(mem(), v, dst, off);
        }
    }

    /// Copies `n` 32-byte chunks, advancing the destination and source by their steps; returns
    /// the pointers after the last chunk.
    fn copy_chunks(
        &mut self,
        n: Value,
        (dst, dst_step): (Value, i64),
        (src, src_step): (Value, i64),
    ) -> Result<(Value, Value), CpuError> {
        let (dv, sv) = (
            self.b.declare_var(types::I64),
            self.b.declare_var(types::I64),
        );
        self.b.def_var(dv, dst);
        self.b.def_var(sv, src);
        self.for_n(n, |l, _| {
            let (d, s) = (l.b.use_var(dv), l.b.use_var(sv));
            l.copy32(d, s);
            let d = l.b.ins().iadd_imm_s(d, dst_step);
            let s = l.b.ins().iadd_imm_s(s, src_step);
            l.b.def_var(dv, d);
            l.b.def_var(sv, s);
            Ok(())
        })?;
        Ok((self.b.use_var(dv), self.b.use_var(sv)))
    }

    /// Copies one element of `bytes` bytes.
    fn copy_elem(&mut self, dst: Value, src: Value, bytes: i64) {
        let v = match bytes {
            1 => self.b.ins().uload8(types::I32, mem(), src, 0),
            2 => self.b.ins().uload16(types::I32, mem(), src, 0),
            4 => self.b.ins().load(types::I32, mem(), src, 0),
            _ => self.b.ins().load(types::I64, mem(), src, 0),
        };
        match bytes {
            1 => self.b.ins().istore8(mem(), v, dst, 0),
            2 => self.b.ins().istore16(mem(), v, dst, 0),
            _ => self.b.ins().store(mem(), v, dst, 0),
        };
    }

    /// `CopyIn`: GM (ND) → L1 (NZ, columns zero-padded to whole fractals) or UB (ND).
    pub(super) fn copy_in(&mut self, dst: &Tile, src: &GmTile) -> Result<(), CpuError> {
        let d = self.tile(dst)?;
        let g = self.gm(src)?;
        if d.buf.dtype != g.param.dtype {
            return Err(self.unsupported(format!("copies {} into {}", g.param.dtype, d.buf.dtype)));
        }
        self.check_eq(d.rows, g.rows, "source and destination row counts differ");
        self.check_eq(
            d.cols,
            g.cols,
            "source and destination column counts differ",
        );
        let e = esize(d.buf.dtype);
        let pitch = g.pitch * e;
        match d.buf.level {
            MemLevel::Ub => self.for_n(d.rows, |l, r| {
                let row = l.b.ins().iadd(d.row, r);
                let rp = l.part(d.addr.rows, row);
                let cp = l.part(d.addr.cols, d.col);
                let off = l.b.ins().iadd(rp, cp);
                let dp = l.at(d.base, off, e);
                let sp = l.b.ins().imul_imm_s(r, pitch);
                let sp = l.b.ins().iadd(g.base, sp);
                let n = l.b.ins().imul_imm_s(d.cols, e);
                l.memcpy(dp, sp, n)
            }),
            MemLevel::L1 => {
                let fc = fractal_cols(MemLevel::L1, d.buf.dtype) as i64;
                self.check_aligned(d.col, fc, "L1 destination column is not fractal aligned");
                let full = self.b.ins().ushr_imm_s(d.cols, fc.trailing_zeros() as i64);
                let tail = self.b.ins().band_imm_s(d.cols, fc - 1);
                let cp = self.part(d.addr.cols, d.col);
                // Consecutive fractal rows of one matrix row are a fractal column apart.
                let d_step = chunk_step(d.addr.cols, fc, e);
                // Whole fractal rows, one source row at a time (the source is read in
                // order; walking a fractal column instead reads rows a pitch apart, which
                // alias in the cache when the pitch is a multiple of 4 KiB), then the
                // zero-padded last columns.
                let rp = self.part(d.addr.rows, d.row);
                let off = self.b.ins().iadd(rp, cp);
                let first = self.at(d.base, off, e);
                let row_step = chunk_step(d.addr.rows, 1, e);
                self.for_n(d.rows, |l, r| {
                    let dp = l.b.ins().imul_imm_s(r, row_step);
                    let dp = l.b.ins().iadd(first, dp);
                    let sp = l.b.ins().imul_imm_s(r, pitch);
                    let sp = l.b.ins().iadd(g.base, sp);
                    l.copy_chunks(full, (dp, d_step), (sp, 32))?;
                    Ok(())
                })?;
                let partial = self.b.ins().icmp_imm_s(IntCC::NotEqual, tail, 0);
                self.if_then(partial, |l| {
                    let dp = l.b.ins().imul_imm_s(full, d_step);
                    let dp = l.b.ins().iadd(first, dp);
                    let sp = l.b.ins().imul_imm_s(full, 32);
                    let sp = l.b.ins().iadd(g.base, sp);
                    let n = l.b.ins().imul_imm_s(tail, e);
                    l.for_n(d.rows, |l, r| {
                        let d = l.b.ins().imul_imm_s(r, row_step);
                        let d = l.b.ins().iadd(dp, d);
                        let s = l.b.ins().imul_imm_s(r, pitch);
                        let s = l.b.ins().iadd(sp, s);
                        let zero = l.b.ins().iconst(types::I8, 0);
                        let zero = l.b.ins().splat(types::I8X16, zero);
                        l.b.ins().store(mem(), zero, d, 0);
                        l.b.ins().store(mem(), zero, d, 16);
                        l.memcpy(d, s, n)
                    })
                })
            }
            other => {
                Err(self.unsupported(format!("GM copies go to L1 or UB, not {}", other.name())))
            }
        }
    }

    /// `CopyOut`: UB (ND) → GM (ND).
    pub(super) fn copy_out(&mut self, dst: &GmTile, src: &Tile) -> Result<(), CpuError> {
        let s = self.tile(src)?;
        let g = self.gm(dst)?;
        if s.buf.level != MemLevel::Ub || s.buf.dtype != g.param.dtype {
            return Err(self.unsupported(format!(
                "CopyOut reads {} {} into {} GM",
                s.buf.level.name(),
                s.buf.dtype,
                g.param.dtype
            )));
        }
        if matches!(g.param.role, ParamRole::Input) {
            return Err(self.unsupported(format!("`{}` is an input", g.param.name)));
        }
        self.check_eq(s.rows, g.rows, "source and destination row counts differ");
        self.check_eq(
            s.cols,
            g.cols,
            "source and destination column counts differ",
        );
        let e = esize(s.buf.dtype);
        let pitch = g.pitch * e;
        self.for_n(s.rows, |l, r| {
            let row = l.b.ins().iadd(s.row, r);
            let rp = l.part(s.addr.rows, row);
            let off = l.b.ins().iadd(rp, s.col);
            let sp = l.at(s.base, off, e);
            let dp = l.b.ins().imul_imm_s(r, pitch);
            let dp = l.b.ins().iadd(g.base, dp);
            let n = l.b.ins().imul_imm_s(s.cols, e);
            l.memcpy(dp, sp, n)
        })
    }

    /// `LoadL0`: L1 (NZ) → L0A (ZZ) or L0B (ZN), optionally transposed.
    pub(super) fn load_l0(
        &mut self,
        dst: &Tile,
        src: &Tile,
        transpose: bool,
    ) -> Result<(), CpuError> {
        let d = self.tile(dst)?;
        let s = self.tile(src)?;
        if s.buf.level != MemLevel::L1
            || !matches!(d.buf.level, MemLevel::L0A | MemLevel::L0B)
            || s.buf.dtype != d.buf.dtype
        {
            return Err(self.unsupported("LoadL0 moves L1 to L0A or L0B without conversion"));
        }
        let (er, ec) = if transpose {
            (s.cols, s.rows)
        } else {
            (s.rows, s.cols)
        };
        self.check_eq(d.rows, er, "destination rows do not hold the source");
        self.check_eq(d.cols, ec, "destination columns do not hold the source");
        let e = esize(s.buf.dtype);
        let fc = fractal_cols(MemLevel::L1, s.buf.dtype) as i64;
        // L1 stores 32-byte runs along its columns; L0A along its columns, L0B along its rows.
        let runs_agree = (d.buf.level == MemLevel::L0A) != transpose;
        if runs_agree {
            self.check_aligned(s.col, fc, "L1 source column is not fractal aligned");
            let (d_run_start, d_run_name) = if transpose {
                (d.row, "row")
            } else {
                (d.col, "column")
            };
            self.check_aligned(
                d_run_start,
                fc,
                format!("L0 destination {d_run_name} is not fractal aligned"),
            );
            let chunks = self.b.ins().iadd_imm_s(s.cols, fc - 1);
            let chunks = self.b.ins().ushr_imm_s(chunks, fc.trailing_zeros() as i64);
            let s_step = chunk_step(s.addr.cols, fc, e);
            let d_step = if transpose {
                chunk_step(d.addr.rows, fc, e)
            } else {
                chunk_step(d.addr.cols, fc, e)
            };
            let scp = self.part(s.addr.cols, s.col);
            return self.for_n(s.rows, |l, r| {
                let srow = l.b.ins().iadd(s.row, r);
                let srp = l.part(s.addr.rows, srow);
                let so = l.b.ins().iadd(srp, scp);
                let sp = l.at(s.base, so, e);
                // Source row r lands in destination row r, or column r when transposing.
                let (dr, dc) = if transpose {
                    (d.row, l.b.ins().iadd(d.col, r))
                } else {
                    (l.b.ins().iadd(d.row, r), d.col)
                };
                let drp = l.part(d.addr.rows, dr);
                let dcp = l.part(d.addr.cols, dc);
                let doff = l.b.ins().iadd(drp, dcp);
                let dp = l.at(d.base, doff, e);
                l.copy_chunks(chunks, (dp, d_step), (sp, s_step))?;
                Ok(())
            });
        }

        // Fractal transposes: element by element.
        self.for_n(d.rows, |l, r| {
            let dr = l.b.ins().iadd(d.row, r);
            let drp = l.part(d.addr.rows, dr);
            let s_fixed = if transpose {
                let sc = l.b.ins().iadd(s.col, r);
                l.part(s.addr.cols, sc)
            } else {
                let sr = l.b.ins().iadd(s.row, r);
                l.part(s.addr.rows, sr)
            };
            l.for_n(d.cols, |l, c| {
                let dc = l.b.ins().iadd(d.col, c);
                let dcp = l.part(d.addr.cols, dc);
                let doff = l.b.ins().iadd(drp, dcp);
                let s_var = if transpose {
                    let sr = l.b.ins().iadd(s.row, c);
                    l.part(s.addr.rows, sr)
                } else {
                    let sc = l.b.ins().iadd(s.col, c);
                    l.part(s.addr.cols, sc)
                };
                let soff = l.b.ins().iadd(s_fixed, s_var);
                let sp = l.at(s.base, soff, e);
                let dp = l.at(d.base, doff, e);
                l.copy_elem(dp, sp, e);
                Ok(())
            })
        })
    }

    /// `Fixpipe`: L0C (NZ, f32/i32) → GM (ND) with conversion, optional ReLU, optional atomic
    /// accumulation (under the parameter's lock).
    pub(super) fn fixpipe(
        &mut self,
        dst: &GmTile,
        src: &Tile,
        relu: bool,
        atomic: bool,
    ) -> Result<(), CpuError> {
        let s = self.tile(src)?;
        let g = self.gm(dst)?;
        let (acc, out) = (s.buf.dtype, g.param.dtype);
        let legal = matches!(
            (acc, out),
            (DType::F32, DType::F32 | DType::F16 | DType::BF16)
                | (DType::I32, DType::I32 | DType::F16)
        );
        if s.buf.level != MemLevel::L0C || !legal {
            return Err(self.unsupported(format!(
                "no Fixpipe from {} {acc} to {out}",
                s.buf.level.name()
            )));
        }
        if matches!(g.param.role, ParamRole::Input) {
            return Err(self.unsupported(format!("`{}` is an input", g.param.name)));
        }
        self.check_eq(s.rows, g.rows, "source and destination row counts differ");
        self.check_eq(
            s.cols,
            g.cols,
            "source and destination column counts differ",
        );
        self.check_aligned(s.col, 16, "L0C source column is not fractal aligned");
        let eo = esize(out);
        let pitch = g.pitch * eo;
        let param = self.iconst(dst.param as i64);
        if atomic {
            let lock = self.fns.lock;
            self.b.ins().call(lock, &[self.ctx, param]);
        }
        let chunks = self.b.ins().iadd_imm_s(s.cols, 15);
        let chunks = self.b.ins().ushr_imm_s(chunks, 4);
        self.for_n(s.rows, |l, r| {
            let srow = l.b.ins().iadd(s.row, r);
            let srp = l.part(s.addr.rows, srow);
            let dp = l.b.ins().imul_imm_s(r, pitch);
            let drow = l.b.ins().iadd(g.base, dp);
            l.for_n(chunks, |l, j| {
                let c = l.b.ins().ishl_imm_s(j, 4);
                let scol = l.b.ins().iadd(s.col, c);
                let scp = l.part(s.addr.cols, scol);
                let so = l.b.ins().iadd(srp, scp);
                let sp = l.at(s.base, so, 4);
                let dp = l.at(drow, c, eo);
                let left = l.b.ins().isub(s.cols, c);
                let sixteen = l.iconst(16);
                let lt = l.b.ins().icmp(IntCC::SignedLessThan, left, sixteen);
                let n = l.b.ins().select(lt, left, sixteen);
                let quads = l.b.ins().ushr_imm_s(n, 2);
                l.for_n(quads, |l, q| {
                    let sq = l.at(sp, q, 16);
                    let dq = l.at(dp, q, 4 * eo);
                    l.fix_values(sq, dq, acc, out, relu, atomic, true);
                    Ok(())
                })?;
                let done = l.b.ins().band_imm_s(n, !3);
                let sp = l.at(sp, done, 4);
                let dp = l.at(dp, done, eo);
                let rest = l.b.ins().band_imm_s(n, 3);
                l.for_n(rest, |l, i| {
                    let si = l.at(sp, i, 4);
                    let di = l.at(dp, i, eo);
                    l.fix_values(si, di, acc, out, relu, atomic, false);
                    Ok(())
                })
            })
        })?;
        if atomic {
            let unlock = self.fns.unlock;
            self.b.ins().call(unlock, &[self.ctx, param]);
        }
        Ok(())
    }

    /// Converts one accumulator element (or four) at `sp` and stores or adds it at `dp`.
    #[allow(clippy::too_many_arguments)]
    fn fix_values(
        &mut self,
        sp: Value,
        dp: Value,
        acc: DType,
        out: DType,
        relu: bool,
        atomic: bool,
        vector: bool,
    ) {
        let mut x = self.b.ins().load(compute_ty(acc, vector), mem(), sp, 0);
        if acc == DType::I32 && out.is_float() {
            x = self.b.ins().fcvt_from_sint(compute_ty(out, vector), x);
        }
        let ty = self.b.func.dfg.value_type(x);
        if relu {
            x = if out.is_float() {
                let zero = self.cf(ty, 0.0);
                let neg =
                    self.b
                        .ins()
                        .fcmp(cranelift_codegen::ir::condcodes::FloatCC::LessThan, x, zero);
                self.sel(neg, zero, x)
            } else {
                let zero = self.ci(ty, 0);
                let neg = self.b.ins().icmp(IntCC::SignedLessThan, x, zero);
                self.sel(neg, zero, x)
            };
        }
        if atomic {
            let old = self.load_val(out, dp, 0, vector);
            x = if out.is_float() {
                let q = self.quantize(out, x);
                self.b.ins().fadd(old, q)
            } else {
                self.b.ins().iadd(old, x)
            };
        }
        self.store_val(out, dp, 0, x);
    }
}
