//! `Rope`: rotary position embedding of the first `2·r` features of the last axis.
//!
//! The rotate-half form is one vector kernel over the rows of `x` viewed `[N, d]`: each tile
//! loads the two halves `x[:, :r]` and `x[:, r:2r]` as separate UB tiles (so both start
//! 32-byte aligned whatever `r` is), the matching rows of the `cos`/`sin` tables, and the
//! untouched features `x[:, 2r:]`; per row it computes `x1·cos − x2·sin` and `x2·cos + x1·sin`
//! in f32 and stores the three column blocks back. Rows are tiled along the innermost axes of
//! `x` over which the tables are either consecutive rows or one broadcast row, so every table
//! tile is one copy.
//!
//! The interleaved form (pairs `x[2i], x[2i+1]`) has no vector shuffle: a strided copy first
//! de-interleaves the pairs into halves in a scratch tensor (element-granular `DataCopyPad`),
//! the rotate-half kernel rotates it, and a second copy interleaves the result back.

use cubevec_ir::DType;
use cubevec_ir::Op;
use cubevec_ir::kernel::{
    BufId, Buffer, BufferPlanner, Kernel, Param, ParamRole, Pipe, Slice, Stmt, VecArg, VecOp,
};
use cubevec_ir::target::Target;

use super::movement::build::{
    bytes, c, costed, deal, digits, dot, fastest, float_storage, for_, gm, handoff, let_, pitch,
    row_candidates, set, slice, tile, ub, v, vec_op, vector_work, wait,
};
use super::movement::copy::{self, Axis, Copy, CopyParam, CopyPart};
use super::movement::strides;
use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, TensorShape};

/// How the rows of a tile map to rows of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TableRows {
    /// Consecutive tile rows read consecutive table rows.
    Consecutive,
    /// Every row of the tile reads the same table row.
    Broadcast,
}

/// A `cos` or `sin` table.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Table {
    dtype: DType,
    elements: u64,
    /// Element offset of the table row per outer index digit.
    outer_strides: Vec<u64>,
    rows: TableRows,
}

/// The rotate-half kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RotateHalf {
    name: String,
    dtype: DType,
    /// Features per row.
    d: u64,
    /// Rotated pairs per row.
    r: u64,
    /// Extents of the outer axes of the rows.
    outer: Vec<u64>,
    /// Rows per outer index (the tiled axis).
    inner_rows: u64,
    tables: [Table; 2],
}

impl RotateHalf {
    fn rows(&self) -> u64 {
        self.outer.iter().product::<u64>() * self.inner_rows
    }

    fn pass(&self) -> u64 {
        self.d - 2 * self.r
    }

    /// UB row pitch of the halves and tables.
    fn pitch(&self) -> u64 {
        pitch(self.r, DType::F32).max(pitch(self.r, self.dtype))
    }

    /// Whether a tile's rows are contiguous in every buffer (no row padding, tables one row per
    /// row), so each vector op covers the whole tile.
    fn whole(&self) -> bool {
        self.pitch() == self.r && self.tables.iter().all(|t| t.rows == TableRows::Consecutive)
    }
}

struct Bufs {
    x: [BufId; 2],
    pass: Option<BufId>,
    tab: [BufId; 2],
    y: [BufId; 2],
    /// f32 copies of the halves (16-bit `x`) and of the tables (16-bit tables).
    xf: Option<[BufId; 2]>,
    tf: [Option<BufId>; 2],
    tmp: [BufId; 2],
}

