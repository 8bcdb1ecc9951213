//! Statement and buffer constructors shared by the lowerings, and the step that turns a built
//! kernel into a verified, costed [`KernelCall`].

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, Buffer, Expr, GmTile, Kernel, Layout, MemLevel, Pipe, Slice, Stmt, Tile, VecArg, VecOp,
    verify,
};
use cubevec_ir::target::Target;

use crate::cost::{Work, estimate};
use crate::lower::{ArgRef, KernelCall, LowerError};
use crate::tile::TileError;

/// A variable.
pub(crate) fn v(name: &str) -> Expr {
    Expr::var(name)
}

/// A constant.
pub(crate) fn c(value: u64) -> Expr {
    Expr::c(value)
}

/// `let var = value`.
pub(crate) fn let_(var: &str, value: Expr) -> Stmt {
    Stmt::Let {
        var: var.to_string(),
        value,
    }
}

/// `for var in 0..extent { body }`.
pub(crate) fn for_(var: &str, extent: Expr, pipelined: bool, body: Vec<Stmt>) -> Stmt {
    Stmt::For {
        var: var.to_string(),
        extent,
        pipelined,
        body,
    }
}

/// `SetFlag<from_to>(event)`.
pub(crate) fn set(from: Pipe, to: Pipe, event: Expr) -> Stmt {
    Stmt::SetFlag { from, to, event }
}

/// `WaitFlag<from_to>(event)`.
pub(crate) fn wait(from: Pipe, to: Pipe, event: Expr) -> Stmt {
    Stmt::WaitFlag { from, to, event }
}

/// `SetFlag` immediately followed by its `WaitFlag`: orders everything `from` issued so far
/// before everything `to` issues next.
pub(crate) fn handoff(from: Pipe, to: Pipe, event: Expr) -> [Stmt; 2] {
    [set(from, to, event.clone()), wait(from, to, event)]
}

/// A region of a buffer stage.
pub(crate) fn tile(buf: BufId, stage: Expr, at: (Expr, Expr), size: (Expr, Expr)) -> Tile {
    Tile {
        buf,
        stage,
        row: at.0,
        col: at.1,
        rows: size.0,
        cols: size.1,
    }
}

/// A region of a 2-D (or flattened) GM parameter, batch 0.
pub(crate) fn gm(param: usize, at: (Expr, Expr), size: (Expr, Expr)) -> GmTile {
    GmTile {
        param,
        batch: c(0),
        row: at.0,
        col: at.1,
        rows: size.0,
        cols: size.1,
    }
}

/// A run of a UB buffer stage from element `offset`.
pub(crate) fn slice(buf: BufId, stage: Expr, offset: Expr) -> Slice {
    Slice { buf, stage, offset }
}

/// A count-form vector statement.
pub(crate) fn vec_op(op: VecOp, dst: Slice, srcs: Vec<VecArg>, count: Expr) -> Stmt {
    Stmt::Vector {
        op,
        dst,
        srcs,
        count,
    }
}

/// An unplaced UB buffer (the planner assigns its offset).
pub(crate) fn ub(name: &str, dtype: DType, rows: u64, cols: u64, stages: u64) -> Buffer {
    Buffer {
        name: name.to_string(),
        level: MemLevel::Ub,
        dtype,
        layout: Layout::Nd,
        rows,
        cols,
        stages,
        offset: 0,
    }
}

/// `cols` rounded up to a whole number of 32-byte blocks of `dtype`: a UB row pitch.
pub(crate) fn pitch(cols: u64, dtype: DType) -> u64 {
    let per_block = (256 / dtype.bits().max(1)) as u64;
    cols.max(1).div_ceil(per_block) * per_block
}

/// Bytes of `elements` elements of `dtype`.
pub(crate) fn bytes(elements: u64, dtype: DType) -> u64 {
    dtype.storage_bytes(elements as usize) as u64
}

