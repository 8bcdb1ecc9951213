//! Data movement and broadcasting elementwise ops: `Gather`, `Transpose`, `Concat`, `Split`,
//! `Slice`, `Expand`, `Cast`, binary arithmetic, comparisons and logical ops with
//! broadcasting, `Not`, `IsNaN`, `IsInf`, `Where`, `ScatterNd` with constant indices (module `scatter`), and the
//! shape-only views (`Reshape`, `Squeeze`, `Unsqueeze`).
//!
//! Every movement is a strided copy (module `copy`): the op is described as axes with source and
//! destination strides, and the copy kernel streams contiguous runs through UB. Arithmetic and
//! conversions, and broadcasts along the innermost axis, use the broadcasting elementwise
//! kernel (module `broadcast`). Comparisons, logical ops and `Where`, which have no vector
//! instruction in the kernel IR, run element by element on the scalar unit (module `scalar`).

pub(crate) mod broadcast;
pub(crate) mod build;
pub(crate) mod copy;
pub(crate) mod scalar;
mod scatter;

use cubevec_ir::kernel::{ParamRole, VecOp};
use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::{DType, Op};

use self::broadcast::{Compute, Elementwise, Inner};
use self::copy::{Axis, Copy, CopyParam, CopyPart, IndexRows};
use self::scalar::ScalarOp;
use super::{ArgRef, LowerError, Lowering, OpContext, TensorShape};

pub use self::scatter::lower_scatter_nd;

/// Row-major element strides of `shape`.
pub(crate) fn strides(shape: &[u64]) -> Vec<u64> {
    let mut out = vec![1u64; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        out[k] = out[k + 1] * shape[k + 1];
    }
    out
}

/// Strides of a tensor of `shape` broadcast numpy-style to `out` (0 along broadcast axes).
pub(crate) fn broadcast_strides(shape: &[u64], out: &[u64]) -> Vec<u64> {
    let mut padded = vec![1u64; out.len().saturating_sub(shape.len())];
    padded.extend_from_slice(shape);
    strides(&padded)
        .into_iter()
        .zip(padded.iter().zip(out))
        .map(|(s, (&d, &o))| if d == 1 && o != 1 { 0 } else { s })
        .collect()
}

/// `axis` counted from the end when negative, checked against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, LowerError> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if (0..rank as i64).contains(&a) {
        Ok(a as usize)
    } else {
        Err(LowerError::Unsupported(format!(
            "axis {axis} outside rank {rank}"
        )))
    }
}

fn unsupported<T>(ctx: &OpContext, why: &str) -> Result<T, LowerError> {
    Err(LowerError::Unsupported(format!(
        "{} `{}`: {why}",
        ctx.op.name(),
        ctx.name
    )))
}

fn param(name: &str, t: &TensorShape, role: ParamRole) -> CopyParam {
    CopyParam {
        name: name.to_string(),
        dtype: t.dtype,
        elements: t.elements(),
        role,
    }
}

/// A copy lowering from parts over `params` bound to `args`; a view when it would copy a
/// tensor onto itself unchanged.
fn copy_lowering(
    ctx: &OpContext,
    dtype: DType,
    params: Vec<CopyParam>,
    parts: Vec<CopyPart>,
    args: Vec<ArgRef>,
) -> Result<Lowering, LowerError> {
    let parts: Vec<CopyPart> = parts
        .into_iter()
        .filter(|p| p.rows.extent * p.width > 0 && p.outer.iter().all(|a| a.extent > 0))
        .collect();
    let copy = Copy {
        name: ctx.name.to_string(),
        dtype,
        params,
        parts,
    };
    Ok(Lowering::single(copy::plan(&copy, args, ctx.target)?))
}

/// Whether a single part copies operand 0 to result 0 element for element.
fn is_identity(part: &CopyPart, elements: u64) -> bool {
    part.index.is_none()
        && part.outer.is_empty()
        && part.rows.extent <= 1
        && part.width == elements
        && part.src_base == 0
        && part.dst_base == 0
}

