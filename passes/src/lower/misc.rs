//! `MatMul` whose batch dimensions broadcast (`[b, h, m, k] · [b, 1, k, n]`), and `MatMul` of
//! 32-bit operands. Each operand whose
//! batches differ from the result's is first copied into a scratch tensor with the result's
//! batches (a strided copy reading broadcast axes with stride 0); a 32-bit right operand is
//! stored transposed (`[batch, n, k]`) by the same copy, since the Cube loads only 16-bit B
//! fractals transposed. Then one batched GEMM runs on `[batch, m, k]` views.
//!
//! Also `SwiGlu` with a clamp limit, as one elementwise chain, and `Softmax` or `LogSoftmax`
//! along an inner axis (transpose, row kernel, transpose back).

use cubevec_ir::kernel::{ParamRole, VecOp};
use cubevec_ir::op::Op;

use super::movement::broadcast_strides;
use super::movement::copy::{self, Axis, Copy, CopyParam, CopyPart};
use super::{ArgRef, KernelCall, LowerError, Lowering, OpContext, Scratch, TensorShape};
use crate::tile::gemm::{GemmProblem, plan};
use crate::tile::vector::ChainArg::{Imm, Input, Temp};
use crate::tile::vector::{ChainStep, ElementwiseChain, plan_chain};

/// Batch dimensions of a matrix operand (all but the last two).
fn batches(t: &TensorShape) -> &[u64] {
    &t.shape[..t.shape.len().saturating_sub(2)]
}

/// Whether the node is a `MatMul` [`lower_broadcast_matmul`] handles: 32-bit operands (whose
/// right operand must be stored transposed), or operands of rank ≥ 3 whose batch dimensions
/// differ from the result's.
pub fn broadcasts_batches(ctx: &OpContext) -> bool {
    let (Ok(a), Ok(b), Ok(y)) = (ctx.input(0), ctx.input(1), ctx.output(0)) else {
        return false;
    };
    let batched = a.shape.len() >= 3 && b.shape.len() >= 3 && y.shape.len() >= 3;
    matches!(ctx.op, Op::MatMul)
        && a.shape.len() >= 2
        && (b.shape.len() == 2 || batched)
        && (a.dtype.bits() == 32
            || (batched && (batches(a) != batches(y) || batches(b) != batches(y))))
}

/// Copies operand `i` (`[.., rows, cols]`) to a scratch `[batch.., rows, cols]` with the
/// result's batches, transposed to `[batch.., cols, rows]` when `transpose`.
fn copy_operand(
    ctx: &OpContext,
    i: usize,
    t: &TensorShape,
    out_batch: &[u64],
    transpose: bool,
) -> Result<(KernelCall, TensorShape), LowerError> {
    let rank = t.shape.len();
    let (rows, cols) = (t.shape[rank - 2], t.shape[rank - 1]);
    let mut full = out_batch.to_vec();
    full.extend([rows, cols]);
    let src = broadcast_strides(&t.shape, &full);
    let batch: u64 = out_batch.iter().product();
    let mut dst_shape = out_batch.to_vec();
    dst_shape.extend(if transpose {
        [cols, rows]
    } else {
        [rows, cols]
    });
    let dst = super::movement::strides(&dst_shape);
    let nb = out_batch.len();
    let mut axes: Vec<Axis> = (0..nb)
        .map(|k| Axis::new(out_batch[k], src[k], dst[k]))
        .collect();
    if transpose {
        axes.push(Axis::new(cols, src[nb + 1], dst[nb]));
        axes.push(Axis::new(rows, src[nb], 1));
    } else {
        axes.push(Axis::new(rows, src[nb], dst[nb]));
        axes.push(Axis::new(cols, src[nb + 1], 1));
    }
    let scratch = TensorShape::new(t.dtype, vec![batch, dst_shape[nb], dst_shape[nb + 1]]);
    let copy = Copy {
        name: format!("{}_operand{i}", ctx.name),
        dtype: t.dtype,
        params: vec![
            CopyParam {
                name: "x".into(),
                dtype: t.dtype,
                elements: t.elements(),
                role: ParamRole::Input,
            },
            CopyParam {
                name: "out".into(),
                dtype: t.dtype,
                elements: scratch.elements(),
                role: ParamRole::Output,
            },
        ],
        parts: vec![CopyPart::from_axes(
            (0, t.elements()),
            (1, scratch.elements()),
            &axes,
            0,
            0,
        )],
    };
    let call = copy::plan(
        &copy,
        vec![ArgRef::Operand(i), ArgRef::Result(0)],
        ctx.target,
    )?;
    Ok((call, scratch))
}

