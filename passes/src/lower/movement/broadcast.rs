//! The broadcasting elementwise kernel: binary arithmetic, casts and broadcasts of one value.
//!
//! The output is viewed as `[rows, cols]`: `cols` is the innermost block of axes along which
//! every operand is either fully present ([`Inner::Full`], a run of `cols` elements) or
//! broadcast ([`Inner::Scalar`], one element per output row); the outer axes are the rows. How
//! an operand's rows follow the output's is its [`RowMap`]: the same rows (one `DataCopyPad` per
//! tile), one row for all (loaded once per tile), or any strided mapping (one copy per row, the
//! row found from the output row's digits). Each tile of `rt` rows × `cw` columns streams GM →
//! UB → vector → UB → GM with double-buffered inputs and output; the vector work runs row by row
//! in the compute type (f32 when a 16-bit type is involved, cast on the way in and out with
//! round-to-nearest-even), a broadcast scalar becoming a row with `Duplicate`.

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, Buffer, BufferPlanner, Kernel, Param, ParamRole, Pipe, Slice, Stmt, VecArg, VecOp,
};
use cubevec_ir::target::Target;

use super::build::{
    bytes, c, costed, deal, digits, dot, fastest, for_, gm, handoff, let_, pitch, row_candidates,
    set, slice, tile, ub, v, vec_op, vector_work, wait,
};
use crate::lower::{ArgRef, KernelCall, LowerError};

/// How an operand varies along the columns of the output view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inner {
    /// A run of `cols` elements per row.
    Full,
    /// One element per row, broadcast along the columns.
    Scalar,
}

/// How an operand's rows follow the output rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RowMap {
    /// Output row `r` reads operand row `r`.
    Identity,
    /// Every output row reads operand row 0.
    Constant,
    /// Output row `r` reads the operand at element `Σ digit_k(r) · strides[k]` (digits over the
    /// output's row axes).
    Strided(Vec<u64>),
}

/// One operand of the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Operand {
    /// Storage type.
    pub dtype: DType,
    /// Elements of the tensor.
    pub elements: u64,
    /// Along the columns.
    pub inner: Inner,
    /// Along the rows.
    pub rows: RowMap,
}

/// What the kernel computes from its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compute {
    /// `op(a, b)` for a two-slice vector op.
    Binary(VecOp),
    /// The single operand ([`Inner::Full`]) converted to the output type.
    Cast,
    /// The single operand ([`Inner::Scalar`], of the output type) broadcast along the columns.
    Broadcast,
}

/// A broadcasting elementwise kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Elementwise {
    /// Kernel name.
    pub name: String,
    /// Operands (parameters `0..n`); the output is parameter `n`.
    pub operands: Vec<Operand>,
    /// Output storage type.
    pub out: DType,
    /// Extents of the output's row axes, outermost first.
    pub row_axes: Vec<u64>,
    /// Columns of the output view.
    pub cols: u64,
    /// The computation.
    pub compute: Compute,
}

impl Elementwise {
    fn rows(&self) -> u64 {
        self.row_axes.iter().product()
    }

    /// The type the vector unit computes in.
    fn compute_type(&self) -> DType {
        let all_i32 = self.out == DType::I32 && self.operands.iter().all(|o| o.dtype == DType::I32);
        if all_i32 { DType::I32 } else { DType::F32 }
    }

    fn check(&self) -> Result<(), LowerError> {
        let fail = |m: String| Err(LowerError::Unsupported(format!("`{}`: {m}", self.name)));
        let arity = match self.compute {
            Compute::Binary(_) => 2,
            Compute::Cast | Compute::Broadcast => 1,
        };
        if self.operands.len() != arity || self.cols == 0 || self.rows() == 0 {
            return fail(format!(
                "{} operands over {} x {} elements",
                self.operands.len(),
                self.rows(),
                self.cols
            ));
        }
        let vector_type =
            |d: DType| matches!(d, DType::F32 | DType::F16 | DType::BF16 | DType::I32);
        if !self.operands.iter().all(|o| vector_type(o.dtype)) || !vector_type(self.out) {
            return fail("the vector unit computes on f32, f16, bf16 and i32 only".into());
        }
        if self.compute_type() == DType::I32 && matches!(self.compute, Compute::Binary(VecOp::Div))
        {
            return fail("integer division has no vector instruction".into());
        }
        let single = &self.operands[0];
        let fits_single = match self.compute {
            Compute::Binary(_) => true,
            Compute::Cast => single.inner == Inner::Full && single.dtype != self.out,
            Compute::Broadcast => single.inner == Inner::Scalar && single.dtype == self.out,
        };
        if !fits_single {
            return fail("a cast converts a full operand, a broadcast repeats a scalar".into());
        }
        Ok(())
    }
}

