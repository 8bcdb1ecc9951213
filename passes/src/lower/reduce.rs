//! `Reduce` (sum, mean, max, min) of f32, f16 and bf16 tensors over any axes whose non-unit
//! extents form one contiguous block, on the Vector unit in f32.
//!
//! The operand is viewed as `[A, R, M]`: `R` the merged reduced axes, `A` and `M` the kept axes
//! before and after them. With `M = 1` (a trailing reduction) each row of `R` elements is
//! reduced in chunks with `ReduceSum`/`ReduceMax` (a minimum is the negated maximum of the
//! negated values) and the chunk results combined on one element. With `M > 1` each unit of
//! `A × column chunk` accumulates the `R` rows of its columns with vector `Add`/`Max`/`Min`.
//! Stages are ordered by `PipeBarrier<PIPE_ALL>`: each unit loads, combines and stores in turn.

use std::collections::BTreeMap;

use cubevec_ir::kernel::{
    BufId, Buffer, BufferPlanner, CoreType, Expr, GmTile, Kernel, Param, ParamRole, Pipe,
    ReduceKind, Slice, Stmt, VecArg, VecOp,
};
use cubevec_ir::op::ReduceOp;
use cubevec_ir::{DType, Op};

use super::movement::build::{
    bytes, c, call, deal, float_storage, for_, gm, let_, pitch, slice, tile, ub, v, vec_op,
    vector_work,
};
use super::movement::norm_axis;
use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext};

/// Elements of the largest operand chunk a unit loads at once.
const CHUNK: u64 = 8192;

/// The `[A, R, M]` view of a reduction of `shape` over the axes flagged in `reduced`, or `None`
/// when the reduced non-unit axes are not one contiguous block.
pub(crate) fn view(shape: &[u64], reduced: &[bool]) -> Option<(u64, u64, u64)> {
    let mut blocks: Vec<(bool, u64)> = Vec::new();
    for (&d, &r) in shape.iter().zip(reduced) {
        if d == 1 {
            continue;
        }
        match blocks.last_mut() {
            Some((last, e)) if *last == r => *e *= d,
            _ => blocks.push((r, d)),
        }
    }
    let first = blocks.iter().position(|b| b.0);
    let Some(first) = first else {
        return Some((shape.iter().product(), 1, 1));
    };
    if blocks.iter().filter(|b| b.0).count() > 1 {
        return None;
    }
    let a = blocks[..first].iter().map(|b| b.1).product();
    let m = blocks[first + 1..].iter().map(|b| b.1).product();
    Some((a, blocks[first].1, m))
}

/// A reduction kernel over the `[A, R, M]` view.
struct Reduction {
    name: String,
    op: ReduceOp,
    dtype: DType,
    a: u64,
    r: u64,
    m: u64,
}

/// The UB buffers of one reduction kernel.
struct Bufs {
    /// Loaded operand chunk (storage type).
    x: BufId,
    /// The chunk converted to f32 (16-bit operands).
    xf: Option<BufId>,
    /// The f32 accumulator.
    acc: BufId,
    /// One reduced chunk (`M = 1`).
    red: Option<BufId>,
    /// The result converted to the storage type (16-bit results).
    y: Option<BufId>,
}

fn unsupported<T>(ctx: &OpContext, why: &str) -> Result<T, LowerError> {
    Err(LowerError::Unsupported(format!(
        "{} `{}`: {why}",
        ctx.op.name(),
        ctx.name
    )))
}