fn plan_buffers(k: &RotateHalf, rt: u64, target: &Target) -> (Bufs, Vec<Buffer>) {
    let mut p = BufferPlanner::new();
    let w = k.pitch();
    let tr = if k.whole() { rt } else { 1 };
    let x = [
        p.add(target, ub("x1", k.dtype, rt, w, 2)),
        p.add(target, ub("x2", k.dtype, rt, w, 2)),
    ];
    let pass =
        (k.pass() > 0).then(|| p.add(target, ub("xp", k.dtype, rt, pitch(k.pass(), k.dtype), 2)));
    let tab_rows = |t: &Table| {
        if t.rows == TableRows::Consecutive {
            rt
        } else {
            1
        }
    };
    let tab = [
        p.add(
            target,
            ub("cos", k.tables[0].dtype, tab_rows(&k.tables[0]), w, 2),
        ),
        p.add(
            target,
            ub("sin", k.tables[1].dtype, tab_rows(&k.tables[1]), w, 2),
        ),
    ];
    let y = [
        p.add(target, ub("y1", k.dtype, rt, w, 2)),
        p.add(target, ub("y2", k.dtype, rt, w, 2)),
    ];
    let xf = (k.dtype != DType::F32).then(|| {
        [
            p.add(target, ub("x1f", DType::F32, tr, w, 1)),
            p.add(target, ub("x2f", DType::F32, tr, w, 1)),
        ]
    });
    let tf = [0, 1].map(|i| {
        (k.tables[i].dtype != DType::F32)
            .then(|| p.add(target, ub(&format!("t{i}f"), DType::F32, tr, w, 1)))
    });
    let tmp = [
        p.add(target, ub("p", DType::F32, tr, w, 1)),
        p.add(target, ub("q", DType::F32, tr, w, 1)),
    ];
    (
        Bufs {
            x,
            pass,
            tab,
            y,
            xf,
            tf,
            tmp,
        },
        p.finish(),
    )
}

fn fits(k: &RotateHalf, rt: u64, target: &Target) -> bool {
    let (_, buffers) = plan_buffers(k, rt, target);
    let align = target.buffers.ub.align;
    buffers
        .iter()
        .map(|b| b.offset + b.total_bytes(align))
        .max()
        .unwrap_or(0)
        <= target.buffers.ub.usable_bytes()
}

/// The rotation `y1 = x1·c − x2·s`, `y2 = x2·c + x1·s` in f32, of row `k` of the tile or, for
/// [`RotateHalf::whole`] kernels, of the whole tile at once.
fn row_compute(k: &RotateHalf, b: &Bufs) -> Vec<Stmt> {
    let w = k.pitch();
    let whole = k.whole();
    let n = || if whole { v("n").mul(c(k.r)) } else { c(k.r) };
    let at0 = |buf: BufId| slice(buf, c(0), c(0));
    let row_off = || if whole { c(0) } else { v("k").mul(c(w)) };
    let row = |buf: BufId| slice(buf, v("s"), row_off());
    let tab_row = |i: usize| {
        let off = if k.tables[i].rows == TableRows::Consecutive {
            row_off()
        } else {
            c(0)
        };
        slice(b.tab[i], v("s"), off)
    };
    let mut out = Vec::new();
    let mut operand = |src, f32_buf: Option<BufId>| match f32_buf {
        Some(f) => {
            out.push(vec_op(VecOp::Cast, at0(f), vec![VecArg::Slice(src)], n()));
            at0(f)
        }
        None => src,
    };
    let x1 = operand(row(b.x[0]), b.xf.map(|f| f[0]));
    let x2 = operand(row(b.x[1]), b.xf.map(|f| f[1]));
    let cs = operand(tab_row(0), b.tf[0]);
    let sn = operand(tab_row(1), b.tf[1]);
    let (p, q) = (at0(b.tmp[0]), at0(b.tmp[1]));
    let op = |op: VecOp, dst: &Slice, a: &Slice, b: &Slice| {
        vec_op(
            op,
            dst.clone(),
            vec![VecArg::Slice(a.clone()), VecArg::Slice(b.clone())],
            n(),
        )
    };
    let halves = [(&x1, &x2, VecOp::Sub), (&x2, &x1, VecOp::Add)];
    for (half, (first, second, combine)) in halves.into_iter().enumerate() {
        out.push(op(VecOp::Mul, &p, first, &cs));
        out.push(op(VecOp::Mul, &q, second, &sn));
        let y = row(b.y[half]);
        if k.dtype == DType::F32 {
            out.push(op(combine, &y, &p, &q));
        } else {
            out.push(op(combine, &p, &p, &q));
            out.push(vec_op(VecOp::Cast, y, vec![VecArg::Slice(p.clone())], n()));
        }
    }
    out
}

