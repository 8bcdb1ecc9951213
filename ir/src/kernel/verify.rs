//! The kernel verifier.
//!
//! Static checks: parameters, buffer layouts, fractal shapes, alignment, placement (no overlap)
//! and capacity per memory level, stages included. Dynamic checks, by walking the program of
//! every core instance with concrete values ([`super::exec`]): every region inside its buffer or
//! tensor, Cube/Fixpipe/vector operand rules of arch 2201, every buffer stage read only after it
//! was written, `SetFlag`/`WaitFlag` pairing, every cross-pipe hazard ordered by a flag or a
//! barrier, and balanced cross-core flags in MIX kernels.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use super::exec::run_instance;
use super::expr::{Env, Expr, ExprError};
use super::print::stmt_to_string;
use super::stmt::{
    GmTile, Pipe, ReduceKind, ScalarSrc, Slice, Stmt, Tile, VecArg, VecOp, mmad_accumulator,
};
use super::{BufId, Buffer, CoreType, Kernel, Layout, MemLevel, ParamRole, Side};
use crate::DType;
use crate::target::Target;

/// Everything the verifier (and the program walker) can reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// An expression did not evaluate.
    #[error("{context}: {source}")]
    Expr {
        /// Where the expression occurs.
        context: String,
        /// Why it failed.
        source: ExprError,
    },
    /// A loop trip count is negative.
    #[error("loop `{var}` has negative extent {extent}")]
    NegativeExtent {
        /// Loop variable.
        var: String,
        /// The extent.
        extent: i64,
    },
    /// The kernel header is inconsistent.
    #[error("kernel `{kernel}`: {message}")]
    Header {
        /// Kernel name.
        kernel: String,
        /// What is wrong.
        message: String,
    },
    /// A parameter is malformed.
    #[error("kernel `{kernel}`, parameter `{param}`: {message}")]
    Param {
        /// Kernel name.
        kernel: String,
        /// Parameter name.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// A buffer is malformed or misplaced.
    #[error("kernel `{kernel}`, buffer `{buffer}`: {message}")]
    Buffer {
        /// Kernel name.
        kernel: String,
        /// Buffer name.
        buffer: String,
        /// What is wrong.
        message: String,
    },
    /// A memory level is over-subscribed.
    #[error("kernel `{kernel}`: {level} needs {used} bytes but {capacity} are usable")]
    Capacity {
        /// Kernel name.
        kernel: String,
        /// Level name.
        level: &'static str,
        /// Bytes needed.
        used: u64,
        /// Bytes available.
        capacity: u64,
    },
    /// A statement breaks a rule when executed.
    #[error("kernel `{kernel}`, {side} instance {instance}: `{stmt}`: {message}")]
    Stmt {
        /// Kernel name.
        kernel: String,
        /// `cube` or `vector`.
        side: &'static str,
        /// Core instance (block index of that side).
        instance: u64,
        /// The statement.
        stmt: String,
        /// What is wrong.
        message: String,
    },
    /// Synchronisation is unbalanced at the end of a program.
    #[error("kernel `{kernel}`, {side} instance {instance}: {message}")]
    Sync {
        /// Kernel name.
        kernel: String,
        /// `cube` or `vector`.
        side: &'static str,
        /// Core instance.
        instance: u64,
        /// What is wrong.
        message: String,
    },
}

/// Verifies `kernel` for `target`. The core instances are simulated on all of the machine's
/// cores when the first one shows that the work is worth the threads.
pub fn verify(kernel: &Kernel, target: &Target) -> Result<(), KernelError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    verify_instances(kernel, target, threads, PARALLEL_AFTER)
}

/// [`verify`] with the core instances shared among `threads` threads (1: one after the other)
/// whatever the work. The result, and the failure reported, are the same for any `threads`.
pub fn verify_with_threads(
    kernel: &Kernel,
    target: &Target,
    threads: usize,
) -> Result<(), KernelError> {
    verify_instances(kernel, target, threads, Duration::ZERO)
}

fn verify_instances(
    kernel: &Kernel,
    target: &Target,
    threads: usize,
    parallel_after: Duration,
) -> Result<(), KernelError> {
    check_header(kernel)?;
    check_params(kernel)?;
    check_buffers(kernel, target)?;
    let instances: Vec<(Side, u64)> = [Side::Cube, Side::Vector]
        .into_iter()
        .flat_map(|side| (0..kernel.instances(side)).map(move |i| (side, i)))
        .collect();
    let cross = simulate_instances(kernel, &instances, threads, parallel_after)?;
    check_cross_core(kernel, &cross)
}

/// How long the first core instance's simulation must take before the others are simulated on
/// several threads (below it, starting threads would cost more than they save).
const PARALLEL_AFTER: Duration = Duration::from_micros(200);

/// Simulates every core instance in `instances`, their cross-core flag counts by instance. The
/// first is simulated alone; if it took at least `parallel_after`, the others are shared among
/// `threads` threads. Either way the first failure in `instances` order is the one reported.
fn simulate_instances(
    kernel: &Kernel,
    instances: &[(Side, u64)],
    threads: usize,
    parallel_after: Duration,
) -> Result<CrossCounts, KernelError> {
    let mut cross = CrossCounts::new();
    let Some((&first, rest)) = instances.split_first() else {
        return Ok(cross);
    };
    let start = Instant::now();
    cross.insert(first, simulate(kernel, first)?);
    if threads < 2 || start.elapsed() < parallel_after {
        for &instance in rest {
            cross.insert(instance, simulate(kernel, instance)?);
        }
        return Ok(cross);
    }
    let results = crate::parallel::map_ordered(rest, threads, |&i| simulate(kernel, i));
    for (&instance, result) in rest.iter().zip(results) {
        cross.insert(instance, result?);
    }
    Ok(cross)
}

