//! `Attention`: `softmax(q·kᵀ·scale + mask) · v` with grouped heads, as three launches.
//!
//! 1. Scores on the Cube: the `h / hk` query heads that share a key head are consecutive rows
//!    of `q` viewed `[b·h·s, d]`, so one grouped GEMM ([`crate::tile::gemm`]) with `b·hk`
//!    groups of `(h / hk)·s` rows, each multiplied by its key head transposed, yields f32
//!    scores `[b·h·s, t]` in a scratch tensor without copying any head.
//! 2. A vector kernel per score row: scale, add the mask row (float masks are added; bool masks
//!    are first turned into `ln(mask)`, i.e. 0 or −∞, by a scalar pass), softmax over the first
//!    `t − s + i + 1` positions when causal (the masked tail is written as zeros, which is what
//!    `exp(−∞)` gives), stored in the input type as the probabilities.
//! 3. Probabilities times values on the Cube, the same grouping, straight into the result. The
//!    Cube reads a row-major `[t, dv]` B operand only for 16-bit types; f32 values are first
//!    transposed to `[dv, t]` by a strided copy.

use cubevec_ir::kernel::{
    BufId, Buffer, BufferPlanner, CoreType, Kernel, Param, ParamRole, Pipe, ReduceKind, ScalarSrc,
    Stmt, VecArg, VecOp,
};
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op};

use super::movement::build::{
    bytes, c, call, costed, deal, digits, dot, fastest, float_storage, for_, gm, handoff, let_,
    pitch, row_candidates, set, slice, tile, ub, v, vec_op, vector_work, wait,
};
use super::movement::copy::{self, Axis, Copy, CopyParam, CopyPart};
use super::movement::strides;
use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, TensorShape};
use crate::tile::gemm::{GemmProblem, plan as plan_gemm};

/// The additive mask of the softmax kernel, broadcast to the score rows.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mask {
    dtype: DType,
    elements: u64,
    /// Element offset of the mask row per digit of the score row index over `(b, h, s)`.
    strides: [u64; 3],
}

/// The softmax kernel over score rows.
#[derive(Clone, Debug, PartialEq)]
struct Softmax {
    name: String,
    /// `(b, h, s)`: the score rows.
    rows: [u64; 3],
    /// Keys per row.
    t: u64,
    scale: f32,
    causal: bool,
    mask: Option<Mask>,
    /// Type of the probabilities.
    out: DType,
}

impl Softmax {
    fn total_rows(&self) -> u64 {
        self.rows.iter().product()
    }
}

struct Bufs {
    scores: BufId,
    mask: Option<BufId>,
    mask_f32: Option<BufId>,
    work: BufId,
    stat: BufId,
    probs: BufId,
}

fn plan_buffers(k: &Softmax, rt: u64, target: &Target) -> (Bufs, Vec<Buffer>) {
    let tp = pitch(k.t, DType::F32).max(pitch(k.t, k.out));
    let mut p = BufferPlanner::new();
    let scores = p.add(target, ub("scores", DType::F32, rt, tp, 2));
    let mask = k.mask.as_ref().map(|m| {
        p.add(
            target,
            ub("mask", m.dtype, rt, pitch(k.t, m.dtype).max(tp), 2),
        )
    });
    let mask_f32 = k
        .mask
        .as_ref()
        .filter(|m| m.dtype != DType::F32)
        .map(|_| p.add(target, ub("maskf", DType::F32, 1, tp, 1)));
    let work = p.add(target, ub("w", DType::F32, 1, tp, 1));
    let stat = p.add(target, ub("stat", DType::F32, 1, 32, 1));
    let probs = p.add(target, ub("p", k.out, rt, tp, 2));
    (
        Bufs {
            scores,
            mask,
            mask_f32,
            work,
            stat,
            probs,
        },
        p.finish(),
    )
}

fn fits(k: &Softmax, rt: u64, target: &Target) -> bool {
    let (_, buffers) = plan_buffers(k, rt, target);
    let align = target.buffers.ub.align;
    buffers
        .iter()
        .map(|b| b.offset + b.total_bytes(align))
        .max()
        .unwrap_or(0)
        <= target.buffers.ub.usable_bytes()
}

