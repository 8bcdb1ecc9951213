//! Row-wise kernels whose rows do not fit UB (DeepSeek-V4's hyper-connection RMSNorm over
//! `hc_mult × hidden` = 16384 features): each row is streamed through UB in chunks, once per
//! pass, with the row statistics carried between passes in a small f32 buffer.
//!
//! - RMSNorm: pass 1 accumulates `Σx²` chunk by chunk; pass 2 rereads each chunk and writes
//!   `x · rsqrt(Σx²/n + eps) · gamma`.
//! - Softmax: pass 1 the running maximum, pass 2 `Σexp(x − max)`, pass 3 writes
//!   `exp(x − max) / Σ`.
//!
//! Rows are spread over the AIVs one row per iteration. Every pass double-buffers its chunks:
//! a running chunk counter over all passes picks the stage, so MTE2 fetches the next chunk
//! while V works on this one, whichever pass either belongs to.

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, BufferPlanner, Kernel, Param, ParamRole, Pipe, ReduceKind, Slice, Stmt, VecArg, VecOp,
};
use cubevec_ir::target::Target;

use super::TileError;
use super::build::{block_trips, c, for_, gm, let_, set, tile, v, wait};
use super::vector::{
    RowKind, RowWise, VectorPlan, check_dtype, pick, slice, stream_epilogue, stream_prologue,
    ub_buffer, vec_op,
};
use crate::cost::estimate;

/// Elements per chunk granule (256 bytes of f32), so every chunk starts 32-byte aligned.
const GRANULE: u64 = 64;

/// Offsets of the statistics in the f32 `stat` buffer (32-byte apart).
const ACC: u64 = 0;
const PART: u64 = 8;
const NEG_MAX: u64 = 16;
const SUM: u64 = 24;

/// The lowest finite f32: the running maximum starts here.
const LOWEST: f64 = -3.402_823_466_385_288_6e38;

/// UB bytes per element of chunk length: input and output stages, gamma stages (RMSNorm),
/// the f32 copies of a 16-bit input and gamma, and the f32 temporary.
fn bytes_per_elem(op: &RowWise) -> u64 {
    let eb = (op.dtype.bits() / 8) as u64;
    let cast = op.dtype != DType::F32;
    let gamma = matches!(op.kind, RowKind::RmsNorm { .. });
    let stages = 2 * eb * (2 + u64::from(gamma));
    let f32_copies = if cast { 4 * (1 + u64::from(gamma)) } else { 0 };
    stages + f32_copies + 4
}

/// The buffers of a long-row kernel.
struct Buffers {
    x: BufId,
    y: BufId,
    gamma: Option<(BufId, BufId)>,
    xf: Option<BufId>,
    tmp: BufId,
    stat: BufId,
}