/// `Reduce` with op sum, mean, max or min over float operands (see the module docs). A
/// reduction over axes of extent 1 only is a view.
pub fn lower_reduce(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Reduce { op, axes, .. } = ctx.op else {
        return unsupported(ctx, "not a reduction");
    };
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    if !float_storage(x.dtype) || y.dtype != x.dtype {
        return unsupported(ctx, "only f32, f16 and bf16 reductions are tiled");
    }
    if !matches!(
        op,
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max | ReduceOp::Min
    ) {
        return unsupported(ctx, "no vector lowering of a product");
    }
    let rank = x.shape.len();
    let mut reduced = vec![axes.is_empty(); rank];
    for &ax in axes {
        reduced[norm_axis(ax, rank)?] = true;
    }
    let Some((a, r, m)) = view(&x.shape, &reduced) else {
        return unsupported(ctx, "the reduced axes are not one contiguous block");
    };
    if x.elements() == 0 {
        return unsupported(ctx, "the operand is empty");
    }
    if r == 1 {
        return Ok(Lowering::view());
    }
    let red = Reduction {
        name: ctx.name.to_string(),
        op: *op,
        dtype: x.dtype,
        a,
        r,
        m,
    };
    Ok(Lowering::single(plan(&red, ctx)?))
}

fn plan(red: &Reduction, ctx: &OpContext) -> Result<KernelCall, LowerError> {
    let kernel = if red.m == 1 {
        build_rows(red, ctx)
    } else {
        build_columns(red, ctx)
    };
    let moved = bytes(red.a * red.r * red.m, red.dtype) + bytes(red.a * red.m, red.dtype);
    let work = vector_work((red.a * red.r * red.m) as f64, moved as f64, red.dtype);
    call(
        kernel,
        vec![ArgRef::Operand(0), ArgRef::Result(0)],
        ctx.target,
        &work,
    )
}

fn barrier() -> Stmt {
    Stmt::Barrier { pipe: Pipe::All }
}

/// Buffers for chunks of `rows × cols` operand elements and an accumulator of `cols`.
fn buffers(red: &Reduction, rows: u64, cols: u64, ctx: &OpContext) -> (Bufs, Vec<Buffer>) {
    let f32 = DType::F32;
    let mut planner = BufferPlanner::new();
    let t = ctx.target;
    let x = planner.add(t, ub("x", red.dtype, rows, pitch(cols, red.dtype), 1));
    let xf = (red.dtype != f32).then(|| planner.add(t, ub("xf", f32, 1, pitch(cols, f32), 1)));
    let acc_cols = if red.m == 1 { 1 } else { cols };
    let acc = planner.add(t, ub("acc", f32, 1, pitch(acc_cols, f32), 1));
    let red_buf = (red.m == 1).then(|| planner.add(t, ub("red", f32, 1, pitch(1, f32), 1)));
    let y = (red.dtype != f32)
        .then(|| planner.add(t, ub("y", red.dtype, 1, pitch(acc_cols, red.dtype), 1)));
    (
        Bufs {
            x,
            xf,
            acc,
            red: red_buf,
            y,
        },
        planner.finish(),
    )
}

/// Operand row `k` of the loaded chunk as an f32 run of `count` elements, converting 16-bit
/// storage first (and negating for a minimum over rows).
fn as_f32(
    b: &Bufs,
    red: &Reduction,
    k: Expr,
    cw: u64,
    count: Expr,
    negate: bool,
) -> (Vec<Stmt>, Slice) {
    let src = slice(b.x, c(0), k.mul(c(pitch(cw, red.dtype))));
    let mut out = Vec::new();
    let run = match b.xf {
        Some(xf) => {
            out.push(vec_op(
                VecOp::Cast,
                slice(xf, c(0), c(0)),
                vec![VecArg::Slice(src)],
                count.clone(),
            ));
            slice(xf, c(0), c(0))
        }
        None => src,
    };
    if !negate {
        return (out, run);
    }
    let dst = match b.xf {
        Some(xf) => slice(xf, c(0), c(0)),
        None => slice(b.x, c(0), c(0)),
    };
    out.push(vec_op(
        VecOp::Muls,
        dst.clone(),
        vec![VecArg::Slice(run), VecArg::Imm(-1.0)],
        count,
    ));
    (out, dst)
}

