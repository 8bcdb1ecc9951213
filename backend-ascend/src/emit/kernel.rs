//! One kernel as an AscendC C++ source file: the entry point, the tiling data, GM tensors, one
//! pool buffer per memory level with every IR buffer at its planned offset, and the cube and
//! vector programs with each statement translated by [`super::moves`] and [`super::compute`].

use std::collections::{BTreeMap, BTreeSet};

use cubevec_ir::DType;
use cubevec_ir::kernel::exec::BLOCK_VAR;
use cubevec_ir::kernel::print::stmt_to_string;
use cubevec_ir::kernel::{
    BufId, Buffer, CoreType, Expr, GmTile, Kernel, Layout, MemLevel, Param, ParamRole, ScalarSrc,
    Side, Slice, Stmt, Tile, VecArg,
};
use cubevec_ir::target::Target;

use super::EmitError;
use super::code::Code;
use super::expr::ExprPrinter;
use super::names::{Idents, comment_text};
use super::plan::KernelPlan;
use super::types::{cpp_type, elem_bytes, kernel_type, pool};

/// Identifiers every kernel body uses besides the ones derived from IR names.
const FIXED_IDENTS: &[&str] = &[
    "workspace",
    "tiling",
    "tilingData",
    "pipe",
    "l1Pool",
    "l0aPool",
    "l0bPool",
    "l0cPool",
    "ubPool",
    "biasPool",
    "frac",
    "fracEnd",
];

/// Levels whose buffers each side owns, in pool order.
const CUBE_LEVELS: [MemLevel; 5] = [
    MemLevel::L1,
    MemLevel::L0A,
    MemLevel::L0B,
    MemLevel::L0C,
    MemLevel::BiasTable,
];

/// The reduction scratch of one element type: where it sits in UB.
struct Scratch {
    /// Identifier of its `LocalTensor`.
    ident: String,
    /// Byte offset in UB.
    offset: u64,
}

/// The state of emitting one kernel.
pub(crate) struct KernelSource<'k> {
    pub(crate) kernel: &'k Kernel,
    target: &'k Target,
    ids: Idents,
    vars: BTreeMap<String, String>,
    /// The variables the side being emitted reads.
    used: BTreeSet<String>,
    gm: Vec<String>,
    gm_bits: BTreeMap<usize, String>,
    bufs: Vec<String>,
    strides: Vec<u64>,
    scratch: BTreeMap<DType, Scratch>,
    scratch_bytes: u64,
    pub(crate) code: Code,
    scopes: Vec<BTreeSet<String>>,
}

/// The C++ source of `kernel`, named as `plan` says.
pub(crate) fn kernel_source(
    kernel: &Kernel,
    target: &Target,
    plan: &KernelPlan,
) -> Result<String, EmitError> {
    let mut k = KernelSource::new(kernel, target, plan)?;
    k.write(plan)?;
    Ok(k.code.finish())
}

