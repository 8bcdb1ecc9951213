//! Where each core instance's on-chip memory lives on the host: one byte arena per instance
//! holding every memory level of its side at the buffers' planned offsets, plus the Cube's
//! packing scratch.

use std::collections::BTreeMap;

use cubevec_ir::DType;
use cubevec_ir::kernel::{Buffer, Kernel, Layout, MemLevel, Side, fractal_cols};
use cubevec_ir::target::Target;

use crate::error::CpuError;

/// Bytes past the end of every arena that vector code may read (never write) when it loads a
/// whole SIMD register for the last few elements of a run.
pub const SLACK: u64 = 64;

/// Per-level stage alignment, taken from a target description.
#[derive(Clone, Debug)]
pub struct Alignments(BTreeMap<MemLevel, u64>);

impl Alignments {
    /// The stage alignments of `target`'s buffers.
    pub fn of(target: &Target) -> Alignments {
        let levels = [
            MemLevel::L1,
            MemLevel::L0A,
            MemLevel::L0B,
            MemLevel::L0C,
            MemLevel::Ub,
            MemLevel::BiasTable,
        ];
        Alignments(
            levels
                .into_iter()
                .filter_map(|l| target.buffer(l).map(|s| (l, s.align.max(1))))
                .collect(),
        )
    }

    /// Alignment of stages at `level` (32 bytes when the target does not say).
    pub fn get(&self, level: MemLevel) -> u64 {
        self.0.get(&level).copied().unwrap_or(32)
    }
}

/// The arena of one side: level base offsets, scratch offsets and the total size.
#[derive(Clone, Debug, Default)]
pub struct Arena {
    /// Byte offset of each level's address 0 in the arena.
    pub levels: BTreeMap<MemLevel, u64>,
    /// Packed f32/i32 copy of the left Mmad operand (cube side only).
    pub pack_a: u64,
    /// Packed f32/i32 copy of the right Mmad operand (cube side only).
    pub pack_b: u64,
    /// Total bytes, slack included.
    pub bytes: u64,
}

/// Arenas for both sides and the stage strides of every buffer.
#[derive(Clone, Debug)]
pub struct LocalPlan {
    /// The cube side's arena.
    pub cube: Arena,
    /// The vector side's arena.
    pub vector: Arena,
    /// Stage stride of each buffer, by buffer index.
    pub strides: Vec<u64>,
}

impl LocalPlan {
    /// The arena of `side`.
    pub fn arena(&self, side: Side) -> &Arena {
        match side {
            Side::Cube => &self.cube,
            Side::Vector => &self.vector,
        }
    }
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// Checks the buffers' static shape (the address functions assume whole fractals in the
/// level's layout) and lays out both arenas.
pub fn plan(kernel: &Kernel, align: &Alignments) -> Result<LocalPlan, CpuError> {
    let unsupported = |b: &Buffer, message: String| CpuError::Unsupported {
        kernel: kernel.name.clone(),
        message: format!("buffer `{}`: {message}", b.name),
    };
    let mut ends: BTreeMap<MemLevel, u64> = BTreeMap::new();
    let mut strides = Vec::new();
    let (mut pack_a, mut pack_b) = (0u64, 0u64);
    for b in &kernel.buffers {
        let required = match b.level {
            MemLevel::Gm => return Err(unsupported(b, "buffers cannot live in GM".into())),
            MemLevel::L1 | MemLevel::L0C => Layout::Nz,
            MemLevel::L0A => Layout::Zz,
            MemLevel::L0B => Layout::Zn,
            MemLevel::Ub | MemLevel::BiasTable => Layout::Nd,
        };
        if b.layout != required {
            return Err(unsupported(
                b,
                format!("layout {} at {}", b.layout.name(), b.level.name()),
            ));
        }
        if b.dtype.bits() < 8 || b.rows == 0 || b.cols == 0 || b.stages == 0 {
            return Err(unsupported(
                b,
                format!("{} x {} {} x{}", b.rows, b.cols, b.dtype, b.stages),
            ));
        }
        let fc = fractal_cols(b.level, b.dtype);
        let (fr, fcol) = match b.layout {
            Layout::Nd => (1, 1),
            Layout::Zn => (fc, 16),
            Layout::Nz | Layout::Zz => (16, fc),
        };
        if !b.rows.is_multiple_of(fr) || !b.cols.is_multiple_of(fcol) {
            return Err(unsupported(
                b,
                format!(
                    "{} x {} is not whole {fr} x {fcol} fractals",
                    b.rows, b.cols
                ),
            ));
        }
        if b.level == MemLevel::L0C && !matches!(b.dtype, DType::F32 | DType::I32) {
            return Err(unsupported(
                b,
                format!("L0C holds f32 or i32, not {}", b.dtype),
            ));
        }
        let stride = b.stage_stride(align.get(b.level));
        strides.push(stride);
        let end = ends.entry(b.level).or_insert(0);
        *end = (*end).max(b.offset + stride * b.stages);
        let packed = b.rows * b.cols * 4;
        match b.level {
            MemLevel::L0A => pack_a = pack_a.max(packed),
            MemLevel::L0B => pack_b = pack_b.max(packed),
            _ => {}
        }
    }
    let mut cube = Arena::default();
    let mut vector = Arena::default();
    for (level, end) in ends {
        let arena = match level.side() {
            Some(Side::Vector) => &mut vector,
            _ => &mut cube,
        };
        arena.levels.insert(level, arena.bytes);
        arena.bytes = round_up(arena.bytes + end, 64);
    }
    cube.pack_a = cube.bytes;
    cube.pack_b = round_up(cube.pack_a + pack_a, 64);
    cube.bytes = round_up(cube.pack_b + pack_b, 64);
    for arena in [&mut cube, &mut vector] {
        arena.bytes += SLACK;
    }
    Ok(LocalPlan {
        cube,
        vector,
        strides,
    })
}
