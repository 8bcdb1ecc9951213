//! Cube GEMM tiling: `C[m, n] = A[m, k] · B[k, n]` (B optionally stored transposed as `[n, k]`),
//! batched or grouped by expert, on the AIC pipeline GM → L1 (NZ) → L0A/L0B → Cube → L0C →
//! Fixpipe → GM.
//!
//! Tiling: an output tile is `m1 × n1`; its K range is walked in L1 steps of `k1` (A and B tiles
//! double-buffered in L1) and, inside, in L0 steps of `k0` (double-buffered in L0A/L0B), the
//! accumulator stays in L0C in f32 (one or two stages). L0 tiles have the L1 tile's `m1` and
//! `n1`. Output tiles (and, with split-K, K ranges) are work units dealt round-robin to the AICs
//! in a swizzled order (strips of `swizzle` tile rows, walked column by column, or the transpose).
//! Split-K accumulates partial sums atomically into a zero-filled output. The L1 stage index
//! runs on across tiles, so the next tile's first loads overlap this tile's last Mmads and
//! its Fixpipe. With the A-panel schedule ([`GemmTiling::a_panel`]) a block keeps the tile
//! rows of A over the whole K range in L1 while it walks the N tiles of that row strip, and
//! streams only B. Tails in M, N and K
//! are handled by `min` extents: Mmad always runs on whole 16-row/column fractals (m, n rounded
//! up to 16), Fixpipe writes only the valid rows and columns, K is passed exactly.
//!
//! A grouped problem may take its group row counts from a GM parameter at run time
//! ([`GroupTable`]: sizes or offsets, read with `LoadScalar`). The tiling is still chosen for the
//! planned profile in [`GemmProblem::groups`], whose sum is the row count of A and C; the kernel
//! walks each expert's M tiles with the runtime count (zero-row experts run no tile, tails use
//! `min` extents), and deals work units round-robin over the AICs from a running unit count.
//!
//! [`plan`] searches the candidate tilings with the cost model and keeps the fastest
//! ([`plan_runtime`] for a runtime group table). Candidates are ranked by an analytic lower
//! bound first, and only those that can still win get a kernel built and costed; plans are
//! cached per problem shape, table and target for the life of the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use cubevec_ir::DType;
use cubevec_ir::kernel::{
    BufId, Buffer, BufferPlanner, CoreType, Expr, Kernel, Layout, MemLevel, Param, ParamRole, Pipe,
    ScalarSrc, Stmt, verify,
};
use cubevec_ir::target::Target;
use serde::Serialize;

use super::TileError;
use super::build::{c, for_, gm, let_, round16, set, tile, v, wait};
use super::epilogue::{self, Epilogue, EpilogueBufs, EpiloguePlan};
use crate::cost::{KernelCost, Work, estimate_with_reuse, l2_spill};

/// One GEMM (or a set of same-shaped-N/K GEMMs sharing one launch).
#[derive(Clone, Debug, PartialEq)]
pub struct GemmProblem {
    /// Kernel name (a C identifier).
    pub name: String,
    /// Rows of A per group, in order; A and C stack the groups' rows. One entry for a plain GEMM,
    /// equal entries for a batched GEMM, expert token counts for a grouped (MoE) GEMM. Groups of
    /// zero rows are allowed (experts without tokens).
    pub groups: Vec<u64>,
    /// Columns of B and C.
    pub n: u64,
    /// The reduction depth.
    pub k: u64,
    /// Dtype of A and B.
    pub input: DType,
    /// Dtype of the product as the Fixpipe converts it: of C, or of the workspace an epilogue
    /// reads (which stores C in [`Epilogue::result`]).
    pub output: DType,
    /// B is stored `[n, k]` (weights as in `GroupedMatMul` and `nn.Linear`) instead of `[k, n]`.
    pub b_transposed: bool,
    /// Apply ReLU on the way out.
    pub relu: bool,
    /// A vector epilogue applied to each output tile before it is stored: the kernel becomes
    /// a MIX kernel (see [`super::epilogue`]). Single-group problems without split-K only.
    pub epilogue: Option<Epilogue>,
    /// B is two matrices of `n` columns whose products pair up column by column (SwiGLU's
    /// gate and up projections): each tile computes `n1 / 2` columns of both, side by side,
    /// for a paired epilogue to combine. Needs such an epilogue.
    pub halves: Option<Halves>,
}

/// Where the second matrix of a paired GEMM ([`GemmProblem::halves`]) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halves {
    /// B holds both, stacked along N: `[2n, k]` (or `[k, 2n]`), the second from column `n`.
    Stacked,
    /// The second is parameter 3 (`b2`), shaped like B.
    Separate,
}

impl GemmProblem {
    /// A plain `m × n × k` GEMM.
    pub fn plain(
        name: &str,
        m: u64,
        n: u64,
        k: u64,
        dtype: DType,
        b_transposed: bool,
    ) -> GemmProblem {
        GemmProblem {
            name: name.to_string(),
            groups: vec![m],
            n,
            k,
            input: dtype,
            output: dtype,
            b_transposed,
            relu: false,
            epilogue: None,
            halves: None,
        }
    }

    /// Output columns of an `n1`-wide tile: half of it for a paired problem.
    pub fn tile_cols(&self, n1: u64) -> u64 {
        if self.halves.is_some() { n1 / 2 } else { n1 }
    }

    /// Columns of B and of the product (both matrices of a paired problem).
    fn product_cols(&self) -> u64 {
        if self.halves.is_some() {
            2 * self.n
        } else {
            self.n
        }
    }

    /// Total rows of A and C.
    pub fn total_m(&self) -> u64 {
        self.groups.iter().sum()
    }

    /// The useful work: 2·M·N·K FLOP, and every operand and the result once (the B matrices
    /// of groups without rows are never read), with an epilogue's other operands.
    pub fn work(&self) -> Work {
        let m = self.total_m() as f64;
        let (n, k) = (self.n as f64, self.k as f64);
        let ib = self.input.bits() as f64 / 8.0;
        let ob = self.output.bits() as f64 / 8.0;
        let used = self.groups.iter().filter(|&&rows| rows > 0).count() as f64;
        let (epilogue_bytes, rb) = self.epilogue.as_ref().map_or((0.0, ob), |e| {
            (
                e.operand_bytes(self.total_m(), self.n),
                e.result.bits() as f64 / 8.0,
            )
        });
        let pn = self.product_cols() as f64;
        Work {
            flops: 2.0 * m * pn * k,
            bytes: (m * k + used * k * pn) * ib + m * n * rb + epilogue_bytes,
            cube: true,
            dtype: self.input,
        }
    }
}

/// How a runtime group table lists the rows of each group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupTableKind {
    /// `[groups]` row counts (`GroupedMatMul`'s `group_sizes`); group `g` starts at the sum of
    /// the counts before it.
    Sizes,
    /// `[groups + 1]` exclusive prefix sums: group `g` is rows `offsets[g]..offsets[g + 1]`.
    Offsets,
}

/// A GM parameter holding the group row counts of a grouped GEMM, read at run time. It becomes
/// parameter 3 of the kernel (`group_sizes` or `group_offsets`); the counts must add up to the
/// rows of A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupTable {
    /// Sizes or offsets.
    pub kind: GroupTableKind,
    /// Integer element type (i32 or i64).
    pub dtype: DType,
}

impl GroupTable {
    /// Shape of the table parameter for `groups` groups.
    pub fn shape(&self, groups: u64) -> Vec<u64> {
        match self.kind {
            GroupTableKind::Sizes => vec![groups],
            GroupTableKind::Offsets => vec![groups + 1],
        }
    }
}

/// The tiling parameters of a GEMM kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GemmTiling {
    /// Rows of an output tile (multiple of 16).
    pub m1: u64,
    /// Columns of an output tile (multiple of 16).
    pub n1: u64,
    /// K per L1 step (multiple of `k0`).
    pub k1: u64,
    /// K per L0 step / Mmad (multiple of the fractal K).
    pub k0: u64,
    /// Number of K ranges per output tile (1 = no split-K).
    pub split_k: u64,
    /// L0C stages (2 lets the Fixpipe of one tile overlap the next tile's Mmads).
    pub l0c_stages: u64,
    /// Tile rows per swizzle strip.
    pub swizzle: u64,
    /// Walk strips of tile columns instead of tile rows.
    pub swizzle_n_major: bool,
    /// A-panel schedule (single-group GEMMs without split-K): the tile rows of A over the whole
    /// K range stay in one L1 stage while a block walks the N tiles of that row strip; only B
    /// is streamed per tile. Blocks take contiguous runs of tiles in row-major order (not the
    /// swizzle), and reload the panel when their run enters a new strip.
    pub a_panel: bool,
}