impl<'k> KernelSource<'k> {
    fn new(
        kernel: &'k Kernel,
        target: &'k Target,
        plan: &KernelPlan,
    ) -> Result<KernelSource<'k>, EmitError> {
        let mut ids = Idents::new();
        ids.reserve(FIXED_IDENTS);
        ids.reserve(&plan.args.iter().map(String::as_str).collect::<Vec<_>>());
        for p in &kernel.params {
            if cpp_type(p.dtype).is_none() {
                return Err(unsupported(
                    kernel,
                    format!("parameter `{}` has dtype {}", p.name, p.dtype),
                ));
            }
        }
        let gm = kernel
            .params
            .iter()
            .map(|p| ids.fresh("g_", &p.name))
            .collect();
        let mut gm_bits = BTreeMap::new();
        let mut names = BTreeSet::new();
        let mut reductions = Vec::new();
        names.insert(BLOCK_VAR.to_string());
        for stmt in kernel.cube.iter().chain(&kernel.vector) {
            visit(stmt, &mut |s| {
                match s {
                    Stmt::Let { var, .. } | Stmt::For { var, .. } => {
                        names.insert(var.clone());
                    }
                    Stmt::LoadScalar { var, src, .. } => {
                        names.insert(var.clone());
                        if let ScalarSrc::Gm { param, .. } = src
                            && kernel
                                .params
                                .get(*param)
                                .is_some_and(|p| p.dtype.is_float())
                        {
                            gm_bits.entry(*param).or_insert(());
                        }
                    }
                    Stmt::Reduce { src, .. } => reductions.push(src.buf),
                    _ => {}
                }
                exprs(s, &mut |e| e.collect_vars(&mut names));
            });
        }
        let gm_bits = gm_bits
            .into_keys()
            .map(|p| {
                (
                    p,
                    ids.fresh("g_", &format!("{}_bits", kernel.params[p].name)),
                )
            })
            .collect();
        let vars = names
            .into_iter()
            .map(|n| {
                let ident = ids.fresh("v_", &n);
                (n, ident)
            })
            .collect();
        let mut bufs = Vec::new();
        let mut strides = Vec::new();
        for b in &kernel.buffers {
            if cpp_type(b.dtype).is_none() || b.level == MemLevel::Gm {
                return Err(unsupported(
                    kernel,
                    format!("buffer `{}` is {} at {}", b.name, b.dtype, b.level.name()),
                ));
            }
            bufs.push(ids.fresh("b_", &b.name));
            strides.push(b.stage_stride(align(target, b.level)) / elem_bytes(b.dtype));
        }
        let mut k = KernelSource {
            kernel,
            target,
            ids,
            vars,
            used: BTreeSet::new(),
            gm,
            gm_bits,
            bufs,
            strides,
            scratch: BTreeMap::new(),
            scratch_bytes: 0,
            code: Code::new(),
            scopes: Vec::new(),
        };
        k.plan_scratch(&reductions)?;
        Ok(k)
    }

    /// Reserves UB after the planned buffers for the `sharedTmpBuffer` of the reductions: the
    /// largest `ReduceMax` work area (per the arch-2201 rule, with the index pass) over the
    /// source buffers, one region shared by every reduction.
    fn plan_scratch(&mut self, sources: &[BufId]) -> Result<(), EmitError> {
        let mut bytes = 0u64;
        let mut dtypes = BTreeSet::new();
        for &src in sources {
            let buf = self.buffer(src)?;
            let eb = elem_bytes(buf.dtype);
            let per_repeat = 256 / eb;
            let per_block = 32 / eb;
            let round = |x: u64| x.div_ceil(per_block) * per_block;
            let r1 = (buf.rows * buf.cols).div_ceil(per_repeat);
            let elems = round(2 * r1) + 2 * round(2 * (2 * r1).div_ceil(per_repeat) + 2);
            bytes = bytes.max(elems * eb);
            dtypes.insert(buf.dtype);
        }
        if dtypes.is_empty() {
            return Ok(());
        }
        let offset = self.pool_bytes(MemLevel::Ub).div_ceil(32) * 32;
        let spec = self.target.buffers.ub;
        let capacity = spec.bytes.saturating_sub(spec.reserved_bytes);
        if offset + bytes > capacity {
            return Err(unsupported(
                self.kernel,
                format!(
                    "the reduction work area of {bytes} bytes does not fit in UB after the buffers ({offset} of {capacity} bytes used)"
                ),
            ));
        }
        self.scratch_bytes = offset + bytes.div_ceil(32) * 32 - self.pool_bytes(MemLevel::Ub);
        for dtype in dtypes {
            let ident = self.ids.fresh("scratch_", dtype.name());
            self.scratch.insert(dtype, Scratch { ident, offset });
        }
        Ok(())
    }

    /// Bytes of a level's pool: the end of its last buffer with all stages.
    fn pool_bytes(&self, level: MemLevel) -> u64 {
        let align = align(self.target, level);
        self.kernel
            .buffers
            .iter()
            .filter(|b| b.level == level)
            .map(|b| b.offset + b.total_bytes(align))
            .max()
            .unwrap_or(0)
    }

    fn write(&mut self, plan: &KernelPlan) -> Result<(), EmitError> {
        let kernel = self.kernel;
        let c = &mut self.code;
        c.line(format!(
            "// cubevec kernel \"{}\" (generated; do not edit).",
            comment_text(&kernel.name)
        ));
        c.line(format!(
            "// core {} ({}), {} blocks.",
            kernel.core.name(),
            kernel_type(kernel.core),
            kernel.blocks
        ));
        if !kernel.tiling.is_empty() {
            let facts: Vec<String> = kernel
                .tiling
                .iter()
                .map(|(k, v)| format!("{}={v}", comment_text(k)))
                .collect();
            c.line(format!("// tiling: {}", facts.join(" ")));
        }
        c.line("#include \"kernel_operator.h\"");
        c.line("#include \"../include/cubevec_kernel.h\"");
        c.line("");
        let mut args: Vec<String> = plan.args.iter().map(|a| format!("GM_ADDR {a}")).collect();
        args.push("GM_ADDR workspace".into());
        args.push("GM_ADDR tiling".into());
        c.open(format!(
            "extern \"C\" __global__ __aicore__ void {}({})",
            plan.symbol,
            args.join(", ")
        ));
        c.line(format!(
            "KERNEL_TASK_TYPE_DEFAULT({});",
            kernel_type(kernel.core)
        ));
        c.line("(void)workspace;");
        c.line(format!("{} tilingData;", plan.tiling_struct));
        c.line("cvk::LoadTiling(&tilingData, tiling);");
        for (i, p) in kernel.params.iter().enumerate() {
            self.global_tensor(i, p, plan);
        }
        if let Some(i) = scalar_read_inputs(kernel).first() {
            // Scalar reads of inputs (written before the launch) go through the data cache,
            // which may hold the same addresses from an earlier kernel: invalidate it once here
            // instead of a line before every read.
            let ty = cpp_type(kernel.params[*i].dtype).unwrap_or("uint8_t");
            self.code.line(format!(
                "AscendC::DataCacheCleanAndInvalid<{ty}, AscendC::CacheLine::ENTIRE_DATA_CACHE, AscendC::DcciDst::CACHELINE_OUT>({});",
                self.gm[*i]
            ));
        }
        self.code.line("AscendC::TPipe pipe;");
        if kernel.core != CoreType::Aiv {
            self.side(Side::Cube)?;
        }
        if kernel.core != CoreType::Aic {
            self.side(Side::Vector)?;
        }
        self.code.close("");
        Ok(())
    }

    fn global_tensor(&mut self, i: usize, p: &Param, plan: &KernelPlan) {
        let role = match p.role {
            ParamRole::Input => "input",
            ParamRole::Output => "output",
            ParamRole::OutputZeroed => "output, zero-filled before the launch",
            ParamRole::Workspace => "workspace",
        };
        let ty = cpp_type(p.dtype).unwrap_or("uint8_t");
        let c = &mut self.code;
        c.line(format!(
            "// parameter {i} \"{}\": {}{:?}, {role}",
            comment_text(&p.name),
            p.dtype,
            p.shape
        ));
        let mut views = vec![(self.gm[i].clone(), ty)];
        if let Some(bits) = self.gm_bits.get(&i) {
            views.push((bits.clone(), super::types::bits_type(p.dtype)));
        }
        for (name, ty) in views {
            c.line(format!("AscendC::GlobalTensor<{ty}> {name};"));
            c.line(format!(
                "{name}.SetGlobalBuffer(reinterpret_cast<__gm__ {ty}*>({}), tilingData.{});",
                plan.args[i], plan.fields[i]
            ));
        }
    }

    /// One side's block: its pools, buffer tensors, `blk` and its program.
    fn side(&mut self, side: Side) -> Result<(), EmitError> {
        let (guard, levels): (&str, &[MemLevel]) = match side {
            Side::Cube => ("if ASCEND_IS_AIC", &CUBE_LEVELS),
            Side::Vector => ("if ASCEND_IS_AIV", &[MemLevel::Ub]),
        };
        self.code.open(guard);
        for &level in levels {
            let extra = if level == MemLevel::Ub {
                self.scratch_bytes
            } else {
                0
            };
            let bytes = self.pool_bytes(level) + extra;
            if bytes == 0 {
                continue;
            }
            let Some((position, name)) = pool(level) else {
                continue;
            };
            self.code.line(format!(
                "AscendC::TBuf<AscendC::TPosition::{position}> {name};"
            ));
            self.code.line(format!("pipe.InitBuffer({name}, {bytes});"));
            let used = used_buffers(self.kernel);
            for (i, b) in self.kernel.buffers.iter().enumerate() {
                // A buffer no statement names gets no tensor (an unused variable is an error
                // under -Werror); its bytes stay reserved at their planned offset.
                if b.level != level || !used[i] {
                    continue;
                }
                let ty = cpp_type(b.dtype).unwrap_or("uint8_t");
                self.code.line(format!(
                    "// buffer \"{}\": {} {}[{}, {}] {}, {} stage(s) of {} elements @{}",
                    comment_text(&b.name),
                    b.level.name(),
                    b.dtype,
                    b.rows,
                    b.cols,
                    b.layout.name(),
                    b.stages,
                    self.strides[i],
                    b.offset
                ));
                self.code.line(format!(
                    "const AscendC::LocalTensor<{ty}> {} = {};",
                    self.bufs[i],
                    pool_view(name, ty, b.offset / elem_bytes(b.dtype))
                ));
            }
            if level == MemLevel::Ub {
                for (dtype, s) in &self.scratch {
                    let ty = cpp_type(*dtype).unwrap_or("float");
                    self.code
                        .line("// work area of ReduceSum / ReduceMax (sharedTmpBuffer)");
                    self.code.line(format!(
                        "const AscendC::LocalTensor<{ty}> {} = {};",
                        s.ident,
                        pool_view(name, ty, s.offset / elem_bytes(*dtype))
                    ));
                }
            }
        }
        let program = self.kernel.program(side);
        self.used = used_vars(program);
        self.scopes.push(BTreeSet::new());
        if self.used.contains(BLOCK_VAR) {
            let blk = self.vars[BLOCK_VAR].clone();
            self.code
                .line(format!("int64_t {blk} = AscendC::GetBlockIdx();"));
            self.declare(&blk);
        }
        self.body(program)?;
        self.scopes.pop();
        self.code.close("");
        Ok(())
    }

    fn body(&mut self, stmts: &[Stmt]) -> Result<(), EmitError> {
        for s in stmts {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), EmitError> {
        if !matches!(
            s,
            Stmt::Let { .. }
                | Stmt::For { .. }
                | Stmt::SetFlag { .. }
                | Stmt::WaitFlag { .. }
                | Stmt::Barrier { .. }
        ) {
            let text = stmt_to_string(self.kernel, s);
            self.code.line(format!("// {}", comment_text(&text)));
        }
        match s {
            Stmt::Let { var, value } => {
                if self.used.contains(var) {
                    let value = self.e(value);
                    self.bind(var, &value);
                }
                Ok(())
            }
            Stmt::For {
                var, extent, body, ..
            } => self.for_loop(var, extent, body),
            Stmt::CopyIn { dst, src } => self.copy_in(dst, src),
            Stmt::LoadL0 {
                dst,
                src,
                transpose,
            } => self.load_l0(dst, src, *transpose),
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
            } => self.mmad(
                [(*c, c_stage), (*a, a_stage), (*b, b_stage)],
                [m, n, k],
                init,
            ),
            Stmt::Fixpipe {
                dst,
                src,
                relu,
                atomic_add,
            } => self.fixpipe(dst, src, *relu, *atomic_add),
            Stmt::CopyOut { dst, src } => self.copy_out(dst, src),
            Stmt::Vector {
                op,
                dst,
                srcs,
                count,
            } => self.vector(*op, dst, srcs, count),
            Stmt::Reduce {
                kind,
                dst,
                src,
                count,
            } => self.reduce(*kind, dst, src, count),
            Stmt::LoadScalar { var, src, .. } => self.load_scalar(var, src),
            Stmt::SetValue { dst, value } => self.set_value(dst, value),
            Stmt::SetFlag { from, to, event } => self.flag("SetFlag", *from, *to, event),
            Stmt::WaitFlag { from, to, event } => self.flag("WaitFlag", *from, *to, event),
            Stmt::Barrier { pipe } => self.barrier(*pipe),
            Stmt::CrossCoreSet { pipe, flag } => self.cross_core_set(*pipe, *flag),
            Stmt::CrossCoreWait { flag } => {
                self.code
                    .line(format!("AscendC::CrossCoreWaitFlag({flag});"));
                Ok(())
            }
        }
    }

    /// `for (int64_t v = 0, end = extent; v < end; ++v)`; the extent is evaluated once, before
    /// the loop variable is bound (a constant or another variable is used directly: the body
    /// cannot assign a variable of an enclosing block, a rebinding there is a new declaration).
    /// A body that rebinds the loop variable gets its own block.
    fn for_loop(&mut self, var: &str, extent: &Expr, body: &[Stmt]) -> Result<(), EmitError> {
        let v = self.vars[var].clone();
        let mut extent_vars = BTreeSet::new();
        extent.collect_vars(&mut extent_vars);
        let simple = match extent {
            Expr::Const(_) => true,
            Expr::Var(name) => name != var,
            _ => false,
        };
        let hoist = !simple && extent_vars.contains(var);
        let header = if simple {
            format!("for (int64_t {v} = 0; {v} < {}; ++{v})", self.e(extent))
        } else {
            let end = self.ids.fresh("v_", &format!("{var}_end"));
            if hoist {
                self.code.open("");
                self.code
                    .line(format!("const int64_t {end} = {};", self.e(extent)));
                format!("for (int64_t {v} = 0; {v} < {end}; ++{v})")
            } else {
                format!(
                    "for (int64_t {v} = 0, {end} = {}; {v} < {end}; ++{v})",
                    self.e(extent)
                )
            }
        };
        let rebinds = body.iter().any(
            |s| matches!(s, Stmt::Let { var: w, .. } | Stmt::LoadScalar { var: w, .. } if w == var),
        );
        self.code.open(header);
        self.scopes.push(BTreeSet::from([v]));
        if rebinds {
            self.code.open("");
            self.scopes.push(BTreeSet::new());
        }
        self.body(body)?;
        if rebinds {
            self.scopes.pop();
            self.code.close("");
        }
        self.scopes.pop();
        self.code.close("");
        if hoist {
            self.code.close("");
        }
        Ok(())
    }

    /// Binds an IR variable to a C++ value: a declaration, or an assignment when the variable
    /// was already declared in the same block.
    pub(crate) fn bind(&mut self, var: &str, value: &str) {
        let v = self.vars[var].clone();
        if self.scopes.last().is_some_and(|s| s.contains(&v)) {
            self.code.line(format!("{v} = {value};"));
        } else {
            // A binding a later branch of the program does not read is not an error.
            self.code
                .line(format!("[[maybe_unused]] int64_t {v} = {value};"));
            self.declare(&v);
        }
    }

    fn declare(&mut self, ident: &str) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(ident.to_string());
        }
    }

    /// Whether an IR variable is read anywhere.
    pub(crate) fn is_used(&self, var: &str) -> bool {
        self.used.contains(var)
    }

    /// An expression as C++.
    pub(crate) fn e(&self, e: &Expr) -> String {
        ExprPrinter { vars: &self.vars }.top(e)
    }

    /// An expression converted to the integer type `ty` of a parameter: the plain number when
    /// it is a constant, else a `static_cast`.
    pub(crate) fn int(&self, ty: &str, e: &Expr) -> String {
        match e.as_const() {
            Some(v) => v.to_string(),
            None => format!("static_cast<{ty}>({})", self.e(e)),
        }
    }

    /// An expression as an operand of a C++ binary operator.
    pub(crate) fn operand(&self, e: &Expr) -> String {
        ExprPrinter { vars: &self.vars }.operand(e)
    }

    /// The buffer with id `id`.
    pub(crate) fn buffer(&self, id: BufId) -> Result<&'k Buffer, EmitError> {
        self.kernel
            .buffer(id)
            .ok_or_else(|| unsupported(self.kernel, format!("no buffer with id {}", id.0)))
    }

    /// The GM parameter with index `i`.
    pub(crate) fn param(&self, i: usize) -> Result<&'k Param, EmitError> {
        self.kernel
            .params
            .get(i)
            .ok_or_else(|| unsupported(self.kernel, format!("no parameter {i}")))
    }

    /// `buf[offset]` as a `LocalTensor` view (the whole tensor at offset 0).
    pub(crate) fn local(&self, buf: BufId, offset: &Expr) -> String {
        let name = &self.bufs[buf.0 as usize];
        match offset.as_const() {
            Some(0) => name.clone(),
            _ => format!("{name}[{}]", self.e(offset)),
        }
    }

    /// The bits view (`GlobalTensor<uintN_t>`) of a float parameter read by `LoadScalar`.
    pub(crate) fn gm_bits(&self, param: usize) -> Option<&str> {
        self.gm_bits.get(&param).map(String::as_str)
    }

    /// `g[offset]` as a `GlobalTensor` view of parameter `param`.
    pub(crate) fn global(&self, param: usize, offset: &Expr) -> String {
        let name = &self.gm[param];
        match offset.as_const() {
            Some(0) => name.clone(),
            _ => format!("{name}[{}]", self.e(offset)),
        }
    }

    /// Element offset of the first element of a stage.
    pub(crate) fn stage_offset(&self, buf: BufId, stage: &Expr) -> Expr {
        stage.clone().mul(Expr::c(self.strides[buf.0 as usize]))
    }

    /// Element offset of a slice's first element in its buffer tensor.
    pub(crate) fn slice_offset(&self, s: &Slice) -> Expr {
        self.stage_offset(s.buf, &s.stage).add(s.offset.clone())
    }

    /// Element offset of a tile's origin in its buffer tensor: row-major for ND, and for the
    /// fractal layouts the origin's fractal (origins are fractal aligned; L0 tiles start at 0).
    pub(crate) fn tile_offset(&self, t: &Tile) -> Result<Expr, EmitError> {
        let b = self.buffer(t.buf)?;
        let inner = match b.layout {
            Layout::Nd => t.row.clone().mul(Expr::c(b.cols)).add(t.col.clone()),
            // Fractals column-major: the column group `col / c0` starts `col * rows` elements in
            // (col is a multiple of c0), the row `row` of a group `row * c0` elements in.
            Layout::Nz => t
                .col
                .clone()
                .mul(Expr::c(b.rows))
                .add(t.row.clone().mul(Expr::c(b.fractal_cols()))),
            Layout::Zz | Layout::Zn => Expr::c(0),
        };
        Ok(self.stage_offset(t.buf, &t.stage).add(inner))
    }

    /// Element offset of a GM region's origin: `(batch · rows + row) · cols + col`.
    pub(crate) fn gm_offset(&self, t: &GmTile) -> Result<Expr, EmitError> {
        let (_, rows, cols) = self.param(t.param)?.matrix_dims();
        Ok(t.batch
            .clone()
            .mul(Expr::c(rows * cols))
            .add(t.row.clone().mul(Expr::c(cols)))
            .add(t.col.clone()))
    }

    /// The reduction work area for `dtype`.
    pub(crate) fn scratch(&self, dtype: DType) -> Result<&str, EmitError> {
        self.scratch
            .get(&dtype)
            .map(|s| s.ident.as_str())
            .ok_or_else(|| unsupported(self.kernel, format!("no reduction work area for {dtype}")))
    }

    /// An error naming this kernel.
    pub(crate) fn unsupported(&self, message: String) -> EmitError {
        unsupported(self.kernel, message)
    }
}

