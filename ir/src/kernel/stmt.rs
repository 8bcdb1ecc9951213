//! Statements of the kernel IR and the memory regions they name.

use super::BufId;
use super::expr::Expr;
use crate::DType;

/// A hardware pipe (instruction queue) of an AI core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pipe {
    /// Scalar unit.
    S,
    /// Vector unit (AIV).
    V,
    /// Cube unit (AIC).
    M,
    /// L1 → L0A/L0B moves (AIC).
    Mte1,
    /// GM → L1 / UB moves.
    Mte2,
    /// UB → GM moves (AIV).
    Mte3,
    /// Fixpipe L0C → GM (AIC).
    Fix,
    /// Every pipe (only for barriers).
    All,
}

impl Pipe {
    /// The AscendC `pipe_t` spelling without the `PIPE_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Pipe::S => "S",
            Pipe::V => "V",
            Pipe::M => "M",
            Pipe::Mte1 => "MTE1",
            Pipe::Mte2 => "MTE2",
            Pipe::Mte3 => "MTE3",
            Pipe::Fix => "FIX",
            Pipe::All => "ALL",
        }
    }

    /// The real pipes, in a fixed order (indices used by the verifier and the cost model).
    pub const REAL: [Pipe; 7] = [
        Pipe::S,
        Pipe::V,
        Pipe::M,
        Pipe::Mte1,
        Pipe::Mte2,
        Pipe::Mte3,
        Pipe::Fix,
    ];

    /// Position in [`Pipe::REAL`] (`None` for [`Pipe::All`]).
    pub fn index(self) -> Option<usize> {
        Pipe::REAL.iter().position(|p| *p == self)
    }
}

/// A rectangular region of one stage of a 2-D on-chip buffer, in logical (row, column)
/// coordinates of the stored matrix; the buffer's layout says where each element is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    /// The buffer.
    pub buf: BufId,
    /// Which stage (`0..stages`).
    pub stage: Expr,
    /// First row.
    pub row: Expr,
    /// First column.
    pub col: Expr,
    /// Row count.
    pub rows: Expr,
    /// Column count.
    pub cols: Expr,
}

/// A rectangular region of a GM parameter: rows and columns of its last two dimensions, in
/// matrix `batch` of the flattened leading dimensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GmTile {
    /// Index in [`super::Kernel::params`].
    pub param: usize,
    /// Index into the flattened leading dimensions (0 for a 2-D parameter).
    pub batch: Expr,
    /// First row.
    pub row: Expr,
    /// First column.
    pub col: Expr,
    /// Row count.
    pub rows: Expr,
    /// Column count.
    pub cols: Expr,
}

/// A contiguous run of elements of one stage of a UB buffer, starting at `offset` elements
/// (row-major position in the ND stage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// The buffer (at level UB).
    pub buf: BufId,
    /// Which stage.
    pub stage: Expr,
    /// First element.
    pub offset: Expr,
}

/// A vector operand.
#[derive(Clone, Debug, PartialEq)]
pub enum VecArg {
    /// A run of `count` elements.
    Slice(Slice),
    /// An immediate scalar.
    Imm(f64),
    /// One element of a UB buffer read by the scalar unit (`GetValue`) and used as a scalar.
    Element(Slice),
    /// An integer expression evaluated by the scalar unit, converted to the operand's dtype
    /// (e.g. an expert id or a row count written with `Duplicate` or `SetValue`).
    Scalar(Expr),
}

