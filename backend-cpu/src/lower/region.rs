//! Regions: where a tile, GM tile or UB slice lives, after checking it lies inside its
//! buffer stage or tensor.

use cranelift_codegen::ir::{InstBuilder, Value, condcodes::IntCC};
use cubevec_ir::kernel::{BufId, Buffer, Expr, GmTile, MemLevel, Param, Slice, Tile};

use super::Lowerer;
use crate::error::CpuError;
use crate::layout::{Addressing, Part};

/// A checked rectangle of one buffer stage.
pub(super) struct TileAt<'a> {
    /// Address of element (0, 0) of the stage.
    pub base: Value,
    /// The buffer.
    pub buf: &'a Buffer,
    /// Its layout's address function.
    pub addr: Addressing,
    /// First row.
    pub row: Value,
    /// First column.
    pub col: Value,
    /// Row count (≥ 1).
    pub rows: Value,
    /// Column count (≥ 1).
    pub cols: Value,
}

/// A checked rectangle of a GM parameter.
pub(super) struct GmAt<'a> {
    /// Address of the rectangle's first element.
    pub base: Value,
    /// The parameter.
    pub param: &'a Param,
    /// Elements per row of the parameter's matrix.
    pub pitch: i64,
    /// Row count (≥ 1).
    pub rows: Value,
    /// Column count (≥ 1).
    pub cols: Value,
}

/// Bytes per element (regions never hold the packed 4-bit type).
pub(super) fn esize(dtype: cubevec_ir::DType) -> i64 {
    (dtype.bits() / 8) as i64
}