/// `pool.Get<T>()[elems]`, or the whole pool at element 0.
fn pool_view(pool: &str, ty: &str, elems: u64) -> String {
    if elems == 0 {
        format!("{pool}.Get<{ty}>()")
    } else {
        format!("{pool}.Get<{ty}>()[{elems}]")
    }
}

fn align(target: &Target, level: MemLevel) -> u64 {
    target.buffer(level).map_or(32, |s| s.align)
}

fn unsupported(kernel: &Kernel, message: String) -> EmitError {
    EmitError::Unsupported {
        kernel: kernel.name.clone(),
        message,
    }
}

/// The variables any expression of `program` reads.
fn used_vars(program: &[Stmt]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for stmt in program {
        visit(stmt, &mut |s| exprs(s, &mut |e| e.collect_vars(&mut used)));
    }
    used
}

/// The input parameters that `LoadScalar` reads from GM, in parameter order.
fn scalar_read_inputs(kernel: &Kernel) -> Vec<usize> {
    let mut read = vec![false; kernel.params.len()];
    for stmt in kernel.cube.iter().chain(&kernel.vector) {
        visit(stmt, &mut |s| {
            if let Stmt::LoadScalar {
                src: ScalarSrc::Gm { param, .. },
                ..
            } = s
                && kernel.params.get(*param).map(|p| p.role) == Some(ParamRole::Input)
            {
                read[*param] = true;
            }
        });
    }
    (0..read.len()).filter(|&i| read[i]).collect()
}