fn build(k: &RotateHalf, rt: u64, target: &Target) -> Result<Kernel, LowerError> {
    let (b, buffers) = plan_buffers(k, rt, target);
    let rows = k.rows();
    let (r, d) = (k.r, k.d);
    let params = vec![
        Param {
            name: "x".into(),
            dtype: k.dtype,
            shape: vec![rows, d],
            role: ParamRole::Input,
        },
        Param {
            name: "cos".into(),
            dtype: k.tables[0].dtype,
            shape: vec![k.tables[0].elements / r, r],
            role: ParamRole::Input,
        },
        Param {
            name: "sin".into(),
            dtype: k.tables[1].dtype,
            shape: vec![k.tables[1].elements / r, r],
            role: ParamRole::Input,
        },
        Param {
            name: "out".into(),
            dtype: k.dtype,
            shape: vec![rows, d],
            role: ParamRole::Output,
        },
    ];
    let nj = k.inner_rows.div_ceil(rt);
    let units = k.outer.iter().product::<u64>() * nj;
    let blocks = units.clamp(1, target.cores.aiv as u64);
    let (first, trips) = deal(units, blocks, 0);
    let dg = digits(v("ou"), &k.outer);
    let s = || v("s");
    let mut body = vec![
        let_("u", first.add(v("t").mul(c(blocks)))),
        let_("ju", v("u").rem(c(nj))),
        let_("ou", v("u").div(c(nj))),
        let_("j0", v("ju").mul(c(rt))),
        let_("n", c(k.inner_rows).sub(v("j0")).min(c(rt))),
        let_("r0", v("ou").mul(c(k.inner_rows)).add(v("j0"))),
        let_("s", v("t").rem(c(2))),
        wait(Pipe::V, Pipe::Mte2, s()),
    ];
    if b.pass.is_some() {
        body.push(wait(Pipe::Mte3, Pipe::Mte2, s()));
    }
    for (h, &buf) in b.x.iter().enumerate() {
        body.push(Stmt::CopyIn {
            dst: tile(buf, s(), (c(0), c(0)), (v("n"), c(r))),
            src: gm(0, (v("r0"), c(h as u64 * r)), (v("n"), c(r))),
        });
    }
    if let Some(xp) = b.pass {
        body.push(Stmt::CopyIn {
            dst: tile(xp, s(), (c(0), c(0)), (v("n"), c(k.pass()))),
            src: gm(0, (v("r0"), c(2 * r)), (v("n"), c(k.pass()))),
        });
    }
    for (i, t) in k.tables.iter().enumerate() {
        let base = dot(&dg, &t.outer_strides).div(c(r));
        let (row0, n) = match t.rows {
            TableRows::Consecutive => (base.add(v("j0")), v("n")),
            TableRows::Broadcast => (base, c(1)),
        };
        body.push(Stmt::CopyIn {
            dst: tile(b.tab[i], s(), (c(0), c(0)), (n.clone(), c(r))),
            src: gm(1 + i, (row0, c(0)), (n, c(r))),
        });
    }
    body.extend(handoff(Pipe::Mte2, Pipe::V, s()));
    body.push(wait(Pipe::Mte3, Pipe::V, s()));
    if k.whole() {
        body.extend(row_compute(k, &b));
    } else {
        body.push(for_("k", v("n"), false, row_compute(k, &b)));
    }
    body.push(set(Pipe::V, Pipe::Mte2, s()));
    body.extend(handoff(Pipe::V, Pipe::Mte3, s()));
    for (h, &buf) in b.y.iter().enumerate() {
        body.push(Stmt::CopyOut {
            dst: gm(3, (v("r0"), c(h as u64 * r)), (v("n"), c(r))),
            src: tile(buf, s(), (c(0), c(0)), (v("n"), c(r))),
        });
    }
    if let Some(xp) = b.pass {
        body.push(Stmt::CopyOut {
            dst: gm(3, (v("r0"), c(2 * r)), (v("n"), c(k.pass()))),
            src: tile(xp, s(), (c(0), c(0)), (v("n"), c(k.pass()))),
        });
        body.push(set(Pipe::Mte3, Pipe::Mte2, s()));
    }
    body.push(set(Pipe::Mte3, Pipe::V, s()));
    let mut vector = Vec::new();
    for st in 0..2 {
        vector.push(set(Pipe::V, Pipe::Mte2, c(st)));
        vector.push(set(Pipe::Mte3, Pipe::V, c(st)));
        if b.pass.is_some() {
            vector.push(set(Pipe::Mte3, Pipe::Mte2, c(st)));
        }
    }
    vector.push(for_("t", trips, true, body));
    for st in 0..2 {
        vector.push(wait(Pipe::V, Pipe::Mte2, c(st)));
        vector.push(wait(Pipe::Mte3, Pipe::V, c(st)));
        if b.pass.is_some() {
            vector.push(wait(Pipe::Mte3, Pipe::Mte2, c(st)));
        }
    }
    let tiling = [("tile_rows", rt), ("units", units)];
    Ok(Kernel::vector(
        &k.name,
        blocks as u32,
        params,
        buffers,
        vector,
        &tiling,
    ))
}

