//! `ScatterElements` along any axis, every reduction, as one vector-core kernel.
//!
//! The operand is viewed as `[A, L·M]` around the scattered axis (`L` its size). Slabs `a < A`
//! are dealt round-robin to the AIVs; a block first copies its slab to the result through UB in
//! chunks (MTE2 → MTE3), then applies, in order, the updates whose outer position is `a` (an
//! index tensor smaller than the operand in some non-scattered axis has none for the slabs
//! beyond it): the scalar unit reads each index (negative ones count from the end) and the
//! update element moves GM → UB → GM into place with one-element `DataCopyPad`s. A reduction
//! also reads the current element and combines the two with one vector instruction (f32, f16
//! or i32). Every target of an update lies in the slab of the block that wrote it, and one
//! block applies its updates in order, so repeated indices resolve like the interpreter (the
//! last update wins, reductions accumulate in order).

use cubevec_ir::kernel::{
    BufferPlanner, Kernel, Param, ParamRole, Pipe, ScalarSrc, Stmt, VecArg, VecOp,
};
use cubevec_ir::op::ScatterReduction;
use cubevec_ir::{DType, Op};

use crate::tile::build::block_trips;

use super::movement::build::{
    bytes, c, call, digits, dot, for_, gm, handoff, let_, pitch, set, slice, tile, ub, v, vec_op,
    vector_work, wait,
};
use super::movement::{norm_axis, strides};
use super::{ArgRef, LowerError, Lowering, OpContext};

/// Elements of a slab copied per chunk.
const CHUNK: u64 = 8192;

/// The vector instruction combining the current element with an update.
fn combine(reduction: ScatterReduction) -> Option<VecOp> {
    match reduction {
        ScatterReduction::None => None,
        ScatterReduction::Add => Some(VecOp::Add),
        ScatterReduction::Mul => Some(VecOp::Mul),
        ScatterReduction::Max => Some(VecOp::Max),
        ScatterReduction::Min => Some(VecOp::Min),
    }
}