/// Calls `f` on `stmt` and every statement nested in it.
fn visit(stmt: &Stmt, f: &mut impl FnMut(&Stmt)) {
    f(stmt);
    if let Stmt::For { body, .. } = stmt {
        for s in body {
            visit(s, f);
        }
    }
}

/// Calls `f` on every expression the emitted code of `stmt` evaluates (not the loop bodies; the
/// planned values of scalar loads are for static analyses only).
fn exprs(stmt: &Stmt, f: &mut impl FnMut(&Expr)) {
    fn tile(t: &Tile, f: &mut dyn FnMut(&Expr)) {
        for e in [&t.stage, &t.row, &t.col, &t.rows, &t.cols] {
            f(e);
        }
    }
    fn gm(t: &GmTile, f: &mut dyn FnMut(&Expr)) {
        for e in [&t.batch, &t.row, &t.col, &t.rows, &t.cols] {
            f(e);
        }
    }
    fn slice(s: &Slice, f: &mut dyn FnMut(&Expr)) {
        f(&s.stage);
        f(&s.offset);
    }
    fn arg(a: &VecArg, f: &mut dyn FnMut(&Expr)) {
        match a {
            VecArg::Slice(s) | VecArg::Element(s) => slice(s, f),
            VecArg::Scalar(e) => f(e),
            VecArg::Imm(_) => {}
        }
    }
    match stmt {
        Stmt::Let { value, .. } => f(value),
        Stmt::For { extent, .. } => f(extent),
        Stmt::CopyIn { dst, src } => {
            tile(dst, f);
            gm(src, f);
        }
        Stmt::LoadL0 { dst, src, .. } => {
            tile(dst, f);
            tile(src, f);
        }
        Stmt::Mmad {
            c_stage,
            a_stage,
            b_stage,
            m,
            n,
            k,
            init,
            ..
        } => {
            for e in [c_stage, a_stage, b_stage, m, n, k, init] {
                f(e);
            }
        }
        Stmt::Fixpipe { dst, src, .. } | Stmt::CopyOut { dst, src } => {
            gm(dst, f);
            tile(src, f);
        }
        Stmt::Vector {
            dst, srcs, count, ..
        } => {
            slice(dst, f);
            for a in srcs {
                arg(a, f);
            }
            f(count);
        }
        Stmt::Reduce {
            dst, src, count, ..
        } => {
            slice(dst, f);
            slice(src, f);
            f(count);
        }
        Stmt::LoadScalar { src, .. } => match src {
            ScalarSrc::Gm { index, .. } => f(index),
            ScalarSrc::Ub(s) => slice(s, f),
        },
        Stmt::SetValue { dst, value } => {
            slice(dst, f);
            arg(value, f);
        }
        Stmt::SetFlag { event, .. } | Stmt::WaitFlag { event, .. } => f(event),
        Stmt::Barrier { .. } | Stmt::CrossCoreSet { .. } | Stmt::CrossCoreWait { .. } => {}
    }
}