/// `Reshape`, `Squeeze`, `Unsqueeze`: the result is operand 0 with another shape.
pub fn lower_view(ctx: &OpContext) -> Result<Lowering, LowerError> {
    match ctx.op {
        op if op.is_view() => {
            let (x, y) = (ctx.input(0)?, ctx.output(0)?);
            if x.elements() != y.elements() || x.dtype != y.dtype {
                return unsupported(ctx, "the result is not the operand reinterpreted");
            }
            Ok(Lowering::view())
        }
        _ => unsupported(ctx, "not a view"),
    }
}

/// `Gather` along any axis: `out[a, i, m] = x[a, ids[i], m]` with `x` viewed `[A, L, M]` and
/// the ids flattened. Each id is read by the scalar unit and its row (a run of `M` elements)
/// copied through UB; negative ids count from the end.
pub fn lower_gather(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Gather { axis } = ctx.op else {
        return unsupported(ctx, "not a gather");
    };
    let (x, ids, y) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    if !matches!(ids.dtype, DType::I32 | DType::I64) {
        return unsupported(ctx, "ids must be i32 or i64");
    }
    let axis = norm_axis(*axis, x.shape.len())?;
    let outer: u64 = x.shape[..axis].iter().product();
    let len = x.shape[axis];
    let inner: u64 = x.shape[axis + 1..].iter().product();
    let count = ids.elements();
    if y.elements() != outer * count * inner || len == 0 {
        return unsupported(ctx, "the result does not hold the gathered rows");
    }
    let part = CopyPart {
        src: 0,
        dst: 2,
        outer: vec![Axis::new(outer, len * inner, count * inner)],
        rows: Axis::new(count, inner, inner),
        width: inner,
        src_base: 0,
        dst_base: 0,
        index: Some(IndexRows { param: 1, len }),
    };
    copy_lowering(
        ctx,
        x.dtype,
        vec![
            param("x", x, ParamRole::Input),
            param("ids", ids, ParamRole::Input),
            param("out", y, ParamRole::Output),
        ],
        vec![part],
        vec![ArgRef::Operand(0), ArgRef::Operand(1), ArgRef::Result(0)],
    )
}

/// `Transpose` with any permutation: rows along the innermost output axis that moves in the
/// source, runs along the innermost axis when it stays innermost (otherwise element by
/// element).
pub fn lower_transpose(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Transpose { perm } = ctx.op else {
        return unsupported(ctx, "not a transpose");
    };
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    if perm.len() != x.shape.len() {
        return unsupported(ctx, "the permutation does not match the rank");
    }
    let xs = strides(&x.shape);
    let ys = strides(&y.shape);
    let axes: Vec<Axis> = perm
        .iter()
        .enumerate()
        .map(|(k, &p)| Axis::new(x.shape[p as usize], xs[p as usize], ys[k]))
        .collect();
    let part = CopyPart::from_axes((0, x.elements()), (1, y.elements()), &axes, 0, 0);
    if is_identity(&part, x.elements()) {
        return Ok(Lowering::view());
    }
    copy_lowering(
        ctx,
        x.dtype,
        vec![
            param("x", x, ParamRole::Input),
            param("out", y, ParamRole::Output),
        ],
        vec![part],
        vec![ArgRef::Operand(0), ArgRef::Result(0)],
    )
}