/// `MatMul` with broadcast batch dimensions (see the module docs).
pub fn lower_broadcast_matmul(ctx: &OpContext) -> Result<Lowering, LowerError> {
    if !broadcasts_batches(ctx) {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not a matmul with broadcast batches",
            ctx.name
        )));
    }
    let (a, b, y) = (ctx.input(0)?, ctx.input(1)?, ctx.output(0)?);
    // A right operand without batches multiplies every row of the left one: one group.
    let plain = b.shape.len() == 2;
    let out_batch = if plain {
        Vec::new()
    } else {
        batches(y).to_vec()
    };
    let batch: u64 = out_batch.iter().product();
    let k = a.shape[a.shape.len() - 1];
    let m = if plain {
        a.elements() / k.max(1)
    } else {
        a.shape[a.shape.len() - 2]
    };
    let n = b.shape[b.shape.len() - 1];
    if b.shape[b.shape.len() - 2] != k || a.dtype != b.dtype {
        return Err(LowerError::Unsupported(format!(
            "matmul of {:?} by {:?}: inner dimensions or types differ",
            a.shape, b.shape
        )));
    }
    let b_transposed = a.dtype.bits() == 32;
    let mut out = Lowering::default();
    let mut operands = Vec::new();
    for (i, t) in [a, b].into_iter().enumerate() {
        let transpose = i == 1 && b_transposed;
        if !transpose && (plain || batches(t).iter().product::<u64>() == batch) {
            operands.push(ArgRef::Operand(i));
            continue;
        }
        let (mut call, scratch) = copy_operand(ctx, i, t, &out_batch, transpose)?;
        let slot = ArgRef::Scratch(out.scratch.len());
        for arg in &mut call.args {
            if *arg == ArgRef::Result(0) {
                *arg = slot;
            }
        }
        out.calls.push(call);
        out.scratch.push(Scratch {
            name: format!("operand{i}"),
            tensor: scratch,
        });
        operands.push(slot);
    }
    let problem = GemmProblem {
        name: ctx.name.to_string(),
        groups: vec![m; batch as usize],
        n,
        k,
        input: a.dtype,
        output: y.dtype,
        b_transposed,
        relu: false,
        epilogue: None,
        halves: None,
    };
    let chosen = plan(&problem, ctx.target)?;
    out.calls.push(KernelCall::new(
        chosen.kernel,
        chosen.cost,
        vec![operands[0], operands[1], ArgRef::Result(0)],
    ));
    Ok(out)
}

/// `SwiGlu` with separate `gate, up` operands and a clamp limit `l`:
/// `silu(min(gate, l)) · clamp(up, -l, l)`, one tiled elementwise chain.
pub fn lower_clamped_swiglu(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::SwiGlu {
        split: false,
        limit_bits: Some(bits),
    } = ctx.op
    else {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not a two-operand clamped SwiGLU",
            ctx.name
        )));
    };
    let l = f32::from_bits(*bits) as f64;
    let out = ctx.output(0)?;
    let step = |op, dst, srcs| ChainStep { op, dst, srcs };
    let chain = ElementwiseChain {
        name: ctx.name.to_string(),
        len: out.elements(),
        dtype: out.dtype,
        inputs: 2,
        steps: vec![
            step(VecOp::Mins, 0, vec![Input(0), Imm(l)]),
            step(VecOp::Muls, 1, vec![Temp(0), Imm(-1.0)]),
            step(VecOp::Exp, 1, vec![Temp(1)]),
            step(VecOp::Adds, 1, vec![Temp(1), Imm(1.0)]),
            step(VecOp::Div, 0, vec![Temp(0), Temp(1)]),
            step(VecOp::Mins, 1, vec![Input(1), Imm(l)]),
            step(VecOp::Maxs, 1, vec![Temp(1), Imm(-l)]),
            step(VecOp::Mul, 0, vec![Temp(0), Temp(1)]),
        ],
        output: 0,
    };
    let chosen = plan_chain(&chain, ctx.target)?;
    Ok(Lowering::single(KernelCall::new(
        chosen.kernel,
        chosen.cost,
        vec![ArgRef::Operand(0), ArgRef::Operand(1), ArgRef::Result(0)],
    )))
}