impl GemmTiling {
    /// CATLASS's Atlas A2 choice: L1 128×256×256, L0 128×256×64 for 16-bit inputs (int8:
    /// 128×256×512 / K0 128), one L0C stage, swizzle 3 along the longer side.
    pub fn catlass_default(problem: &GemmProblem) -> GemmTiling {
        let (k1, k0) = if problem.input.bits() == 8 {
            (512, 128)
        } else {
            (256, 64)
        };
        GemmTiling {
            m1: 128,
            n1: 256,
            k1,
            k0,
            split_k: 1,
            l0c_stages: 1,
            swizzle: 3,
            swizzle_n_major: problem.total_m() < problem.n,
            a_panel: false,
        }
    }
}

/// A tiled GEMM: the parameters, the kernel and its modelled cost.
#[derive(Clone, Debug)]
pub struct GemmPlan {
    /// The chosen tiling.
    pub tiling: GemmTiling,
    /// The kernel.
    pub kernel: Kernel,
    /// Its estimate.
    pub cost: KernelCost,
}

impl GemmPlan {
    /// Dtype and shape of the kernel's workspace parameter (an epilogue's), if it has one:
    /// each launch binds a scratch tensor of its own to it.
    pub fn workspace(&self) -> Option<(DType, Vec<u64>)> {
        self.kernel
            .params
            .iter()
            .find(|p| p.role == ParamRole::Workspace)
            .map(|p| (p.dtype, p.shape.clone()))
    }
}

fn check(problem: &GemmProblem, target: &Target) -> Result<(u64, u64), TileError> {
    let invalid = |message: String| TileError::Invalid {
        name: problem.name.clone(),
        message,
    };
    if problem.groups.is_empty() || problem.total_m() == 0 || problem.n == 0 || problem.k == 0 {
        return Err(invalid(format!(
            "empty GEMM (groups {:?}, n {}, k {})",
            problem.groups, problem.n, problem.k
        )));
    }
    let frac = target
        .fractal(problem.input)
        .ok_or_else(|| TileError::Unsupported {
            name: problem.name.clone(),
            dtype: problem.input,
            what: "Cube input".into(),
        })?;
    let acc = if problem.input == DType::I8 {
        DType::I32
    } else {
        DType::F32
    };
    let out_ok = match acc {
        DType::F32 => matches!(problem.output, DType::F32 | DType::F16 | DType::BF16),
        _ => matches!(problem.output, DType::I32 | DType::F16),
    };
    if !out_ok {
        return Err(TileError::Unsupported {
            name: problem.name.clone(),
            dtype: problem.output,
            what: format!("output for {} inputs", problem.input),
        });
    }
    if problem.input.bits() != 16 && !problem.b_transposed {
        return Err(TileError::Unsupported {
            name: problem.name.clone(),
            dtype: problem.input,
            what: "B stored [k, n]: the L1→L0B fractal transpose exists for 16-bit types only; store B as [n, k]".into(),
        });
    }
    let ld_b = match (problem.b_transposed, problem.halves) {
        (true, _) => problem.k,
        (false, Some(Halves::Stacked)) => 2 * problem.n,
        (false, _) => problem.n,
    };
    if problem.k > 65535 || ld_b > 65535 {
        return Err(invalid(
            "a GM row pitch above 65535 elements exceeds Nd2NzParams".into(),
        ));
    }
    if let Some(epilogue) = &problem.epilogue {
        if problem.relu {
            return Err(invalid("an epilogue replaces the Fixpipe's ReLU".into()));
        }
        epilogue.check(&problem.name, problem.output)?;
    }
    if problem.halves.is_some() != problem.epilogue.as_ref().is_some_and(|e| e.paired) {
        return Err(invalid(
            "a paired GEMM needs a paired epilogue, and a paired epilogue a paired GEMM".into(),
        ));
    }
    Ok((frac.k, (problem.input.bits() / 8) as u64))
}

/// Derived counts of a tiling for one problem.
struct Counts {
    k_per_split: u64,
    splits: u64,
    n_tiles: u64,
}

fn counts(problem: &GemmProblem, t: &GemmTiling) -> Counts {
    let k_tiles = problem.k.div_ceil(t.k1);
    let k_per_split = k_tiles.div_ceil(t.split_k.max(1));
    Counts {
        k_per_split,
        splits: k_tiles.div_ceil(k_per_split),
        n_tiles: problem.n.div_ceil(problem.tile_cols(t.n1)),
    }
}

/// Work units (output tiles × K ranges) over all groups.
pub fn units(problem: &GemmProblem, t: &GemmTiling) -> u64 {
    let cn = counts(problem, t);
    problem
        .groups
        .iter()
        .map(|m| m.div_ceil(t.m1) * cn.n_tiles * cn.splits)
        .sum()
}

/// Whether a tiling fits the target's buffers and hardware limits for this problem.
pub fn fits(problem: &GemmProblem, t: &GemmTiling, target: &Target) -> bool {
    let Ok((c0, eb)) = check(problem, target) else {
        return false;
    };
    let b = &target.buffers;
    let shape_ok = t.m1.is_multiple_of(16)
        && t.n1.is_multiple_of(16)
        && t.k0.is_multiple_of(c0)
        && t.k0 > 0
        && t.k1.is_multiple_of(t.k0)
        && t.m1 > 0
        && t.n1 > 0
        && t.m1 <= 4080
        && t.n1 <= 4080
        && t.k0 <= 4095
        && (1..=2).contains(&t.l0c_stages)
        && t.split_k >= 1
        && t.swizzle >= 1;
    let l1 = if t.a_panel {
        problem.groups.len() == 1
            && t.split_k == 1
            && (t.m1 * problem.k.div_ceil(c0) * c0 + 2 * t.k1 * t.n1) * eb <= b.l1.usable_bytes()
    } else {
        2 * (t.m1 * t.k1 + t.k1 * t.n1) * eb <= b.l1.usable_bytes()
    };
    let epilogue_ok = problem.epilogue.as_ref().is_none_or(|e| {
        t.split_k == 1 && e.chunk_rows(problem.output, t.m1, t.n1, target).is_some()
    }) && (problem.halves.is_none() || t.n1.is_multiple_of(32));
    shape_ok
        && l1
        && epilogue_ok
        && 2 * t.m1 * t.k0 * eb <= b.l0a.usable_bytes()
        && 2 * t.k0 * t.n1 * eb <= b.l0b.usable_bytes()
        && t.l0c_stages * t.m1 * t.n1 * 4 <= b.l0c.usable_bytes()
}

/// Builds the kernel for `problem` with tiling `t`.
pub fn build(problem: &GemmProblem, t: &GemmTiling, target: &Target) -> Result<Kernel, TileError> {
    build_kernel(problem, None, t, target)
}

/// Builds the kernel for a grouped `problem` whose group rows are read from `table` (parameter
/// 3) at run time; `problem.groups` is the planned profile the tiling was chosen for.
pub fn build_runtime(
    problem: &GemmProblem,
    table: &GroupTable,
    t: &GemmTiling,
    target: &Target,
) -> Result<Kernel, TileError> {
    build_kernel(problem, Some(table), t, target)
}

fn check_table(problem: &GemmProblem, table: &GroupTable) -> Result<(), TileError> {
    if !matches!(table.dtype, DType::I32 | DType::I64) {
        return Err(TileError::Unsupported {
            name: problem.name.clone(),
            dtype: table.dtype,
            what: "group table (use i32 or i64)".into(),
        });
    }
    Ok(())
}

