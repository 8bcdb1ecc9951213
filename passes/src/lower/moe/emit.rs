//! Statement and buffer constructors shared by the MoE vector kernels.

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, Buffer, Expr, GmTile, Layout, MemLevel, Param, ParamRole, Pipe, ReduceKind, ScalarSrc,
    Slice, Stmt, VecArg, VecOp,
};

use crate::tile::build;
pub use crate::tile::build::{c, for_, let_, set as set_at, tile, v, wait as wait_at};

/// The largest finite `f32`: written over a chosen score so the next `ReduceMax` skips it.
pub const MASK: f64 = f32::MIN as f64;

/// `SetFlag<from_to>(event)`.
pub fn set(from: Pipe, to: Pipe, event: u64) -> Stmt {
    Stmt::SetFlag {
        from,
        to,
        event: c(event),
    }
}

/// `WaitFlag<from_to>(event)`.
pub fn wait(from: Pipe, to: Pipe, event: u64) -> Stmt {
    Stmt::WaitFlag {
        from,
        to,
        event: c(event),
    }
}

/// `SetFlag` then `WaitFlag` on the same event: `to` waits for everything `from` issued so far.
pub fn sync(from: Pipe, to: Pipe, event: u64) -> [Stmt; 2] {
    [set(from, to, event), wait(from, to, event)]
}

/// A rectangle of a GM parameter (batch 0).
pub fn gm(param: usize, at: (Expr, Expr), size: (Expr, Expr)) -> GmTile {
    build::gm(param, c(0), at, size)
}

/// A run of a UB buffer stage.
pub fn at(buf: BufId, stage: Expr, offset: Expr) -> Slice {
    Slice { buf, stage, offset }
}

/// A run of stage 0 of a single-stage buffer.
pub fn at0(buf: BufId, offset: Expr) -> Slice {
    at(buf, c(0), offset)
}

/// A count-form vector operation.
pub fn vop(op: VecOp, dst: Slice, srcs: Vec<VecArg>, count: Expr) -> Stmt {
    Stmt::Vector {
        op,
        dst,
        srcs,
        count,
    }
}

/// `dst = op(src)` for a unary op.
pub fn unary(op: VecOp, dst: Slice, src: Slice, count: Expr) -> Stmt {
    vop(op, dst, vec![VecArg::Slice(src)], count)
}

/// `dst = op(a, b)` for a binary op on two runs.
pub fn binary(op: VecOp, dst: Slice, a: Slice, b: Slice, count: Expr) -> Stmt {
    vop(op, dst, vec![VecArg::Slice(a), VecArg::Slice(b)], count)
}

/// `dst = op(a, s)` for a run and a scalar operand.
pub fn scalar_op(op: VecOp, dst: Slice, a: Slice, s: VecArg, count: Expr) -> Stmt {
    vop(op, dst, vec![VecArg::Slice(a), s], count)
}

/// `dst[0] = reduce(src[0..count])` (`MaxIndex` also writes `dst[1]`).
pub fn reduce(kind: ReduceKind, dst: Slice, src: Slice, count: Expr) -> Stmt {
    Stmt::Reduce {
        kind,
        dst,
        src,
        count,
    }
}

/// Reads one UB element into `var`.
pub fn load_ub(var: &str, src: Slice, planned: Expr) -> Stmt {
    Stmt::LoadScalar {
        var: var.to_string(),
        src: ScalarSrc::Ub(src),
        planned,
    }
}

/// Reads element `index` of GM parameter `param` into `var`.
pub fn load_gm(var: &str, param: usize, index: Expr, planned: Expr) -> Stmt {
    Stmt::LoadScalar {
        var: var.to_string(),
        src: ScalarSrc::Gm { param, index },
        planned,
    }
}

/// Writes one UB element.
pub fn set_value(dst: Slice, value: VecArg) -> Stmt {
    Stmt::SetValue { dst, value }
}

/// Copies one f32 element from anywhere in UB to anywhere in UB on the vector pipe: `Duplicate`
/// into the 32-byte aligned `tmp`, then a one-element `ReduceSum` (whose destination needs no
/// alignment).
pub fn copy_element(src: Slice, dst: Slice, tmp: Slice) -> [Stmt; 2] {
    [
        vop(
            VecOp::Duplicate,
            tmp.clone(),
            vec![VecArg::Element(src)],
            c(1),
        ),
        reduce(ReduceKind::Sum, dst, tmp, c(1)),
    ]
}

/// A UB buffer (offset assigned by the planner).
pub fn ub(name: &str, dtype: DType, rows: u64, cols: u64, stages: u64) -> Buffer {
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

/// A GM parameter.
pub fn param(name: &str, dtype: DType, shape: Vec<u64>, role: ParamRole) -> Param {
    Param {
        name: name.to_string(),
        dtype,
        shape,
        role,
    }
}

/// Elements of `dtype` in 32 bytes: a UB row pitch is a multiple of it.
pub fn align_elems(dtype: DType) -> u64 {
    (256 / dtype.bits().max(1)) as u64
}

/// `n` rounded up to whole 32-byte UB granules of `dtype`.
pub fn pitch(n: u64, dtype: DType) -> u64 {
    n.div_ceil(align_elems(dtype)) * align_elems(dtype)
}

/// Bytes of one stage of a `rows × cols` UB buffer, rounded to the 32-byte alignment.
pub fn ub_bytes(dtype: DType, rows: u64, cols: u64) -> u64 {
    (dtype.storage_bytes((rows * cols) as usize) as u64).div_ceil(32) * 32
}