/// The statements of score row `k` of the tile (global row `r0 + k`).
fn row_compute(k: &Softmax, b: &Bufs) -> Vec<Stmt> {
    let tp = pitch(k.t, DType::F32).max(pitch(k.t, k.out));
    let w = || slice(b.work, c(0), c(0));
    let st = |off: u64| slice(b.stat, c(0), c(off));
    let row = |buf: BufId| slice(buf, v("s"), v("k").mul(c(tp)));
    let vl = || v("vl");
    let s = k.rows[2];
    let mut out = vec![let_(
        "vl",
        if k.causal {
            v("r0")
                .add(v("k"))
                .rem(c(s))
                .add(c(k.t - s + 1))
                .min(c(k.t))
        } else {
            c(k.t)
        },
    )];
    out.push(vec_op(
        VecOp::Muls,
        w(),
        vec![
            VecArg::Slice(row(b.scores)),
            VecArg::Imm(f64::from(k.scale)),
        ],
        vl(),
    ));
    if let Some(mask) = b.mask {
        let m = match b.mask_f32 {
            Some(f) => {
                out.push(vec_op(
                    VecOp::Cast,
                    slice(f, c(0), c(0)),
                    vec![VecArg::Slice(row(mask))],
                    vl(),
                ));
                slice(f, c(0), c(0))
            }
            None => row(mask),
        };
        out.push(vec_op(
            VecOp::Add,
            w(),
            vec![VecArg::Slice(w()), VecArg::Slice(m)],
            vl(),
        ));
    }
    out.extend([
        Stmt::Reduce {
            kind: ReduceKind::Max,
            dst: st(0),
            src: w(),
            count: vl(),
        },
        vec_op(
            VecOp::Muls,
            st(8),
            vec![VecArg::Slice(st(0)), VecArg::Imm(-1.0)],
            c(1),
        ),
        vec_op(
            VecOp::Adds,
            w(),
            vec![VecArg::Slice(w()), VecArg::Element(st(8))],
            vl(),
        ),
        vec_op(VecOp::Exp, w(), vec![VecArg::Slice(w())], vl()),
        Stmt::Reduce {
            kind: ReduceKind::Sum,
            dst: st(16),
            src: w(),
            count: vl(),
        },
        vec_op(VecOp::Reciprocal, st(16), vec![VecArg::Slice(st(16))], c(1)),
    ]);
    if k.causal {
        // Positions past `vl` are masked: their probability is exactly zero.
        out.push(vec_op(
            VecOp::Duplicate,
            row(b.probs),
            vec![VecArg::Imm(0.0)],
            c(k.t),
        ));
    }
    if k.out == DType::F32 {
        out.push(vec_op(
            VecOp::Muls,
            row(b.probs),
            vec![VecArg::Slice(w()), VecArg::Element(st(16))],
            vl(),
        ));
    } else {
        out.push(vec_op(
            VecOp::Muls,
            w(),
            vec![VecArg::Slice(w()), VecArg::Element(st(16))],
            vl(),
        ));
        out.push(vec_op(
            VecOp::Cast,
            row(b.probs),
            vec![VecArg::Slice(w())],
            vl(),
        ));
    }
    out
}

