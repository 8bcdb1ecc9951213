//! The analytic Ascend cost model.
//!
//! [`estimate`] walks a kernel's programs with concrete values and charges every instruction to
//! its pipe (MTE2, MTE1, Cube, Fixpipe, Vector, MTE3) from the target's rates. A body runs its
//! statements one after another; a loop marked `pipelined` overlaps consecutive iterations, so
//! it costs its busiest pipe's total plus the pipeline fill of the first iteration, but never
//! less than the total work of the statements that share a single-stage buffer between two
//! pipes (one L0C stage: the next tile's Mmads wait for this tile's Fixpipe). The kernel
//! time is the slowest core instance, bounded below by the aggregate L2 bandwidth over all GM
//! reads and by the HBM bandwidth over the bytes that must come from or go to HBM. Loops whose
//! cost-relevant inputs repeat (tile extents, not offsets) are evaluated once and memoised, so
//! the walk costs about one evaluation per distinct tile shape.

use std::collections::{BTreeSet, HashMap};

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, Env, Expr, Kernel, KernelError, MemLevel, ParamRole, ScalarSrc, Side, Stmt, VecArg,
};
use cubevec_ir::target::Target;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

/// What limits a kernel on the roofline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Bound {
    /// Arithmetic throughput.
    Compute,
    /// Memory bandwidth.
    Memory,
}

/// The useful work of a kernel, independent of how it is tiled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Work {
    /// Useful floating-point operations (2·M·N·K for a GEMM; one per element op for vector work).
    pub flops: f64,
    /// Bytes that must cross HBM at least once (inputs read plus outputs written).
    pub bytes: f64,
    /// Runs on the Cube (`true`) or the vector units.
    pub cube: bool,
    /// Input dtype of the Cube work (selects the peak rate).
    pub dtype: DType,
}

/// The estimate for one kernel.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelCost {
    /// Useful operations.
    pub flops: f64,
    /// Minimum HBM bytes.
    pub bytes: f64,
    /// Modelled execution time in microseconds (launch overhead excluded).
    pub modeled_time_us: f64,
    /// Roofline time in microseconds: max(flops / peak, bytes / HBM bandwidth).
    pub roofline_time_us: f64,
    /// Which roofline limit applies.
    pub bound: Bound,
    /// `roofline_time_us / modeled_time_us`, in 0..=1.
    pub efficiency: f64,
    /// Time of the slowest core instance alone, in microseconds.
    pub core_time_us: f64,
    /// Time to move every GM access through L2 at the aggregate L2 bandwidth, in microseconds.
    pub l2_time_us: f64,
    /// Time to move the HBM traffic (unique bytes plus spilled re-reads), in microseconds.
    pub hbm_time_us: f64,
    /// Busy time of each pipe on the slowest core instance, in microseconds, by pipe name.
    pub pipe_busy_us: Vec<(String, f64)>,
}

/// Errors of the cost model.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// Walking the kernel failed (the kernel is malformed; run the verifier).
    #[error("cannot walk kernel: {0}")]
    Walk(#[from] KernelError),
    /// The target has no Cube rate for the work's dtype.
    #[error("target `{target}` has no Cube support for {dtype}")]
    NoCubeRate {
        /// Target name.
        target: String,
        /// The dtype.
        dtype: DType,
    },
}

/// Per-pipe busy cycles and the elapsed span of a piece of program.
#[derive(Clone, Debug, Default)]
struct Span {
    busy: [f64; 7],
    /// Busy cycles of the statements touching each shared single-stage buffer (by slot).
    shared: Vec<f64>,
    span: f64,
    gm_read: f64,
    gm_write: f64,
}

impl Span {
    fn then(&mut self, other: &Span) {
        for (a, b) in self.busy.iter_mut().zip(other.busy) {
            *a += b;
        }
        if self.shared.len() < other.shared.len() {
            self.shared.resize(other.shared.len(), 0.0);
        }
        for (a, b) in self.shared.iter_mut().zip(&other.shared) {
            *a += b;
        }
        self.span += other.span;
        self.gm_read += other.gm_read;
        self.gm_write += other.gm_write;
    }

    fn max_busy(&self) -> f64 {
        self.busy.iter().copied().fold(0.0, f64::max)
    }

    /// The busiest pipe, or the busiest single-stage buffer shared by two pipes, whose users
    /// cannot overlap across iterations.
    fn max_resource(&self) -> f64 {
        self.shared.iter().copied().fold(self.max_busy(), f64::max)
    }
}

/// Room for the distinct buffers one statement touches (at most three: an Mmad's operands, a
/// binary vector op's destination and sources).
const MAX_OPERANDS: usize = 4;