fn build_kernel(
    problem: &GemmProblem,
    table: Option<&GroupTable>,
    t: &GemmTiling,
    target: &Target,
) -> Result<Kernel, TileError> {
    let (c0, _) = check(problem, target)?;
    if let Some(table) = table {
        check_table(problem, table)?;
        if t.a_panel {
            return Err(TileError::Invalid {
                name: problem.name.clone(),
                message: "the A-panel schedule needs static group rows".into(),
            });
        }
    }
    if !fits(problem, t, target) {
        return Err(TileError::NoFit {
            name: problem.name.clone(),
            reason: format!("{t:?} exceeds a buffer or breaks a fractal rule"),
        });
    }
    let cn = counts(problem, t);
    let total_units = units(problem, t);
    let blocks = total_units.min(target.cores.aic as u64).max(1);
    let groups = problem.groups.len() as u64;
    let acc = if problem.input == DType::I8 {
        DType::I32
    } else {
        DType::F32
    };
    let split = cn.splits > 1;
    if split && problem.relu {
        return Err(TileError::Invalid {
            name: problem.name.clone(),
            message: "split-K with ReLU would apply ReLU to each partial sum".into(),
        });
    }

    let m_total = problem.total_m();
    let b_cols = match problem.halves {
        Some(Halves::Stacked) => 2 * problem.n,
        _ => problem.n,
    };
    let b_shape = match (groups, problem.b_transposed) {
        (1, false) => vec![problem.k, b_cols],
        (1, true) => vec![b_cols, problem.k],
        (g, false) => vec![g, problem.k, problem.n],
        (g, true) => vec![g, problem.n, problem.k],
    };
    let mut params = vec![
        Param {
            name: "a".into(),
            dtype: problem.input,
            shape: vec![m_total, problem.k],
            role: ParamRole::Input,
        },
        Param {
            name: "b".into(),
            dtype: problem.input,
            shape: b_shape,
            role: ParamRole::Input,
        },
        Param {
            name: "c".into(),
            dtype: problem
                .epilogue
                .as_ref()
                .map_or(problem.output, |e| e.result),
            shape: vec![m_total, problem.n],
            role: if split {
                ParamRole::OutputZeroed
            } else {
                ParamRole::Output
            },
        },
    ];
    let mut planner = BufferPlanner::new();
    let mut add = |name: &str, level, dtype, layout, rows, cols, stages| {
        planner.add(
            target,
            Buffer {
                name: name.into(),
                level,
                dtype,
                layout,
                rows,
                cols,
                stages,
                offset: 0,
            },
        )
    };
    let (a_cols, a_stages) = if t.a_panel {
        (problem.k.div_ceil(c0) * c0, 1)
    } else {
        (t.k1, 2)
    };
    let l1a = add(
        "l1a",
        MemLevel::L1,
        problem.input,
        Layout::Nz,
        t.m1,
        a_cols,
        a_stages,
    );
    let (b_rows, b_cols) = if problem.b_transposed {
        (t.n1, t.k1)
    } else {
        (t.k1, t.n1)
    };
    let l1b = add(
        "l1b",
        MemLevel::L1,
        problem.input,
        Layout::Nz,
        b_rows,
        b_cols,
        2,
    );
    let l0a = add(
        "l0a",
        MemLevel::L0A,
        problem.input,
        Layout::Zz,
        t.m1,
        t.k0,
        2,
    );
    let l0b = add(
        "l0b",
        MemLevel::L0B,
        problem.input,
        Layout::Zn,
        t.k0,
        t.n1,
        2,
    );
    let l0c = add(
        "l0c",
        MemLevel::L0C,
        acc,
        Layout::Nz,
        t.m1,
        t.n1,
        t.l0c_stages,
    );
    let b2_param = 3 + usize::from(table.is_some());
    let operand_param = b2_param + usize::from(problem.halves == Some(Halves::Separate));
    let ws_param = operand_param + problem.epilogue.as_ref().map_or(0, |e| e.operands.len());
    let epilogue_plan = problem.epilogue.as_ref().map(|e| EpiloguePlan {
        epilogue: e,
        output: problem.output,
        m1: t.m1,
        n1: t.n1,
        rows: e
            .chunk_rows(problem.output, t.m1, t.n1, target)
            .unwrap_or(1),
        whole_chunks: !e.paired
            && problem.n.is_multiple_of(t.n1)
            && e.operands
                .iter()
                .all(|(o, _)| *o == epilogue::EpilogueOperand::Full),
        operand_param,
        ws_param,
    });
    let epilogue_bufs = epilogue_plan
        .as_ref()
        .map(|p| p.buffers(&mut planner, target));
    if let Some(table) = table {
        params.push(Param {
            name: match table.kind {
                GroupTableKind::Sizes => "group_sizes".into(),
                GroupTableKind::Offsets => "group_offsets".into(),
            },
            dtype: table.dtype,
            shape: table.shape(groups),
            role: ParamRole::Input,
        });
    }
    if problem.halves == Some(Halves::Separate) {
        params.push(Param {
            name: "b2".into(),
            ..params[1].clone()
        });
    }
    if let Some(e) = &problem.epilogue {
        params.extend(e.params(problem.output, m_total, problem.n, blocks, t.m1, t.n1));
    }
    let buffers = planner.finish();
    let bufs = Bufs {
        l1a,
        l1b,
        l0a,
        l0b,
        l0c,
    };

    let mut cube = Vec::new();
    for s in 0..2 {
        cube.push(set(Pipe::Mte1, Pipe::Mte2, c(s)));
        cube.push(set(Pipe::M, Pipe::Mte1, c(s)));
    }
    for s in 0..t.l0c_stages {
        cube.push(set(Pipe::Fix, Pipe::M, c(s)));
    }
    if t.a_panel {
        cube.push(set(Pipe::Mte1, Pipe::Mte2, c(PANEL_EVENT)));
    }
    let ctx = LoopCtx {
        problem,
        t,
        cn: &cn,
        bufs: &bufs,
        blocks,
        program: TileProgram::Cube,
        ws_param,
        b2_param,
    };
    cube.extend(schedule(&ctx, table));
    for s in 0..2 {
        cube.push(wait(Pipe::Mte1, Pipe::Mte2, c(s)));
        cube.push(wait(Pipe::M, Pipe::Mte1, c(s)));
    }
    for s in 0..t.l0c_stages {
        cube.push(wait(Pipe::Fix, Pipe::M, c(s)));
    }
    if t.a_panel {
        cube.push(wait(Pipe::Mte1, Pipe::Mte2, c(PANEL_EVENT)));
    }
    let mut vector = Vec::new();
    if let (Some(plan), Some(ebufs)) = (&epilogue_plan, &epilogue_bufs) {
        // The AIVs' initial "slot free" signals, taken back after the last tile.
        cube.extend(epilogue::FREE.map(|flag| Stmt::CrossCoreWait { flag }));
        let aiv = LoopCtx {
            program: TileProgram::Epilogue(plan, ebufs),
            ..ctx
        };
        vector.extend(plan.prologue());
        vector.extend(schedule(&aiv, table));
        vector.extend(plan.finish());
    }

    let mut tiling: BTreeMap<String, u64> = [
        ("m1", t.m1),
        ("n1", t.n1),
        ("k1", t.k1),
        ("k0", t.k0),
        ("split_k", cn.splits),
        ("l0c_stages", t.l0c_stages),
        ("swizzle", t.swizzle),
        ("swizzle_n_major", t.swizzle_n_major as u64),
        ("units", total_units),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if table.is_some() {
        tiling.insert("runtime_groups".into(), groups);
    }
    if t.a_panel {
        tiling.insert("a_panel".into(), 1);
    }
    if let Some(plan) = &epilogue_plan {
        tiling.insert("epilogue_rows".into(), plan.rows);
    }
    let kernel = Kernel {
        name: problem.name.clone(),
        core: if vector.is_empty() {
            CoreType::Aic
        } else {
            CoreType::Mix1To2
        },
        blocks: blocks as u32,
        params,
        buffers,
        cube,
        vector,
        tiling,
    };
    Ok(kernel)
}

struct Bufs {
    l1a: BufId,
    l1b: BufId,
    l0a: BufId,
    l0b: BufId,
    l0c: BufId,
}

/// What every group loop of one kernel shares.
#[derive(Clone, Copy)]
struct LoopCtx<'a> {
    problem: &'a GemmProblem,
    t: &'a GemmTiling,
    cn: &'a Counts,
    bufs: &'a Bufs,
    blocks: u64,
    /// The program the loops are built for.
    program: TileProgram<'a>,
    /// Kernel parameter of the epilogue workspace (unused without an epilogue).
    ws_param: usize,
    /// Kernel parameter of a paired GEMM's second B (unused unless it is apart).
    b2_param: usize,
}