/// `[A, L, M]` around `axis` of `shape`.
fn around(shape: &[u64], axis: usize) -> (u64, u64, u64) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// `Concat` along any axis: each operand's `[A, Li·M]` rows land at column `offset·M` of the
/// result's `[A, L·M]` rows; one kernel copies every operand.
pub fn lower_concat(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Concat { axis } = ctx.op else {
        return unsupported(ctx, "not a concat");
    };
    let y = ctx.output(0)?;
    let axis = norm_axis(*axis, y.shape.len())?;
    let (a, l, m) = around(&y.shape, axis);
    let mut params = Vec::new();
    let mut parts = Vec::new();
    let mut args = Vec::new();
    let mut offset = 0;
    for i in 0..ctx.inputs.len() {
        let x = ctx.input(i)?;
        if x.shape.len() != y.shape.len() || x.dtype != y.dtype {
            return unsupported(ctx, "operands differ in rank or type from the result");
        }
        let li = x.shape[axis];
        if x.elements() > 0 {
            let axes = [Axis::new(a, li * m, l * m), Axis::new(li * m, 1, 1)];
            parts.push(((params.len(), x.elements()), axes, offset * m));
            params.push(param(&format!("x{i}"), x, ParamRole::Input));
            args.push(ArgRef::Operand(i));
        }
        offset += li;
    }
    if offset != l {
        return unsupported(ctx, "the operands do not add up to the result");
    }
    if ctx.inputs.len() == 1 {
        return Ok(Lowering::view());
    }
    let out = params.len();
    let parts = parts
        .into_iter()
        .map(|(src, axes, base)| CopyPart::from_axes(src, (out, y.elements()), &axes, 0, base))
        .collect();
    params.push(param("out", y, ParamRole::Output));
    args.push(ArgRef::Result(0));
    copy_lowering(ctx, y.dtype, params, parts, args)
}

/// `Split` along any axis: the mirror of [`lower_concat`], one kernel writing every result.
pub fn lower_split(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Split { axis, .. } = ctx.op else {
        return unsupported(ctx, "not a split");
    };
    let x = ctx.input(0)?;
    let axis = norm_axis(*axis, x.shape.len())?;
    let (a, l, m) = around(&x.shape, axis);
    let mut params = vec![param("x", x, ParamRole::Input)];
    let mut parts = Vec::new();
    let mut args = vec![ArgRef::Operand(0)];
    let mut offset = 0;
    for i in 0..ctx.outputs.len() {
        let y = ctx.output(i)?;
        if y.shape.len() != x.shape.len() || y.dtype != x.dtype {
            return unsupported(ctx, "results differ in rank or type from the operand");
        }
        let li = y.shape[axis];
        if y.elements() > 0 {
            let axes = [Axis::new(a, l * m, li * m), Axis::new(li * m, 1, 1)];
            parts.push(CopyPart::from_axes(
                (0, x.elements()),
                (params.len(), y.elements()),
                &axes,
                offset * m,
                0,
            ));
            params.push(param(&format!("out{i}"), y, ParamRole::Output));
            args.push(ArgRef::Result(i));
        }
        offset += li;
    }
    if offset != l {
        return unsupported(ctx, "the results do not add up to the operand");
    }
    if ctx.outputs.len() == 1 {
        return Ok(Lowering::view());
    }
    copy_lowering(ctx, x.dtype, params, parts, args)
}

/// `Slice` with positive steps (ONNX clamping): a strided copy whose source strides are the
/// operand's times the steps, starting at the first selected element.
pub fn lower_slice(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Slice {
        axes,
        starts,
        steps,
        ..
    } = ctx.op
    else {
        return unsupported(ctx, "not a slice");
    };
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    let rank = x.shape.len();
    if y.shape.len() != rank {
        return unsupported(ctx, "the result rank differs");
    }
    let xs = strides(&x.shape);
    let mut step = vec![1u64; rank];
    let mut start = vec![0u64; rank];
    for (i, &ax) in axes.iter().enumerate() {
        let k = norm_axis(ax, rank)?;
        let s = *steps.get(i).unwrap_or(&1);
        if s < 1 {
            return unsupported(ctx, "only positive steps are supported");
        }
        let dim = x.shape[k] as i64;
        let first = starts[i];
        let first = if first < 0 {
            first.saturating_add(dim)
        } else {
            first
        };
        step[k] = s as u64;
        start[k] = first.clamp(0, dim) as u64;
    }
    if y.elements() == 0 {
        return unsupported(ctx, "the result is empty");
    }
    let base: u64 = start.iter().zip(&xs).map(|(s, st)| s * st).sum();
    let ys = strides(&y.shape);
    let axes: Vec<Axis> = (0..rank)
        .map(|k| Axis::new(y.shape[k], xs[k] * step[k], ys[k]))
        .collect();
    let part = CopyPart::from_axes((0, x.elements()), (1, y.elements()), &axes, base, 0);
    if is_identity(&part, x.elements()) && x.elements() == y.elements() {
        return Ok(Lowering::view());
    }
    copy_lowering(
        ctx,
        x.dtype,
        vec![
            param("x", x, ParamRole::Input),
            param("out", y, ParamRole::Output),
        ],
        vec![part],
        vec![ArgRef::Operand(0), ArgRef::Result(0)],
    )
}