/// A count-form vector operation: `dst[i] = op(srcs[..][i])` for `i < count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VecOp {
    /// `a + b` (two slices).
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `max(a, b)`.
    Max,
    /// `min(a, b)`.
    Min,
    /// `a + s` (slice, scalar).
    Adds,
    /// `a * s`.
    Muls,
    /// `max(a, s)`.
    Maxs,
    /// `min(a, s)`.
    Mins,
    /// `exp(a)`.
    Exp,
    /// `ln(a)`.
    Ln,
    /// `|a|`.
    Abs,
    /// `sqrt(a)`.
    Sqrt,
    /// `1 / sqrt(a)`.
    Rsqrt,
    /// `1 / a`.
    Reciprocal,
    /// `max(a, 0)`.
    Relu,
    /// `dst = s` (one scalar operand).
    Duplicate,
    /// Element type conversion; the dtypes are those of the source and destination buffers,
    /// rounding to nearest even (`CAST_RINT`) when narrowing, exact (`CAST_NONE`) when widening.
    Cast,
    /// `floor(a)` on f32: an f32 → f32 `Cast` with `CAST_FLOOR`.
    Floor,
    /// `ceil(a)` on f32: an f32 → f32 `Cast` with `CAST_CEIL`.
    Ceil,
    /// `a` rounded to the nearest integer, ties to even, on f32: an f32 → f32 `Cast` with
    /// `CAST_RINT`.
    Rint,
}

impl VecOp {
    /// The AscendC function name.
    pub fn name(self) -> &'static str {
        match self {
            VecOp::Add => "Add",
            VecOp::Sub => "Sub",
            VecOp::Mul => "Mul",
            VecOp::Div => "Div",
            VecOp::Max => "Max",
            VecOp::Min => "Min",
            VecOp::Adds => "Adds",
            VecOp::Muls => "Muls",
            VecOp::Maxs => "Maxs",
            VecOp::Mins => "Mins",
            VecOp::Exp => "Exp",
            VecOp::Ln => "Ln",
            VecOp::Abs => "Abs",
            VecOp::Sqrt => "Sqrt",
            VecOp::Rsqrt => "Rsqrt",
            VecOp::Reciprocal => "Reciprocal",
            VecOp::Relu => "Relu",
            VecOp::Duplicate => "Duplicate",
            VecOp::Cast | VecOp::Floor | VecOp::Ceil | VecOp::Rint => "Cast",
        }
    }

    /// How the kernel IR text prints it: the AscendC function name, or the rounding of a
    /// rounding `Cast`.
    pub fn mnemonic(self) -> &'static str {
        match self {
            VecOp::Floor => "Floor",
            VecOp::Ceil => "Ceil",
            VecOp::Rint => "Rint",
            other => other.name(),
        }
    }

    /// The operand kinds it takes: `true` for a slice, `false` for a scalar.
    pub fn operand_kinds(self) -> &'static [bool] {
        match self {
            VecOp::Add | VecOp::Sub | VecOp::Mul | VecOp::Div | VecOp::Max | VecOp::Min => {
                &[true, true]
            }
            VecOp::Adds | VecOp::Muls | VecOp::Maxs | VecOp::Mins => &[true, false],
            VecOp::Duplicate => &[false],
            VecOp::Exp
            | VecOp::Ln
            | VecOp::Abs
            | VecOp::Sqrt
            | VecOp::Rsqrt
            | VecOp::Reciprocal
            | VecOp::Relu
            | VecOp::Cast
            | VecOp::Floor
            | VecOp::Ceil
            | VecOp::Rint => &[true],
        }
    }

    /// Vector repeats one 256-byte repeat of this op costs, relative to `Add` (model figure).
    pub fn relative_cost(self) -> f64 {
        match self {
            VecOp::Exp
            | VecOp::Ln
            | VecOp::Sqrt
            | VecOp::Rsqrt
            | VecOp::Div
            | VecOp::Reciprocal => 2.0,
            _ => 1.0,
        }
    }
}

/// A row reduction to one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReduceKind {
    /// `ReduceSum`.
    Sum,
    /// `ReduceMax`.
    Max,
    /// `ReduceMax` with `calIndex = true`: `dst[0]` = the maximum, `dst[1]` = the index of its
    /// first occurrence stored in the bits of the element type (read it back with
    /// [`Stmt::LoadScalar`], which returns the bits of a float element as an unsigned integer).
    MaxIndex,
}