/// Builds a long-row kernel with chunks of `chunk` elements.
pub fn build_long_rows(op: &RowWise, chunk: u64, target: &Target) -> Result<Kernel, TileError> {
    check_dtype(&op.name, op.dtype)?;
    if op.rows == 0 || op.cols == 0 || chunk == 0 || !chunk.is_multiple_of(16) {
        return Err(TileError::Invalid {
            name: op.name.clone(),
            message: format!(
                "shape {} x {} with chunks of {chunk} (a positive multiple of 16)",
                op.rows, op.cols
            ),
        });
    }
    let cast = op.dtype != DType::F32;
    let rms = matches!(op.kind, RowKind::RmsNorm { .. });
    let mut planner = BufferPlanner::new();
    let x = planner.add(target, ub_buffer("x", op.dtype, 1, chunk, 2));
    let y = planner.add(target, ub_buffer("y", op.dtype, 1, chunk, 2));
    let gamma = rms.then(|| {
        let raw = planner.add(target, ub_buffer("gamma_in", op.dtype, 1, chunk, 2));
        let f = if cast {
            planner.add(target, ub_buffer("gamma", DType::F32, 1, chunk, 1))
        } else {
            raw
        };
        (raw, f)
    });
    let xf = cast.then(|| planner.add(target, ub_buffer("xf", DType::F32, 1, chunk, 1)));
    let tmp = planner.add(target, ub_buffer("tmp", DType::F32, 1, chunk, 1));
    let stat = planner.add(target, ub_buffer("stat", DType::F32, 1, 32, 1));
    let bufs = Buffers {
        x,
        y,
        gamma,
        xf,
        tmp,
        stat,
    };
    let mut params = vec![Param {
        name: "x".into(),
        dtype: op.dtype,
        shape: vec![op.rows, op.cols],
        role: ParamRole::Input,
    }];
    if rms {
        params.push(Param {
            name: "gamma".into(),
            dtype: op.dtype,
            shape: vec![op.cols],
            role: ParamRole::Input,
        });
    }
    params.push(Param {
        name: "out".into(),
        dtype: op.dtype,
        shape: vec![op.rows, op.cols],
        role: ParamRole::Output,
    });
    let chunks = op.cols.div_ceil(chunk);
    let passes = if rms { 2 } else { 3 };
    let blocks = op.rows.min(target.cores.aiv as u64);
    let st = |off: u64| slice(stat, c(0), c(off));
    let one = || c(1);

    let mut row = vec![let_("row", v("blk").add(v("t").mul(c(blocks))))];
    let init = if rms { 0.0 } else { LOWEST };
    row.push(vec_op(
        VecOp::Duplicate,
        st(ACC),
        vec![VecArg::Imm(init)],
        one(),
    ));
    let stream = Stream {
        op,
        bufs: &bufs,
        chunk,
        chunks,
        passes,
    };
    let statistic: ChunkBody = if rms {
        accumulate_squares
    } else {
        accumulate_max
    };
    row.push(stream.pass(0, statistic, false));
    if rms {
        let RowKind::RmsNorm { eps } = op.kind else {
            unreachable!("rms is RowKind::RmsNorm")
        };
        row.extend([
            vec_op(
                VecOp::Muls,
                st(ACC),
                vec![VecArg::Slice(st(ACC)), VecArg::Imm(1.0 / op.cols as f64)],
                one(),
            ),
            vec_op(
                VecOp::Adds,
                st(ACC),
                vec![VecArg::Slice(st(ACC)), VecArg::Imm(eps)],
                one(),
            ),
            vec_op(VecOp::Rsqrt, st(ACC), vec![VecArg::Slice(st(ACC))], one()),
        ]);
        row.push(stream.pass(1, scale_rows, true));
    } else {
        row.extend([
            vec_op(
                VecOp::Muls,
                st(NEG_MAX),
                vec![VecArg::Slice(st(ACC)), VecArg::Imm(-1.0)],
                one(),
            ),
            vec_op(VecOp::Duplicate, st(SUM), vec![VecArg::Imm(0.0)], one()),
        ]);
        row.push(stream.pass(1, sum_exp, false));
        row.push(vec_op(
            VecOp::Reciprocal,
            st(SUM),
            vec![VecArg::Slice(st(SUM))],
            one(),
        ));
        row.push(stream.pass(2, normalise, true));
    }

    let mut vector = stream_prologue();
    let trips = block_trips(op.rows, blocks);
    vector.push(for_("t", trips, false, row));
    vector.extend(stream_epilogue());
    let tiling = [("chunk", chunk), ("chunks", chunks), ("passes", passes)];
    Ok(Kernel::vector(
        &op.name,
        blocks as u32,
        params,
        planner.finish(),
        vector,
        &tiling,
    ))
}

/// What a pass computes on one chunk: statements over `cl` elements of stage `s`, given the
/// f32 view of the chunk and the output slice.
type ChunkBody = fn(&Buffers, Slice, Slice) -> Vec<Stmt>;

/// The chunking of a row shared by all passes.
struct Stream<'a> {
    op: &'a RowWise,
    bufs: &'a Buffers,
    chunk: u64,
    chunks: u64,
    passes: u64,
}