/// `Expand`: broadcast axes read the operand with stride 0. A broadcast along the innermost
/// axis fills rows with `Duplicate` (vector types); any other broadcast is a strided copy.
pub fn lower_expand(ctx: &OpContext) -> Result<Lowering, LowerError> {
    if !matches!(ctx.op, Op::Expand { .. }) {
        return unsupported(ctx, "not an expand");
    }
    let (x, y) = (ctx.input(0)?, ctx.output(0)?);
    if x.elements() == y.elements() {
        return Ok(Lowering::view());
    }
    let (row_axes, cols, operands) = broadcast::view(&y.shape, &[(x.dtype, &x.shape)]);
    let vector_type = matches!(x.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::I32);
    if operands[0].inner == Inner::Scalar && vector_type {
        let e = Elementwise {
            name: ctx.name.to_string(),
            operands,
            out: y.dtype,
            row_axes,
            cols,
            compute: Compute::Broadcast,
        };
        return Ok(Lowering::single(broadcast::plan(
            &e,
            vec![ArgRef::Operand(0), ArgRef::Result(0)],
            ctx.target,
        )?));
    }
    let xs = broadcast_strides(&x.shape, &y.shape);
    let ys = strides(&y.shape);
    let axes: Vec<Axis> = (0..y.shape.len())
        .map(|k| Axis::new(y.shape[k], xs[k], ys[k]))
        .collect();
    let part = CopyPart::from_axes((0, x.elements()), (1, y.elements()), &axes, 0, 0);
    copy_lowering(
        ctx,
        x.dtype,
        vec![
            param("x", x, ParamRole::Input),
            param("out", y, ParamRole::Output),
        ],
        vec![part],
        vec![ArgRef::Operand(0), ArgRef::Result(0)],
    )
}

/// `Cast` between f32, f16 and bf16 (vector `Cast`, round to nearest even when narrowing;
/// f16 ↔ bf16 goes through f32); from integers and bools to integers, bools and those floats,
/// and from floats to bool, element by element on the scalar unit. Casting to the same type is
/// a view.
pub fn lower_cast(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Cast { to } = ctx.op else {
        return unsupported(ctx, "not a cast");
    };
    let x = ctx.input(0)?;
    if x.dtype == *to {
        return Ok(Lowering::view());
    }
    let float = |d: DType| matches!(d, DType::F32 | DType::F16 | DType::BF16);
    if !float(x.dtype) || !float(*to) {
        let scalar = |d: DType| d.is_int() || d == DType::Bool || float(d);
        if scalar(x.dtype) && scalar(*to) && (!x.dtype.is_float() || *to == DType::Bool) {
            return scalar_lowering(ctx, ScalarOp::Cast);
        }
        return unsupported(ctx, "no lowering of a cast from a float to an integer type");
    }
    let (row_axes, cols, operands) = broadcast::view(&x.shape, &[(x.dtype, &x.shape)]);
    let e = Elementwise {
        name: ctx.name.to_string(),
        operands,
        out: *to,
        row_axes,
        cols,
        compute: Compute::Cast,
    };
    Ok(Lowering::single(broadcast::plan(
        &e,
        vec![ArgRef::Operand(0), ArgRef::Result(0)],
        ctx.target,
    )?))
}