/// Walks the program of one core instance through the simulator; its cross-core flag counts.
fn simulate(kernel: &Kernel, (side, instance): (Side, u64)) -> Result<FlagCounts, KernelError> {
    let mut sim = Sim::new(kernel, side, instance);
    let mut visit = |stmt: &Stmt, env: &Env| {
        sim.step(stmt, env).map_err(|message| KernelError::Stmt {
            kernel: kernel.name.clone(),
            side: side_name(side),
            instance,
            stmt: stmt_to_string(kernel, stmt),
            message,
        })
    };
    run_instance(kernel, side, instance, &mut visit)?;
    sim.finish()?;
    Ok(sim.cross)
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Cube => "cube",
        Side::Vector => "vector",
    }
}

fn check_header(kernel: &Kernel) -> Result<(), KernelError> {
    let fail = |message: String| {
        Err(KernelError::Header {
            kernel: kernel.name.clone(),
            message,
        })
    };
    let valid_name = !kernel.name.is_empty()
        && !kernel.name.starts_with(|c: char| c.is_ascii_digit())
        && kernel
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return fail("the name must be a C identifier".into());
    }
    if kernel.blocks == 0 || kernel.blocks > 65535 {
        return fail(format!("block count {} outside 1..=65535", kernel.blocks));
    }
    let (cube, vector) = (!kernel.cube.is_empty(), !kernel.vector.is_empty());
    let ok = match kernel.core {
        CoreType::Aic => cube && !vector,
        CoreType::Aiv => vector && !cube,
        CoreType::Mix1To2 => cube && vector,
    };
    if !ok {
        return fail(format!(
            "core type {} does not match the programs present (cube: {cube}, vector: {vector})",
            kernel.core.name()
        ));
    }
    Ok(())
}

fn check_params(kernel: &Kernel) -> Result<(), KernelError> {
    let mut names = BTreeSet::new();
    for p in &kernel.params {
        let fail = |message: String| {
            Err(KernelError::Param {
                kernel: kernel.name.clone(),
                param: p.name.clone(),
                message,
            })
        };
        if !names.insert(p.name.as_str()) {
            return fail("duplicate parameter name".into());
        }
        if p.shape.is_empty() || p.shape.contains(&0) {
            return fail(format!(
                "shape {:?} must be non-empty with no zero dimension",
                p.shape
            ));
        }
    }
    Ok(())
}

/// The layout a buffer must have at each level.
fn required_layout(level: MemLevel) -> Option<Layout> {
    match level {
        MemLevel::Gm => None,
        MemLevel::L1 | MemLevel::L0C => Some(Layout::Nz),
        MemLevel::L0A => Some(Layout::Zz),
        MemLevel::L0B => Some(Layout::Zn),
        MemLevel::Ub | MemLevel::BiasTable => Some(Layout::Nd),
    }
}

fn check_buffers(kernel: &Kernel, target: &Target) -> Result<(), KernelError> {
    let mut names = BTreeSet::new();
    let mut per_level: BTreeMap<MemLevel, Vec<&Buffer>> = BTreeMap::new();
    for b in &kernel.buffers {
        let fail = |message: String| {
            Err(KernelError::Buffer {
                kernel: kernel.name.clone(),
                buffer: b.name.clone(),
                message,
            })
        };
        if !names.insert(b.name.as_str()) {
            return fail("duplicate buffer name".into());
        }
        let Some(spec) = target.buffer(b.level) else {
            return fail("buffers cannot live in GM; use a parameter".into());
        };
        let allowed_side = match kernel.core {
            CoreType::Aic => Some(Side::Cube),
            CoreType::Aiv => Some(Side::Vector),
            CoreType::Mix1To2 => None,
        };
        if let (Some(side), Some(allowed)) = (b.level.side(), allowed_side)
            && side != allowed
        {
            return fail(format!(
                "level {} does not exist on the cores of a {} kernel",
                b.level.name(),
                kernel.core.name()
            ));
        }
        if b.rows == 0 || b.cols == 0 || b.stages == 0 {
            return fail("rows, columns and stages must be positive".into());
        }
        if Some(b.layout) != required_layout(b.level) {
            return fail(format!(
                "layout {} is not the layout of {}",
                b.layout.name(),
                b.level.name()
            ));
        }
        // Fractals are 16 × c0 in logical (row, column) terms, except in L0B whose fractals
        // hold c0 rows of K by 16 columns of N.
        let (fr, fc) = if b.layout == Layout::Zn {
            (b.fractal_cols(), 16)
        } else {
            (16, b.fractal_cols())
        };
        if b.layout != Layout::Nd && (!b.rows.is_multiple_of(fr) || !b.cols.is_multiple_of(fc)) {
            return fail(format!(
                "{}×{} is not a whole number of {fr}×{fc} fractals",
                b.rows, b.cols
            ));
        }
        if b.level == MemLevel::Ub && !(b.cols * b.dtype.bits() as u64).is_multiple_of(256) {
            return fail(format!(
                "a UB row of {} {} elements is not a multiple of 32 bytes",
                b.cols, b.dtype
            ));
        }
        if b.level == MemLevel::L0C && !matches!(b.dtype, DType::F32 | DType::I32) {
            return fail(format!("L0C holds f32 or i32, not {}", b.dtype));
        }
        if !b.offset.is_multiple_of(spec.align) {
            return fail(format!(
                "offset {} is not {}-byte aligned",
                b.offset, spec.align
            ));
        }
        per_level.entry(b.level).or_default().push(b);
    }
    for (level, mut buffers) in per_level {
        let Some(spec) = target.buffer(level) else {
            continue;
        };
        buffers.sort_by_key(|b| (b.offset, b.name.clone()));
        let mut end = 0u64;
        let mut previous: Option<&Buffer> = None;
        for b in buffers {
            if let Some(prev) = previous
                && b.offset < end
            {
                return Err(KernelError::Buffer {
                    kernel: kernel.name.clone(),
                    buffer: b.name.clone(),
                    message: format!("overlaps buffer `{}` in {}", prev.name, level.name()),
                });
            }
            end = b.offset + b.total_bytes(spec.align);
            previous = Some(b);
        }
        if end > spec.usable_bytes() {
            return Err(KernelError::Capacity {
                kernel: kernel.name.clone(),
                level: level.name(),
                used: end,
                capacity: spec.usable_bytes(),
            });
        }
    }
    Ok(())
}