fn build_softmax(k: &Softmax, rt: u64, target: &Target) -> Result<Kernel, LowerError> {
    let (b, buffers) = plan_buffers(k, rt, target);
    let rows = k.total_rows();
    let t = k.t;
    let mut params = vec![Param {
        name: "scores".into(),
        dtype: DType::F32,
        shape: vec![rows, t],
        role: ParamRole::Input,
    }];
    if let Some(m) = &k.mask {
        params.push(Param {
            name: "mask".into(),
            dtype: m.dtype,
            shape: vec![m.elements / t, t],
            role: ParamRole::Input,
        });
    }
    let out_param = params.len();
    params.push(Param {
        name: "probs".into(),
        dtype: k.out,
        shape: vec![rows, t],
        role: ParamRole::Output,
    });
    let units = rows.div_ceil(rt);
    let blocks = units.clamp(1, target.cores.aiv as u64);
    let (first, trips) = deal(units, blocks, 0);
    let s = || v("s");
    let mut body = vec![
        let_("u", first.add(v("t").mul(c(blocks)))),
        let_("r0", v("u").mul(c(rt))),
        let_("n", c(rows).sub(v("r0")).min(c(rt))),
        let_("s", v("t").rem(c(2))),
        wait(Pipe::V, Pipe::Mte2, s()),
        Stmt::CopyIn {
            dst: tile(b.scores, s(), (c(0), c(0)), (v("n"), c(t))),
            src: gm(0, (v("r0"), c(0)), (v("n"), c(t))),
        },
    ];
    if let (Some(m), Some(buf)) = (&k.mask, b.mask) {
        let dg = digits(v("r0").add(v("k")), &k.rows);
        body.push(for_(
            "k",
            v("n"),
            false,
            vec![Stmt::CopyIn {
                dst: tile(buf, s(), (v("k"), c(0)), (c(1), c(t))),
                src: gm(1, (dot(&dg, &m.strides).div(c(t)), c(0)), (c(1), c(t))),
            }],
        ));
    }
    body.extend(handoff(Pipe::Mte2, Pipe::V, s()));
    body.push(wait(Pipe::Mte3, Pipe::V, s()));
    body.push(for_("k", v("n"), false, row_compute(k, &b)));
    body.push(set(Pipe::V, Pipe::Mte2, s()));
    body.extend(handoff(Pipe::V, Pipe::Mte3, s()));
    body.push(Stmt::CopyOut {
        dst: gm(out_param, (v("r0"), c(0)), (v("n"), c(t))),
        src: tile(b.probs, s(), (c(0), c(0)), (v("n"), c(t))),
    });
    body.push(set(Pipe::Mte3, Pipe::V, s()));
    let mut vector = Vec::new();
    for st in 0..2 {
        vector.push(set(Pipe::V, Pipe::Mte2, c(st)));
        vector.push(set(Pipe::Mte3, Pipe::V, c(st)));
    }
    vector.push(for_("t", trips, true, body));
    for st in 0..2 {
        vector.push(wait(Pipe::V, Pipe::Mte2, c(st)));
        vector.push(wait(Pipe::Mte3, Pipe::V, c(st)));
    }
    let tiling = [("tile_rows", rt)];
    Ok(Kernel::vector(
        &k.name,
        blocks as u32,
        params,
        buffers,
        vector,
        &tiling,
    ))
}

fn plan_softmax(k: &Softmax, args: Vec<ArgRef>, target: &Target) -> Result<KernelCall, LowerError> {
    if !fits(k, 1, target) {
        return Err(LowerError::Unsupported(format!(
            "attention `{}`: a score row of {} keys does not fit UB",
            k.name, k.t
        )));
    }
    let rows = k.total_rows();
    let mut max_rows = rows.min(4095);
    while max_rows > 1 && !fits(k, max_rows, target) {
        max_rows = (max_rows * 3 / 4).max(1);
    }
    let mask_bytes = k.mask.as_ref().map_or(0, |m| bytes(m.elements, m.dtype));
    let moved = bytes(rows * k.t, DType::F32) + bytes(rows * k.t, k.out) + mask_bytes;
    let work = vector_work((5 * rows * k.t) as f64, moved as f64, k.out);
    fastest(
        row_candidates(max_rows, rows, 1, target.cores.aiv as u64)
            .into_iter()
            .map(|rt| {
                let kernel = build_softmax(k, rt, target)?;
                costed(kernel, args.clone(), target, &work)
            }),
        target,
    )
}