/// Which core's program a schedule loop is built for: both walk the same tiles in the same
/// order.
#[derive(Clone, Copy)]
enum TileProgram<'a> {
    /// The AIC: loads, Mmads and the Fixpipe of each tile.
    Cube,
    /// An AIV of a MIX kernel: the epilogue of each tile.
    Epilogue(&'a EpiloguePlan<'a>, &'a EpilogueBufs),
}

impl LoopCtx<'_> {
    /// The block index the tiles are dealt over: the AIC's, which an AIV derives from its own.
    fn block(&self) -> Expr {
        match self.program {
            TileProgram::Cube => v("blk"),
            TileProgram::Epilogue(..) => v("cb"),
        }
    }

    /// The body of one tile (see [`tile_body`]).
    fn tile(
        &self,
        group: &GroupRows,
        mi: Expr,
        ni: Expr,
        panel: Option<(Expr, Expr)>,
    ) -> Vec<Stmt> {
        match self.program {
            TileProgram::Cube => tile_body(self, group, mi, ni, panel),
            TileProgram::Epilogue(plan, bufs) => {
                let mut body = vec![let_("rb", group.row_base.clone())];
                body.extend(tile_extent(self, group, mi, ni, false));
                body.extend(plan.tile_body(bufs));
                body
            }
        }
    }
}

/// One group's rows: constants for a static profile, variables read at run time otherwise.
struct GroupRows {
    /// Group (expert) index: the batch of B.
    index: Expr,
    /// Rows of the group.
    rows: Expr,
    /// First row of the group in A and C.
    row_base: Expr,
    /// Work units dealt before this group (the round-robin phase).
    start: Expr,
    /// Work units of the group.
    units: Expr,
    /// M tiles of the group.
    m_tiles: Expr,
    /// Rows (rounded up to 16) of the group's smallest M tile (16 when unknown).
    min_m: u64,
}

/// The loops over the tiles of every group, for the program `ctx` is built for: the A-panel
/// runs, one loop over equal static groups, a loop per static group, or the groups of a
/// runtime table (parameter 3).
fn schedule(ctx: &LoopCtx, table: Option<&GroupTable>) -> Vec<Stmt> {
    let (problem, t, cn) = (ctx.problem, ctx.t, ctx.cn);
    let groups = &problem.groups;
    match table {
        None if t.a_panel => panel_loop(ctx),
        None if groups.len() > 1 && groups.iter().all(|&m| m == groups[0] && m > 0) => {
            vec![equal_groups_loop(ctx)]
        }
        None => {
            let mut out = Vec::new();
            let (mut start, mut row_base) = (0u64, 0u64);
            for (g, &m_g) in groups.iter().enumerate() {
                let m_tiles = m_g.div_ceil(t.m1);
                let group_units = m_tiles * cn.n_tiles * cn.splits;
                if group_units > 0 {
                    let min_m = if m_g.is_multiple_of(t.m1) {
                        t.m1
                    } else {
                        (m_g % t.m1).div_ceil(16) * 16
                    };
                    out.push(group_loop(
                        ctx,
                        &GroupRows {
                            index: c(g as u64),
                            rows: c(m_g),
                            row_base: c(row_base),
                            start: c(start),
                            units: c(group_units),
                            m_tiles: c(m_tiles),
                            min_m,
                        },
                    ));
                }
                start += group_units;
                row_base += m_g;
            }
            out
        }
        Some(table) => match balanced_profile(groups) {
            Some(profile) if table.kind == GroupTableKind::Offsets => {
                vec![offset_groups_loop(ctx, profile)]
            }
            _ => runtime_groups(ctx, table),
        },
    }
}

/// One loop over groups of equal static rows (a batched GEMM): group `g` starts at row
/// `g·m` and its units follow the `g` groups before it in the round-robin deal.
fn equal_groups_loop(ctx: &LoopCtx) -> Stmt {
    let (t, cn) = (ctx.t, ctx.cn);
    let m = ctx.problem.groups[0];
    let m_tiles = m.div_ceil(t.m1);
    let units = m_tiles * cn.n_tiles * cn.splits;
    let min_m = if m.is_multiple_of(t.m1) {
        t.m1
    } else {
        (m % t.m1).div_ceil(16) * 16
    };
    let group = GroupRows {
        index: v("g"),
        rows: c(m),
        row_base: v("g").mul(c(m)),
        start: v("g").mul(c(units)),
        units: c(units),
        m_tiles: c(m_tiles),
        min_m,
    };
    for_(
        "g",
        c(ctx.problem.groups.len() as u64),
        false,
        vec![group_loop(ctx, &group)],
    )
}

/// A planned profile that deals `rows` over the groups as evenly as possible, the larger
/// groups first: `(rows per group, groups with one more row)`.
#[derive(Clone, Copy)]
struct Balanced {
    each: u64,
    extra: u64,
}

/// The profile as [`Balanced`], if it is one.
fn balanced_profile(groups: &[u64]) -> Option<Balanced> {
    let total: u64 = groups.iter().sum();
    let n = groups.len() as u64;
    let (each, extra) = (total / n.max(1), total % n.max(1));
    groups
        .iter()
        .enumerate()
        .all(|(g, &m)| m == each + u64::from((g as u64) < extra))
        .then_some(Balanced { each, extra })
}

/// One loop over the groups of an offsets table (`[groups + 1]`): group `g`'s rows are
/// `offsets[g]..offsets[g + 1]`, read at run time. Its units start the round-robin deal where
/// the planned (balanced) profile's units before it end, so the deal matches a static kernel
/// for the planned routing and stays a valid partition for any other.
fn offset_groups_loop(ctx: &LoopCtx, profile: Balanced) -> Stmt {
    let (t, cn) = (ctx.t, ctx.cn);
    let per_tile = cn.n_tiles * cn.splits;
    let planned_offset = |g: Expr| g.clone().mul(c(profile.each)).add(g.min(c(profile.extra)));
    let (units_lo, units_hi) = (
        profile.each.div_ceil(t.m1) * per_tile,
        (profile.each + 1).div_ceil(t.m1) * per_tile,
    );
    let load = |var: &str, index: Expr| Stmt::LoadScalar {
        var: var.to_string(),
        src: ScalarSrc::Gm {
            param: 3,
            index: index.clone(),
        },
        planned: planned_offset(index),
    };
    let group = GroupRows {
        index: v("g"),
        rows: v("g_rows"),
        row_base: v("g_lo"),
        start: match (profile.extra, units_hi - units_lo) {
            (0, _) | (_, 0) => v("g").mul(c(units_lo)),
            (extra, more) => v("g")
                .mul(c(units_lo))
                .add(v("g").min(c(extra)).mul(c(more))),
        },
        units: v("g_units"),
        m_tiles: v("g_tiles"),
        min_m: 16,
    };
    let body = vec![
        load("g_lo", v("g")),
        load("g_hi", v("g").add(c(1))),
        let_("g_rows", v("g_hi").sub(v("g_lo"))),
        let_("g_tiles", v("g_rows").ceil_div(c(t.m1))),
        let_("g_units", v("g_tiles").mul(c(per_tile))),
        group_loop(ctx, &group),
    ];
    for_("g", c(ctx.problem.groups.len() as u64), false, body)
}