/// Calls `f` with each buffer a statement reads or writes (without allocating: the cost walk
/// asks for every statement it visits).
fn for_each_touched(stmt: &Stmt, mut f: impl FnMut(BufId)) {
    let slice = |a: &VecArg| match a {
        VecArg::Slice(s) | VecArg::Element(s) => Some(s.buf),
        VecArg::Imm(_) | VecArg::Scalar(_) => None,
    };
    match stmt {
        Stmt::CopyIn { dst, .. } => f(dst.buf),
        Stmt::LoadL0 { dst, src, .. } => {
            f(dst.buf);
            f(src.buf);
        }
        Stmt::Reduce { dst, src, .. } => {
            f(dst.buf);
            f(src.buf);
        }
        Stmt::Mmad { c, a, b, .. } => {
            f(*c);
            f(*a);
            f(*b);
        }
        Stmt::Fixpipe { src, .. } | Stmt::CopyOut { src, .. } => f(src.buf),
        Stmt::Vector { dst, srcs, .. } => {
            f(dst.buf);
            srcs.iter().filter_map(slice).for_each(f);
        }
        Stmt::LoadScalar {
            src: ScalarSrc::Ub(s),
            ..
        } => f(s.buf),
        Stmt::SetValue { dst, value } => {
            f(dst.buf);
            slice(value).into_iter().for_each(f);
        }
        _ => {}
    }
}

/// Slots for the single-stage buffers that statements of two or more pipes touch: work on
/// such a buffer is serialised across the iterations of a pipelined loop.
fn shared_slots(kernel: &Kernel) -> FxHashMap<BufId, usize> {
    fn walk(body: &[Stmt], pipes: &mut HashMap<BufId, BTreeSet<usize>>) {
        for stmt in body {
            if let Stmt::For { body, .. } = stmt {
                walk(body, pipes);
            }
            let pipe = stmt.pipe().index().unwrap_or(0);
            for_each_touched(stmt, |buf| {
                pipes.entry(buf).or_default().insert(pipe);
            });
        }
    }
    let mut pipes = HashMap::new();
    for side in [Side::Cube, Side::Vector] {
        walk(kernel.program(side), &mut pipes);
    }
    let mut shared: Vec<BufId> = pipes
        .into_iter()
        .filter(|(buf, p)| p.len() > 1 && kernel.buffer(*buf).is_some_and(|b| b.stages == 1))
        .map(|(buf, _)| buf)
        .collect();
    shared.sort_unstable_by_key(|b| b.0);
    shared
        .into_iter()
        .enumerate()
        .map(|(i, b)| (b, i))
        .collect()
}

/// The fraction of re-reads that miss L2 when `reuse_bytes` are touched between two reads of
/// the same data.
pub fn l2_spill(target: &Target, reuse_bytes: f64) -> f64 {
    let reuse = reuse_bytes.max(1.0);
    ((reuse - target.memory.l2_bytes as f64) / reuse).clamp(0.0, 1.0)
}

struct Walker<'a> {
    kernel: &'a Kernel,
    target: &'a Target,
    memo: FxHashMap<(usize, Vec<i64>), Span>,
    deps: FxHashMap<usize, Vec<String>>,
    slots: FxHashMap<BufId, usize>,
    /// The 64-byte lines of input parameters the current core instance has read with
    /// `LoadScalar` (its data cache, invalidated once at the kernel's start).
    cached_lines: FxHashSet<(usize, i64)>,
}

fn ev(e: &Expr, env: &Env, context: &str) -> Result<f64, KernelError> {
    e.eval(env)
        .map(|v| v as f64)
        .map_err(|source| KernelError::Expr {
            context: context.to_string(),
            source,
        })
}

