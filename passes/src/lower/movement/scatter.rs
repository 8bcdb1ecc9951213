//! `ScatterNd` without reduction, for indices known while planning (inline constants, as
//! exporters write slice assignments).
//!
//! The result is `x` with the slices the index tuples address replaced by the rows of the
//! updates, the last update winning when tuples repeat (the interpreter's order). Because the
//! indices are constants, every result slice has one known source: the partitioner's copy kernel
//! moves each maximal run of consecutive slices from `x` or from the updates in one part, so the
//! parts write disjoint ranges and can run on any cores in any order.

use cubevec_ir::kernel::ParamRole;
use cubevec_ir::op::ScatterReduction;
use cubevec_ir::tensor::Tensor;

use super::copy::{Axis, CopyPart};
use super::{copy_lowering, param, strides, unsupported};
use crate::lower::{ArgRef, LowerError, Lowering, OpContext};

/// Most parts (runs of slices from one source) one scatter kernel is given.
const MAX_RUNS: usize = 64;

/// Where one slice of the result comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Slice `i` of `x` (itself).
    Data(u64),
    /// Update row `t`.
    Update(u64),
}

impl Source {
    /// Whether `next` continues a run starting at `self` that is `len` slices long.
    fn continues(self, len: u64, next: Source) -> bool {
        match (self, next) {
            (Source::Data(a), Source::Data(b)) | (Source::Update(a), Source::Update(b)) => {
                a + len == b
            }
            _ => false,
        }
    }
}

/// `ScatterNd(x, indices, updates)` with `reduction` none and `indices` known (see the module
/// docs).
pub fn lower_scatter_nd(
    ctx: &OpContext,
    reduction: ScatterReduction,
    indices: Option<&Tensor>,
) -> Result<Lowering, LowerError> {
    if reduction != ScatterReduction::None {
        return unsupported(ctx, "only scatters that replace elements have a kernel");
    }
    let Some(indices) = indices else {
        return unsupported(ctx, "the indices must be a constant held inline");
    };
    let (x, updates, y) = (ctx.input(0)?, ctx.input(2)?, ctx.output(0)?);
    let (Some(&q), rank) = (indices.shape().last(), x.shape.len()) else {
        return unsupported(ctx, "the indices must have rank at least 1");
    };
    if q == 0 || q > rank || updates.dtype != x.dtype || y.dtype != x.dtype || y.shape != x.shape {
        return unsupported(ctx, "indices, updates and result do not fit the data");
    }
    let inner: u64 = x.shape[q..].iter().product();
    let tuples = (indices.numel() / q) as u64;
    if updates.elements() != tuples * inner || inner == 0 {
        return unsupported(ctx, "the updates do not hold one slice per index tuple");
    }
    let slot_strides = strides(&x.shape[..q]);
    let slots: u64 = x.shape[..q].iter().product();
    let mut source: Vec<Source> = (0..slots).map(Source::Data).collect();
    for t in 0..tuples {
        let mut slot = 0;
        for (j, &size) in x.shape[..q].iter().enumerate() {
            let i = indices.get_i64(t as usize * q + j);
            let resolved = if i < 0 { i + size as i64 } else { i };
            if !(0..size as i64).contains(&resolved) {
                return unsupported(ctx, &format!("index {i} is outside an axis of {size}"));
            }
            slot += resolved as u64 * slot_strides[j];
        }
        source[slot as usize] = Source::Update(t);
    }
    let mut runs: Vec<(u64, Source, u64)> = Vec::new();
    for (slot, &s) in source.iter().enumerate() {
        match runs.last_mut() {
            Some((_, first, len)) if first.continues(*len, s) => *len += 1,
            _ => runs.push((slot as u64, s, 1)),
        }
    }
    if runs.len() > MAX_RUNS {
        return unsupported(
            ctx,
            &format!("the indices split the result into {} runs", runs.len()),
        );
    }
    let parts = runs
        .into_iter()
        .map(|(slot, s, len)| {
            let (src, src_elems, first) = match s {
                Source::Data(i) => (0, x.elements(), i),
                Source::Update(t) => (1, updates.elements(), t),
            };
            CopyPart::from_axes(
                (src, src_elems),
                (2, y.elements()),
                &[Axis::new(len * inner, 1, 1)],
                first * inner,
                slot * inner,
            )
        })
        .collect();
    copy_lowering(
        ctx,
        x.dtype,
        vec![
            param("x", x, ParamRole::Input),
            param("updates", updates, ParamRole::Input),
            param("out", y, ParamRole::Output),
        ],
        parts,
        vec![ArgRef::Operand(0), ArgRef::Operand(2), ArgRef::Result(0)],
    )
}