impl<'a> Lowerer<'a> {
    /// A buffer of this side.
    pub(super) fn buffer(&self, id: BufId) -> Result<&'a Buffer, CpuError> {
        let kernel: &'a cubevec_ir::kernel::Kernel = self.kernel;
        let b = kernel
            .buffer(id)
            .ok_or_else(|| self.unsupported(format!("no buffer {}", id.0)))?;
        if b.level.side() != Some(self.side) {
            return Err(self.unsupported(format!(
                "buffer `{}` at {} is not on this core",
                b.name,
                b.level.name()
            )));
        }
        Ok(b)
    }

    /// Address of stage `stage` of buffer `id`, after checking the stage exists.
    pub(super) fn stage_base(
        &mut self,
        id: BufId,
        stage: &Expr,
    ) -> Result<(Value, &'a Buffer), CpuError> {
        let buf = self.buffer(id)?;
        let s = self.expr(stage)?;
        let one = self.iconst(1);
        self.check_range(
            s,
            one,
            1,
            buf.stages as i64,
            format!("stage of `{}` outside 0..{}", buf.name, buf.stages),
        );
        let level = self.plan.arena(self.side).levels[&buf.level];
        let stride = self.plan.strides[id.0 as usize] as i64;
        let off = self.b.ins().imul_imm_s(s, stride);
        let off = self.b.ins().iadd_imm_s(off, (level + buf.offset) as i64);
        Ok((self.b.ins().iadd(self.arena, off), buf))
    }

    /// A checked tile.
    pub(super) fn tile(&mut self, t: &Tile) -> Result<TileAt<'a>, CpuError> {
        let (base, buf) = self.stage_base(t.buf, &t.stage)?;
        let (row, col) = (self.expr(&t.row)?, self.expr(&t.col)?);
        let (rows, cols) = (self.expr(&t.rows)?, self.expr(&t.cols)?);
        self.check_range(
            row,
            rows,
            1,
            buf.rows as i64,
            format!("rows outside `{}` of {} rows", buf.name, buf.rows),
        );
        self.check_range(
            col,
            cols,
            1,
            buf.cols as i64,
            format!("columns outside `{}` of {} columns", buf.name, buf.cols),
        );
        Ok(TileAt {
            base,
            buf,
            addr: Addressing::of(buf),
            row,
            col,
            rows,
            cols,
        })
    }

    /// A checked GM tile.
    pub(super) fn gm(&mut self, t: &GmTile) -> Result<GmAt<'a>, CpuError> {
        let kernel: &'a cubevec_ir::kernel::Kernel = self.kernel;
        let param = kernel
            .params
            .get(t.param)
            .ok_or_else(|| self.unsupported(format!("no parameter {}", t.param)))?;
        if param.dtype.bits() < 8 {
            return Err(self.unsupported(format!("GM regions of {}", param.dtype)));
        }
        let (batches, rows_total, pitch) = param.matrix_dims();
        let batch = self.expr(&t.batch)?;
        let one = self.iconst(1);
        self.check_range(
            batch,
            one,
            1,
            batches as i64,
            format!("batch outside `{}` of {batches} matrices", param.name),
        );
        let (row, col) = (self.expr(&t.row)?, self.expr(&t.col)?);
        let (rows, cols) = (self.expr(&t.rows)?, self.expr(&t.cols)?);
        self.check_range(
            row,
            rows,
            1,
            rows_total as i64,
            format!("rows outside `{}` of {rows_total} rows", param.name),
        );
        self.check_range(
            col,
            cols,
            1,
            pitch as i64,
            format!("columns outside `{}` of {pitch} columns", param.name),
        );
        let r = self.b.ins().imul_imm_s(batch, rows_total as i64);
        let r = self.b.ins().iadd(r, row);
        let e = self.b.ins().imul_imm_s(r, pitch as i64);
        let e = self.b.ins().iadd(e, col);
        let bytes = self.b.ins().imul_imm_s(e, esize(param.dtype));
        let base = self.b.ins().iadd(self.params[t.param], bytes);
        Ok(GmAt {
            base,
            param,
            pitch: pitch as i64,
            rows,
            cols,
        })
    }

    /// Address of a run of `count` elements of a UB slice, after checking it lies in its stage.
    pub(super) fn slice(
        &mut self,
        s: &Slice,
        count: Value,
    ) -> Result<(Value, &'a Buffer), CpuError> {
        let (base, buf) = self.stage_base(s.buf, &s.stage)?;
        if buf.level != MemLevel::Ub {
            return Err(self.unsupported(format!("vector operand `{}` is not in UB", buf.name)));
        }
        let off = self.expr(&s.offset)?;
        let len = (buf.rows * buf.cols) as i64;
        self.check_range(
            off,
            count,
            1,
            len,
            format!("elements outside `{}` of {len} elements", buf.name),
        );
        let bytes = self.b.ins().imul_imm_s(off, esize(buf.dtype));
        Ok((self.b.ins().iadd(base, bytes), buf))
    }

    /// `part(i)` in elements.
    pub(super) fn part(&mut self, p: Part, i: Value) -> Value {
        if p.shift == 0 {
            return match p.hi {
                1 => i,
                0 => self.iconst(0),
                h => self.b.ins().imul_imm_s(i, h),
            };
        }
        let hi = self.b.ins().ushr_imm_s(i, p.shift as i64);
        let hi = self.b.ins().imul_imm_s(hi, p.hi);
        let lo = self.b.ins().band_imm_s(i, (1i64 << p.shift) - 1);
        let lo = self.b.ins().imul_imm_s(lo, p.lo);
        self.b.ins().iadd(hi, lo)
    }

    /// `base + elems · esize`.
    pub(super) fn at(&mut self, base: Value, elems: Value, esize: i64) -> Value {
        let bytes = self.b.ins().imul_imm_s(elems, esize);
        self.b.ins().iadd(base, bytes)
    }

    /// Checks `a == b`.
    pub(super) fn check_eq(&mut self, a: Value, b: Value, message: impl Into<String>) {
        let ok = self.b.ins().icmp(IntCC::Equal, a, b);
        self.check(ok, message);
    }

    /// Checks `x` is a multiple of the power of two `m`.
    pub(super) fn check_aligned(&mut self, x: Value, m: i64, message: impl Into<String>) {
        let low = self.b.ins().band_imm_s(x, m - 1);
        let ok = self.b.ins().icmp_imm_s(IntCC::Equal, low, 0);
        self.check(ok, message);
    }
}
