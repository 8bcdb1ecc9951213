//! Helpers shared by the integration tests that build kernels by hand and run them on a back
//! end: deterministic data, and short constructors for kernel IR parameters, buffers, slices
//! and flag pairs.

use cubevec_ir::kernel::{
    BufId, Buffer, Expr, Layout, MemLevel, Param, ParamRole, Pipe, Slice, Stmt,
};
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Tensor};

/// The target every hand-built kernel is planned for.
pub fn target() -> Target {
    Target::by_name("ascend910b2").expect("target")
}

/// Deterministic values in [-1, 1) (xorshift, so every platform gets the same data).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A tensor of `values(…, seed)` rounded to `dtype`.
pub fn random(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_f32(dtype, shape.to_vec(), &values(shape.iter().product(), seed))
}

/// A GM parameter.
pub fn param(name: &str, dtype: DType, shape: &[u64], role: ParamRole) -> Param {
    Param {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        role,
    }
}

/// A one-stage buffer at `level` in that level's usual layout (NZ in L1/L0C, ZZ in L0A, ZN in
/// L0B, ND in UB); the planner assigns its offset.
pub fn buffer(name: &str, level: MemLevel, dtype: DType, rows: u64, cols: u64) -> Buffer {
    let layout = match level {
        MemLevel::L1 | MemLevel::L0C => Layout::Nz,
        MemLevel::L0A => Layout::Zz,
        MemLevel::L0B => Layout::Zn,
        _ => Layout::Nd,
    };
    Buffer {
        name: name.into(),
        level,
        dtype,
        layout,
        rows,
        cols,
        stages: 1,
        offset: 0,
    }
}

/// A constant expression.
pub fn c(v: u64) -> Expr {
    Expr::c(v)
}

/// The elements of stage 0 of `buf` from `offset` on.
pub fn slice(buf: BufId, offset: Expr) -> Slice {
    Slice {
        buf,
        stage: c(0),
        offset,
    }
}

/// `SetFlag` immediately followed by its `WaitFlag` (event 0): `to` waits for `from`.
pub fn flag(from: Pipe, to: Pipe) -> [Stmt; 2] {
    [
        Stmt::SetFlag {
            from,
            to,
            event: c(0),
        },
        Stmt::WaitFlag {
            from,
            to,
            event: c(0),
        },
    ]
}