impl Stream<'_> {
    /// Pass `index` over the row's chunks: fetch each chunk (and gamma's, when writing an
    /// RMSNorm), run `body`, and write the output chunk when `writes`.
    fn pass(&self, index: u64, body: ChunkBody, writes: bool) -> Stmt {
        let Stream {
            op,
            bufs,
            chunk,
            chunks,
            passes,
        } = *self;
        let cast = op.dtype != DType::F32;
        let out_param = if bufs.gamma.is_some() { 2 } else { 1 };
        let raw = || slice(bufs.x, v("s"), c(0));
        let xf = bufs.xf.map_or_else(raw, |b| slice(b, c(0), c(0)));
        let mut stmts = vec![
            let_("c0", v("ch").mul(c(chunk))),
            let_("cl", c(op.cols).sub(v("c0")).min(c(chunk))),
            let_(
                "s",
                v("t")
                    .mul(c(passes))
                    .add(c(index))
                    .mul(c(chunks))
                    .add(v("ch"))
                    .rem(c(2)),
            ),
            wait(Pipe::V, Pipe::Mte2, v("s")),
            Stmt::CopyIn {
                dst: tile(bufs.x, v("s"), (c(0), c(0)), (c(1), v("cl"))),
                src: gm(0, c(0), (v("row"), v("c0")), (c(1), v("cl"))),
            },
        ];
        let gamma = bufs.gamma.filter(|_| writes);
        if let Some((raw_gamma, _)) = gamma {
            stmts.push(Stmt::CopyIn {
                dst: tile(raw_gamma, v("s"), (c(0), c(0)), (c(1), v("cl"))),
                src: gm(1, c(0), (c(0), v("c0")), (c(1), v("cl"))),
            });
        }
        stmts.push(set(Pipe::Mte2, Pipe::V, v("s")));
        stmts.push(wait(Pipe::Mte2, Pipe::V, v("s")));
        if writes {
            stmts.push(wait(Pipe::Mte3, Pipe::V, v("s")));
        }
        if cast {
            stmts.push(vec_op(
                VecOp::Cast,
                xf.clone(),
                vec![VecArg::Slice(raw())],
                v("cl"),
            ));
            if let Some((raw_gamma, f)) = gamma {
                stmts.push(vec_op(
                    VecOp::Cast,
                    slice(f, c(0), c(0)),
                    vec![VecArg::Slice(slice(raw_gamma, v("s"), c(0)))],
                    v("cl"),
                ));
            }
        }
        stmts.extend(body(bufs, xf, slice(bufs.y, v("s"), c(0))));
        if writes && cast {
            stmts.push(vec_op(
                VecOp::Cast,
                slice(bufs.y, v("s"), c(0)),
                vec![VecArg::Slice(slice(bufs.tmp, c(0), c(0)))],
                v("cl"),
            ));
        }
        stmts.push(set(Pipe::V, Pipe::Mte2, v("s")));
        if writes {
            stmts.extend([
                set(Pipe::V, Pipe::Mte3, v("s")),
                wait(Pipe::V, Pipe::Mte3, v("s")),
                Stmt::CopyOut {
                    dst: gm(out_param, c(0), (v("row"), v("c0")), (c(1), v("cl"))),
                    src: tile(bufs.y, v("s"), (c(0), c(0)), (c(1), v("cl"))),
                },
                set(Pipe::Mte3, Pipe::V, v("s")),
            ]);
        }
        for_("ch", c(chunks), true, stmts)
    }
}

/// The f32 temporary, and where a pass's result goes before the store: straight into the
/// output stage for f32, through the temporary (cast by [`pass`]) otherwise.
fn result_slice(bufs: &Buffers, out: Slice) -> Slice {
    if bufs.xf.is_some() {
        slice(bufs.tmp, c(0), c(0))
    } else {
        out
    }
}

fn stat(bufs: &Buffers, off: u64) -> Slice {
    slice(bufs.stat, c(0), c(off))
}

/// RMSNorm pass 1: `acc += Σ x²` over the chunk.
fn accumulate_squares(bufs: &Buffers, xf: Slice, _out: Slice) -> Vec<Stmt> {
    let t = slice(bufs.tmp, c(0), c(0));
    vec![
        vec_op(
            VecOp::Mul,
            t.clone(),
            vec![VecArg::Slice(xf.clone()), VecArg::Slice(xf)],
            v("cl"),
        ),
        Stmt::Reduce {
            kind: ReduceKind::Sum,
            dst: stat(bufs, PART),
            src: t,
            count: v("cl"),
        },
        vec_op(
            VecOp::Add,
            stat(bufs, ACC),
            vec![
                VecArg::Slice(stat(bufs, ACC)),
                VecArg::Slice(stat(bufs, PART)),
            ],
            c(1),
        ),
    ]
}