/// What is known about accesses to one buffer stage (or one GM parameter).
#[derive(Default)]
struct Access {
    /// Pipe index and sequence number of the last write.
    last_write: Option<(usize, u64)>,
    /// Per pipe, the sequence number of the last read since that write (0 = none).
    reads: [u64; 7],
}

/// Key of a tracked memory object: a buffer stage or a GM parameter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Object {
    Stage(BufId, i64),
    Param(usize),
}

/// What an access touches, for error messages: a buffer or parameter by name, or a role.
#[derive(Clone, Copy)]
enum What<'a> {
    Named(&'a str),
    Role(&'static str),
}

impl std::fmt::Display for What<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::Named(name) => write!(f, "`{name}`"),
            What::Role(role) => f.write_str(role),
        }
    }
}

/// The state of one core instance while its program is walked.
struct Sim<'k> {
    kernel: &'k Kernel,
    side: Side,
    instance: u64,
    /// Instructions issued so far per pipe.
    seq: [u64; 7],
    /// `known[p][q]`: pipe p is ordered after the first `known[p][q]` instructions of pipe q.
    known: [[u64; 7]; 7],
    /// Set flags and the ordering they carry.
    flags: BTreeMap<(Pipe, Pipe, i64), [u64; 7]>,
    written: FxHashSet<Object>,
    access: FxHashMap<Object, Access>,
    /// Cross-core sets and waits per flag id.
    cross: FlagCounts,
}

/// Resolved region of a buffer.
struct Region<'k> {
    id: BufId,
    buf: &'k Buffer,
    stage: i64,
    row: i64,
    col: i64,
    rows: i64,
    cols: i64,
}

fn ev(e: &Expr, env: &Env, what: &str) -> Result<i64, String> {
    e.eval(env).map_err(|err| format!("{what}: {err}"))
}

/// Legal `SetFlag`/`WaitFlag` pipe pairs on arch 2201 per core.
fn legal_pair(side: Side, from: Pipe, to: Pipe) -> bool {
    use Pipe::*;
    match side {
        Side::Vector => matches!(
            (from, to),
            (S, V)
                | (V, S)
                | (S, Mte2)
                | (Mte2, S)
                | (S, Mte3)
                | (Mte3, S)
                | (Mte2, V)
                | (V, Mte2)
                | (V, Mte3)
                | (Mte3, V)
                | (Mte2, Mte3)
                | (Mte3, Mte2)
        ),
        Side::Cube => matches!(
            (from, to),
            (Mte2, Mte1)
                | (Mte1, Mte2)
                | (Mte1, M)
                | (M, Mte1)
                | (Mte2, M)
                | (M, Mte2)
                | (M, Fix)
                | (Fix, M)
                | (Mte1, Fix)
                | (Fix, Mte1)
                | (Mte1, Mte3)
                | (Mte3, Mte1)
                | (Mte2, Mte3)
                | (Mte3, Mte2)
        ),
    }
}

fn pipe_index(p: Pipe) -> usize {
    p.index().unwrap_or(0)
}

impl<'k> Sim<'k> {
    fn new(kernel: &'k Kernel, side: Side, instance: u64) -> Sim<'k> {
        let mut written = FxHashSet::default();
        for (i, p) in kernel.params.iter().enumerate() {
            if p.role == ParamRole::Input || p.role == ParamRole::OutputZeroed {
                written.insert(Object::Param(i));
            }
        }
        Sim {
            kernel,
            side,
            instance,
            seq: [0; 7],
            known: [[0; 7]; 7],
            flags: BTreeMap::new(),
            written,
            access: FxHashMap::default(),
            cross: BTreeMap::new(),
        }
    }

    fn buffer(&self, id: BufId) -> Result<&'k Buffer, String> {
        let kernel: &'k Kernel = self.kernel;
        let b = kernel
            .buffer(id)
            .ok_or_else(|| format!("no buffer with id {}", id.0))?;
        if b.level.side() != Some(self.side) {
            return Err(format!(
                "buffer `{}` at {} is not reachable from the {} program",
                b.name,
                b.level.name(),
                side_name(self.side)
            ));
        }
        Ok(b)
    }

