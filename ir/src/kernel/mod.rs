//! The kernel IR: tiled programs over explicit Ascend memory levels.
//!
//! A [`Kernel`] is what both back ends consume: the AscendC emitter turns every statement into
//! one AscendC call, the CPU JIT runs the same loops over host buffers. Nothing is implicit:
//! buffers are placed at byte offsets in a memory level with a layout and a stage count, every
//! data movement names its source and destination regions, and every cross-pipe dependency is an
//! explicit flag. See `docs/kernel-ir.md` for the full contract.
//!
//! - [`expr`]: integer index expressions.
//! - [`stmt`]: statements (loops, moves, compute, sync) and the regions they touch.
//! - [`exec`]: walks a program with concrete loop variables, one block at a time.
//! - [`eval`]: the reference executor: runs kernels and programs over GM data with the
//!   hardware's numerics.
//! - [`program`]: a whole model as GM tensors and kernel launches.
//! - [`print`](mod@print): the deterministic textual form.
//! - [`verify`](mod@verify): capacity, alignment, bounds, initialisation and synchronisation checks.

pub mod eval;
pub mod exec;
pub mod expr;
pub mod print;
pub mod program;
pub mod stmt;
pub mod verify;

use std::collections::BTreeMap;
use std::fmt;

use crate::DType;
use crate::target::Target;

pub use eval::{EvalError, GmData, ProgramMemory, execute, run_program};
pub use expr::{Env, Expr, ExprError};
pub use program::{
    Binding, GmTensor, Launch, MemoryPlan, Program, ProgramError, TensorId, TensorKind,
};
pub use stmt::{GmTile, Pipe, ReduceKind, ScalarSrc, Slice, Stmt, Tile, VecArg, VecOp};
pub use verify::{KernelError, verify, verify_with_threads};

/// Which cores a kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CoreType {
    /// Cube cores only (`KERNEL_TYPE_AIC_ONLY`); only the cube program exists.
    Aic,
    /// Vector cores only (`KERNEL_TYPE_AIV_ONLY`); only the vector program exists.
    Aiv,
    /// One AIC with its two AIVs per block (`KERNEL_TYPE_MIX_AIC_1_2`); both programs exist.
    Mix1To2,
}

impl CoreType {
    /// Lower-case name used in the textual form.
    pub fn name(self) -> &'static str {
        match self {
            CoreType::Aic => "aic",
            CoreType::Aiv => "aiv",
            CoreType::Mix1To2 => "mix1:2",
        }
    }
}

/// The two programs of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The program of the AIC (Cube core).
    Cube,
    /// The program of each AIV (Vector core).
    Vector,
}

/// A memory level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemLevel {
    /// Global memory (HBM behind L2); kernel parameters live here.
    Gm,
    /// AIC L1 buffer (TPosition A1/B1/C1).
    L1,
    /// Left Cube operand buffer (A2).
    L0A,
    /// Right Cube operand buffer (B2).
    L0B,
    /// Cube accumulator buffer (CO1).
    L0C,
    /// AIV unified buffer (VECIN/VECOUT/VECCALC).
    Ub,
    /// Bias table (C2).
    BiasTable,
}

impl MemLevel {
    /// Name used in the textual form.
    pub fn name(self) -> &'static str {
        match self {
            MemLevel::Gm => "gm",
            MemLevel::L1 => "l1",
            MemLevel::L0A => "l0a",
            MemLevel::L0B => "l0b",
            MemLevel::L0C => "l0c",
            MemLevel::Ub => "ub",
            MemLevel::BiasTable => "bt",
        }
    }

    /// The program that owns buffers of this level (`None` for GM, which both share).
    pub fn side(self) -> Option<Side> {
        match self {
            MemLevel::Gm => None,
            MemLevel::Ub => Some(Side::Vector),
            MemLevel::L1 | MemLevel::L0A | MemLevel::L0B | MemLevel::L0C | MemLevel::BiasTable => {
                Some(Side::Cube)
            }
        }
    }
}

/// How a 2-D buffer stores its `rows × cols` elements.
///
/// Fractal layouts use fractals of 16 rows × `c0` columns, `c0` = 32 bytes of the element type
/// (16 for L0C, whose fractals are 16×16 accumulator elements). Names follow the AscendC
/// convention: outer order first, inner order second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layout {
    /// Row-major, row pitch = `cols`.
    Nd,
    /// Fractals column-major, each fractal row-major (L1, L0C).
    Nz,
    /// Fractals row-major, each fractal row-major (L0A).
    Zz,
    /// Fractals row-major, each fractal column-major (L0B).
    Zn,
}

impl Layout {
    /// Name used in the textual form.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nd => "nd",
            Layout::Nz => "nz",
            Layout::Zz => "zz",
            Layout::Zn => "zn",
        }
    }
}

/// What the kernel does with a GM parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamRole {
    /// Read only.
    Input,
    /// Written; its previous contents do not matter.
    Output,
    /// Written by accumulation (`Fixpipe` with atomic add, split-K): the launcher fills it with
    /// zeros before the kernel starts.
    OutputZeroed,
    /// Scratch shared between the cube and vector programs.
    Workspace,
}

/// A GM tensor parameter: row-major (ND), densely packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Name, unique in the kernel.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape; the last two dimensions are the matrix a [`GmTile`] indexes, the leading ones are
    /// flattened into its `batch` index. A rank-1 tensor is a single row.
    pub shape: Vec<u64>,
    /// Read, written or scratch.
    pub role: ParamRole,
}

