//! `TopK` on the vector cores: the `k` largest (or smallest) elements of every row and their
//! indices, ties broken by the lower index, like the interpreter.
//!
//! Rows along the searched axis are dealt in tiles to the AIVs. Each row is brought to f32 (and
//! negated for the smallest), then `k` rounds each take two `ReduceMax` with `calIndex`: one over
//! the row, whose chosen element the scalar unit then overwrites with `-inf`, and one over a
//! row of ones in which chosen positions are zeroed (the first position not yet chosen). While
//! the row maximum is above `-inf` its first occurrence is the next pick (chosen elements hold
//! `-inf`, below it); once it is `-inf` every remaining element is `-inf`, and the next pick is
//! the first position not yet chosen. The picked value is the maximum itself (negated back for
//! the smallest), so values come out bit for bit. NaN operands are not ordered like the
//! interpreter (which ranks NaN above everything).
//!
//! A search along an inner axis transposes the operand into a scratch tensor with that axis
//! last, and the results back, with the strided copy kernel.

use cubevec_ir::kernel::{
    BufferPlanner, Kernel, Param, ParamRole, Pipe, ReduceKind, ScalarSrc, Slice, Stmt, VecArg,
    VecOp,
};
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op};

use crate::tile::build::block_trips;

use super::movement::build::{
    bytes, c, call, for_, gm, handoff, let_, pitch, set, slice, tile, ub, v, vec_op, vector_work,
    wait,
};
use super::movement::copy::{self, Axis, Copy, CopyParam, CopyPart};
use super::movement::norm_axis;
use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, TensorShape};

/// Bits of `-inf` in f32: a row maximum with these bits means only `-inf` is left.
const NEG_INF_BITS: u64 = 0xff80_0000;

/// One top-k problem over the rows of a `[rows, n]` operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopKRows {
    /// Kernel name.
    pub name: String,
    /// Element type of the operand and the values (f32, f16 or bf16).
    pub dtype: DType,
    /// Rows searched.
    pub rows: u64,
    /// Elements of a row.
    pub n: u64,
    /// Elements kept per row.
    pub k: u64,
    /// The largest (true) or the smallest.
    pub largest: bool,
    /// Element type of the indices (i64 or i32).
    pub index: DType,
}

fn reduce(kind: ReduceKind, dst: Slice, src: Slice, count: u64) -> Stmt {
    Stmt::Reduce {
        kind,
        dst,
        src,
        count: c(count),
    }
}

fn load(var: &str, src: Slice, planned: cubevec_ir::kernel::Expr) -> Stmt {
    Stmt::LoadScalar {
        var: var.to_string(),
        src: ScalarSrc::Ub(src),
        planned,
    }
}