    fn tile(&self, t: &Tile, env: &Env) -> Result<Region<'k>, String> {
        let buf = self.buffer(t.buf)?;
        let r = Region {
            id: t.buf,
            buf,
            stage: ev(&t.stage, env, "stage")?,
            row: ev(&t.row, env, "row")?,
            col: ev(&t.col, env, "column")?,
            rows: ev(&t.rows, env, "rows")?,
            cols: ev(&t.cols, env, "columns")?,
        };
        if r.stage < 0 || r.stage as u64 >= buf.stages {
            return Err(format!(
                "stage {} of `{}` outside 0..{}",
                r.stage, buf.name, buf.stages
            ));
        }
        if r.rows < 1 || r.cols < 1 || r.row < 0 || r.col < 0 {
            return Err(format!(
                "empty or negative region ({}, {}; {} x {}) of `{}`",
                r.row, r.col, r.rows, r.cols, buf.name
            ));
        }
        if (r.row + r.rows) as u64 > buf.rows || (r.col + r.cols) as u64 > buf.cols {
            return Err(format!(
                "region ({}, {}; {} x {}) exceeds `{}` of {} x {}",
                r.row, r.col, r.rows, r.cols, buf.name, buf.rows, buf.cols
            ));
        }
        Ok(r)
    }

    fn gm(&self, t: &GmTile, env: &Env) -> Result<(i64, i64), String> {
        let p = self
            .kernel
            .params
            .get(t.param)
            .ok_or_else(|| format!("no parameter {}", t.param))?;
        let (batches, rows, cols) = p.matrix_dims();
        let batch = ev(&t.batch, env, "batch")?;
        let row = ev(&t.row, env, "row")?;
        let col = ev(&t.col, env, "column")?;
        let nr = ev(&t.rows, env, "rows")?;
        let nc = ev(&t.cols, env, "columns")?;
        if nr < 1 || nc < 1 || row < 0 || col < 0 || batch < 0 {
            return Err(format!(
                "empty or negative region [{batch}]({row}, {col}; {nr} x {nc}) of `{}`",
                p.name
            ));
        }
        if batch as u64 >= batches || (row + nr) as u64 > rows || (col + nc) as u64 > cols {
            return Err(format!(
                "region [{batch}]({row}, {col}; {nr} x {nc}) exceeds `{}` of {batches} x {rows} x {cols}",
                p.name
            ));
        }
        Ok((nr, nc))
    }

    fn slice(
        &self,
        s: &Slice,
        count: i64,
        env: &Env,
        aligned: bool,
    ) -> Result<(BufId, i64, DType), String> {
        let buf = self.buffer(s.buf)?;
        if buf.level != MemLevel::Ub {
            return Err(format!("vector operand `{}` is not in UB", buf.name));
        }
        let stage = ev(&s.stage, env, "stage")?;
        let offset = ev(&s.offset, env, "offset")?;
        if stage < 0 || stage as u64 >= buf.stages {
            return Err(format!(
                "stage {stage} of `{}` outside 0..{}",
                buf.name, buf.stages
            ));
        }
        if offset < 0 || (offset + count) as u64 > buf.rows * buf.cols {
            return Err(format!(
                "elements {offset}..{} exceed `{}` of {} elements",
                offset + count,
                buf.name,
                buf.rows * buf.cols
            ));
        }
        if aligned && !(offset as u64 * buf.dtype.bits() as u64).is_multiple_of(256) {
            return Err(format!(
                "element offset {offset} of `{}` is not 32-byte aligned",
                buf.name
            ));
        }
        Ok((s.buf, stage, buf.dtype))
    }

    /// Records an access of `obj` (`what` in errors) on `pipe` and checks its ordering.
    fn touch(&mut self, obj: Object, pipe: Pipe, write: bool, what: What) -> Result<(), String> {
        let p = pipe_index(pipe);
        if !write && !self.written.contains(&obj) {
            return Err(format!("{what} is read before it is written"));
        }
        let seq = self.seq[p];
        let known = self.known[p];
        let entry = self.access.entry(obj).or_default();
        if let Some((wp, ws)) = entry.last_write
            && wp != p
            && known[wp] < ws
        {
            return Err(format!(
                "{what}: {} access not ordered after the {} write (missing SetFlag/WaitFlag {}_{})",
                Pipe::REAL[p].name(),
                Pipe::REAL[wp].name(),
                Pipe::REAL[wp].name(),
                Pipe::REAL[p].name()
            ));
        }
        if write {
            for (q, &rs) in entry.reads.iter().enumerate() {
                if q != p && rs > 0 && known[q] < rs {
                    return Err(format!(
                        "{what}: {} write not ordered after a {} read (missing SetFlag/WaitFlag {}_{})",
                        Pipe::REAL[p].name(),
                        Pipe::REAL[q].name(),
                        Pipe::REAL[q].name(),
                        Pipe::REAL[p].name()
                    ));
                }
            }
            entry.last_write = Some((p, seq));
            entry.reads = [0; 7];
            self.written.insert(obj);
        } else {
            entry.reads[p] = entry.reads[p].max(seq);
        }
        Ok(())
    }

    fn stage_obj(r: &Region) -> Object {
        Object::Stage(r.id, r.stage)
    }

    fn step(&mut self, stmt: &Stmt, env: &Env) -> Result<(), String> {
        let pipe = stmt.pipe();
        if let Some(p) = pipe.index() {
            self.seq[p] += 1;
        }
        match stmt {
            Stmt::Let { .. } | Stmt::For { .. } => Ok(()),
            Stmt::CopyIn { dst, src } => self.copy_in(dst, src, env),
            Stmt::LoadL0 {
                dst,
                src,
                transpose,
            } => self.load_l0(dst, src, *transpose, env),
            Stmt::Mmad {
                c,
                c_stage,
                a,
                a_stage,
                b,
                b_stage,
                m,
                n,
                k,
                init,
            } => {
                let (m, n, k) = (ev(m, env, "m")?, ev(n, env, "n")?, ev(k, env, "k")?);
                let whole = |id: BufId, stage: &Expr| -> Result<Region<'k>, String> {
                    let buf = self.buffer(id)?;
                    self.tile(
                        &Tile {
                            buf: id,
                            stage: stage.clone(),
                            row: Expr::Const(0),
                            col: Expr::Const(0),
                            rows: Expr::c(buf.rows),
                            cols: Expr::c(buf.cols),
                        },
                        env,
                    )
                };
                let (ra, rb, rc) = (
                    whole(*a, a_stage)?,
                    whole(*b, b_stage)?,
                    whole(*c, c_stage)?,
                );
                if ra.buf.level != MemLevel::L0A
                    || rb.buf.level != MemLevel::L0B
                    || rc.buf.level != MemLevel::L0C
                {
                    return Err("Mmad operands must be in L0A, L0B and L0C".into());
                }
                if ra.buf.dtype != rb.buf.dtype
                    || mmad_accumulator(ra.buf.dtype) != Some(rc.buf.dtype)
                {
                    return Err(format!(
                        "no Mmad for {} × {} → {}",
                        ra.buf.dtype, rb.buf.dtype, rc.buf.dtype
                    ));
                }
                if m < 16 || n < 16 || m % 16 != 0 || n % 16 != 0 || m > 4095 || n > 4095 {
                    return Err(format!("m={m}, n={n} must be multiples of 16 in 16..=4095"));
                }
                if !(1..=4095).contains(&k) {
                    return Err(format!("k={k} outside 1..=4095"));
                }
                let c0 = ra.buf.fractal_cols() as i64;
                let k_pad = (k + c0 - 1) / c0 * c0;
                if m as u64 > ra.buf.rows
                    || k_pad as u64 > ra.buf.cols
                    || k_pad as u64 > rb.buf.rows
                    || n as u64 > rb.buf.cols
                    || m as u64 > rc.buf.rows
                    || n as u64 > rc.buf.cols
                {
                    return Err(format!("m={m} n={n} k={k} exceeds an operand buffer"));
                }
                self.touch(Self::stage_obj(&ra), pipe, false, What::Named(&ra.buf.name))?;
                self.touch(Self::stage_obj(&rb), pipe, false, What::Named(&rb.buf.name))?;
                let what = What::Named(&rc.buf.name);
                if ev(init, env, "init")? == 0 {
                    self.touch(Self::stage_obj(&rc), pipe, false, what)?;
                }
                self.touch(Self::stage_obj(&rc), pipe, true, what)
            }
            Stmt::Fixpipe {
                dst,
                src,
                relu: _,
                atomic_add,
            } => {
                let r = self.tile(src, env)?;
                let (rows, cols) = self.gm(dst, env)?;
                if r.buf.level != MemLevel::L0C || r.row != 0 || r.col != 0 {
                    return Err("Fixpipe reads an L0C tile starting at (0, 0)".into());
                }
                if (rows, cols) != (r.rows, r.cols) {
                    return Err(format!(
                        "GM region {rows} x {cols} differs from the L0C region {} x {}",
                        r.rows, r.cols
                    ));
                }
                if rows > 8192 || cols > 4095 {
                    return Err("Fixpipe moves at most 8192 rows × 4095 columns".into());
                }
                let p = &self.kernel.params[dst.param];
                let legal = matches!(
                    (r.buf.dtype, p.dtype),
                    (DType::F32, DType::F32 | DType::F16 | DType::BF16)
                        | (DType::I32, DType::I32 | DType::F16)
                );
                if !legal {
                    return Err(format!(
                        "no Fixpipe conversion {} → {}",
                        r.buf.dtype, p.dtype
                    ));
                }
                match (p.role, atomic_add) {
                    (ParamRole::Input, _) => return Err(format!("`{}` is an input", p.name)),
                    (ParamRole::OutputZeroed, false)
                    | (ParamRole::Output | ParamRole::Workspace, true) => {
                        return Err(format!(
                            "atomic accumulation must target exactly the zero-filled outputs (`{}`)",
                            p.name
                        ));
                    }
                    _ => {}
                }
                self.touch(Self::stage_obj(&r), pipe, false, What::Named(&r.buf.name))?;
                self.touch(Object::Param(dst.param), pipe, true, What::Named(&p.name))
            }
            Stmt::CopyOut { dst, src } => {
                let r = self.tile(src, env)?;
                let (rows, cols) = self.gm(dst, env)?;
                let p = &self.kernel.params[dst.param];
                if r.buf.level != MemLevel::Ub {
                    return Err("CopyOut reads from UB".into());
                }
                if (rows, cols) != (r.rows, r.cols) || r.buf.dtype != p.dtype {
                    return Err(format!(
                        "UB region {} x {} {} does not match GM region {rows} x {cols} {}",
                        r.rows, r.cols, r.buf.dtype, p.dtype
                    ));
                }
                if p.role == ParamRole::Input || p.role == ParamRole::OutputZeroed {
                    return Err(format!("`{}` cannot be written by CopyOut", p.name));
                }
                if !(r.col as u64 * r.buf.dtype.bits() as u64).is_multiple_of(256) {
                    return Err("UB source column is not 32-byte aligned".into());
                }
                self.touch(Self::stage_obj(&r), pipe, false, What::Named(&r.buf.name))?;
                self.touch(Object::Param(dst.param), pipe, true, What::Named(&p.name))
            }
            Stmt::Vector {
                op,
                dst,
                srcs,
                count,
            } => self.vector(*op, dst, srcs, count, env),
            Stmt::Reduce {
                kind,
                dst,
                src,
                count,
            } => {
                let n = ev(count, env, "count")?;
                if n < 1 {
                    return Err(format!("count {n} must be positive"));
                }
                let (sb, ss, st) = self.slice(src, n, env, true)?;
                let dst_len = if *kind == ReduceKind::MaxIndex { 2 } else { 1 };
                let (db, ds, dt) = self.slice(dst, dst_len, env, false)?;
                if st != dt || !matches!(st, DType::F16 | DType::F32) {
                    return Err(format!(
                        "reductions take f16 or f32 with equal types, not {st} → {dt}"
                    ));
                }
                self.touch(
                    Object::Stage(sb, ss),
                    pipe,
                    false,
                    What::Role("reduction source"),
                )?;
                self.touch(
                    Object::Stage(db, ds),
                    pipe,
                    true,
                    What::Role("reduction destination"),
                )
            }
            Stmt::LoadScalar { src, .. } => match src {
                ScalarSrc::Gm { param, index } => {
                    let p = self
                        .kernel
                        .params
                        .get(*param)
                        .ok_or_else(|| format!("parameter {param} does not exist"))?;
                    let i = ev(index, env, "index")?;
                    let len: u64 = p.shape.iter().product();
                    if i < 0 || i as u64 >= len {
                        return Err(format!(
                            "element {i} outside `{}` of {len} elements",
                            p.name
                        ));
                    }
                    self.touch(Object::Param(*param), pipe, false, What::Named(&p.name))
                }
                ScalarSrc::Ub(slice) => {
                    let (b, st, _) = self.slice(slice, 1, env, false)?;
                    self.touch(Object::Stage(b, st), pipe, false, What::Role("scalar load"))
                }
            },
            Stmt::SetValue { dst, value } => {
                if !matches!(value, VecArg::Imm(_) | VecArg::Scalar(_)) {
                    return Err("SetValue takes an immediate or a scalar expression".into());
                }
                if let VecArg::Scalar(e) = value {
                    ev(e, env, "value")?;
                }
                let (b, st, _) = self.slice(dst, 1, env, false)?;
                self.touch(Object::Stage(b, st), pipe, true, What::Role("scalar store"))
            }
            Stmt::SetFlag { from, to, event } => {
                let event = ev(event, env, "event")?;
                self.check_pair(*from, *to, event)?;
                let mut snap = self.known[pipe_index(*from)];
                snap[pipe_index(*from)] = self.seq[pipe_index(*from)];
                if self.flags.insert((*from, *to, event), snap).is_some() {
                    return Err("flag set twice without a wait in between".into());
                }
                Ok(())
            }
            Stmt::WaitFlag { from, to, event } => {
                let event = ev(event, env, "event")?;
                self.check_pair(*from, *to, event)?;
                let Some(snap) = self.flags.remove(&(*from, *to, event)) else {
                    return Err("wait on a flag that no earlier SetFlag sets (deadlock)".into());
                };
                let k = &mut self.known[pipe_index(*to)];
                for (dst, s) in k.iter_mut().zip(snap) {
                    *dst = (*dst).max(s);
                }
                Ok(())
            }
            Stmt::Barrier { pipe } => match pipe {
                Pipe::S => Err("PipeBarrier<PIPE_S> does not exist".into()),
                Pipe::All => {
                    for p in 0..7 {
                        self.known[p] = self.seq;
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
            Stmt::CrossCoreSet { pipe, flag } => {
                if self.kernel.core != CoreType::Mix1To2 {
                    return Err("cross-core flags need a MIX kernel".into());
                }
                if matches!(pipe, Pipe::S | Pipe::All) || *flag > 10 {
                    return Err("cross-core set needs a real pipe and a flag id in 0..=10".into());
                }
                self.cross.entry(*flag).or_default().0 += 1;
                Ok(())
            }
            Stmt::CrossCoreWait { flag } => {
                if self.kernel.core != CoreType::Mix1To2 || *flag > 10 {
                    return Err("cross-core wait needs a MIX kernel and a flag id in 0..=10".into());
                }
                self.cross.entry(*flag).or_default().1 += 1;
                // The partner core wrote the workspaces before its set: they are now readable,
                // and ordered before everything this core issues from here on.
                for (i, p) in self.kernel.params.iter().enumerate() {
                    if p.role == ParamRole::Workspace {
                        self.written.insert(Object::Param(i));
                    }
                }
                Ok(())
            }
        }
    }

    fn check_pair(&self, from: Pipe, to: Pipe, event: i64) -> Result<(), String> {
        if !legal_pair(self.side, from, to) {
            return Err(format!(
                "no hardware event {}_{} on the {} core",
                from.name(),
                to.name(),
                side_name(self.side)
            ));
        }
        if !(0..=5).contains(&event) {
            return Err(format!("event id {event} outside 0..=5"));
        }
        Ok(())
    }

    fn copy_in(&mut self, dst: &Tile, src: &GmTile, env: &Env) -> Result<(), String> {
        let r = self.tile(dst, env)?;
        let (rows, cols) = self.gm(src, env)?;
        let p = &self.kernel.params[src.param];
        if (rows, cols) != (r.rows, r.cols) || p.dtype != r.buf.dtype {
            return Err(format!(
                "GM region {rows} x {cols} {} does not match the destination {} x {} {}",
                p.dtype, r.rows, r.cols, r.buf.dtype
            ));
        }
        let (_, _, pitch) = p.matrix_dims();
        match r.buf.level {
            MemLevel::L1 => {
                let c0 = r.buf.fractal_cols() as i64;
                if r.row % 16 != 0 || r.col % c0 != 0 {
                    return Err(format!(
                        "L1 destination ({}, {}) is not fractal aligned",
                        r.row, r.col
                    ));
                }
                if rows > 16384 || cols > 65535 || pitch > 65535 {
                    return Err(format!(
                        "Nd2Nz limits: {rows} rows (≤ 16384), {cols} columns and pitch {pitch} (≤ 65535)"
                    ));
                }
            }
            MemLevel::Ub => {
                if !(r.col as u64 * r.buf.dtype.bits() as u64).is_multiple_of(256) {
                    return Err("UB destination column is not 32-byte aligned".into());
                }
            }
            other => return Err(format!("GM copies go to L1 or UB, not {}", other.name())),
        }
        self.touch(
            Object::Param(src.param),
            Pipe::Mte2,
            false,
            What::Named(&p.name),
        )?;
        self.touch(
            Self::stage_obj(&r),
            Pipe::Mte2,
            true,
            What::Named(&r.buf.name),
        )
    }

    fn load_l0(
        &mut self,
        dst: &Tile,
        src: &Tile,
        transpose: bool,
        env: &Env,
    ) -> Result<(), String> {
        let d = self.tile(dst, env)?;
        let s = self.tile(src, env)?;
        if s.buf.level != MemLevel::L1 || !matches!(d.buf.level, MemLevel::L0A | MemLevel::L0B) {
            return Err("LoadL0 moves L1 to L0A or L0B".into());
        }
        if s.buf.dtype != d.buf.dtype {
            return Err("LoadL0 cannot convert types".into());
        }
        let expected = if transpose {
            (s.cols, s.rows)
        } else {
            (s.rows, s.cols)
        };
        if (d.rows, d.cols) != expected || d.row != 0 || d.col != 0 {
            return Err(format!(
                "destination {} x {} at ({}, {}) does not hold the source {} x {}{}",
                d.rows,
                d.cols,
                d.row,
                d.col,
                s.rows,
                s.cols,
                if transpose { " transposed" } else { "" }
            ));
        }
        let c0 = s.buf.fractal_cols() as i64;
        if s.row % 16 != 0 || s.col % c0 != 0 {
            return Err(format!(
                "L1 source ({}, {}) is not fractal aligned",
                s.row, s.col
            ));
        }
        // L0A wants fractals as stored in L1 (no per-fractal transpose) unless the logical
        // operand is transposed; L0B is the other way round. Only 16-bit types transpose.
        let hardware_transpose = (d.buf.level == MemLevel::L0A) == transpose;
        if hardware_transpose && d.buf.dtype.bits() != 16 {
            return Err(format!(
                "{} into {} needs a fractal transpose, which LoadData supports for 16-bit types only",
                d.buf.dtype,
                d.buf.level.name()
            ));
        }
        let m_dim = if d.buf.level == MemLevel::L0A {
            d.rows
        } else {
            d.cols
        };
        if m_dim % 16 != 0 {
            return Err(format!(
                "the m/n extent {m_dim} of an L0 tile must be a multiple of 16"
            ));
        }
        self.touch(
            Self::stage_obj(&s),
            Pipe::Mte1,
            false,
            What::Named(&s.buf.name),
        )?;
        self.touch(
            Self::stage_obj(&d),
            Pipe::Mte1,
            true,
            What::Named(&d.buf.name),
        )
    }

    fn vector(
        &mut self,
        op: VecOp,
        dst: &Slice,
        srcs: &[VecArg],
        count: &Expr,
        env: &Env,
    ) -> Result<(), String> {
        let n = ev(count, env, "count")?;
        if n < 1 {
            return Err(format!("count {n} must be positive"));
        }
        let kinds = op.operand_kinds();
        if kinds.len() != srcs.len() {
            return Err(format!(
                "{} takes {} operands, found {}",
                op.name(),
                kinds.len(),
                srcs.len()
            ));
        }
        let (db, ds, dt) = self.slice(dst, n, env, true)?;
        let mut reads = Vec::new();
        for (arg, &is_slice) in srcs.iter().zip(kinds) {
            match (arg, is_slice) {
                (VecArg::Slice(s), true) => {
                    let (b, st, t) = self.slice(s, n, env, true)?;
                    if op != VecOp::Cast && t != dt {
                        return Err(format!(
                            "operand type {t} differs from the result type {dt}"
                        ));
                    }
                    if op == VecOp::Cast
                        && !matches!(
                            (t, dt),
                            (DType::F16 | DType::BF16 | DType::I32, DType::F32)
                                | (DType::F32, DType::F16 | DType::BF16 | DType::I32)
                                | (DType::I8 | DType::U8, DType::F16)
                                | (DType::F16, DType::I8 | DType::U8)
                        )
                    {
                        return Err(format!("no Cast {t} → {dt} on arch 2201"));
                    }
                    reads.push(Object::Stage(b, st));
                }
                (VecArg::Imm(_), false) => {}
                (VecArg::Scalar(e), false) => {
                    ev(e, env, "scalar")?;
                }
                (VecArg::Element(s), false) => {
                    let (b, st, t) = self.slice(s, 1, env, false)?;
                    if t != dt {
                        return Err(format!("scalar operand type {t} differs from {dt}"));
                    }
                    reads.push(Object::Stage(b, st));
                }
                _ => return Err(format!("operand kinds do not match {}", op.name())),
            }
        }
        let legal = match op {
            VecOp::Cast => true,
            VecOp::Duplicate => matches!(dt, DType::F16 | DType::BF16 | DType::F32 | DType::I32),
            VecOp::Add
            | VecOp::Sub
            | VecOp::Mul
            | VecOp::Max
            | VecOp::Min
            | VecOp::Adds
            | VecOp::Muls
            | VecOp::Maxs
            | VecOp::Mins
            | VecOp::Relu => matches!(dt, DType::F16 | DType::F32 | DType::I32),
            // Rounding to an integral value is a float → float Cast, f32 only.
            VecOp::Floor | VecOp::Ceil | VecOp::Rint => dt == DType::F32,
            _ => matches!(dt, DType::F16 | DType::F32),
        };
        if !legal {
            return Err(format!(
                "{} on {dt} is not supported; compute in f16 or f32",
                op.mnemonic()
            ));
        }
        for obj in reads {
            self.touch(obj, Pipe::V, false, What::Role("vector operand"))?;
        }
        self.touch(
            Object::Stage(db, ds),
            Pipe::V,
            true,
            What::Role("vector result"),
        )
    }

    fn finish(&self) -> Result<(), KernelError> {
        if let Some(((from, to, event), _)) = self.flags.iter().next() {
            return Err(KernelError::Sync {
                kernel: self.kernel.name.clone(),
                side: side_name(self.side),
                instance: self.instance,
                message: format!(
                    "flag {}_{} #{event} is set but never waited for",
                    from.name(),
                    to.name()
                ),
            });
        }
        Ok(())
    }
}

/// Cross-core (sets, waits) per flag id, per (side, instance).
/// Cross-core flags one core instance set and waited for: flag id to (sets, waits).
type FlagCounts = BTreeMap<u8, (u64, u64)>;

/// [`FlagCounts`] by core instance.
type CrossCounts = BTreeMap<(Side, u64), FlagCounts>;

fn check_cross_core(kernel: &Kernel, cross: &CrossCounts) -> Result<(), KernelError> {
    if kernel.core != CoreType::Mix1To2 {
        return Ok(());
    }
    let empty = BTreeMap::new();
    for block in 0..kernel.blocks as u64 {
        let aic = cross.get(&(Side::Cube, block)).unwrap_or(&empty);
        let aivs =
            [2 * block, 2 * block + 1].map(|i| cross.get(&(Side::Vector, i)).unwrap_or(&empty));
        let flags: BTreeSet<u8> = aic
            .keys()
            .chain(aivs[0].keys())
            .chain(aivs[1].keys())
            .copied()
            .collect();
        for flag in flags {
            let (c_set, c_wait) = aic.get(&flag).copied().unwrap_or_default();
            let v: Vec<(u64, u64)> = aivs
                .iter()
                .map(|m| m.get(&flag).copied().unwrap_or_default())
                .collect();
            if v[0].1 != c_set || v[1].1 != c_set || v[0].0 != c_wait || v[1].0 != c_wait {
                return Err(KernelError::Sync {
                    kernel: kernel.name.clone(),
                    side: "cube",
                    instance: block,
                    message: format!(
                        "cross-core flag #{flag} unbalanced: AIC sets {c_set} / waits {c_wait}, AIVs set {}/{} and wait {}/{}",
                        v[0].0, v[1].0, v[0].1, v[1].1
                    ),
                });
            }
        }
    }
    Ok(())
}