/// Reads the group rows from the table, one group after another, and emits each group's loop.
/// Running row and unit counts are `let` bindings of the program's top level.
fn runtime_groups(ctx: &LoopCtx, table: &GroupTable) -> Vec<Stmt> {
    let (t, cn) = (ctx.t, ctx.cn);
    let planned = &ctx.problem.groups;
    let load = |var: &str, index: u64, planned: u64| Stmt::LoadScalar {
        var: var.to_string(),
        src: ScalarSrc::Gm {
            param: 3,
            index: c(index),
        },
        planned: c(planned),
    };
    let mut out = Vec::new();
    let mut planned_off = 0u64;
    if table.kind == GroupTableKind::Offsets {
        out.push(load("g0_off", 0, 0));
    }
    let mut row_base = match table.kind {
        GroupTableKind::Offsets => v("g0_off"),
        GroupTableKind::Sizes => c(0),
    };
    let mut start = c(0);
    for (g, &m_planned) in planned.iter().enumerate() {
        let name = |what: &str| format!("g{g}_{what}");
        let next_off = format!("g{}_off", g + 1);
        let rows = name("rows");
        match table.kind {
            GroupTableKind::Offsets => {
                out.push(load(&next_off, g as u64 + 1, planned_off + m_planned));
                out.push(let_(&rows, v(&next_off).sub(row_base.clone())));
            }
            GroupTableKind::Sizes => out.push(load(&rows, g as u64, m_planned)),
        }
        planned_off += m_planned;
        out.push(let_(&name("tiles"), v(&rows).ceil_div(c(t.m1))));
        out.push(let_(
            &name("units"),
            v(&name("tiles")).mul(c(cn.n_tiles * cn.splits)),
        ));
        out.push(group_loop(
            ctx,
            &GroupRows {
                index: c(g as u64),
                rows: v(&rows),
                row_base: row_base.clone(),
                start: start.clone(),
                units: v(&name("units")),
                m_tiles: v(&name("tiles")),
                min_m: 16,
            },
        ));
        if g + 1 < planned.len() {
            let next_start = format!("g{}_start", g + 1);
            out.push(let_(&next_start, start.add(v(&name("units")))));
            start = v(&next_start);
            row_base = match table.kind {
                GroupTableKind::Offsets => v(&next_off),
                GroupTableKind::Sizes => {
                    let next_row = format!("g{}_row", g + 1);
                    out.push(let_(&next_row, row_base.add(v(&rows))));
                    v(&next_row)
                }
            };
        }
    }
    out
}

/// The round-robin loop over one group's work units on this block.
fn group_loop(ctx: &LoopCtx, group: &GroupRows) -> Stmt {
    let (t, cn, blocks) = (ctx.t, ctx.cn, ctx.blocks);
    // First unit of this group owned by block `blk` (units are dealt round-robin globally).
    let first = match group.start.as_const() {
        Some(start) if (start as u64).is_multiple_of(blocks) => ctx.block(),
        Some(start) => ctx
            .block()
            .add(c(blocks - start as u64 % blocks))
            .rem(c(blocks)),
        None => ctx
            .block()
            .add(c(blocks))
            .sub(group.start.clone().rem(c(blocks)))
            .rem(c(blocks)),
    };
    let trips = group
        .units
        .clone()
        .sub(first.clone())
        .add(c(blocks - 1))
        .div(c(blocks));
    let (major_tiles, minor_tiles) = if t.swizzle_n_major {
        (c(cn.n_tiles), group.m_tiles.clone())
    } else {
        (group.m_tiles.clone(), c(cn.n_tiles))
    };
    let w = c(t.swizzle).min(major_tiles.clone());
    let strip = w.clone().mul(minor_tiles);
    let mut body = vec![
        let_("u", first.add(v("t").mul(c(blocks)))),
        let_("ks", v("u").rem(c(cn.splits))),
        let_("tile", v("u").div(c(cn.splits))),
        let_("strip", v("tile").div(strip.clone())),
        let_("pos", v("tile").rem(strip)),
        let_(
            "width",
            w.clone().min(major_tiles.sub(v("strip").mul(w.clone()))),
        ),
        let_("major", v("strip").mul(w).add(v("pos").rem(v("width")))),
        let_("minor", v("pos").div(v("width"))),
    ];
    let (mi, ni) = if t.swizzle_n_major {
        (v("minor"), v("major"))
    } else {
        (v("major"), v("minor"))
    };
    body.extend(ctx.tile(group, mi, ni, None));
    for_("t", trips, true, body)
}

/// The event of the A panel's MTE2 ↔ MTE1 hand-over (0 and 1 are the L1 stages of B).
const PANEL_EVENT: u64 = 2;

/// The A-panel schedule of a single-group GEMM ([`GemmTiling::a_panel`]): block `blk` takes
/// the tiles `blk·units/blocks ..` `(blk+1)·units/blocks` in row-major order and loads the A
/// panel of a row strip when its run enters the strip (its first tile, or N tile 0).
fn panel_loop(ctx: &LoopCtx) -> Vec<Stmt> {
    let (problem, t, cn, blocks) = (ctx.problem, ctx.t, ctx.cn, ctx.blocks);
    let m = problem.groups[0];
    let m_tiles = m.div_ceil(t.m1);
    let total = m_tiles * cn.n_tiles;
    let group = GroupRows {
        index: c(0),
        rows: c(m),
        row_base: c(0),
        start: c(0),
        units: c(total),
        m_tiles: c(m_tiles),
        min_m: if m.is_multiple_of(t.m1) {
            t.m1
        } else {
            (m % t.m1).div_ceil(16) * 16
        },
    };
    // 1 when `x` > 0, else 0 (for x ≥ 0).
    let positive = |x: Expr| x.min(c(1));
    let mut body = vec![
        let_("u", v("u_lo").add(v("t"))),
        let_("ks", c(0)),
        let_("mi", v("u").div(c(cn.n_tiles))),
        let_("ni", v("u").rem(c(cn.n_tiles))),
    ];
    let reload = c(1).sub(positive(v("t")).mul(positive(v("ni"))));
    let last = c(1).sub(
        positive(v("u_hi").sub(v("u")).sub(c(1))).mul(positive(c(cn.n_tiles - 1).sub(v("ni")))),
    );
    body.extend(ctx.tile(&group, v("mi"), v("ni"), Some((reload, last))));
    vec![
        let_("u_lo", ctx.block().mul(c(total)).div(c(blocks))),
        let_("u_hi", ctx.block().add(c(1)).mul(c(total)).div(c(blocks))),
        for_("t", v("u_hi").sub(v("u_lo")), true, body),
    ]
}

/// The first row `mo`, rows `ml`, first column `no` and columns `nl` of output tile
/// (`mi`, `ni`) of `group`; with `rounded`, also `m16` and `n16`, the rows and columns
/// rounded up to whole fractals.
fn tile_extent(ctx: &LoopCtx, group: &GroupRows, mi: Expr, ni: Expr, rounded: bool) -> Vec<Stmt> {
    let t = ctx.t;
    let cols = ctx.problem.tile_cols(t.n1);
    let mut out = vec![
        let_("mo", mi.mul(c(t.m1))),
        let_("ml", group.rows.clone().sub(v("mo")).min(c(t.m1))),
    ];
    if rounded {
        out.push(let_("m16", round16(v("ml"))));
    }
    out.extend([
        let_("no", ni.mul(c(cols))),
        let_("nl", c(ctx.problem.n).sub(v("no")).min(c(cols))),
    ]);
    if rounded {
        // A paired tile holds the first matrix's columns in its first half.
        let n16 = match ctx.problem.halves {
            Some(_) => c(cols).add(round16(v("nl"))),
            None => round16(v("nl")),
        };
        out.push(let_("n16", n16));
    }
    out
}