/// A bool mask as an additive f32 mask: each element goes through the scalar unit as 0 or 1
/// into an f32 row, and `Ln` turns 1 into 0 and 0 into −∞.
fn bool_mask(
    name: &str,
    elements: u64,
    out: ArgRef,
    target: &Target,
) -> Result<KernelCall, LowerError> {
    let chunk = elements.min(4096);
    let mut p = BufferPlanner::new();
    let raw = p.add(
        target,
        ub("raw", DType::Bool, 1, pitch(chunk, DType::Bool), 1),
    );
    let ones = p.add(
        target,
        ub("ones", DType::F32, 1, pitch(chunk, DType::F32), 1),
    );
    let add = p.add(
        target,
        ub("add", DType::F32, 1, pitch(chunk, DType::F32), 1),
    );
    let buffers = p.finish();
    let units = elements.div_ceil(chunk);
    let blocks = units.clamp(1, target.cores.aiv as u64);
    let (first, trips) = deal(units, blocks, 0);
    let mut body = vec![
        Stmt::Barrier { pipe: Pipe::All },
        let_("u", first.add(v("t").mul(c(blocks)))),
        let_("e0", v("u").mul(c(chunk))),
        let_("n", c(elements).sub(v("e0")).min(c(chunk))),
        Stmt::CopyIn {
            dst: tile(raw, c(0), (c(0), c(0)), (c(1), v("n"))),
            src: gm(0, (c(0), v("e0")), (c(1), v("n"))),
        },
    ];
    body.extend(handoff(Pipe::Mte2, Pipe::S, c(0)));
    body.push(for_(
        "j",
        v("n"),
        false,
        vec![
            Stmt::LoadScalar {
                var: "keep".into(),
                src: ScalarSrc::Ub(slice(raw, c(0), v("j"))),
                planned: c(1),
            },
            Stmt::SetValue {
                dst: slice(ones, c(0), v("j")),
                value: VecArg::Scalar(v("keep")),
            },
        ],
    ));
    body.extend(handoff(Pipe::S, Pipe::V, c(0)));
    body.push(vec_op(
        VecOp::Ln,
        slice(add, c(0), c(0)),
        vec![VecArg::Slice(slice(ones, c(0), c(0)))],
        v("n"),
    ));
    body.extend(handoff(Pipe::V, Pipe::Mte3, c(0)));
    body.push(Stmt::CopyOut {
        dst: gm(1, (c(0), v("e0")), (c(1), v("n"))),
        src: tile(add, c(0), (c(0), c(0)), (c(1), v("n"))),
    });
    let kernel = Kernel {
        name: format!("{name}_mask"),
        core: CoreType::Aiv,
        blocks: blocks as u32,
        params: vec![
            Param {
                name: "mask".into(),
                dtype: DType::Bool,
                shape: vec![1, elements],
                role: ParamRole::Input,
            },
            Param {
                name: "additive".into(),
                dtype: DType::F32,
                shape: vec![1, elements],
                role: ParamRole::Output,
            },
        ],
        buffers,
        cube: Vec::new(),
        vector: vec![for_("t", trips, false, body)],
        tiling: [("chunk".to_string(), chunk)].into_iter().collect(),
    };
    let work = vector_work(elements as f64, 5.0 * elements as f64, DType::F32);
    call(kernel, vec![ArgRef::Operand(3), out], target, &work)
}

/// Mask strides over the score row digits `(b, h, s)`, checking the mask broadcasts to
/// `[b, h, s, t]` with a full key axis.
fn mask_strides(mask: &TensorShape, rows: [u64; 3], t: u64) -> Result<[u64; 3], LowerError> {
    let shape = &mask.shape;
    if shape.len() > 4 || shape.last() != Some(&t) {
        return Err(LowerError::Unsupported(format!(
            "attention mask {:?} does not have the key axis of {t} last",
            shape
        )));
    }
    let mut padded = vec![1u64; 4 - shape.len()];
    padded.extend_from_slice(shape);
    let st = strides(&padded);
    let mut out = [0u64; 3];
    for k in 0..3 {
        out[k] = match padded[k] {
            1 => 0,
            e if e == rows[k] => st[k],
            _ => {
                return Err(LowerError::Unsupported(format!(
                    "attention mask {shape:?} does not broadcast to the scores"
                )));
            }
        };
    }
    Ok(out)
}