/// Describes the tables of `x`'s rows and picks the tiled axes.
fn rotate_half(
    name: &str,
    x: &TensorShape,
    cos: &TensorShape,
    sin: &TensorShape,
) -> Result<RotateHalf, LowerError> {
    let fail = |m: &str| Err(LowerError::Unsupported(format!("rope `{name}`: {m}")));
    let Some((&d, lead)) = x.shape.split_last() else {
        return fail("x is a scalar");
    };
    let r = cos.shape.last().copied().unwrap_or(0);
    if sin.shape.last() != Some(&r) || r == 0 || 2 * r > d {
        return fail("cos/sin do not fit x");
    }
    if !float_storage(x.dtype) || !float_storage(cos.dtype) || !float_storage(sin.dtype) {
        return fail("x, cos and sin must be f32, f16 or bf16");
    }
    // Table strides over the lead axes (0 where broadcast), for both tables.
    let table_strides = |t: &TensorShape| -> Result<Vec<u64>, LowerError> {
        let t_lead = &t.shape[..t.shape.len() - 1];
        if t_lead.len() > lead.len() {
            return Err(LowerError::Unsupported(format!(
                "rope `{name}`: a table has more axes than x"
            )));
        }
        let mut padded = vec![1u64; lead.len() - t_lead.len()];
        padded.extend_from_slice(t_lead);
        padded.push(r);
        let st = strides(&padded);
        lead.iter()
            .zip(&padded)
            .zip(&st)
            .map(|((&e, &te), &s)| match te {
                1 => Ok(0),
                _ if te == e => Ok(s),
                _ => Err(LowerError::Unsupported(format!(
                    "rope `{name}`: a table does not broadcast to x"
                ))),
            })
            .collect()
    };
    let ts = [table_strides(cos)?, table_strides(sin)?];
    // The tiled axes: the longest suffix of lead axes over which each table is consecutive rows
    // or one row.
    let mut modes: [Option<TableRows>; 2] = [None, None];
    let mut split = lead.len();
    let mut inner = 1u64;
    'axes: while split > 0 {
        let k = split - 1;
        if lead[k] > 1 {
            let mut next = modes;
            for (i, st) in ts.iter().enumerate() {
                let mode = if st[k] == 0 {
                    TableRows::Broadcast
                } else if st[k] == r * inner {
                    TableRows::Consecutive
                } else {
                    break 'axes;
                };
                if modes[i].is_some_and(|m| m != mode) {
                    break 'axes;
                }
                next[i] = Some(mode);
            }
            modes = next;
            inner *= lead[k];
        }
        split = k;
    }
    let outer: Vec<u64> = lead[..split].to_vec();
    let inner_rows: u64 = lead[split..].iter().product();
    let tables = [0, 1].map(|i| {
        let t = if i == 0 { cos } else { sin };
        Table {
            dtype: t.dtype,
            elements: t.elements(),
            outer_strides: ts[i][..split].to_vec(),
            rows: modes[i].unwrap_or(TableRows::Broadcast),
        }
    });
    Ok(RotateHalf {
        name: name.to_string(),
        dtype: x.dtype,
        d,
        r,
        outer,
        inner_rows,
        tables,
    })
}