/// Where a [`Stmt::LoadScalar`] reads.
#[derive(Clone, Debug, PartialEq)]
pub enum ScalarSrc {
    /// `GlobalTensor::GetValue(index)`: element `index` (flat, row-major) of a GM parameter.
    Gm {
        /// Index in [`super::Kernel::params`].
        param: usize,
        /// Flat element index.
        index: Expr,
    },
    /// `LocalTensor::GetValue(offset)`: one element of a UB buffer stage.
    Ub(Slice),
}

/// One statement. Loops and `let` run on the scalar unit; every other statement is one
/// instruction on the pipe given by [`Stmt::pipe`].
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// Binds `var` to `value` for the rest of the enclosing body.
    Let {
        /// Variable name.
        var: String,
        /// Its value.
        value: Expr,
    },
    /// `for var in 0..extent { body }`.
    For {
        /// Loop variable.
        var: String,
        /// Trip count (evaluated once, before the first iteration).
        extent: Expr,
        /// The body is software-pipelined over its multi-stage buffers: the cost model overlaps
        /// the pipes of consecutive iterations. Semantics are unchanged.
        pipelined: bool,
        /// Loop body.
        body: Vec<Stmt>,
    },
    /// MTE2: GM → L1 (ND → NZ, `DataCopy` with `Nd2NzParams`) or GM → UB (ND, `DataCopy` /
    /// `DataCopyPad`). The region sizes of `src` and `dst` are equal; partial fractals are
    /// zero-padded in columns.
    CopyIn {
        /// Destination region (L1 or UB).
        dst: Tile,
        /// Source region.
        src: GmTile,
    },
    /// MTE1: L1 (NZ) → L0A (ZZ) or L0B (ZN), `LoadData` with `LoadData2DParams`. With
    /// `transpose`, `dst` holds the transpose of `src` (`dst.rows = src.cols`).
    LoadL0 {
        /// Destination region at L0A or L0B, starting at (0, 0).
        dst: Tile,
        /// Source region in L1.
        src: Tile,
        /// Transpose 16×16 fractals (16-bit types only).
        transpose: bool,
    },
    /// Cube: `c[m×n] = (init ? 0 : c) + a[m×k] · b[k×n]` (`Mmad`, `cmatrixInitVal = init`).
    /// `m` and `n` are multiples of 16; `k` is the true depth.
    Mmad {
        /// Accumulator tile in L0C at (0, 0).
        c: BufId,
        /// Stage of `c`.
        c_stage: Expr,
        /// Left operand in L0A at (0, 0).
        a: BufId,
        /// Stage of `a`.
        a_stage: Expr,
        /// Right operand in L0B at (0, 0).
        b: BufId,
        /// Stage of `b`.
        b_stage: Expr,
        /// Rows of the result.
        m: Expr,
        /// Columns of the result.
        n: Expr,
        /// Reduction depth.
        k: Expr,
        /// Overwrite instead of accumulate when this evaluates to non-zero (first K step).
        init: Expr,
    },
    /// Fixpipe L0C (NZ) → GM (ND): converts to the GM dtype (`F322F16`, `F322BF16`, or none),
    /// optional ReLU, optional atomic accumulation into GM (split-K).
    Fixpipe {
        /// Destination region.
        dst: GmTile,
        /// Source region in L0C (starts at (0, 0)).
        src: Tile,
        /// Apply `max(x, 0)` after the conversion.
        relu: bool,
        /// Add into GM (`SetAtomicAdd<float>`) instead of overwriting.
        atomic_add: bool,
    },
    /// MTE3: UB (ND) → GM (`DataCopy` / `DataCopyPad`).
    CopyOut {
        /// Destination region.
        dst: GmTile,
        /// Source region in UB.
        src: Tile,
    },
    /// Vector: one count-form op.
    Vector {
        /// The operation.
        op: VecOp,
        /// Destination run.
        dst: Slice,
        /// Operands, as [`VecOp::operand_kinds`] says.
        srcs: Vec<VecArg>,
        /// Element count.
        count: Expr,
    },
    /// Vector: `dst[0] = reduce(src[0..count])`.
    Reduce {
        /// Sum or max.
        kind: ReduceKind,
        /// Destination (one element).
        dst: Slice,
        /// Source run.
        src: Slice,
        /// Element count.
        count: Expr,
    },
    /// Scalar unit: reads one element and binds it to `var` for the rest of the enclosing body,
    /// like [`Stmt::Let`]. Integer elements give their value; float elements give their bit
    /// pattern as an unsigned integer (the index a `ReduceMax` with `calIndex` stores).
    /// Data-dependent control flow (routing, gathers, grouped GEMMs over runtime group sizes)
    /// is built from these.
    LoadScalar {
        /// Variable name.
        var: String,
        /// The element read.
        src: ScalarSrc,
        /// The value static analyses (the verifier's walk, the cost model) bind instead of
        /// reading data: the planned profile, e.g. `tokens / experts` rows per expert. Executors
        /// read the real element.
        planned: Expr,
    },
    /// Scalar unit: `LocalTensor::SetValue(offset, value)` writes one UB element; `value` is an
    /// immediate or an integer expression ([`VecArg::Imm`] or [`VecArg::Scalar`]) converted to
    /// the buffer's dtype.
    SetValue {
        /// The element written (its `offset` is the element index in the stage).
        dst: Slice,
        /// The value.
        value: VecArg,
    },
    /// `SetFlag<HardEvent::from_to>(event)`.
    SetFlag {
        /// Source pipe.
        from: Pipe,
        /// Destination pipe.
        to: Pipe,
        /// Event id (0–5), usually the stage being handed over.
        event: Expr,
    },
    /// `WaitFlag<HardEvent::from_to>(event)`.
    WaitFlag {
        /// Source pipe.
        from: Pipe,
        /// Destination pipe.
        to: Pipe,
        /// Event id (0–5), usually the stage being handed over.
        event: Expr,
    },
    /// `PipeBarrier<pipe>()`.
    Barrier {
        /// The pipe (`All` allowed, `S` not).
        pipe: Pipe,
    },
    /// `CrossCoreSetFlag<2, pipe>(flag)`: signals the partner core(s) of a MIX kernel.
    CrossCoreSet {
        /// Pipe whose earlier work must finish first.
        pipe: Pipe,
        /// Flag id (0–10).
        flag: u8,
    },
    /// `CrossCoreWaitFlag(flag)`.
    CrossCoreWait {
        /// Flag id (0–10).
        flag: u8,
    },
}