/// One output tile (M tile `mi`, N tile `ni`, K range `ks`): the K loop and the Fixpipe.
/// `panel` holds, for the A-panel schedule, the 0/1 conditions "load the panel before this
/// tile" and "release it after this tile".
fn tile_body(
    ctx: &LoopCtx,
    group: &GroupRows,
    mi: Expr,
    ni: Expr,
    panel: Option<(Expr, Expr)>,
) -> Vec<Stmt> {
    let (problem, t, cn, bufs) = (ctx.problem, ctx.t, ctx.cn, ctx.bufs);
    let mut body = tile_extent(ctx, group, mi, ni, true);
    body.extend([
        let_("klo", v("ks").mul(c(cn.k_per_split * t.k1))),
        let_(
            "klen",
            c(problem.k).sub(v("klo")).min(c(cn.k_per_split * t.k1)),
        ),
        let_("cs", v("t").rem(c(t.l0c_stages))),
        wait(Pipe::Fix, Pipe::M, v("cs")),
    ]);
    if let Some((reload, _)) = &panel {
        body.push(for_(
            "reload",
            reload.clone(),
            false,
            vec![
                wait(Pipe::Mte1, Pipe::Mte2, c(PANEL_EVENT)),
                Stmt::CopyIn {
                    dst: tile(bufs.l1a, c(0), (c(0), c(0)), (v("ml"), c(problem.k))),
                    src: gm(
                        0,
                        c(0),
                        (group.row_base.clone().add(v("mo")), c(0)),
                        (v("ml"), c(problem.k)),
                    ),
                },
                set(Pipe::Mte2, Pipe::Mte1, c(PANEL_EVENT)),
                wait(Pipe::Mte2, Pipe::Mte1, c(PANEL_EVENT)),
            ],
        ));
    }
    let l0_per_l1 = t.k1 / t.k0;
    let step = v("t").mul(c(cn.k_per_split)).add(v("kk"));
    // The B columns `at..at + nl` of `param` into the L1 tile from column `into`.
    let b_copy = |param: usize, at: Expr, into: u64| {
        let (gm_at, l1_at, size) = if problem.b_transposed {
            ((at, v("ko")), (c(into), c(0)), (v("nl"), v("kl1")))
        } else {
            ((v("ko"), at), (c(0), c(into)), (v("kl1"), v("nl")))
        };
        Stmt::CopyIn {
            dst: tile(bufs.l1b, v("s1"), l1_at, size.clone()),
            src: gm(param, group.index.clone(), gm_at, size),
        }
    };
    let tile_cols = problem.tile_cols(t.n1);
    let mut b_copies = vec![b_copy(1, v("no"), 0)];
    match problem.halves {
        Some(Halves::Stacked) => b_copies.push(b_copy(1, v("no").add(c(problem.n)), tile_cols)),
        Some(Halves::Separate) => b_copies.push(b_copy(ctx.b2_param, v("no"), tile_cols)),
        None => {}
    }
    let l0b_src = if problem.b_transposed {
        tile(
            bufs.l1b,
            v("s1"),
            (c(0), v("j").mul(c(t.k0))),
            (v("n16"), v("kl0")),
        )
    } else {
        tile(
            bufs.l1b,
            v("s1"),
            (v("j").mul(c(t.k0)), c(0)),
            (v("kl0"), v("n16")),
        )
    };
    // Accumulating Mmads with fewer than 10 fractals need a PIPE_M barrier between them.
    let min_n = if problem.n.is_multiple_of(tile_cols) {
        t.n1
    } else {
        t.n1 - tile_cols + (problem.n % tile_cols).div_ceil(16) * 16
    };
    let small = (group.min_m / 16) * (min_n / 16) < 10;
    let mut l0_body = vec![
        let_("kl0", v("kl1").sub(v("j").mul(c(t.k0))).min(c(t.k0))),
        let_("s0", step.clone().mul(c(l0_per_l1)).add(v("j")).rem(c(2))),
        wait(Pipe::M, Pipe::Mte1, v("s0")),
        Stmt::LoadL0 {
            dst: tile(bufs.l0a, v("s0"), (c(0), c(0)), (v("m16"), v("kl0"))),
            src: if panel.is_some() {
                tile(
                    bufs.l1a,
                    c(0),
                    (c(0), v("ko").add(v("j").mul(c(t.k0)))),
                    (v("m16"), v("kl0")),
                )
            } else {
                tile(
                    bufs.l1a,
                    v("s1"),
                    (c(0), v("j").mul(c(t.k0))),
                    (v("m16"), v("kl0")),
                )
            },
            transpose: false,
        },
        Stmt::LoadL0 {
            dst: tile(bufs.l0b, v("s0"), (c(0), c(0)), (v("kl0"), v("n16"))),
            src: l0b_src,
            transpose: problem.b_transposed,
        },
        set(Pipe::Mte1, Pipe::M, v("s0")),
        wait(Pipe::Mte1, Pipe::M, v("s0")),
    ];
    if small {
        l0_body.push(Stmt::Barrier { pipe: Pipe::M });
    }
    l0_body.extend([
        Stmt::Mmad {
            c: bufs.l0c,
            c_stage: v("cs"),
            a: bufs.l0a,
            a_stage: v("s0"),
            b: bufs.l0b,
            b_stage: v("s0"),
            m: v("m16"),
            n: v("n16"),
            k: v("kl0"),
            init: c(1).sub(v("kk").add(v("j")).min(c(1))),
        },
        set(Pipe::M, Pipe::Mte1, v("s0")),
    ]);
    let mut k_body = vec![
        let_("ko", v("klo").add(v("kk").mul(c(t.k1)))),
        let_("kl1", v("klen").sub(v("kk").mul(c(t.k1))).min(c(t.k1))),
        let_("s1", step.rem(c(2))),
        wait(Pipe::Mte1, Pipe::Mte2, v("s1")),
    ];
    if panel.is_none() {
        k_body.push(Stmt::CopyIn {
            dst: tile(bufs.l1a, v("s1"), (c(0), c(0)), (v("ml"), v("kl1"))),
            src: gm(
                0,
                c(0),
                (group.row_base.clone().add(v("mo")), v("ko")),
                (v("ml"), v("kl1")),
            ),
        });
    }
    k_body.extend(b_copies);
    k_body.extend([
        set(Pipe::Mte2, Pipe::Mte1, v("s1")),
        wait(Pipe::Mte2, Pipe::Mte1, v("s1")),
        for_("j", v("kl1").add(c(t.k0 - 1)).div(c(t.k0)), true, l0_body),
        set(Pipe::Mte1, Pipe::Mte2, v("s1")),
    ]);
    body.push(for_(
        "kk",
        v("klen").add(c(t.k1 - 1)).div(c(t.k1)),
        true,
        k_body,
    ));
    if let Some((_, release)) = panel {
        body.push(for_(
            "release",
            release,
            false,
            vec![set(Pipe::Mte1, Pipe::Mte2, c(PANEL_EVENT))],
        ));
    }
    body.extend([
        set(Pipe::M, Pipe::Fix, v("cs")),
        wait(Pipe::M, Pipe::Fix, v("cs")),
    ]);
    let fixpipe = |param: usize, at: (Expr, Expr), cols: Expr| Stmt::Fixpipe {
        dst: gm(param, c(0), at, (v("ml"), cols.clone())),
        src: tile(bufs.l0c, v("cs"), (c(0), c(0)), (v("ml"), cols)),
        relu: problem.relu,
        atomic_add: cn.splits > 1,
    };
    if problem.epilogue.is_some() {
        // Into this block's workspace slot for the AIVs (once they have read it two tiles ago);
        // a paired tile with both halves.
        let slot_row = v("blk").mul(c(2)).add(v("slot")).mul(c(t.m1));
        let cols = match problem.halves {
            Some(_) => c(tile_cols).add(v("nl")),
            None => v("nl"),
        };
        body.push(let_("slot", v("t").rem(c(2))));
        body.extend(epilogue::on_slot(epilogue::FREE, |flag| {
            Stmt::CrossCoreWait { flag }
        }));
        body.push(fixpipe(ctx.ws_param, (slot_row, c(0)), cols));
        body.extend(epilogue::on_slot(epilogue::READY, |flag| {
            Stmt::CrossCoreSet {
                pipe: Pipe::Fix,
                flag,
            }
        }));
    } else {
        body.push(fixpipe(
            2,
            (group.row_base.clone().add(v("mo")), v("no")),
            v("nl"),
        ));
    }
    body.push(set(Pipe::Fix, Pipe::M, v("cs")));
    body
}