/// The UB buffers of one tiling.
struct Bufs {
    inputs: Vec<BufId>,
    /// Per operand: an f32 (compute type) row when the operand must be converted or broadcast.
    temps: Vec<Option<BufId>>,
    /// Per operand: a storage-type row for broadcasting a scalar that is then converted.
    dups: Vec<Option<BufId>>,
    /// The compute-type result row when the output type differs.
    result: Option<BufId>,
    y: BufId,
}

fn plan_buffers(e: &Elementwise, rt: u64, cw: u64, target: &Target) -> (Bufs, Vec<Buffer>) {
    let cd = e.compute_type();
    let mut planner = BufferPlanner::new();
    let mut inputs = Vec::new();
    let mut temps = Vec::new();
    let mut dups = Vec::new();
    for (i, o) in e.operands.iter().enumerate() {
        let (rows, cols) = match (o.inner, &o.rows) {
            (Inner::Full, RowMap::Constant) => (1, pitch(cw, o.dtype)),
            (Inner::Full, _) => (rt, pitch(cw, o.dtype)),
            (Inner::Scalar, RowMap::Identity) => (1, pitch(rt, o.dtype)),
            (Inner::Scalar, RowMap::Constant) => (1, pitch(1, o.dtype)),
            (Inner::Scalar, RowMap::Strided(_)) => (rt, pitch(1, o.dtype)),
        };
        inputs.push(planner.add(target, ub(&format!("x{i}"), o.dtype, rows, cols, 2)));
        let binary = matches!(e.compute, Compute::Binary(_));
        let convert = o.dtype != cd;
        let needs_temp = match e.compute {
            Compute::Binary(_) => convert || o.inner == Inner::Scalar,
            Compute::Cast => o.dtype != DType::F32 && e.out != DType::F32,
            Compute::Broadcast => false,
        };
        temps.push(
            needs_temp.then(|| planner.add(target, ub(&format!("xf{i}"), cd, 1, pitch(cw, cd), 1))),
        );
        let needs_dup = binary && convert && o.inner == Inner::Scalar;
        dups.push(needs_dup.then(|| {
            planner.add(
                target,
                ub(&format!("xd{i}"), o.dtype, 1, pitch(cw, o.dtype), 1),
            )
        }));
    }
    let result = (matches!(e.compute, Compute::Binary(_)) && e.out != cd)
        .then(|| planner.add(target, ub("res", cd, 1, pitch(cw, cd), 1)));
    let y = planner.add(target, ub("y", e.out, rt, pitch(cw, e.out), 2));
    (
        Bufs {
            inputs,
            temps,
            dups,
            result,
            y,
        },
        planner.finish(),
    )
}

fn fits(e: &Elementwise, rt: u64, cw: u64, target: &Target) -> bool {
    let (_, buffers) = plan_buffers(e, rt, cw, target);
    let align = target.buffers.ub.align;
    let used: u64 = buffers
        .iter()
        .map(|b| b.offset + b.total_bytes(align))
        .max()
        .unwrap_or(0);
    used <= target.buffers.ub.usable_bytes()
}