/// RMSNorm pass 2: `x · rstd · gamma`.
fn scale_rows(bufs: &Buffers, xf: Slice, out: Slice) -> Vec<Stmt> {
    let t = slice(bufs.tmp, c(0), c(0));
    let (_, gamma) = bufs.gamma.expect("an RMSNorm kernel has gamma");
    let gamma = if bufs.xf.is_some() {
        slice(gamma, c(0), c(0))
    } else {
        slice(gamma, v("s"), c(0))
    };
    vec![
        vec_op(
            VecOp::Muls,
            t.clone(),
            vec![VecArg::Slice(xf), VecArg::Element(stat(bufs, ACC))],
            v("cl"),
        ),
        vec_op(
            VecOp::Mul,
            result_slice(bufs, out),
            vec![VecArg::Slice(t), VecArg::Slice(gamma)],
            v("cl"),
        ),
    ]
}

/// Softmax pass 1: `acc = max(acc, max x)`.
fn accumulate_max(bufs: &Buffers, xf: Slice, _out: Slice) -> Vec<Stmt> {
    vec![
        Stmt::Reduce {
            kind: ReduceKind::Max,
            dst: stat(bufs, PART),
            src: xf,
            count: v("cl"),
        },
        vec_op(
            VecOp::Max,
            stat(bufs, ACC),
            vec![
                VecArg::Slice(stat(bufs, ACC)),
                VecArg::Slice(stat(bufs, PART)),
            ],
            c(1),
        ),
    ]
}

/// `tmp = exp(x − max)`.
fn shifted_exp(bufs: &Buffers, xf: Slice) -> Vec<Stmt> {
    let t = slice(bufs.tmp, c(0), c(0));
    vec![
        vec_op(
            VecOp::Adds,
            t.clone(),
            vec![VecArg::Slice(xf), VecArg::Element(stat(bufs, NEG_MAX))],
            v("cl"),
        ),
        vec_op(VecOp::Exp, t.clone(), vec![VecArg::Slice(t)], v("cl")),
    ]
}

/// Softmax pass 2: `sum += Σ exp(x − max)`.
fn sum_exp(bufs: &Buffers, xf: Slice, _out: Slice) -> Vec<Stmt> {
    let mut stmts = shifted_exp(bufs, xf);
    stmts.extend([
        Stmt::Reduce {
            kind: ReduceKind::Sum,
            dst: stat(bufs, PART),
            src: slice(bufs.tmp, c(0), c(0)),
            count: v("cl"),
        },
        vec_op(
            VecOp::Add,
            stat(bufs, SUM),
            vec![
                VecArg::Slice(stat(bufs, SUM)),
                VecArg::Slice(stat(bufs, PART)),
            ],
            c(1),
        ),
    ]);
    stmts
}

/// Softmax pass 3: `exp(x − max) / sum`.
fn normalise(bufs: &Buffers, xf: Slice, out: Slice) -> Vec<Stmt> {
    let mut stmts = shifted_exp(bufs, xf);
    stmts.push(vec_op(
        VecOp::Muls,
        result_slice(bufs, out),
        vec![
            VecArg::Slice(slice(bufs.tmp, c(0), c(0))),
            VecArg::Element(stat(bufs, SUM)),
        ],
        v("cl"),
    ));
    stmts
}

/// Tiles a long-row kernel: the largest chunk that fits UB, and half of it.
pub fn plan_long_rows(op: &RowWise, target: &Target) -> Result<VectorPlan, TileError> {
    check_dtype(&op.name, op.dtype)?;
    let budget = target.buffers.ub.usable_bytes().saturating_sub(256);
    let max_chunk = (budget / bytes_per_elem(op)) / GRANULE * GRANULE;
    if max_chunk == 0 {
        return Err(TileError::NoFit {
            name: op.name.clone(),
            reason: "no chunk of a row fits UB".into(),
        });
    }
    let whole = op.cols.div_ceil(GRANULE) * GRANULE;
    let largest = max_chunk.min(whole);
    let mut chunks = vec![largest, (largest / 2 / GRANULE * GRANULE).max(GRANULE)];
    chunks.sort_unstable();
    chunks.dedup();
    pick(
        chunks,
        |chunk| {
            let kernel = build_long_rows(op, chunk, target)?;
            let cost = estimate(&kernel, target, &op.work())?;
            Ok((kernel, cost))
        },
        target,
    )
}