/// Variables whose values change the cost of `body` (sizes and trip counts, not offsets).
fn cost_vars(body: &[Stmt]) -> BTreeSet<String> {
    let mut needed = BTreeSet::new();
    for stmt in body.iter().rev() {
        match stmt {
            Stmt::Let { var, value } => {
                if needed.remove(var) {
                    value.collect_vars(&mut needed);
                }
            }
            Stmt::For {
                var, extent, body, ..
            } => {
                let mut inner = cost_vars(body);
                inner.remove(var);
                needed.extend(inner);
                extent.collect_vars(&mut needed);
            }
            Stmt::CopyIn { src, .. } => {
                src.rows.collect_vars(&mut needed);
                src.cols.collect_vars(&mut needed);
            }
            Stmt::LoadL0 { src, .. } => {
                src.rows.collect_vars(&mut needed);
                src.cols.collect_vars(&mut needed);
            }
            Stmt::Mmad { m, n, k, .. } => {
                m.collect_vars(&mut needed);
                n.collect_vars(&mut needed);
                k.collect_vars(&mut needed);
            }
            Stmt::Fixpipe { dst, .. } | Stmt::CopyOut { dst, .. } => {
                dst.rows.collect_vars(&mut needed);
                dst.cols.collect_vars(&mut needed);
            }
            Stmt::Vector { count, .. } | Stmt::Reduce { count, .. } => {
                count.collect_vars(&mut needed);
            }
            Stmt::LoadScalar { var, planned, .. } => {
                if needed.remove(var) {
                    planned.collect_vars(&mut needed);
                }
            }
            Stmt::SetValue { .. }
            | Stmt::SetFlag { .. }
            | Stmt::WaitFlag { .. }
            | Stmt::Barrier { .. }
            | Stmt::CrossCoreSet { .. }
            | Stmt::CrossCoreWait { .. } => {}
        }
    }
    needed
}