fn plan(k: &RotateHalf, args: Vec<ArgRef>, target: &Target) -> Result<KernelCall, LowerError> {
    if !fits(k, 1, target) {
        return Err(LowerError::Unsupported(format!(
            "rope `{}`: a row of {} features does not fit UB",
            k.name, k.d
        )));
    }
    let mut max_rows = k.inner_rows.min(4095);
    while max_rows > 1 && !fits(k, max_rows, target) {
        max_rows = (max_rows * 3 / 4).max(1);
    }
    let rows = k.rows();
    let moved = 2 * bytes(rows * k.d, k.dtype)
        + k.tables
            .iter()
            .map(|t| bytes(t.elements, t.dtype))
            .sum::<u64>();
    let work = vector_work((6 * rows * k.r) as f64, moved as f64, k.dtype);
    fastest(
        row_candidates(
            max_rows,
            k.inner_rows,
            k.outer.iter().product(),
            target.cores.aiv as u64,
        )
        .into_iter()
        .map(|rt| {
            let kernel = build(k, rt, target)?;
            costed(kernel, args.clone(), target, &work)
        }),
        target,
    )
}

/// The copy between interleaved pairs and halves: `to_halves` moves `x[n, 2i + h]` to
/// `y[n, h·r + i]`, otherwise the reverse; features past `2r` are copied as they are.
fn interleave_copy(name: &str, dtype: DType, rows: u64, d: u64, r: u64, to_halves: bool) -> Copy {
    let pairs = if to_halves {
        [Axis::new(2, 1, r), Axis::new(r, 2, 1)]
    } else {
        [Axis::new(2, r, 1), Axis::new(r, 1, 2)]
    };
    let mut parts = vec![CopyPart {
        src: 0,
        dst: 1,
        outer: pairs.to_vec(),
        rows: Axis::new(rows, d, d),
        width: 1,
        src_base: 0,
        dst_base: 0,
        index: None,
    }];
    if d > 2 * r {
        parts.push(CopyPart {
            src: 0,
            dst: 1,
            outer: Vec::new(),
            rows: Axis::new(rows, d, d),
            width: d - 2 * r,
            src_base: 2 * r,
            dst_base: 2 * r,
            index: None,
        });
    }
    let param = |n: &str, role| CopyParam {
        name: n.to_string(),
        dtype,
        elements: rows * d,
        role,
    };
    Copy {
        name: name.to_string(),
        dtype,
        params: vec![
            param("x", ParamRole::Input),
            param("out", ParamRole::Output),
        ],
        parts,
    }
}

/// `Rope { interleaved }`: `x [..., d], cos, sin` (tables broadcast to `[..., r]`).
pub fn lower_rope(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Rope { interleaved } = ctx.op else {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not a rope",
            ctx.name
        )));
    };
    let (x, cos, sin) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let y = ctx.output(0)?;
    if y != x {
        return Err(LowerError::Unsupported(format!(
            "rope `{}`: the result differs from x in type or shape",
            ctx.name
        )));
    }
    if !interleaved {
        let k = rotate_half(ctx.name, x, cos, sin)?;
        let args = vec![
            ArgRef::Operand(0),
            ArgRef::Operand(1),
            ArgRef::Operand(2),
            ArgRef::Result(0),
        ];
        return Ok(Lowering::single(plan(&k, args, ctx.target)?));
    }
    let k = rotate_half(&format!("{}_rotate", ctx.name), x, cos, sin)?;
    let rows = k.rows();
    let scratch = |n: &str| Scratch {
        name: n.to_string(),
        tensor: x.clone(),
    };
    let to_halves = interleave_copy(
        &format!("{}_halves", ctx.name),
        x.dtype,
        rows,
        k.d,
        k.r,
        true,
    );
    let to_pairs = interleave_copy(
        &format!("{}_pairs", ctx.name),
        x.dtype,
        rows,
        k.d,
        k.r,
        false,
    );
    let calls = vec![
        copy::plan(
            &to_halves,
            vec![ArgRef::Operand(0), ArgRef::Scratch(0)],
            ctx.target,
        )?,
        plan(
            &k,
            vec![
                ArgRef::Scratch(0),
                ArgRef::Operand(1),
                ArgRef::Operand(2),
                ArgRef::Scratch(1),
            ],
            ctx.target,
        )?,
        copy::plan(
            &to_pairs,
            vec![ArgRef::Scratch(1), ArgRef::Result(0)],
            ctx.target,
        )?,
    ];
    Ok(Lowering {
        scratch: vec![scratch("halves"), scratch("rotated")],
        calls,
        view: false,
    })
}