/// The first of `units` work units dealt round-robin over `blocks` blocks that block `blk` owns,
/// when the dealing started `start` units earlier, and the number of units it owns.
pub(crate) fn deal(units: u64, blocks: u64, start: u64) -> (Expr, Expr) {
    let first = if start.is_multiple_of(blocks) {
        v("blk")
    } else {
        v("blk").add(c(blocks - start % blocks)).rem(c(blocks))
    };
    let trips = c(units)
        .sub(first.clone())
        .add(c(blocks - 1))
        .div(c(blocks));
    (first, trips)
}

/// The digits of the row-major multi-index `index` over `extents`, outermost first.
pub(crate) fn digits(index: Expr, extents: &[u64]) -> Vec<Expr> {
    let mut out = vec![c(0); extents.len()];
    let mut inner = 1u64;
    for (k, &e) in extents.iter().enumerate().rev() {
        out[k] = index.clone().div(c(inner)).rem(c(e));
        inner *= e;
    }
    out
}

/// `Σ digits[k] · strides[k]` (strides in elements; zero strides drop out).
pub(crate) fn dot(digits: &[Expr], strides: &[u64]) -> Expr {
    digits
        .iter()
        .zip(strides)
        .filter(|(_, s)| **s != 0)
        .fold(c(0), |acc, (d, &s)| acc.add(d.clone().mul(c(s))))
}

/// Plain `Work` of a vector kernel.
pub(crate) fn vector_work(flops: f64, bytes: f64, dtype: DType) -> Work {
    Work {
        flops,
        bytes,
        cube: false,
        dtype,
    }
}

/// Costs `kernel` (without verifying it), binding its parameters to `args`.
pub(crate) fn costed(
    kernel: Kernel,
    args: Vec<ArgRef>,
    target: &Target,
    work: &Work,
) -> Result<KernelCall, LowerError> {
    if args.len() != kernel.params.len() {
        return Err(LowerError::Unsupported(format!(
            "kernel `{}` has {} parameters but {} bindings",
            kernel.name,
            kernel.params.len(),
            args.len()
        )));
    }
    let cost = estimate(&kernel, target, work).map_err(TileError::Cost)?;
    Ok(KernelCall {
        kernel,
        cost,
        args,
        assumptions: Vec::new(),
    })
}

/// Verifies and costs `kernel`, binding its parameters to `args`.
pub(crate) fn call(
    kernel: Kernel,
    args: Vec<ArgRef>,
    target: &Target,
    work: &Work,
) -> Result<KernelCall, LowerError> {
    verify(&kernel, target).map_err(TileError::Verify)?;
    costed(kernel, args, target, work)
}

/// The fastest (by modelled time) of several costed candidates, verified.
pub(crate) fn fastest(
    candidates: impl IntoIterator<Item = Result<KernelCall, LowerError>>,
    target: &Target,
) -> Result<KernelCall, LowerError> {
    let mut best: Option<KernelCall> = None;
    for candidate in candidates {
        let candidate = candidate?;
        if best
            .as_ref()
            .is_none_or(|b| candidate.cost.modeled_time_us < b.cost.modeled_time_us * (1.0 - 1e-9))
        {
            best = Some(candidate);
        }
    }
    let best = best.ok_or_else(|| LowerError::Unsupported("no tiling candidate".into()))?;
    verify(&best.kernel, target).map_err(TileError::Verify)?;
    Ok(best)
}

/// Distinct candidate tile heights: the largest that fits, and splits that spread `total` rows
/// (in `groups` independent groups) over `cores`.
pub(crate) fn row_candidates(max_rows: u64, rows: u64, groups: u64, cores: u64) -> Vec<u64> {
    let max_rows = max_rows.clamp(1, rows.max(1));
    let per_group_cores = cores.div_ceil(groups.max(1)).max(1);
    let balanced = rows.div_ceil(per_group_cores).clamp(1, max_rows);
    let mut out = vec![max_rows, balanced, (balanced / 2).max(1)];
    out.sort_unstable();
    out.dedup();
    out
}

/// Dtypes vector arithmetic accepts on the target (`Cast` handles the 16-bit storage types).
pub(crate) fn float_storage(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}