/// Builds the top-k kernel. Parameters: `x [rows, n]`, then the outputs `values [rows, k]` and
/// `indices [rows, k]`.
pub fn kernel(p: &TopKRows, target: &Target) -> Result<KernelCall, LowerError> {
    let fail = |m: String| Err(LowerError::Unsupported(format!("`{}`: {m}", p.name)));
    if !matches!(p.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return fail(format!("top-k searches f32, f16 or bf16, not {}", p.dtype));
    }
    if !matches!(p.index, DType::I64 | DType::I32) {
        return fail(format!("indices must be i64 or i32, not {}", p.index));
    }
    if p.k == 0 || p.k > p.n || p.rows == 0 {
        return fail(format!("k = {} of rows of {} elements", p.k, p.n));
    }
    if p.n > u64::from(u32::MAX) {
        return fail("a row is too long for the index of ReduceMax".into());
    }
    let (n, k) = (p.n, p.k);
    let np = pitch(n, p.dtype);
    let nf = pitch(n, DType::F32);
    let kf = pitch(k, DType::F32);
    let kx = pitch(k, p.dtype);
    let ki = pitch(k, p.index);
    let b32 = |dt: DType, e: u64| bytes(e, dt).div_ceil(32) * 32;
    let fixed = 2 * b32(DType::F32, nf) + b32(DType::F32, 32) + b32(DType::F32, 8);
    let per_row = b32(p.dtype, np)
        + b32(DType::F32, kf)
        + b32(p.index, ki)
        + if p.dtype == DType::F32 {
            0
        } else {
            b32(p.dtype, kx)
        };
    let budget = target.buffers.ub.usable_bytes();
    if fixed + per_row > budget {
        return fail(format!("a row of {n} elements does not fit UB"));
    }
    let aiv = u64::from(target.cores.aiv);
    let rows = p
        .rows
        .div_ceil(aiv)
        .clamp(1, ((budget - fixed) / per_row).max(1));
    let tiles = p.rows.div_ceil(rows);
    let blocks = tiles.min(aiv);

    let params = vec![
        Param {
            name: "x".into(),
            dtype: p.dtype,
            shape: vec![p.rows, n],
            role: ParamRole::Input,
        },
        Param {
            name: "values".into(),
            dtype: p.dtype,
            shape: vec![p.rows, k],
            role: ParamRole::Output,
        },
        Param {
            name: "indices".into(),
            dtype: p.index,
            shape: vec![p.rows, k],
            role: ParamRole::Output,
        },
    ];
    let mut planner = BufferPlanner::new();
    let xin = planner.add(target, ub("x", p.dtype, rows, np, 1));
    let row = planner.add(target, ub("row", DType::F32, 1, nf, 1));
    let free = planner.add(target, ub("free", DType::F32, 1, nf, 1));
    let stat = planner.add(target, ub("stat", DType::F32, 1, 32, 1));
    let tmp = planner.add(target, ub("tmp", DType::F32, 1, 8, 1));
    let vf = planner.add(target, ub("values_f32", DType::F32, rows, kf, 1));
    let ib = planner.add(target, ub("indices", p.index, rows, ki, 1));
    let vx =
        (p.dtype != DType::F32).then(|| planner.add(target, ub("values", p.dtype, rows, kx, 1)));
    let buffers = planner.finish();

    let at = |buf, off| slice(buf, c(0), off);
    let st = |i: u64| at(stat, c(i));
    let sign = if p.largest { 1.0 } else { -1.0 };
    let mut body_row = vec![let_("lo", v("r").mul(c(np)))];
    if p.dtype == DType::F32 {
        body_row.push(vec_op(
            VecOp::Muls,
            at(row, c(0)),
            vec![VecArg::Slice(at(xin, v("lo"))), VecArg::Imm(sign)],
            c(n),
        ));
    } else {
        body_row.push(vec_op(
            VecOp::Cast,
            at(row, c(0)),
            vec![VecArg::Slice(at(xin, v("lo")))],
            c(n),
        ));
        if !p.largest {
            body_row.push(vec_op(
                VecOp::Muls,
                at(row, c(0)),
                vec![VecArg::Slice(at(row, c(0))), VecArg::Imm(-1.0)],
                c(n),
            ));
        }
    }
    body_row.push(vec_op(
        VecOp::Duplicate,
        at(free, c(0)),
        vec![VecArg::Imm(1.0)],
        c(n),
    ));
    // One pick: both reductions, the value into its slot, then the scalar unit decides the index
    // and masks it.
    let mut pick = vec![
        reduce(ReduceKind::MaxIndex, st(0), at(row, c(0)), n),
        reduce(ReduceKind::MaxIndex, st(8), at(free, c(0)), n),
    ];
    let value = if p.largest {
        st(0)
    } else {
        pick.push(vec_op(
            VecOp::Muls,
            st(16),
            vec![VecArg::Slice(st(0)), VecArg::Imm(-1.0)],
            c(1),
        ));
        st(16)
    };
    pick.extend([
        vec_op(
            VecOp::Duplicate,
            at(tmp, c(0)),
            vec![VecArg::Element(value)],
            c(1),
        ),
        Stmt::Reduce {
            kind: ReduceKind::Sum,
            dst: at(vf, v("r").mul(c(kf)).add(v("j"))),
            src: at(tmp, c(0)),
            count: c(1),
        },
    ]);
    pick.extend(handoff(Pipe::V, Pipe::S, c(0)));
    let only_neg_inf = c(1).sub(
        v("m")
            .max(c(NEG_INF_BITS))
            .sub(v("m").min(c(NEG_INF_BITS)))
            .min(c(1)),
    );
    pick.extend([
        load("m", st(0), c(0)),
        load("p1", st(1), v("j")),
        load("p2", st(9), v("j")),
        let_("inf", only_neg_inf),
        let_(
            "p",
            v("p1").mul(c(1).sub(v("inf"))).add(v("p2").mul(v("inf"))),
        ),
        Stmt::SetValue {
            dst: at(row, v("p")),
            value: VecArg::Imm(f64::NEG_INFINITY),
        },
        Stmt::SetValue {
            dst: at(free, v("p")),
            value: VecArg::Imm(0.0),
        },
        Stmt::SetValue {
            dst: at(ib, v("r").mul(c(ki)).add(v("j"))),
            value: VecArg::Scalar(v("p")),
        },
    ]);
    pick.extend(handoff(Pipe::S, Pipe::V, c(0)));
    body_row.push(for_("j", c(k), false, pick));

    let mut vector = vec![
        set(Pipe::V, Pipe::Mte2, c(0)),
        set(Pipe::Mte3, Pipe::V, c(0)),
        set(Pipe::Mte3, Pipe::S, c(0)),
    ];
    let mut body = vec![
        let_("tile", v("blk").add(v("t").mul(c(blocks)))),
        let_("r0", v("tile").mul(c(rows))),
        let_("rl", c(p.rows).sub(v("r0")).min(c(rows))),
        wait(Pipe::V, Pipe::Mte2, c(0)),
        Stmt::CopyIn {
            dst: tile(xin, c(0), (c(0), c(0)), (v("rl"), c(n))),
            src: gm(0, (v("r0"), c(0)), (v("rl"), c(n))),
        },
    ];
    body.extend(handoff(Pipe::Mte2, Pipe::V, c(0)));
    body.extend([
        wait(Pipe::Mte3, Pipe::V, c(0)),
        wait(Pipe::Mte3, Pipe::S, c(0)),
    ]);
    body.push(for_("r", v("rl"), false, body_row));
    let out_values = match vx {
        Some(vx) => {
            body.push(vec_op(
                VecOp::Cast,
                at(vx, c(0)),
                vec![VecArg::Slice(at(vf, c(0)))],
                v("rl").mul(c(kf)),
            ));
            vx
        }
        None => vf,
    };
    body.push(set(Pipe::V, Pipe::Mte2, c(0)));
    body.extend(handoff(Pipe::V, Pipe::Mte3, c(0)));
    body.extend(handoff(Pipe::S, Pipe::Mte3, c(0)));
    body.extend([
        Stmt::CopyOut {
            dst: gm(1, (v("r0"), c(0)), (v("rl"), c(k))),
            src: tile(out_values, c(0), (c(0), c(0)), (v("rl"), c(k))),
        },
        Stmt::CopyOut {
            dst: gm(2, (v("r0"), c(0)), (v("rl"), c(k))),
            src: tile(ib, c(0), (c(0), c(0)), (v("rl"), c(k))),
        },
        set(Pipe::Mte3, Pipe::V, c(0)),
        set(Pipe::Mte3, Pipe::S, c(0)),
    ]);
    let trips = block_trips(tiles, blocks);
    vector.push(for_("t", trips, false, body));
    vector.extend([
        wait(Pipe::V, Pipe::Mte2, c(0)),
        wait(Pipe::Mte3, Pipe::V, c(0)),
        wait(Pipe::Mte3, Pipe::S, c(0)),
    ]);
    let tiling = [("tile_rows", rows), ("tiles", tiles), ("k", k)];
    let kernel = Kernel::vector(&p.name, blocks as u32, params, buffers, vector, &tiling);
    let moved =
        bytes(p.rows * n, p.dtype) + bytes(p.rows * k, p.dtype) + bytes(p.rows * k, p.index);
    let work = vector_work((p.rows * n * (2 * k + 2)) as f64, moved as f64, DType::F32);
    call(
        kernel,
        vec![ArgRef::Operand(0), ArgRef::Result(0), ArgRef::Result(1)],
        target,
        &work,
    )
}