/// Rebinds a sub-lowering's arguments through `map` (operand `i` → `map[i]`, result 0 →
/// `result`).
fn rebound(lowering: Lowering, map: &[ArgRef], result: ArgRef) -> Vec<KernelCall> {
    lowering
        .calls
        .into_iter()
        .map(|mut call| {
            for arg in &mut call.args {
                *arg = match *arg {
                    ArgRef::Operand(i) => map[i],
                    _ => result,
                };
            }
            call
        })
        .collect()
}

/// `Softmax` along an axis other than the last: the axis is swapped to the end by a transpose
/// into scratch, normalised row-wise, and swapped back.
pub fn lower_inner_softmax(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let (axis, row_op) = match ctx.op {
        Op::Softmax { axis } => (axis, Op::Softmax { axis: -1 }),
        Op::LogSoftmax { axis } => (axis, Op::LogSoftmax { axis: -1 }),
        _ => {
            return Err(LowerError::Unsupported(format!(
                "`{}` is not a softmax",
                ctx.name
            )));
        }
    };
    let x = ctx.input(0)?;
    let rank = x.shape.len();
    let axis = super::movement::norm_axis(*axis, rank)?;
    let mut perm: Vec<u64> = (0..rank as u64).collect();
    perm.swap(axis, rank - 1);
    let mut swapped = x.shape.clone();
    swapped.swap(axis, rank - 1);
    let moved = TensorShape::new(x.dtype, swapped);
    let transpose = Op::Transpose { perm };
    let names = [
        format!("{}_in", ctx.name),
        format!("{}_rows", ctx.name),
        format!("{}_out", ctx.name),
    ];
    let sub = |name: &str, op, from: &TensorShape, to: &TensorShape| {
        (name.to_string(), op, from.clone(), to.clone())
    };
    let steps = [
        sub(&names[0], &transpose, x, &moved),
        sub(&names[1], &row_op, &moved, &moved),
        sub(&names[2], &transpose, &moved, x),
    ];
    let binds = [
        (ArgRef::Operand(0), ArgRef::Scratch(0)),
        (ArgRef::Scratch(0), ArgRef::Scratch(1)),
        (ArgRef::Scratch(1), ArgRef::Result(0)),
    ];
    let mut out = Lowering {
        scratch: vec![
            Scratch {
                name: "moved".into(),
                tensor: moved.clone(),
            },
            Scratch {
                name: "normalised".into(),
                tensor: moved.clone(),
            },
        ],
        ..Lowering::default()
    };
    for ((name, op, from, to), (src, dst)) in steps.into_iter().zip(binds) {
        let c = OpContext {
            name: &name,
            op,
            inputs: vec![Some(from)],
            outputs: vec![to],
            target: ctx.target,
        };
        let lowering = if matches!(op, Op::Softmax { .. } | Op::LogSoftmax { .. }) {
            super::rows::lower_rows(&c)?
        } else {
            super::movement::lower_transpose(&c)?
        };
        if lowering.view || !lowering.scratch.is_empty() {
            return Err(LowerError::Unsupported(format!(
                "`{}`: a step of the softmax is a view or needs scratch",
                ctx.name
            )));
        }
        out.calls.extend(rebound(lowering, &[src], dst));
    }
    Ok(out)
}