/// Which buffers (by index) some statement of either program names.
fn used_buffers(kernel: &Kernel) -> Vec<bool> {
    fn mark_slice(used: &mut [bool], s: &Slice) {
        used[s.buf.0 as usize] = true;
    }
    fn mark_arg(used: &mut [bool], a: &VecArg) {
        if let VecArg::Slice(s) | VecArg::Element(s) = a {
            mark_slice(used, s);
        }
    }
    fn walk(used: &mut [bool], body: &[Stmt]) {
        for stmt in body {
            match stmt {
                Stmt::For { body, .. } => walk(used, body),
                Stmt::CopyIn { dst, .. } => used[dst.buf.0 as usize] = true,
                Stmt::LoadL0 { dst, src, .. } => {
                    used[dst.buf.0 as usize] = true;
                    used[src.buf.0 as usize] = true;
                }
                Stmt::Mmad { c, a, b, .. } => {
                    for id in [c, a, b] {
                        used[id.0 as usize] = true;
                    }
                }
                Stmt::Fixpipe { src, .. } | Stmt::CopyOut { src, .. } => {
                    used[src.buf.0 as usize] = true;
                }
                Stmt::Vector { dst, srcs, .. } => {
                    mark_slice(used, dst);
                    for a in srcs {
                        mark_arg(used, a);
                    }
                }
                Stmt::Reduce { dst, src, .. } => {
                    mark_slice(used, dst);
                    mark_slice(used, src);
                }
                Stmt::LoadScalar {
                    src: ScalarSrc::Ub(s),
                    ..
                } => mark_slice(used, s),
                Stmt::SetValue { dst, value } => {
                    mark_slice(used, dst);
                    mark_arg(used, value);
                }
                _ => {}
            }
        }
    }
    let mut used = vec![false; kernel.buffers.len()];
    walk(&mut used, &kernel.cube);
    walk(&mut used, &kernel.vector);
    used
}