/// `ScatterElements` (see the module documentation).
pub fn lower_scatter_elements(ctx: &OpContext) -> Result<Lowering, LowerError> {
    let Op::ScatterElements { axis, reduction } = ctx.op else {
        return Err(LowerError::Unsupported(format!(
            "`{}` is not a scatter_elements",
            ctx.name
        )));
    };
    let fail = |m: &str| Err(LowerError::Unsupported(format!("`{}`: {m}", ctx.name)));
    let (x, ids, upd, y) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?, ctx.output(0)?);
    let rank = x.shape.len();
    let axis = norm_axis(*axis, rank)?;
    if ids.shape != upd.shape || ids.shape.len() != rank || upd.dtype != x.dtype {
        return fail("indices and updates must have the operand's rank and updates its type");
    }
    if y.shape != x.shape || y.dtype != x.dtype || x.elements() == 0 {
        return fail("the result must have the operand's shape and type");
    }
    if (0..rank).any(|d| d != axis && ids.shape[d] > x.shape[d]) {
        return fail("the indices do not fit the operand");
    }
    if !matches!(ids.dtype, DType::I32 | DType::I64) {
        return fail("indices must be i32 or i64");
    }
    let op = combine(*reduction);
    if op.is_some() && !matches!(x.dtype, DType::F32 | DType::F16 | DType::I32) {
        return fail("a scatter with a reduction combines f32, f16 or i32 elements");
    }
    let target = ctx.target;
    let a_count: u64 = x.shape[..axis].iter().product();
    let l = x.shape[axis];
    let slab = x.elements() / a_count;
    let updates_per_slab: u64 = ids.shape[axis..].iter().product();
    let xs = strides(&x.shape);
    let is = strides(&ids.shape);
    let total = x.elements();
    let dt = x.dtype;

    let params = vec![
        Param {
            name: "x".into(),
            dtype: dt,
            shape: vec![1, total],
            role: ParamRole::Input,
        },
        Param {
            name: "indices".into(),
            dtype: ids.dtype,
            shape: vec![ids.elements()],
            role: ParamRole::Input,
        },
        Param {
            name: "updates".into(),
            dtype: dt,
            shape: vec![1, upd.elements()],
            role: ParamRole::Input,
        },
        Param {
            name: "out".into(),
            dtype: dt,
            shape: vec![1, total],
            role: ParamRole::Output,
        },
    ];
    let chunk = pitch(slab.min(CHUNK), dt);
    let one = pitch(1, dt);
    let mut planner = BufferPlanner::new();
    let buf = planner.add(target, ub("slab", dt, 1, chunk, 2));
    let slot = planner.add(target, ub("slot", dt, 1, 2 * one, 1));
    let buffers = planner.finish();
    let chunks = slab.div_ceil(chunk);
    let blocks = a_count.min(u64::from(target.cores.aiv)).max(1);

    // The slab copy, double-buffered over the chunks.
    let s = || v("s");
    let mut copy = vec![
        let_("s", v("h").rem(c(2))),
        let_("n", c(slab).sub(v("h").mul(c(chunk))).min(c(chunk))),
        let_("col", v("a").mul(c(slab)).add(v("h").mul(c(chunk)))),
        wait(Pipe::Mte3, Pipe::Mte2, s()),
        Stmt::CopyIn {
            dst: tile(buf, s(), (c(0), c(0)), (c(1), v("n"))),
            src: gm(0, (c(0), v("col")), (c(1), v("n"))),
        },
    ];
    copy.extend(handoff(Pipe::Mte2, Pipe::Mte3, s()));
    copy.extend([
        Stmt::CopyOut {
            dst: gm(3, (c(0), v("col")), (c(1), v("n"))),
            src: tile(buf, s(), (c(0), c(0)), (c(1), v("n"))),
        },
        set(Pipe::Mte3, Pipe::Mte2, s()),
    ]);

    // One update: its index, its target, the move (and the combination).
    let outer_digits = digits(v("a"), &x.shape[..axis]);
    // 1 when every outer digit is below the indices' extent: `max(ext, d + 1) - ext` is
    // positive exactly when `d ≥ ext`.
    let valid = (0..axis).fold(c(1), |acc, d| {
        let over = c(ids.shape[d])
            .max(outer_digits[d].clone().add(c(1)))
            .sub(c(ids.shape[d]))
            .min(c(1));
        acc.mul(c(1).sub(over))
    });
    let inner_shape = &ids.shape[axis + 1..];
    let inner_updates: u64 = inner_shape.iter().product();
    let base = dot(&outer_digits, &is[..axis]);
    let inner_offset = dot(
        &digits(v("e").rem(c(inner_updates)), inner_shape),
        &xs[axis + 1..],
    );
    let at_index = |var: &str| -> Stmt {
        Stmt::LoadScalar {
            var: var.to_string(),
            src: ScalarSrc::Gm {
                param: 1,
                index: v("ib").add(v("e")),
            },
            planned: v("e").rem(c(l)),
        }
    };
    let target_col = v("a")
        .mul(c(slab))
        .add(v("id").add(c(l)).rem(c(l)).mul(c(xs[axis])))
        .add(inner_offset);
    let mut update = vec![
        at_index("id"),
        let_("tc", target_col),
        wait(Pipe::Mte3, Pipe::Mte2, c(2)),
        Stmt::CopyIn {
            dst: tile(slot, c(0), (c(0), c(0)), (c(1), c(1))),
            src: gm(2, (c(0), v("ib").add(v("e"))), (c(1), c(1))),
        },
    ];
    match op {
        None => update.extend(handoff(Pipe::Mte2, Pipe::Mte3, c(2))),
        Some(op) => {
            update.push(Stmt::CopyIn {
                dst: tile(slot, c(0), (c(0), c(one)), (c(1), c(1))),
                src: gm(3, (c(0), v("tc")), (c(1), c(1))),
            });
            update.extend(handoff(Pipe::Mte2, Pipe::V, c(2)));
            update.push(vec_op(
                op,
                slice(slot, c(0), c(0)),
                vec![
                    VecArg::Slice(slice(slot, c(0), c(one))),
                    VecArg::Slice(slice(slot, c(0), c(0))),
                ],
                c(1),
            ));
            update.extend(handoff(Pipe::V, Pipe::Mte3, c(2)));
        }
    }
    update.extend([
        Stmt::CopyOut {
            dst: gm(3, (c(0), v("tc")), (c(1), c(1))),
            src: tile(slot, c(0), (c(0), c(0)), (c(1), c(1))),
        },
        set(Pipe::Mte3, Pipe::Mte2, c(2)),
    ]);
    let updates = vec![
        let_("ib", base),
        for_("e", c(updates_per_slab), false, update),
    ];

    let mut per_slab = vec![let_("a", v("blk").add(v("t").mul(c(blocks))))];
    per_slab.push(for_("h", c(chunks), true, copy));
    // Updates go after the whole slab is in place: they read or overwrite its elements.
    per_slab.extend([
        wait(Pipe::Mte3, Pipe::Mte2, c(0)),
        wait(Pipe::Mte3, Pipe::Mte2, c(1)),
        for_("z", valid, false, updates),
        set(Pipe::Mte3, Pipe::Mte2, c(0)),
        set(Pipe::Mte3, Pipe::Mte2, c(1)),
    ]);
    let trips = block_trips(a_count, blocks);
    let mut vector: Vec<Stmt> = (0..3).map(|e| set(Pipe::Mte3, Pipe::Mte2, c(e))).collect();
    vector.push(for_("t", trips, false, per_slab));
    vector.extend((0..3).map(|e| wait(Pipe::Mte3, Pipe::Mte2, c(e))));
    let tiling = [
        ("slabs", a_count),
        ("slab", slab),
        ("chunk", chunk),
        ("updates_per_slab", updates_per_slab),
    ];
    let kernel = Kernel::vector(ctx.name, blocks as u32, params, buffers, vector, &tiling);
    let moved =
        2 * bytes(total, dt) + 3 * bytes(ids.elements(), dt) + bytes(ids.elements(), ids.dtype);
    let work = vector_work(ids.elements() as f64, moved as f64, dt);
    Ok(Lowering::single(call(
        kernel,
        vec![
            ArgRef::Operand(0),
            ArgRef::Operand(1),
            ArgRef::Operand(2),
            ArgRef::Result(0),
        ],
        target,
        &work,
    )?))
}