/// `Add`, `Sub`, `Mul`, `Div`, `Max`, `Min` with numpy broadcasting, on f32, f16, bf16 (computed
/// in f32) and i32 (no `Div`).
pub fn lower_binary(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::Binary(op) = ctx.op else {
        return unsupported(ctx, "not a binary op");
    };
    let vec_op = match op {
        BinaryOp::Add => VecOp::Add,
        BinaryOp::Sub => VecOp::Sub,
        BinaryOp::Mul => VecOp::Mul,
        BinaryOp::Div => VecOp::Div,
        BinaryOp::Max => VecOp::Max,
        BinaryOp::Min => VecOp::Min,
        _ => return unsupported(ctx, "no vector instruction for this binary op"),
    };
    let (a, b, y) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    if a.dtype != b.dtype || y.dtype != a.dtype {
        return unsupported(ctx, "operands and result differ in type");
    }
    let (row_axes, cols, operands) =
        broadcast::view(&y.shape, &[(a.dtype, &a.shape), (b.dtype, &b.shape)]);
    let e = Elementwise {
        name: ctx.name.to_string(),
        operands,
        out: y.dtype,
        row_axes,
        cols,
        compute: Compute::Binary(vec_op),
    };
    Ok(Lowering::single(broadcast::plan(
        &e,
        vec![ArgRef::Operand(0), ArgRef::Operand(1), ArgRef::Result(0)],
        ctx.target,
    )?))
}

/// The scalar-unit kernel of `op` over the operands broadcast to result 0.
fn scalar_lowering(ctx: &OpContext, op: ScalarOp) -> Result<Lowering, LowerError> {
    let y = ctx.output(0)?;
    let mut operands = Vec::new();
    for i in 0..ctx.inputs.len() {
        let x = ctx.input(i)?;
        if x.shape.len() > y.shape.len() {
            return unsupported(ctx, "an operand has more axes than the result");
        }
        operands.push((x.dtype, x.elements(), broadcast_strides(&x.shape, &y.shape)));
    }
    if y.elements() == 0 {
        return unsupported(ctx, "the result is empty");
    }
    let e = scalar::Elementwise {
        name: ctx.name.to_string(),
        op,
        operands,
        out: y.dtype,
        shape: y.shape.clone(),
    };
    let mut args: Vec<ArgRef> = (0..ctx.inputs.len()).map(ArgRef::Operand).collect();
    args.push(ArgRef::Result(0));
    Ok(Lowering::single(scalar::plan(&e, args, ctx.target)?))
}

/// Comparisons (`Equal`, `Less`, `LessOrEqual`, `Greater`, `GreaterOrEqual`) of integers, bools
/// or f32/f16/bf16, and logical `And`, `Or`, `Xor`, with broadcasting: element by element on
/// the scalar unit (a NaN operand compares like a large number instead of unordered).
pub fn lower_compare(ctx: &OpContext) -> Result<Lowering, LowerError> {
    match ctx.op {
        Op::Binary(op) if op.is_comparison() || op.is_logical() => {
            scalar_lowering(ctx, ScalarOp::Binary(*op))
        }
        _ => unsupported(ctx, "not a comparison or logical op"),
    }
}

/// Logical `Not` of a bool tensor, element by element on the scalar unit.
pub fn lower_not(ctx: &OpContext) -> Result<Lowering, LowerError> {
    match ctx.op {
        Op::Unary(UnaryOp::Not) => scalar_lowering(ctx, ScalarOp::Not),
        _ => unsupported(ctx, "not a logical not"),
    }
}

/// `IsNaN` and `IsInf` of f32, f16 or bf16, element by element on the scalar unit.
pub fn lower_classify(ctx: &OpContext) -> Result<Lowering, LowerError> {
    match ctx.op {
        Op::Unary(UnaryOp::IsNaN) => scalar_lowering(ctx, ScalarOp::IsNan),
        Op::Unary(UnaryOp::IsInf) => scalar_lowering(ctx, ScalarOp::IsInf),
        _ => unsupported(ctx, "not a float classification"),
    }
}

/// `Where(cond, a, b)` with broadcasting, for any element type: the scalar unit reads each
/// condition and copies the chosen element from GM bit for bit.
pub fn lower_where(ctx: &OpContext) -> Result<Lowering, LowerError> {
    match ctx.op {
        Op::Where => scalar_lowering(ctx, ScalarOp::Where),
        _ => unsupported(ctx, "not a where"),
    }
}