/// The loads of operand `i` for the tile at output row `r0`, columns `c0..c0+wl`.
fn loads(e: &Elementwise, i: usize, buf: BufId) -> Vec<Stmt> {
    let o = &e.operands[i];
    let s = || v("s");
    let row_offset = |strides: &[u64]| dot(&digits(v("r0").add(v("k")), &e.row_axes), strides);
    match (o.inner, &o.rows) {
        (Inner::Full, RowMap::Identity) => vec![Stmt::CopyIn {
            dst: tile(buf, s(), (c(0), c(0)), (v("n"), v("wl"))),
            src: gm(i, (v("r0"), v("c0")), (v("n"), v("wl"))),
        }],
        (Inner::Full, RowMap::Constant) => vec![Stmt::CopyIn {
            dst: tile(buf, s(), (c(0), c(0)), (c(1), v("wl"))),
            src: gm(i, (c(0), v("c0")), (c(1), v("wl"))),
        }],
        (Inner::Full, RowMap::Strided(strides)) => vec![for_(
            "k",
            v("n"),
            false,
            vec![Stmt::CopyIn {
                dst: tile(buf, s(), (v("k"), c(0)), (c(1), v("wl"))),
                src: gm(
                    i,
                    (row_offset(strides).div(c(e.cols)), v("c0")),
                    (c(1), v("wl")),
                ),
            }],
        )],
        (Inner::Scalar, RowMap::Identity) => vec![Stmt::CopyIn {
            dst: tile(buf, s(), (c(0), c(0)), (c(1), v("n"))),
            src: gm(i, (c(0), v("r0")), (c(1), v("n"))),
        }],
        (Inner::Scalar, RowMap::Constant) => vec![Stmt::CopyIn {
            dst: tile(buf, s(), (c(0), c(0)), (c(1), c(1))),
            src: gm(i, (c(0), c(0)), (c(1), c(1))),
        }],
        (Inner::Scalar, RowMap::Strided(strides)) => vec![for_(
            "k",
            v("n"),
            false,
            vec![Stmt::CopyIn {
                dst: tile(buf, s(), (v("k"), c(0)), (c(1), c(1))),
                src: gm(i, (c(0), row_offset(strides)), (c(1), c(1))),
            }],
        )],
    }
}

/// Where row `k` of operand `i` lives in its input buffer (a run, or the scalar element).
fn operand_at(e: &Elementwise, i: usize, buf: BufId, cw: u64) -> Slice {
    let o = &e.operands[i];
    let offset = match (o.inner, &o.rows) {
        (_, RowMap::Constant) => c(0),
        (Inner::Full, _) => v("k").mul(c(pitch(cw, o.dtype))),
        (Inner::Scalar, RowMap::Identity) => v("k"),
        (Inner::Scalar, RowMap::Strided(_)) => v("k").mul(c(pitch(1, o.dtype))),
    };
    slice(buf, v("s"), offset)
}

/// The statements computing output row `k`.
fn row_compute(e: &Elementwise, b: &Bufs, cw: u64) -> Vec<Stmt> {
    let n = || v("wl");
    let at0 = |buf: BufId| slice(buf, c(0), c(0));
    let y_row = slice(b.y, v("s"), v("k").mul(c(pitch(cw, e.out))));
    let mut out = Vec::new();
    let Compute::Binary(op) = e.compute else {
        let src = operand_at(e, 0, b.inputs[0], cw);
        match (e.compute, b.temps[0]) {
            (Compute::Broadcast, _) => out.push(vec_op(
                VecOp::Duplicate,
                y_row,
                vec![VecArg::Element(src)],
                n(),
            )),
            // 16-bit to 16-bit goes through f32.
            (_, Some(temp)) => out.extend([
                vec_op(VecOp::Cast, at0(temp), vec![VecArg::Slice(src)], n()),
                vec_op(VecOp::Cast, y_row, vec![VecArg::Slice(at0(temp))], n()),
            ]),
            (_, None) => out.push(vec_op(VecOp::Cast, y_row, vec![VecArg::Slice(src)], n())),
        }
        return out;
    };
    // Operand values as compute-type runs.
    let mut args = Vec::new();
    for (i, o) in e.operands.iter().enumerate() {
        let src = operand_at(e, i, b.inputs[i], cw);
        let Some(temp) = b.temps[i] else {
            args.push(VecArg::Slice(src));
            continue;
        };
        match (o.inner, b.dups[i]) {
            (Inner::Full, _) => out.push(vec_op(
                VecOp::Cast,
                at0(temp),
                vec![VecArg::Slice(src)],
                n(),
            )),
            (Inner::Scalar, Some(dup)) => out.extend([
                vec_op(VecOp::Duplicate, at0(dup), vec![VecArg::Element(src)], n()),
                vec_op(VecOp::Cast, at0(temp), vec![VecArg::Slice(at0(dup))], n()),
            ]),
            (Inner::Scalar, None) => out.push(vec_op(
                VecOp::Duplicate,
                at0(temp),
                vec![VecArg::Element(src)],
                n(),
            )),
        }
        args.push(VecArg::Slice(at0(temp)));
    }
    match b.result {
        Some(res) => out.extend([
            vec_op(op, at0(res), args, n()),
            vec_op(VecOp::Cast, y_row, vec![VecArg::Slice(at0(res))], n()),
        ]),
        None => out.push(vec_op(op, y_row, args, n())),
    }
    out
}