/// Candidate tilings for `problem` on `target`, in a fixed order.
pub fn candidates(problem: &GemmProblem, target: &Target) -> Result<Vec<GemmTiling>, TileError> {
    let (c0, _) = check(problem, target)?;
    let max_m = problem.groups.iter().copied().max().unwrap_or(1).max(1);
    let with_exact = |list: &[u64], exact: u64, cap: u64| -> Vec<u64> {
        let mut out: Vec<u64> = list.iter().copied().filter(|&x| x <= exact).collect();
        if exact <= cap {
            out.push(exact);
        }
        out.sort_unstable();
        out.dedup();
        out
    };
    // Tiles far below the problem size only multiply the work units; keep m1 ≥ 64 and
    // n1 ≥ 32 unless the dimension itself is smaller.
    let m_exact = max_m.div_ceil(16) * 16;
    // A paired tile holds both matrices' columns.
    let halves = if problem.halves.is_some() { 2 } else { 1 };
    let n_exact = problem.n.div_ceil(16) * 16 * halves;
    let m1s: Vec<u64> = with_exact(
        &[16, 32, 64, 96, 112, 128, 144, 160, 176, 192, 224, 256],
        m_exact,
        256,
    )
    .into_iter()
    .filter(|&m| m >= m_exact.min(64))
    .collect();
    let n1s: Vec<u64> = with_exact(
        &[
            16, 32, 64, 96, 112, 128, 144, 160, 176, 192, 224, 256, 384, 512,
        ],
        n_exact,
        512,
    )
    .into_iter()
    .filter(|&n| n >= n_exact.min(32))
    .collect();
    let k_round = problem.k.div_ceil(c0) * c0;
    let swizzle_n_major = problem.total_m() < problem.n;
    let mut out = Vec::new();
    for &m1 in &m1s {
        for &n1 in &n1s {
            // The deepest L0 step that double-buffers in L0A and L0B: fewer, longer Mmads.
            let eb = (problem.input.bits() / 8) as u64;
            let l0 = target
                .buffers
                .l0a
                .usable_bytes()
                .min(target.buffers.l0b.usable_bytes());
            let deepest = (l0 / (2 * m1.max(n1) * eb) / c0 * c0).clamp(c0, 256);
            for k0 in [deepest.min(k_round)] {
                let mut k1s: Vec<u64> = [1u64, 2, 4]
                    .iter()
                    .map(|f| (k0 * f).min(problem.k.div_ceil(k0) * k0))
                    .collect();
                k1s.dedup();
                for &k1 in &k1s {
                    for l0c_stages in [1, 2] {
                        let base = GemmTiling {
                            m1,
                            n1,
                            k1,
                            k0,
                            split_k: 1,
                            l0c_stages,
                            swizzle: 3,
                            swizzle_n_major,
                            a_panel: false,
                        };
                        if !fits(problem, &base, target) {
                            continue;
                        }
                        let tiles = units(problem, &base);
                        let k_tiles = problem.k.div_ceil(k1);
                        for split_k in [1u64, 2, 3, 4, 6, 8] {
                            // ReLU (or an epilogue) of partial sums is not that of the sum:
                            // no split-K with either.
                            if split_k > 1
                                && (problem.relu
                                    || problem.epilogue.is_some()
                                    || tiles >= target.cores.aic as u64
                                    || split_k > k_tiles)
                            {
                                continue;
                            }
                            out.push(GemmTiling { split_k, ..base });
                        }
                        let panel = GemmTiling {
                            a_panel: true,
                            ..base
                        };
                        if problem.groups.len() == 1
                            && problem.n > n1
                            && fits(problem, &panel, target)
                        {
                            out.push(panel);
                        }
                    }
                }
            }
        }
    }
    let reference = GemmTiling::catlass_default(problem);
    if fits(problem, &reference, target) && !out.contains(&reference) {
        out.push(reference);
    }
    if out.is_empty() {
        return Err(TileError::NoFit {
            name: problem.name.clone(),
            reason: "no candidate fits".into(),
        });
    }
    Ok(out)
}

/// Builds and costs one tiling.
pub fn evaluate(
    problem: &GemmProblem,
    t: &GemmTiling,
    target: &Target,
) -> Result<GemmPlan, TileError> {
    evaluate_with(problem, None, t, target)
}

fn evaluate_with(
    problem: &GemmProblem,
    table: Option<&GroupTable>,
    t: &GemmTiling,
    target: &Target,
) -> Result<GemmPlan, TileError> {
    let kernel = build_kernel(problem, table, t, target)?;
    let cost = estimate_with_reuse(
        &kernel,
        target,
        &problem.work(),
        reuse_bytes(problem, t, target),
    )?;
    Ok(GemmPlan {
        tiling: *t,
        kernel,
        cost,
    })
}

/// Chooses the tiling with the lowest modelled time (ties: fewer work units, then the
/// candidate order), and verifies its kernel.
pub fn plan(problem: &GemmProblem, target: &Target) -> Result<GemmPlan, TileError> {
    plan_with(problem, None, target)
}

/// [`plan`] for a grouped GEMM whose group rows are read from `table` at run time: the tiling
/// is chosen for the planned profile `problem.groups` (searched on the static kernel of that
/// profile, which models the same tiles without the table reads), then the runtime kernel is
/// built, costed and verified.
pub fn plan_runtime(
    problem: &GemmProblem,
    table: &GroupTable,
    target: &Target,
) -> Result<GemmPlan, TileError> {
    plan_with(problem, Some(table), target)
}

fn plan_with(
    problem: &GemmProblem,
    table: Option<&GroupTable>,
    target: &Target,
) -> Result<GemmPlan, TileError> {
    let key = cache_key(problem, table, target);
    if let Some(hit) = plan_cache().get(&key) {
        let mut plan = hit.clone();
        plan.kernel.name.clone_from(&problem.name);
        return Ok(plan);
    }
    let searched = search(problem, table.is_none(), target)?;
    // The search costed the static kernel; a runtime table needs the kernel that reads it.
    let chosen = match table {
        None => searched,
        Some(_) => evaluate_with(problem, table, &searched.tiling, target)?,
    };
    verify(&chosen.kernel, target)?;
    plan_cache().insert(key, chosen.clone());
    Ok(chosen)
}

/// How close to the best modelled time a candidate must come to tie with it.
const TIE: f64 = 1e-9;

/// How long the first candidate's costing must take before the next ones are costed several at
/// a time on the machine's cores (below it, starting threads would cost more than they save).
const PARALLEL_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

/// The candidate with the lowest modelled time; near-ties (within [`TIE`]) go to fewer work
/// units, then to the earlier candidate. Candidates are costed in the order of their
/// [`lower_bound_us`] (never more than their modelled time), so their kernels are built only
/// while they could still win: the search stops at the first bound beyond a tie with the best
/// time found, and skips a candidate whose bound is already reached by a costed candidate
/// that would win the tie-break against it. When costing a kernel takes long, the next few
/// candidates that may still win are costed at once on the machine's cores, and their results
/// taken in order as if costed one by one (the same winner; a candidate the order rules out is
/// dropped). Returns the winner's plan (of the static kernel).
fn search(
    problem: &GemmProblem,
    static_rows: bool,
    target: &Target,
) -> Result<GemmPlan, TileError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    search_batched(problem, static_rows, target, cores, PARALLEL_AFTER)
}

/// [`search`], costing up to `cores` candidates at once after a round that took at least
/// `parallel_after`.
fn search_batched(
    problem: &GemmProblem,
    static_rows: bool,
    target: &Target,
    cores: usize,
    parallel_after: std::time::Duration,
) -> Result<GemmPlan, TileError> {
    let all: Vec<GemmTiling> = candidates(problem, target)?
        .into_iter()
        .filter(|t| static_rows || !t.a_panel)
        .collect();
    let mut order: Vec<(f64, (u64, usize))> = all
        .iter()
        .enumerate()
        .map(|(i, t)| (lower_bound_us(problem, t, target), (units(problem, t), i)))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut search = Search::default();
    // Where the next round starts in `order`.
    let mut next = 0;
    // At most one candidate at a time until costing one proves slow.
    let mut batch = 1;
    while next < order.len() {
        let start = std::time::Instant::now();
        // The next candidates that may still win, as positions in `order`.
        let mut wanted = Vec::with_capacity(batch);
        for (i, &(bound, key)) in order.iter().enumerate().skip(next) {
            if search.past_best(bound) {
                next = order.len();
                break;
            }
            next = i + 1;
            if !search.outranked(bound, key) {
                wanted.push(order[i]);
                if wanted.len() == batch {
                    break;
                }
            }
        }
        let costed = cost_all(problem, &all, &wanted, target);
        for ((bound, key), plan) in wanted.into_iter().zip(costed) {
            if search.past_best(bound) {
                next = order.len();
                break;
            }
            if !search.outranked(bound, key) {
                search.add(key, plan?);
            }
        }
        if start.elapsed() >= parallel_after {
            batch = cores;
        }
    }
    search
        .timed
        .into_iter()
        .min_by_key(|(_, key, _)| *key)
        .map(|(_, _, plan)| plan)
        .ok_or_else(|| TileError::NoFit {
            name: problem.name.clone(),
            reason: "no candidate evaluated".into(),
        })
}