/// A copy of a `[a, l, m]` tensor into `[a, m, l]` order, between two named tensors.
fn swap_copy(
    name: String,
    dtype: DType,
    (a, l, m): (u64, u64, u64),
    args: (ArgRef, ArgRef),
    target: &Target,
) -> Result<KernelCall, LowerError> {
    let elements = a * l * m;
    let axes = [
        Axis::new(a, l * m, l * m),
        Axis::new(m, 1, l),
        Axis::new(l, m, 1),
    ];
    let part = CopyPart::from_axes((0, elements), (1, elements), &axes, 0, 0);
    let param = |name: &str, role| CopyParam {
        name: name.to_string(),
        dtype,
        elements,
        role,
    };
    let copy = Copy {
        name,
        dtype,
        params: vec![
            param("x", ParamRole::Input),
            param("out", ParamRole::Output),
        ],
        parts: vec![part],
    };
    copy::plan(&copy, vec![args.0, args.1], target)
}

/// `TopK` along any axis (see the module documentation). Results: values in the operand's
/// dtype and the indices.
pub fn lower_topk(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::TopK {
        k, axis, largest, ..
    } = ctx.op
    else {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not a topk",
            ctx.name
        )));
    };
    let (x, values, indices) = (ctx.input(0)?, ctx.output(0)?, ctx.output(1)?);
    let axis = norm_axis(*axis, x.shape.len())?;
    let a: u64 = x.shape[..axis].iter().product();
    let l = x.shape[axis];
    let m: u64 = x.shape[axis + 1..].iter().product();
    if values.elements() != a * k * m || indices.elements() != a * k * m || values.dtype != x.dtype
    {
        return Err(LowerError::Unsupported(format!(
            "`{}`: the results do not hold {k} elements per row",
            ctx.name
        )));
    }
    let problem = |name: String| TopKRows {
        name,
        dtype: x.dtype,
        rows: a * m,
        n: l,
        k: *k,
        largest: *largest,
        index: indices.dtype,
    };
    if m == 1 {
        return Ok(Lowering::single(kernel(
            &problem(ctx.name.to_string()),
            ctx.target,
        )?));
    }
    let scratch = vec![
        Scratch {
            name: "rows".into(),
            tensor: TensorShape::new(x.dtype, vec![a * m, l]),
        },
        Scratch {
            name: "values".into(),
            tensor: TensorShape::new(x.dtype, vec![a * m, *k]),
        },
        Scratch {
            name: "indices".into(),
            tensor: TensorShape::new(indices.dtype, vec![a * m, *k]),
        },
    ];
    let into_rows = swap_copy(
        format!("{}_rows", ctx.name),
        x.dtype,
        (a, l, m),
        (ArgRef::Operand(0), ArgRef::Scratch(0)),
        ctx.target,
    )?;
    let mut search = kernel(&problem(format!("{}_search", ctx.name)), ctx.target)?;
    search.args = vec![ArgRef::Scratch(0), ArgRef::Scratch(1), ArgRef::Scratch(2)];
    let back = |i: usize, dtype, suffix: &str| {
        swap_copy(
            format!("{}_{suffix}", ctx.name),
            dtype,
            (a, m, *k),
            (ArgRef::Scratch(i), ArgRef::Result(i - 1)),
            ctx.target,
        )
    };
    let calls = vec![
        into_rows,
        search,
        back(1, x.dtype, "values")?,
        back(2, indices.dtype, "indices")?,
    ];
    Ok(Lowering {
        scratch,
        calls,
        view: false,
    })
}