impl Stmt {
    /// The pipe that executes the statement (`S` for control flow).
    pub fn pipe(&self) -> Pipe {
        match self {
            Stmt::Let { .. }
            | Stmt::For { .. }
            | Stmt::SetFlag { .. }
            | Stmt::WaitFlag { .. }
            | Stmt::LoadScalar { .. }
            | Stmt::SetValue { .. } => Pipe::S,
            Stmt::CopyIn { .. } => Pipe::Mte2,
            Stmt::LoadL0 { .. } => Pipe::Mte1,
            Stmt::Mmad { .. } => Pipe::M,
            Stmt::Fixpipe { .. } => Pipe::Fix,
            Stmt::CopyOut { .. } => Pipe::Mte3,
            Stmt::Vector { .. } | Stmt::Reduce { .. } => Pipe::V,
            Stmt::Barrier { pipe } | Stmt::CrossCoreSet { pipe, .. } => *pipe,
            Stmt::CrossCoreWait { .. } => Pipe::S,
        }
    }
}

/// The dtype an Mmad accumulates in for an input dtype, per the arch-2201 table.
pub fn mmad_accumulator(input: DType) -> Option<DType> {
    match input {
        DType::F16 | DType::BF16 | DType::F32 => Some(DType::F32),
        DType::I8 => Some(DType::I32),
        _ => None,
    }
}