/// The finishing statements: mean scaling, min negation, conversion; the slice to store.
fn finish(b: &Bufs, red: &Reduction, count: Expr) -> (Vec<Stmt>, BufId) {
    let acc = || slice(b.acc, c(0), c(0));
    let mut out = Vec::new();
    let scale = match red.op {
        ReduceOp::Mean => Some(1.0 / red.r as f64),
        ReduceOp::Min if red.m == 1 => Some(-1.0),
        _ => None,
    };
    if let Some(s) = scale {
        out.push(vec_op(
            VecOp::Muls,
            acc(),
            vec![VecArg::Slice(acc()), VecArg::Imm(s)],
            count.clone(),
        ));
    }
    match b.y {
        Some(y) => {
            out.push(vec_op(
                VecOp::Cast,
                slice(y, c(0), c(0)),
                vec![VecArg::Slice(acc())],
                count,
            ));
            (out, y)
        }
        None => (out, b.acc),
    }
}

fn kernel(
    red: &Reduction,
    params: Vec<Param>,
    buffers: Vec<Buffer>,
    blocks: u64,
    vector: Vec<Stmt>,
    tiling: [(&str, u64); 2],
) -> Kernel {
    Kernel {
        name: red.name.clone(),
        core: CoreType::Aiv,
        blocks: blocks as u32,
        params,
        buffers,
        cube: Vec::new(),
        vector,
        tiling: tiling
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn param(name: &str, dtype: DType, shape: Vec<u64>, role: ParamRole) -> Param {
    Param {
        name: name.into(),
        dtype,
        shape,
        role,
    }
}

/// `M = 1`: each block reduces whole rows of `R` elements, chunk by chunk.
fn build_rows(red: &Reduction, ctx: &OpContext) -> Kernel {
    let cw = red.r.min(CHUNK);
    let (b, buffers) = buffers(red, 1, cw, ctx);
    let kind = if red.op == ReduceOp::Sum || red.op == ReduceOp::Mean {
        ReduceKind::Sum
    } else {
        ReduceKind::Max
    };
    let combine = if kind == ReduceKind::Sum {
        VecOp::Add
    } else {
        VecOp::Max
    };
    let negate = red.op == ReduceOp::Min;
    let chunks = red.r.div_ceil(cw);
    let blocks = red.a.clamp(1, ctx.target.cores.aiv as u64);
    let (first, trips) = deal(red.a, blocks, 0);
    // Loads chunk `j` of row `row` and reduces it into `dst`.
    let reduce_chunk = |j: Expr, dst: Slice| {
        let mut out = vec![
            let_("c0", j.mul(c(cw))),
            let_("wl", c(red.r).sub(v("c0")).min(c(cw))),
            barrier(),
            Stmt::CopyIn {
                dst: tile(b.x, c(0), (c(0), c(0)), (c(1), v("wl"))),
                src: gm(0, (v("row"), v("c0")), (c(1), v("wl"))),
            },
            barrier(),
        ];
        let (conv, run) = as_f32(&b, red, c(0), cw, v("wl"), negate);
        out.extend(conv);
        out.push(Stmt::Reduce {
            kind,
            dst,
            src: run,
            count: v("wl"),
        });
        out
    };
    let acc = || slice(b.acc, c(0), c(0));
    let red_buf = b.red.expect("a row reduction has a chunk result buffer");
    let mut body = vec![let_("row", first.add(v("t").mul(c(blocks))))];
    body.extend(reduce_chunk(c(0), acc()));
    let mut rest = reduce_chunk(v("j").add(c(1)), slice(red_buf, c(0), c(0)));
    rest.push(vec_op(
        combine,
        acc(),
        vec![
            VecArg::Slice(acc()),
            VecArg::Slice(slice(red_buf, c(0), c(0))),
        ],
        c(1),
    ));
    body.push(for_("j", c(chunks - 1), false, rest));
    let (fin, store) = finish(&b, red, c(1));
    body.extend(fin);
    body.push(barrier());
    body.push(Stmt::CopyOut {
        dst: gm(1, (c(0), v("row")), (c(1), c(1))),
        src: tile(store, c(0), (c(0), c(0)), (c(1), c(1))),
    });
    body.push(barrier());
    let params = vec![
        param("x", red.dtype, vec![red.a, red.r], ParamRole::Input),
        param("out", red.dtype, vec![1, red.a], ParamRole::Output),
    ];
    let vector = vec![for_("t", trips, false, body)];
    kernel(
        red,
        params,
        buffers,
        blocks,
        vector,
        [("chunk", cw), ("rows", red.a)],
    )
}

/// `M > 1`: each unit (one `A` index, one column chunk) accumulates its `R` rows.
fn build_columns(red: &Reduction, ctx: &OpContext) -> Kernel {
    let cw = red.m.min(CHUNK / 2);
    let rt = (CHUNK / pitch(cw, red.dtype)).clamp(1, red.r);
    let (b, buffers) = buffers(red, rt, cw, ctx);
    let combine = match red.op {
        ReduceOp::Max => VecOp::Max,
        ReduceOp::Min => VecOp::Min,
        _ => VecOp::Add,
    };
    let nc = red.m.div_ceil(cw);
    let units = red.a * nc;
    let blocks = units.clamp(1, ctx.target.cores.aiv as u64);
    let (first, trips) = deal(units, blocks, 0);
    let load = |r0: Expr, n: Expr| Stmt::CopyIn {
        dst: tile(b.x, c(0), (c(0), c(0)), (n.clone(), v("wl"))),
        src: GmTile {
            param: 0,
            batch: v("a"),
            row: r0,
            col: v("c0"),
            rows: n,
            cols: v("wl"),
        },
    };
    let acc = || slice(b.acc, c(0), c(0));
    let mut body = vec![
        let_("u", first.add(v("t").mul(c(blocks)))),
        let_("a", v("u").div(c(nc))),
        let_("c0", v("u").rem(c(nc)).mul(c(cw))),
        let_("wl", c(red.m).sub(v("c0")).min(c(cw))),
        barrier(),
        load(c(0), c(1)),
        barrier(),
    ];
    let (conv, run) = as_f32(&b, red, c(0), cw, v("wl"), false);
    body.extend(conv);
    body.push(vec_op(
        VecOp::Adds,
        acc(),
        vec![VecArg::Slice(run), VecArg::Imm(0.0)],
        v("wl"),
    ));
    let (conv, run) = as_f32(&b, red, v("k"), cw, v("wl"), false);
    let mut row = conv;
    row.push(vec_op(
        combine,
        acc(),
        vec![VecArg::Slice(acc()), VecArg::Slice(run)],
        v("wl"),
    ));
    body.push(for_(
        "j",
        c((red.r - 1).div_ceil(rt)),
        false,
        vec![
            let_("r0", c(1).add(v("j").mul(c(rt)))),
            let_("n", c(red.r).sub(v("r0")).min(c(rt))),
            barrier(),
            load(v("r0"), v("n")),
            barrier(),
            for_("k", v("n"), false, row),
        ],
    ));
    let (fin, store) = finish(&b, red, v("wl"));
    body.extend(fin);
    body.push(barrier());
    body.push(Stmt::CopyOut {
        dst: gm(1, (v("a"), v("c0")), (c(1), v("wl"))),
        src: tile(store, c(0), (c(0), c(0)), (c(1), v("wl"))),
    });
    body.push(barrier());
    let params = vec![
        param("x", red.dtype, vec![red.a, red.r, red.m], ParamRole::Input),
        param("out", red.dtype, vec![red.a, red.m], ParamRole::Output),
    ];
    let vector = vec![for_("t", trips, false, body)];
    kernel(
        red,
        params,
        buffers,
        blocks,
        vector,
        [("tile_rows", rt), ("tile_cols", cw)],
    )
}