/// The state of [`search`]: the costed candidates that may still win.
#[derive(Default)]
struct Search {
    best_time: Option<f64>,
    /// Modelled time, tie-break key and plan.
    timed: Vec<(f64, (u64, usize), GemmPlan)>,
}

impl Search {
    /// Whether a candidate with lower bound `bound`, and every later one, can no longer win.
    fn past_best(&self, bound: f64) -> bool {
        self.best_time
            .is_some_and(|best| bound > best * (1.0 + TIE))
    }

    /// Whether a costed candidate at most `bound` with a smaller tie-break key means this one
    /// can neither beat it nor win a tie against it.
    fn outranked(&self, bound: f64, key: (u64, usize)) -> bool {
        self.timed
            .iter()
            .any(|&(time, k, _)| time <= bound && k < key)
    }

    fn add(&mut self, key: (u64, usize), plan: GemmPlan) {
        let time = plan.cost.modeled_time_us;
        let best = self.best_time.map_or(time, |b| b.min(time));
        self.best_time = Some(best);
        self.timed.push((time, key, plan));
        // Beyond a tie with the best, a candidate can no longer win (nor, being above every
        // bound still to come, skip one).
        self.timed.retain(|(time, ..)| *time <= best * (1.0 + TIE));
    }
}

/// Costs the `wanted` candidates of `all`, each on its own thread when there are several.
fn cost_all(
    problem: &GemmProblem,
    all: &[GemmTiling],
    wanted: &[(f64, (u64, usize))],
    target: &Target,
) -> Vec<Result<GemmPlan, TileError>> {
    cubevec_ir::parallel::map_ordered(wanted, wanted.len(), |&(_, (_, i))| {
        evaluate(problem, &all[i], target)
    })
}

/// `(length, count)` of the pieces `total` splits into with step `step`.
fn pieces(total: u64, step: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if total / step > 0 {
        out.push((step, total / step));
    }
    if !total.is_multiple_of(step) {
        out.push((total % step, 1));
    }
    out
}

/// A lower bound of the modelled time of tiling `t` in microseconds, computed without
/// building its kernel: the Cube and MTE2 work of all units spread evenly over the blocks,
/// the busiest block's unit count times the cheapest unit, and the L2 and HBM traffic (with
/// an A panel, A is counted once).
/// [`evaluate`] never models less.
pub fn lower_bound_us(problem: &GemmProblem, t: &GemmTiling, target: &Target) -> f64 {
    let cn = counts(problem, t);
    let eb = problem.input.bits() as f64 / 8.0;
    let ob = problem.output.bits() as f64 / 8.0;
    let macs = target
        .fractal(problem.input)
        .map_or(4096.0, |f| f.macs_per_cycle as f64);
    let bw = target.mte.gm_bytes_per_cycle_per_core;
    let total_units = units(problem, t);
    let blocks = total_units.min(target.cores.aic as u64).max(1) as f64;
    let (mut cube, mut mte2, mut reads, mut writes) = (0.0, 0.0, 0.0, 0.0);
    let (mut min_cube, mut min_mte2) = (f64::INFINITY, f64::INFINITY);
    let tile_cols = problem.tile_cols(t.n1);
    for &m_g in &problem.groups {
        for (ml, cm) in pieces(m_g, t.m1) {
            for (nl, cnn) in pieces(problem.n, tile_cols) {
                // A paired tile multiplies the first matrix's whole half and the second's
                // `nl` columns, and reads `nl` columns of each.
                let (cube_cols, b_cols) = match problem.halves {
                    Some(_) => (tile_cols + nl, 2 * nl),
                    None => (nl, nl),
                };
                for (kl, ck) in pieces(problem.k, cn.k_per_split * t.k1) {
                    let count = (cm * cnn * ck) as f64;
                    let (ml, nl, kl) = (ml as f64, nl as f64, kl as f64);
                    let (cube_cols, b_cols) = (cube_cols as f64, b_cols as f64);
                    let unit_cube =
                        (ml / 16.0).ceil() * (cube_cols / 16.0).ceil() * 256.0 * kl / macs;
                    let a_rows = if t.a_panel { 0.0 } else { ml };
                    let unit_read = (a_rows + b_cols) * kl * eb;
                    cube += count * unit_cube;
                    mte2 += count * unit_read / bw;
                    reads += count * unit_read;
                    writes += count * ml * nl * ob;
                    min_cube = min_cube.min(unit_cube);
                    min_mte2 = min_mte2.min(unit_read / bw);
                }
            }
        }
    }
    if t.a_panel {
        let a_bytes = (problem.total_m() * problem.k) as f64 * eb;
        reads += a_bytes;
        mte2 += a_bytes / bw;
    }
    let busiest = total_units.div_ceil(blocks as u64) as f64;
    let core_cycles = (cube / blocks)
        .max(mte2 / blocks)
        .max(busiest * min_cube.max(min_mte2));
    let work = problem.work();
    let l2_s = (reads + writes) / (target.memory.l2_gbps * 1e9);
    let spill = l2_spill(target, reuse_bytes(problem, t, target));
    let hbm_s =
        (work.bytes + (reads - work.bytes).max(0.0) * spill) / (target.memory.hbm_gbps * 1e9);
    (core_cycles / target.clock_hz()).max(l2_s).max(hbm_s) * 1e6
}

/// The most GM data a block order touches between two reads of the same bytes. Swizzled
/// round-robin over M strips: a B panel is read again one strip later, after all of B, the
/// strip's A panels and its output; over N strips the same with A and B exchanged. A-panel
/// runs: all of B plus the panels the blocks hold at once. Grouped problems keep the whole
/// footprint.
fn reuse_bytes(problem: &GemmProblem, t: &GemmTiling, target: &Target) -> f64 {
    let work = problem.work();
    if problem.groups.len() != 1 {
        return work.bytes;
    }
    let eb = problem.input.bits() as f64 / 8.0;
    let ob = problem.output.bits() as f64 / 8.0;
    let (m, n, k) = (
        problem.total_m() as f64,
        problem.product_cols() as f64,
        problem.k as f64,
    );
    let (m1, n1) = (t.m1 as f64, t.n1 as f64);
    let reuse = if t.a_panel {
        let blocks = units(problem, t).min(target.cores.aic as u64) as f64;
        n * k * eb + blocks * m1 * (k * eb + n * ob)
    } else if t.swizzle_n_major {
        let w = t.swizzle as f64 * n1;
        m * k * eb + w * k * eb + w * m * ob
    } else {
        let w = t.swizzle as f64 * m1;
        n * k * eb + w * k * eb + w * n * ob
    };
    reuse.min(work.bytes)
}

/// Plans already made in this process, by problem (without its name), table and target.
fn plan_cache() -> std::sync::MutexGuard<'static, HashMap<String, GemmPlan>> {
    static CACHE: OnceLock<Mutex<HashMap<String, GemmPlan>>> = OnceLock::new();
    CACHE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cache_key(problem: &GemmProblem, table: Option<&GroupTable>, target: &Target) -> String {
    let unnamed = GemmProblem {
        name: String::new(),
        ..problem.clone()
    };
    format!("{unnamed:?} {table:?} {target:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Costing candidates several at a time chooses what costing them one by one does.
    #[test]
    fn batched_search_chooses_as_one_by_one() {
        let target = Target::by_name("ascend910b2").expect("target");
        let problems = [
            GemmProblem::plain("decode", 1, 4096, 7168, DType::BF16, true),
            GemmProblem::plain("prefill", 1024, 2048, 7168, DType::BF16, true),
            GemmProblem::plain("tails", 200, 328, 1000, DType::F16, false),
        ];
        for problem in &problems {
            let alone = search_batched(problem, true, &target, 1, std::time::Duration::MAX)
                .expect("search");
            for cores in [2, 3, 8] {
                let batched =
                    search_batched(problem, true, &target, cores, std::time::Duration::ZERO)
                        .expect("search");
                assert_eq!(batched.tiling, alone.tiling, "{} on {cores}", problem.name);
                assert_eq!(batched.kernel.to_string(), alone.kernel.to_string());
                assert_eq!(batched.cost.modeled_time_us, alone.cost.modeled_time_us);
            }
        }
    }
}