/// `Attention { scale, causal }` over `q [b, h, s, d], k [b, hk, t, d], v [b, hk, t, dv],
/// mask?`.
pub fn lower_attention(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Attention { scale_bits, causal } = ctx.op else {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not an attention",
            ctx.name
        )));
    };
    let fail = |m: &str| {
        Err(LowerError::Unsupported(format!(
            "attention `{}`: {m}",
            ctx.name
        )))
    };
    let (q, k, val) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let y = ctx.output(0)?;
    let [b, h, s, d] = q.shape[..] else {
        return fail("q is not [b, h, s, d]");
    };
    let ([kb, hk, t, kd], [vb, vh, vt, dv]) = (
        <[u64; 4]>::try_from(k.shape.as_slice()).unwrap_or_default(),
        <[u64; 4]>::try_from(val.shape.as_slice()).unwrap_or_default(),
    );
    if kb != b || kd != d || (vb, vh, vt) != (b, hk, t) || hk == 0 || h % hk != 0 {
        return fail("k and v do not fit q with grouped heads");
    }
    if k.dtype != q.dtype || val.dtype != q.dtype || y.dtype != q.dtype || !float_storage(q.dtype) {
        return fail("q, k, v and the result must share one of f32, f16, bf16");
    }
    if y.shape != [b, h, s, dv] {
        return fail("the result is not [b, h, s, dv]");
    }
    if *causal && t < s {
        return fail("a causal mask with fewer keys than queries masks whole rows");
    }
    let group = h / hk;
    let rows = [b, h, s];
    let mut scratch = Vec::new();
    let mut calls = Vec::new();
    let mut add_scratch = |name: &str, dtype: DType, shape: Vec<u64>| {
        scratch.push(Scratch {
            name: name.to_string(),
            tensor: TensorShape::new(dtype, shape),
        });
        ArgRef::Scratch(scratch.len() - 1)
    };

    // Optional mask, as an f32 (or 16-bit float) additive mask.
    let mask = match ctx.inputs.get(3).and_then(Option::as_ref) {
        None => None,
        Some(m) if m.dtype == DType::Bool => {
            let arg = add_scratch("additive_mask", DType::F32, m.shape.clone());
            calls.push(bool_mask(ctx.name, m.elements(), arg, ctx.target)?);
            Some((arg, TensorShape::new(DType::F32, m.shape.clone())))
        }
        Some(m) if float_storage(m.dtype) => Some((ArgRef::Operand(3), m.clone())),
        Some(_) => return fail("the mask must be bool or a float type"),
    };

    let scores = add_scratch("scores", DType::F32, vec![b * h * s, t]);
    let probs = add_scratch("probs", q.dtype, vec![b * h * s, t]);
    let gemm = |suffix: &str, n: u64, depth: u64, output: DType, b_transposed: bool| GemmProblem {
        name: format!("{}_{suffix}", ctx.name),
        groups: vec![group * s; (b * hk) as usize],
        n,
        k: depth,
        input: q.dtype,
        output,
        b_transposed,
        relu: false,
        epilogue: None,
        halves: None,
    };
    let score_gemm = plan_gemm(&gemm("scores", t, d, DType::F32, true), ctx.target)?;
    calls.push(KernelCall::new(
        score_gemm.kernel,
        score_gemm.cost,
        vec![ArgRef::Operand(0), ArgRef::Operand(1), scores],
    ));

    let softmax = Softmax {
        name: format!("{}_softmax", ctx.name),
        rows,
        t,
        scale: f32::from_bits(*scale_bits),
        causal: *causal,
        mask: match &mask {
            Some((_, m)) => Some(Mask {
                dtype: m.dtype,
                elements: m.elements(),
                strides: mask_strides(m, rows, t)?,
            }),
            None => None,
        },
        out: q.dtype,
    };
    let mut softmax_args = vec![scores];
    if let Some((arg, _)) = &mask {
        softmax_args.push(*arg);
    }
    softmax_args.push(probs);
    calls.push(plan_softmax(&softmax, softmax_args, ctx.target)?);

    // The Cube reads a row-major [t, dv] B only for 16-bit types; f32 values are transposed.
    let value_arg = if q.dtype.bits() == 16 {
        ArgRef::Operand(2)
    } else {
        let vt = add_scratch("values_t", q.dtype, vec![b * hk, dv, t]);
        let n = b * hk * t * dv;
        let axes = [
            Axis::new(b * hk, t * dv, dv * t),
            Axis::new(dv, 1, t),
            Axis::new(t, dv, 1),
        ];
        let transpose = Copy {
            name: format!("{}_values_t", ctx.name),
            dtype: q.dtype,
            params: vec![
                CopyParam {
                    name: "v".into(),
                    dtype: q.dtype,
                    elements: n,
                    role: ParamRole::Input,
                },
                CopyParam {
                    name: "vt".into(),
                    dtype: q.dtype,
                    elements: n,
                    role: ParamRole::Output,
                },
            ],
            parts: vec![CopyPart::from_axes((0, n), (1, n), &axes, 0, 0)],
        };
        calls.push(copy::plan(
            &transpose,
            vec![ArgRef::Operand(2), vt],
            ctx.target,
        )?);
        vt
    };
    let pv = plan_gemm(
        &gemm("values", dv, t, q.dtype, q.dtype.bits() != 16),
        ctx.target,
    )?;
    calls.push(KernelCall::new(
        pv.kernel,
        pv.cost,
        vec![probs, value_arg, ArgRef::Result(0)],
    ));
    Ok(Lowering {
        scratch,
        calls,
        view: false,
    })
}
