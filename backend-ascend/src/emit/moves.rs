//! Data movement statements: `CopyIn` (GM → L1 with `Nd2NzParams`, GM → UB with `DataCopy` /
//! `DataCopyPad`), `CopyOut` (UB → GM), `LoadL0` (L1 → L0A/L0B with `LoadData2DParams`) and
//! `Fixpipe` (L0C → GM with `FixpipeParamsV220`).

use cubevec_ir::kernel::{Expr, GmTile, MemLevel, Tile};

use super::EmitError;
use super::kernel::KernelSource;
use super::types::{cpp_type, elem_bytes, quant_mode};

/// Largest `blockCount` of a `DataCopyParams` / `DataCopyExtParams` transfer.
const MAX_BLOCK_COUNT: u64 = 4095;
/// Largest `nValue` of `Nd2NzParams`.
const MAX_ND2NZ_ROWS: u64 = 16384;
/// Largest `uint16_t` field.
const MAX_U16: u64 = 65535;

/// Lengths of a `DataCopyParams` transfer in 32-byte blocks.
struct Blocks {
    len: u64,
    gm_gap: u64,
    ub_gap: u64,
}

impl KernelSource<'_> {
    /// GM → L1 (`Nd2NzParams`, ND → NZ, column tails zero-filled) or GM → UB.
    pub(crate) fn copy_in(&mut self, dst: &Tile, src: &GmTile) -> Result<(), EmitError> {
        let buf = self.buffer(dst.buf)?;
        match buf.level {
            MemLevel::L1 => self.copy_gm_l1(dst, src),
            MemLevel::Ub => self.copy_gm_ub(dst, src),
            other => Err(self.unsupported(format!("CopyIn into {}", other.name()))),
        }
    }

    fn copy_gm_l1(&mut self, dst: &Tile, src: &GmTile) -> Result<(), EmitError> {
        let buf = self.buffer(dst.buf)?;
        let (_, _, pitch) = self.param(src.param)?.matrix_dims();
        if buf.rows > MAX_ND2NZ_ROWS || pitch > MAX_U16 {
            return Err(self.unsupported(format!(
                "Nd2Nz copy into `{}` of {} rows from a GM pitch of {pitch} elements exceeds the uint16 fields",
                buf.name, buf.rows
            )));
        }
        let to = self.local(dst.buf, &self.tile_offset(dst)?);
        let from = self.global(src.param, &self.gm_offset(src)?);
        // ndNum, nValue, dValue, srcNdMatrixStride, srcDValue, dstNzC0Stride (rows of the L1
        // buffer, in 32-byte units), dstNzNStride, dstNzMatrixStride.
        let params = format!(
            "AscendC::Nd2NzParams(1, {}, {}, 0, {pitch}, {}, 1, 0)",
            self.int("uint16_t", &dst.rows),
            self.int("uint16_t", &dst.cols),
            buf.rows
        );
        self.code
            .line(format!("AscendC::DataCopy({to}, {from}, {params});"));
        Ok(())
    }

    fn copy_gm_ub(&mut self, dst: &Tile, src: &GmTile) -> Result<(), EmitError> {
        let buf = self.buffer(dst.buf)?;
        let (_, _, pitch) = self.param(src.param)?.matrix_dims();
        let to = self.local(dst.buf, &self.tile_offset(dst)?);
        let from = self.global(src.param, &self.gm_offset(src)?);
        let ty = cpp_type(buf.dtype).unwrap_or("uint8_t");
        let line = match self.whole_blocks(dst, pitch)? {
            Some(b) => format!(
                "AscendC::DataCopy({to}, {from}, AscendC::DataCopyParams({}, {}, {}, {}));",
                self.int("uint16_t", &dst.rows),
                b.len,
                b.gm_gap,
                b.ub_gap
            ),
            // blockCount, blockLen (bytes), srcStride (GM gap, bytes), dstStride (UB gap,
            // blocks); no padding values.
            None => format!(
                "AscendC::DataCopyPad({to}, {from}, AscendC::DataCopyExtParams({}, {}, {}, {}, 0), AscendC::DataCopyPadExtParams<{ty}>(false, 0, 0, static_cast<{ty}>(0)));",
                self.int("uint16_t", &dst.rows),
                self.int("uint32_t", &self.row_bytes(dst)?),
                self.int("uint32_t", &self.gm_gap_bytes(dst, pitch)?),
                self.int("uint32_t", &self.ub_gap_blocks(dst)?),
            ),
        };
        self.code.line(line);
        Ok(())
    }

    /// UB → GM: `DataCopy` for whole 32-byte rows and gaps, `DataCopyPad` otherwise.
    pub(crate) fn copy_out(&mut self, dst: &GmTile, src: &Tile) -> Result<(), EmitError> {
        let buf = self.buffer(src.buf)?;
        if buf.level != MemLevel::Ub {
            return Err(self.unsupported(format!("CopyOut from {}", buf.level.name())));
        }
        let (_, _, pitch) = self.param(dst.param)?.matrix_dims();
        let to = self.global(dst.param, &self.gm_offset(dst)?);
        let from = self.local(src.buf, &self.tile_offset(src)?);
        let line = match self.whole_blocks(src, pitch)? {
            Some(b) => format!(
                "AscendC::DataCopy({to}, {from}, AscendC::DataCopyParams({}, {}, {}, {}));",
                self.int("uint16_t", &src.rows),
                b.len,
                b.ub_gap,
                b.gm_gap
            ),
            // blockCount, blockLen (bytes), srcStride (UB gap, blocks), dstStride (GM gap,
            // bytes).
            None => format!(
                "AscendC::DataCopyPad({to}, {from}, AscendC::DataCopyExtParams({}, {}, {}, {}, 0));",
                self.int("uint16_t", &src.rows),
                self.int("uint32_t", &self.row_bytes(src)?),
                self.int("uint32_t", &self.ub_gap_blocks(src)?),
                self.int("uint32_t", &self.gm_gap_bytes(src, pitch)?),
            ),
        };
        self.code.line(line);
        Ok(())
    }

    /// The block length and gaps of a UB tile against a GM pitch in 32-byte blocks, when the
    /// column count is a constant and every length is whole blocks that fit `DataCopyParams`;
    /// `None` when the copy needs `DataCopyPad`.
    fn whole_blocks(&self, t: &Tile, pitch: u64) -> Result<Option<Blocks>, EmitError> {
        let buf = self.buffer(t.buf)?;
        if buf.rows > MAX_BLOCK_COUNT {
            return Err(self.unsupported(format!(
                "UB buffer `{}` has {} rows; one copy moves at most {MAX_BLOCK_COUNT}",
                buf.name, buf.rows
            )));
        }
        let eb = elem_bytes(buf.dtype);
        let Some(cols) = t.cols.as_const().and_then(|c| u64::try_from(c).ok()) else {
            return Ok(None);
        };
        if cols > pitch || cols > buf.cols {
            return Ok(None);
        }
        let whole = |bytes: u64| bytes.is_multiple_of(32) && bytes / 32 <= MAX_U16;
        let (len, gm_gap, ub_gap) = (cols * eb, (pitch - cols) * eb, (buf.cols - cols) * eb);
        Ok(
            (whole(len) && whole(gm_gap) && whole(ub_gap)).then_some(Blocks {
                len: len / 32,
                gm_gap: gm_gap / 32,
                ub_gap: ub_gap / 32,
            }),
        )
    }

    /// Bytes of one row of a UB tile.
    fn row_bytes(&self, t: &Tile) -> Result<Expr, EmitError> {
        let eb = elem_bytes(self.buffer(t.buf)?.dtype);
        Ok(t.cols.clone().mul(Expr::c(eb)))
    }

    /// The GM-side gap of a `DataCopyPad` in bytes: the pitch minus the row.
    fn gm_gap_bytes(&self, t: &Tile, pitch: u64) -> Result<Expr, EmitError> {
        let eb = elem_bytes(self.buffer(t.buf)?.dtype);
        Ok(Expr::c(pitch).sub(t.cols.clone()).mul(Expr::c(eb)))
    }

    /// The UB-side gap of a `DataCopyPad` in 32-byte blocks: the row pitch minus the row's
    /// bytes rounded up to a block (each UB chunk occupies whole blocks).
    fn ub_gap_blocks(&self, t: &Tile) -> Result<Expr, EmitError> {
        let buf = self.buffer(t.buf)?;
        let eb = elem_bytes(buf.dtype);
        Ok(Expr::c(buf.cols * eb / 32).sub(t.cols.clone().mul(Expr::c(eb)).ceil_div(Expr::c(32))))
    }

    /// L1 (NZ) → L0A (ZZ) or L0B (ZN), one `LoadData` per fractal row (L0A) or fractal row of K
    /// (L0B), each moving a row of 512-byte fractals; fractals are transposed for L0A when the
    /// operand is transposed and for L0B when it is not (16-bit types only). The L0 packing
    /// follows the destination tile's extents, as `Mmad` reads it.
    pub(crate) fn load_l0(
        &mut self,
        dst: &Tile,
        src: &Tile,
        transpose: bool,
    ) -> Result<(), EmitError> {
        let to = self.buffer(dst.buf)?;
        let from = self.buffer(src.buf)?;
        if from.level != MemLevel::L1 || !matches!(to.level, MemLevel::L0A | MemLevel::L0B) {
            return Err(self.unsupported("LoadL0 moves L1 to L0A or L0B".into()));
        }
        let c0 = to.fractal_cols();
        let frac = 16 * c0;
        let l1_frac_rows = from.rows / 16;
        let c = Expr::c;
        // (outer fractal count, repeat per call, source step per outer fractal in fractals,
        // srcStride in fractals, destination step per outer fractal in fractals, hardware
        // transpose)
        let (outer, repeat, src_step, src_stride, hw_transpose) = match (to.level, transpose) {
            // A (m × k): fractal rows of m; along k the L1 fractal columns.
            (MemLevel::L0A, false) => (
                dst.rows.clone().ceil_div(c(16)),
                dst.cols.clone().ceil_div(c(c0)),
                c(1),
                l1_frac_rows,
                false,
            ),
            // L1 holds Aᵀ (k × m): L0A fractal (i, j) is L1 fractal (j, i) transposed.
            (MemLevel::L0A, true) => (
                dst.rows.clone().ceil_div(c(16)),
                dst.cols.clone().ceil_div(c(c0)),
                c(l1_frac_rows),
                1,
                true,
            ),
            // L1 holds B (k × n): L0B fractal (j, l) is L1 fractal (j, l) transposed.
            (_, false) => (
                dst.rows.clone().ceil_div(c(c0)),
                dst.cols.clone().ceil_div(c(16)),
                c(1),
                l1_frac_rows,
                true,
            ),
            // L1 holds Bᵀ (n × k): L0B fractal (j, l) is L1 fractal (l, j) as stored.
            (_, true) => (
                dst.rows.clone().ceil_div(c(c0)),
                dst.cols.clone().ceil_div(c(16)),
                c(l1_frac_rows),
                1,
                false,
            ),
        };
        if hw_transpose && to.dtype.bits() != 16 {
            return Err(self.unsupported(format!(
                "LoadL0 into `{}` needs a fractal transpose, which LoadData does for 16-bit types only",
                to.name
            )));
        }
        if src_stride > MAX_U16 {
            return Err(self.unsupported(format!(
                "L1 buffer `{}` is too tall for LoadData",
                from.name
            )));
        }
        let dst_base = self.tile_offset(dst)?;
        let src_base = self.tile_offset(src)?;
        let dst_step = repeat.clone().mul(c(frac));
        let src_step = src_step.mul(c(frac));
        // One call when there is one fractal row, else a loop over `frac`.
        let single = outer.as_const() == Some(1);
        let view = |k: &Self, buf, base: &Expr, step: &Expr| {
            if single {
                return k.local(buf, base);
            }
            let offset = match base.as_const() {
                Some(0) => format!("frac * {}", k.operand(step)),
                _ => format!("{} + frac * {}", k.operand(base), k.operand(step)),
            };
            format!("{}[{offset}]", k.local(buf, &c(0)))
        };
        let to_view = view(self, dst.buf, &dst_base, &dst_step);
        let from_view = view(self, src.buf, &src_base, &src_step);
        if !single {
            self.code.open(format!(
                "for (int64_t frac = 0, fracEnd = {}; frac < fracEnd; ++frac)",
                self.e(&outer)
            ));
        }
        self.code.line(format!(
            "AscendC::LoadData({to_view}, {from_view}, AscendC::LoadData2DParams(0, {}, {src_stride}, 0, 0, {hw_transpose}, 0));",
            self.int("uint8_t", &repeat)
        ));
        if !single {
            self.code.close("");
        }
        Ok(())
    }

    /// L0C (NZ) → GM (ND) with the conversion to the GM type, optional ReLU and, for split-K,
    /// atomic accumulation around it. `srcStride` is the row count rounded up to 16: the `m` of
    /// the `Mmad` that filled the accumulator.
    pub(crate) fn fixpipe(
        &mut self,
        dst: &GmTile,
        src: &Tile,
        relu: bool,
        atomic_add: bool,
    ) -> Result<(), EmitError> {
        let acc = self.buffer(src.buf)?;
        let p = self.param(dst.param)?;
        let (_, _, pitch) = p.matrix_dims();
        let Some(quant) = quant_mode(acc.dtype, p.dtype) else {
            return Err(self.unsupported(format!(
                "no Fixpipe conversion from {} to {} without a scale",
                acc.dtype, p.dtype
            )));
        };
        let out_ty = cpp_type(p.dtype).unwrap_or("float");
        let acc_ty = cpp_type(acc.dtype).unwrap_or("float");
        let to = self.global(dst.param, &self.gm_offset(dst)?);
        let from = self.local(src.buf, &self.tile_offset(src)?);
        let m16 = src.rows.clone().ceil_div(Expr::c(16)).mul(Expr::c(16));
        // nSize, mSize, srcStride, dstStride, reluEn, quantPre, deqScalar, ndNum, srcNdStride,
        // dstNdStride, unitFlag.
        let params = format!(
            "AscendC::FixpipeParamsV220({}, {}, {}, {pitch}, {relu}, {quant}, 0, 1, 0, 0, 0)",
            self.int("uint16_t", &src.cols),
            self.int("uint16_t", &src.rows),
            self.int("uint16_t", &m16),
        );
        if atomic_add {
            self.code
                .line(format!("AscendC::SetAtomicAdd<{out_ty}>();"));
        }
        self.code.line(format!(
            "AscendC::Fixpipe<{out_ty}, {acc_ty}, AscendC::CFG_ROW_MAJOR>({to}, {from}, {params});"
        ));
        if atomic_add {
            self.code.line("AscendC::SetAtomicNone();");
        }
        Ok(())
    }
}