impl Walker<'_> {
    fn buffer_dtype(&self, id: BufId) -> DType {
        self.kernel.buffer(id).map_or(DType::F32, |b| b.dtype)
    }

    /// Busy cycles of a GM transfer of `rows` rows, each rounded up to whole minimum bursts.
    fn gm_transfer(&self, rows: f64, row_bytes: f64) -> f64 {
        let burst = self.target.mte.gm_min_burst_bytes.max(1) as f64;
        let row = (row_bytes / burst).ceil() * burst;
        rows * row / self.target.mte.gm_bytes_per_cycle_per_core
    }

    /// Adds the cost of a statement without a body to `total`.
    fn leaf(&mut self, stmt: &Stmt, env: &Env, total: &mut Span) -> Result<(), KernelError> {
        let overhead = self.target.model.instruction_overhead_cycles as f64;
        let pipe = stmt.pipe().index().unwrap_or(0);
        let latency = self.target.model.transfer_latency_cycles as f64;
        let mut wait = 0.0;
        let cycles = match stmt {
            Stmt::CopyIn { src, .. } => {
                let dtype = self.kernel.params[src.param].dtype;
                let (rows, cols) = (ev(&src.rows, env, "rows")?, ev(&src.cols, env, "cols")?);
                let row_bytes = cols * dtype.bits() as f64 / 8.0;
                total.gm_read += rows * row_bytes;
                wait = latency;
                self.gm_transfer(rows, row_bytes)
            }
            Stmt::LoadL0 { dst, src, .. } => {
                let b = self.kernel.buffer(dst.buf);
                let rate = match b.map(|b| b.level) {
                    Some(MemLevel::L0A) => self.target.mte.l1_to_l0a_bytes_per_cycle,
                    _ => self.target.mte.l1_to_l0b_bytes_per_cycle,
                } as f64;
                let dtype = self.buffer_dtype(dst.buf);
                let c0 = (256 / dtype.bits().max(1)) as f64;
                let rows = (ev(&src.rows, env, "rows")? / 16.0).ceil() * 16.0;
                let cols = (ev(&src.cols, env, "cols")? / c0).ceil() * c0;
                rows * cols * dtype.bits() as f64 / 8.0 / rate + overhead
            }
            Stmt::Mmad { a, m, n, k, .. } => {
                let dtype = self.buffer_dtype(*a);
                let frac = self.target.fractal(dtype);
                let (kf, macs) =
                    frac.map_or((16.0, 4096.0), |f| (f.k as f64, f.macs_per_cycle as f64));
                let (m, n, k) = (ev(m, env, "m")?, ev(n, env, "n")?, ev(k, env, "k")?);
                m * n * (k / kf).ceil() * kf / macs + overhead
            }
            Stmt::Fixpipe { dst, .. } => {
                let dtype = self.kernel.params[dst.param].dtype;
                let (rows, cols) = (ev(&dst.rows, env, "rows")?, ev(&dst.cols, env, "cols")?);
                let bytes = rows * cols * dtype.bits() as f64 / 8.0;
                total.gm_write += bytes;
                let fix = bytes / self.target.mte.fixpipe_bytes_per_cycle as f64;
                wait = latency;
                fix.max(self.gm_transfer(rows, cols * dtype.bits() as f64 / 8.0))
            }
            Stmt::CopyOut { dst, .. } => {
                let dtype = self.kernel.params[dst.param].dtype;
                let (rows, cols) = (ev(&dst.rows, env, "rows")?, ev(&dst.cols, env, "cols")?);
                let row_bytes = cols * dtype.bits() as f64 / 8.0;
                total.gm_write += rows * row_bytes;
                wait = latency;
                self.gm_transfer(rows, row_bytes)
            }
            Stmt::Vector {
                op,
                dst,
                srcs,
                count,
                ..
            } => {
                let widest = srcs
                    .iter()
                    .filter_map(|a| match a {
                        VecArg::Slice(sl) => Some(self.buffer_dtype(sl.buf).bits()),
                        _ => None,
                    })
                    .chain([self.buffer_dtype(dst.buf).bits()])
                    .max()
                    .unwrap_or(32) as f64;
                let bytes = ev(count, env, "count")? * widest / 8.0;
                let scalar = if srcs.iter().any(|a| matches!(a, VecArg::Element(_))) {
                    overhead
                } else {
                    0.0
                };
                (bytes / self.target.vector.bytes_per_cycle as f64).ceil() * op.relative_cost()
                    + overhead
                    + scalar
            }
            Stmt::Reduce { src, count, .. } => {
                let bits = self.buffer_dtype(src.buf).bits() as f64;
                let bytes = ev(count, env, "count")? * bits / 8.0;
                // A tree of passes plus the scalar write-back of the result.
                (bytes / self.target.vector.bytes_per_cycle as f64).ceil() * 1.5 + 3.0 * overhead
            }
            // A scalar access waits for the pipes it is ordered after: one instruction's
            // overhead plus, for GM, a cache-line fetch: once per line of an input (the data
            // cache is invalidated at the kernel's start), on every read of a parameter the
            // kernel also writes (refreshed before each read).
            Stmt::LoadScalar { src, .. } => match src {
                ScalarSrc::Gm { param, index } => {
                    let p = &self.kernel.params[*param];
                    let line = ev(index, env, "index")? as i64 * p.dtype.bits() as i64 / 512;
                    let cached =
                        p.role == ParamRole::Input && !self.cached_lines.insert((*param, line));
                    if cached { overhead } else { overhead + latency }
                }
                ScalarSrc::Ub(_) => overhead,
            },
            Stmt::SetValue { .. } => overhead,
            _ => 0.0,
        };
        total.busy[pipe] += cycles;
        // Each shared buffer the statement touches (once, however many operands name it).
        let mut hit = [usize::MAX; MAX_OPERANDS];
        let slots = &self.slots;
        for_each_touched(stmt, |buf| {
            if let Some(&slot) = slots.get(&buf)
                && let Some(free) = hit.iter().position(|&h| h == slot || h == usize::MAX)
            {
                hit[free] = slot;
            }
        });
        for &slot in hit.iter().take_while(|&&h| h != usize::MAX) {
            if total.shared.len() <= slot {
                total.shared.resize(slot + 1, 0.0);
            }
            total.shared[slot] += cycles;
        }
        // Transfer start-up latency delays completion but does not occupy the engine.
        total.span += cycles + wait;
        Ok(())
    }

    fn body(&mut self, body: &[Stmt], env: &mut Env) -> Result<Span, KernelError> {
        let mut total = Span::default();
        let mut bound: Vec<(&str, Option<i64>)> = Vec::new();
        for stmt in body {
            match stmt {
                Stmt::Let { var, value } => {
                    let v = value.eval(env).map_err(|source| KernelError::Expr {
                        context: format!("let {var}"),
                        source,
                    })?;
                    bound.push((var, env.insert(var, v)));
                }
                Stmt::LoadScalar { var, planned, .. } => {
                    self.leaf(stmt, env, &mut total)?;
                    let v = planned.eval(env).map_err(|source| KernelError::Expr {
                        context: format!("planned value of {var}"),
                        source,
                    })?;
                    bound.push((var, env.insert(var, v)));
                }
                Stmt::For { .. } => {
                    let s = self.for_loop(stmt, env)?;
                    total.then(&s);
                }
                leaf => self.leaf(leaf, env, &mut total)?,
            }
        }
        for (name, previous) in bound.into_iter().rev() {
            env.restore(name, previous);
        }
        Ok(total)
    }

    fn for_loop(&mut self, stmt: &Stmt, env: &mut Env) -> Result<Span, KernelError> {
        let Stmt::For {
            var,
            extent,
            pipelined,
            body,
        } = stmt
        else {
            return Ok(Span::default());
        };
        let id = stmt as *const Stmt as usize;
        let deps = self.deps.entry(id).or_insert_with(|| {
            let mut vars = cost_vars(std::slice::from_ref(stmt));
            vars.remove(var);
            vars.into_iter().collect()
        });
        let key_values: Vec<i64> = deps
            .iter()
            .map(|d| env.get(d).copied().unwrap_or(0))
            .collect();
        let key = (id, key_values);
        if let Some(hit) = self.memo.get(&key) {
            return Ok(hit.clone());
        }
        let trips = extent.eval(env).map_err(|source| KernelError::Expr {
            context: format!("extent of loop {var}"),
            source,
        })?;
        let previous = env.get(var).copied();
        let mut total = Span::default();
        let mut first: Option<Span> = None;
        for i in 0..trips.max(0) {
            env.insert(var, i);
            let s = self.body(body, env)?;
            if first.is_none() {
                first = Some(s.clone());
            }
            total.then(&s);
        }
        env.restore(var, previous);
        if *pipelined && let Some(first) = first {
            total.span = total.max_resource() + (first.span - first.max_busy()).max(0.0);
        }
        self.memo.insert(key, total.clone());
        Ok(total)
    }
}