/// `ArgMax` as a top-1 search ([`lower_topk`]) whose values go to a scratch tensor; ties keep
/// the lower index, as ONNX's default. `select_last_index` is not supported.
pub fn lower_argmax(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::ArgMax {
        axis,
        select_last_index,
        ..
    } = ctx.op
    else {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not an argmax",
            ctx.name
        )));
    };
    if *select_last_index {
        return Err(LowerError::Unsupported(format!(
            "`{}`: an argmax that picks the last of equal maxima has no kernel",
            ctx.name
        )));
    }
    let (x, indices) = (ctx.input(0)?, ctx.output(0)?);
    let values = TensorShape::new(x.dtype, indices.shape.clone());
    let top1 = Op::TopK {
        k: 1,
        axis: *axis,
        largest: true,
        sorted: true,
    };
    let search = OpContext {
        op: &top1,
        outputs: vec![values.clone(), indices.clone()],
        ..ctx.clone()
    };
    let mut lowering = lower_topk(&search)?;
    let values_at = ArgRef::Scratch(lowering.scratch.len());
    for call in &mut lowering.calls {
        for arg in &mut call.args {
            *arg = match *arg {
                ArgRef::Result(0) => values_at,
                ArgRef::Result(_) => ArgRef::Result(0),
                other => other,
            };
        }
    }
    lowering.scratch.push(Scratch {
        name: "max_values".into(),
        tensor: values,
    });
    Ok(lowering)
}