impl Param {
    /// `(batch, rows, cols)`: the product of the leading dimensions, then the matrix.
    pub fn matrix_dims(&self) -> (u64, u64, u64) {
        match self.shape.as_slice() {
            [] => (1, 1, 1),
            [c] => (1, 1, *c),
            [lead @ .., r, c] => (lead.iter().product(), *r, *c),
        }
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.dtype
            .storage_bytes(self.shape.iter().product::<u64>() as usize) as u64
    }
}

/// Index of a buffer in [`Kernel::buffers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// An on-chip buffer: `stages` copies of a `rows × cols` tile at one memory level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Name, unique in the kernel.
    pub name: String,
    /// Where it lives (never GM).
    pub level: MemLevel,
    /// Element type.
    pub dtype: DType,
    /// Storage order of each stage.
    pub layout: Layout,
    /// Rows of one stage (a multiple of 16 for fractal layouts).
    pub rows: u64,
    /// Columns of one stage (a multiple of `c0` for fractal layouts; 32-byte multiple in UB).
    pub cols: u64,
    /// Number of stages (2 = double buffering); a statement picks one with its `stage`.
    pub stages: u64,
    /// Byte offset of stage 0 in the level.
    pub offset: u64,
}

impl Buffer {
    /// Bytes of one stage, before alignment.
    pub fn stage_bytes(&self) -> u64 {
        self.dtype.storage_bytes((self.rows * self.cols) as usize) as u64
    }

    /// Distance in bytes between stages: `stage_bytes` rounded up to `align`.
    pub fn stage_stride(&self, align: u64) -> u64 {
        self.stage_bytes().div_ceil(align.max(1)) * align.max(1)
    }

    /// Bytes occupied by all stages.
    pub fn total_bytes(&self, align: u64) -> u64 {
        self.stage_stride(align) * self.stages
    }

    /// Columns of one fractal for this buffer: 16 in L0C, otherwise 32 bytes of elements.
    pub fn fractal_cols(&self) -> u64 {
        fractal_cols(self.level, self.dtype)
    }
}

/// Columns of one fractal of `dtype` at `level`: 16 in L0C, otherwise 32 bytes of elements.
pub fn fractal_cols(level: MemLevel, dtype: DType) -> u64 {
    if level == MemLevel::L0C {
        16
    } else {
        (256 / dtype.bits().max(1)) as u64
    }
}

/// A complete kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Name, a C identifier.
    pub name: String,
    /// Cores it runs on.
    pub core: CoreType,
    /// Launch block count (`numBlocks`): AICs for cube and MIX kernels, AIVs for vector kernels.
    /// Kernels are generated for bound shapes, so this is a number.
    pub blocks: u32,
    /// GM tensors, in argument order.
    pub params: Vec<Param>,
    /// On-chip buffers.
    pub buffers: Vec<Buffer>,
    /// The AIC program (empty for [`CoreType::Aiv`]).
    pub cube: Vec<Stmt>,
    /// The AIV program (empty for [`CoreType::Aic`]).
    pub vector: Vec<Stmt>,
    /// Descriptive tiling facts (tile sizes, swizzle, split-K), printed with the kernel.
    pub tiling: BTreeMap<String, u64>,
}

impl Kernel {
    /// A vector-only (AIV) kernel of `blocks` blocks running `vector`.
    pub fn vector(
        name: impl Into<String>,
        blocks: u32,
        params: Vec<Param>,
        buffers: Vec<Buffer>,
        vector: Vec<Stmt>,
        tiling: &[(&str, u64)],
    ) -> Kernel {
        Kernel {
            name: name.into(),
            core: CoreType::Aiv,
            blocks,
            params,
            buffers,
            cube: Vec::new(),
            vector,
            tiling: tiling.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
        }
    }

    /// The buffer with that id.
    pub fn buffer(&self, id: BufId) -> Option<&Buffer> {
        self.buffers.get(id.0 as usize)
    }

    /// The program of one side.
    pub fn program(&self, side: Side) -> &[Stmt] {
        match side {
            Side::Cube => &self.cube,
            Side::Vector => &self.vector,
        }
    }

    /// How many instances of a side's program run: `blocks` AICs, and `blocks` AIVs for a vector
    /// kernel or `2·blocks` AIVs for a MIX kernel.
    pub fn instances(&self, side: Side) -> u64 {
        match (self.core, side) {
            (CoreType::Aic, Side::Cube) | (CoreType::Aiv, Side::Vector) => self.blocks as u64,
            (CoreType::Mix1To2, Side::Cube) => self.blocks as u64,
            (CoreType::Mix1To2, Side::Vector) => 2 * self.blocks as u64,
            (CoreType::Aic, Side::Vector) | (CoreType::Aiv, Side::Cube) => 0,
        }
    }
}

/// Places buffers one after another in their level, honouring the target's alignment, and
/// returns their ids. Buffers are given without an offset; the offset field is overwritten.
#[derive(Debug, Default)]
pub struct BufferPlanner {
    buffers: Vec<Buffer>,
    next: BTreeMap<MemLevel, u64>,
}

impl BufferPlanner {
    /// An empty plan.
    pub fn new() -> BufferPlanner {
        BufferPlanner::default()
    }

    /// Adds a buffer at the next aligned offset of its level.
    pub fn add(&mut self, target: &Target, mut buffer: Buffer) -> BufId {
        let align = target.buffer(buffer.level).map_or(32, |s| s.align);
        let next = self.next.entry(buffer.level).or_insert(0);
        buffer.offset = next.div_ceil(align) * align;
        *next = buffer.offset + buffer.total_bytes(align);
        self.buffers.push(buffer);
        BufId(self.buffers.len() as u32 - 1)
    }

    /// The placed buffers.
    pub fn finish(self) -> Vec<Buffer> {
        self.buffers
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print::write_kernel(f, self)
    }
}