fn build(e: &Elementwise, rt: u64, cw: u64, target: &Target) -> Result<Kernel, LowerError> {
    e.check()?;
    let (b, buffers) = plan_buffers(e, rt, cw, target);
    let rows = e.rows();
    let mut params: Vec<Param> = e
        .operands
        .iter()
        .enumerate()
        .map(|(i, o)| Param {
            name: format!("in{i}"),
            dtype: o.dtype,
            shape: match o.inner {
                Inner::Full => vec![o.elements / e.cols, e.cols],
                Inner::Scalar => vec![1, o.elements],
            },
            role: ParamRole::Input,
        })
        .collect();
    let out_param = params.len();
    params.push(Param {
        name: "out".into(),
        dtype: e.out,
        shape: vec![rows, e.cols],
        role: ParamRole::Output,
    });
    let nc = e.cols.div_ceil(cw);
    let units = rows.div_ceil(rt) * nc;
    let blocks = units.clamp(1, target.cores.aiv as u64);
    let (first, trips) = deal(units, blocks, 0);
    let mut body = vec![
        let_("u", first.add(v("t").mul(c(blocks)))),
        let_("c0", v("u").rem(c(nc)).mul(c(cw))),
        let_("wl", c(e.cols).sub(v("c0")).min(c(cw))),
        let_("r0", v("u").div(c(nc)).mul(c(rt))),
        let_("n", c(rows).sub(v("r0")).min(c(rt))),
        let_("s", v("t").rem(c(2))),
        wait(Pipe::V, Pipe::Mte2, v("s")),
    ];
    for (i, &buf) in b.inputs.iter().enumerate() {
        body.extend(loads(e, i, buf));
    }
    body.extend(handoff(Pipe::Mte2, Pipe::V, v("s")));
    body.push(wait(Pipe::Mte3, Pipe::V, v("s")));
    body.push(for_("k", v("n"), false, row_compute(e, &b, cw)));
    body.push(set(Pipe::V, Pipe::Mte2, v("s")));
    body.extend(handoff(Pipe::V, Pipe::Mte3, v("s")));
    body.push(Stmt::CopyOut {
        dst: gm(out_param, (v("r0"), v("c0")), (v("n"), v("wl"))),
        src: tile(b.y, v("s"), (c(0), c(0)), (v("n"), v("wl"))),
    });
    body.push(set(Pipe::Mte3, Pipe::V, v("s")));
    let mut vector = Vec::new();
    for s in 0..2 {
        vector.push(set(Pipe::V, Pipe::Mte2, c(s)));
        vector.push(set(Pipe::Mte3, Pipe::V, c(s)));
    }
    vector.push(for_("t", trips, true, body));
    for s in 0..2 {
        vector.push(wait(Pipe::V, Pipe::Mte2, c(s)));
        vector.push(wait(Pipe::Mte3, Pipe::V, c(s)));
    }
    let tiling = [("tile_rows", rt), ("tile_cols", cw), ("units", units)];
    Ok(Kernel::vector(
        &e.name,
        blocks as u32,
        params,
        buffers,
        vector,
        &tiling,
    ))
}