/// Estimates the execution time of `kernel` on `target`. Re-reads of GM data hit L2 while the
/// work's whole footprint fits in L2 and spill to HBM in proportion beyond it.
pub fn estimate(kernel: &Kernel, target: &Target, work: &Work) -> Result<KernelCost, CostError> {
    estimate_with_reuse(kernel, target, work, work.bytes)
}

/// [`estimate`] for a kernel whose schedule bounds the reuse distance of its GM re-reads:
/// `reuse_bytes` is the most data touched between two reads of the same bytes (for a swizzled
/// GEMM, one whole operand plus a strip of the other). Re-reads hit L2 while it fits and spill
/// in proportion beyond it.
pub fn estimate_with_reuse(
    kernel: &Kernel,
    target: &Target,
    work: &Work,
    reuse_bytes: f64,
) -> Result<KernelCost, CostError> {
    let mut walker = Walker {
        kernel,
        target,
        memo: FxHashMap::default(),
        deps: FxHashMap::default(),
        slots: shared_slots(kernel),
        cached_lines: FxHashSet::default(),
    };
    let mut slowest = Span::default();
    let (mut gm_read, mut gm_write) = (0.0, 0.0);
    for side in [Side::Cube, Side::Vector] {
        for instance in 0..kernel.instances(side) {
            let mut env = Env::new();
            env.insert(cubevec_ir::kernel::exec::BLOCK_VAR, instance as i64);
            walker.cached_lines.clear();
            let s = walker.body(kernel.program(side), &mut env)?;
            gm_read += s.gm_read;
            gm_write += s.gm_write;
            if s.span > slowest.span {
                slowest = s;
            }
        }
    }
    let clock = target.clock_hz();
    let core_s = slowest.span / clock;
    let l2_s = (gm_read + gm_write) / (target.memory.l2_gbps * 1e9);
    // HBM: unique bytes once; re-reads hit L2 while the reuse distance fits, and spill in
    // proportion.
    let hbm_bytes = work.bytes + (gm_read - work.bytes).max(0.0) * l2_spill(target, reuse_bytes);
    let hbm_s = hbm_bytes / (target.memory.hbm_gbps * 1e9);
    let modeled_s = core_s.max(l2_s).max(hbm_s).max(1e-9);

    let peak = if work.cube {
        target
            .peak_cube_flops(work.dtype)
            .ok_or_else(|| CostError::NoCubeRate {
                target: target.name.clone(),
                dtype: work.dtype,
            })?
    } else {
        // One f32 lane-op per 4 bytes of a 256-byte repeat per cycle per AIV.
        target.cores.aiv as f64 * clock * target.vector.bytes_per_cycle as f64 / 4.0
    };
    let compute_s = work.flops / peak;
    let memory_s = work.bytes / (target.memory.hbm_gbps * 1e9);
    let roofline_s = compute_s.max(memory_s);
    let names = ["S", "V", "M", "MTE1", "MTE2", "MTE3", "FIX"];
    Ok(KernelCost {
        flops: work.flops,
        bytes: work.bytes,
        modeled_time_us: modeled_s * 1e6,
        roofline_time_us: roofline_s * 1e6,
        bound: if compute_s >= memory_s {
            Bound::Compute
        } else {
            Bound::Memory
        },
        efficiency: (roofline_s / modeled_s).min(1.0),
        core_time_us: core_s * 1e6,
        l2_time_us: l2_s * 1e6,
        hbm_time_us: hbm_s * 1e6,
        pipe_busy_us: names
            .iter()
            .zip(slowest.busy)
            .filter(|(_, b)| *b > 0.0)
            .map(|(n, b)| (n.to_string(), b / clock * 1e6))
            .collect(),
    })
}