/// Tiles `e`: the widest column chunk that fits with one row, then candidate row counts up to
/// what fits UB (and splits over the vector cores); the fastest under the cost model wins.
pub(crate) fn plan(
    e: &Elementwise,
    args: Vec<ArgRef>,
    target: &Target,
) -> Result<KernelCall, LowerError> {
    e.check()?;
    let granule = 64;
    let mut cw = e.cols;
    while cw > granule && !fits(e, 1, cw, target) {
        cw = (cw / 2).div_ceil(granule) * granule;
    }
    if !fits(e, 1, cw, target) {
        return Err(LowerError::Unsupported(format!(
            "`{}`: one row of {cw} elements does not fit UB",
            e.name
        )));
    }
    let rows = e.rows();
    let mut max_rows = rows.min(4095);
    while max_rows > 1 && !fits(e, max_rows, cw, target) {
        max_rows = (max_rows * 3 / 4).max(1);
    }
    let moved: u64 = e
        .operands
        .iter()
        .map(|o| bytes(o.elements, o.dtype))
        .sum::<u64>()
        + bytes(rows * e.cols, e.out);
    let work = vector_work((rows * e.cols) as f64, moved as f64, e.out);
    fastest(
        row_candidates(max_rows, rows, e.cols.div_ceil(cw), target.cores.aiv as u64)
            .into_iter()
            .map(|rt| {
                let kernel = build(e, rt, cw, target)?;
                costed(kernel, args.clone(), target, &work)
            }),
        target,
    )
}

/// The output view of a numpy-style broadcast of `inputs` (dtype, shape) to `out`: the row axes,
/// the columns, and each operand's description.
pub(crate) fn view(out: &[u64], inputs: &[(DType, &[u64])]) -> (Vec<u64>, u64, Vec<Operand>) {
    let rank = out.len();
    let strides: Vec<Vec<u64>> = inputs
        .iter()
        .map(|(_, shape)| {
            let mut padded = vec![1u64; rank.saturating_sub(shape.len())];
            padded.extend_from_slice(shape);
            let mut st = vec![0u64; rank];
            let mut inner = 1;
            for k in (0..rank).rev() {
                st[k] = if padded[k] == 1 { 0 } else { inner };
                inner *= padded[k];
            }
            st
        })
        .collect();
    let mut axes: Vec<(u64, Vec<u64>)> = Vec::new();
    for (k, &extent) in out.iter().enumerate() {
        if extent == 1 {
            continue;
        }
        let st: Vec<u64> = strides.iter().map(|s| s[k]).collect();
        if let Some((e, last)) = axes.last_mut()
            && last.iter().zip(&st).all(|(&a, &b)| a == b * extent)
        {
            *e *= extent;
            *last = st;
            continue;
        }
        axes.push((extent, st));
    }
    let (cols, inner) = match axes.pop() {
        Some((e, st)) => (e, st),
        None => (1, vec![1; inputs.len()]),
    };
    let row_axes: Vec<u64> = axes.iter().map(|(e, _)| *e).collect();
    let operands = inputs
        .iter()
        .enumerate()
        .map(|(i, (dtype, shape))| {
            let kind = if inner[i] == 0 {
                Inner::Scalar
            } else {
                Inner::Full
            };
            let unit = if kind == Inner::Full { cols } else { 1 };
            let row_strides: Vec<u64> = axes.iter().map(|(_, st)| st[i]).collect();
            Operand {
                dtype: *dtype,
                elements: shape.iter().product(),
                inner: kind,
                rows: row_map(&row_strides, &row_axes, unit),
            }
        })
        .collect();
    (row_axes, cols, operands)
}

/// Classifies row strides: identity when they are the row-major strides of `row_axes` times
/// `unit`, constant when all zero.
fn row_map(strides: &[u64], row_axes: &[u64], unit: u64) -> RowMap {
    if strides.iter().all(|&s| s == 0) {
        return RowMap::Constant;
    }
    let mut expected = unit;
    let mut identity = true;
    for (&s, &e) in strides.iter().zip(row_axes).rev() {
        if s != expected {
            identity = false;
        }
        expected *= e;
    }
    if identity {
        RowMap::Identity
    } else {
        RowMap::Strided(strides.to_vec())
    }
}
