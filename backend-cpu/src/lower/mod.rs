//! Kernel IR → cranelift IR, one function per program side.
//!
//! The generated function has the signature
//! `extern "C" fn(params: *const *mut u8, arena: *mut u8, blk: i64, ctx: *const InstanceCtx) -> i64`
//! and returns 0, or the 1-based number of the run-time check that failed (see [`Check`]).
//! Loops, `let` and integer expressions become cranelift control flow over `i64`; every other
//! statement is lowered by its own module:
//!
//! - [`expr`]: integer expressions (floor division and remainder, `min`, `max`).
//! - [`region`]: stage bases, tiles, GM tiles and UB slices with their bounds checks.
//! - [`copy`]: `CopyIn`, `CopyOut`, `LoadL0` and `Fixpipe` over the real layouts.
//! - [`mmad`]: the Cube's `Mmad` (packing plus an f32x4 register-tiled micro-kernel).
//! - [`vector`]: count-form vector ops and reductions as SIMD loops.
//! - [`scalar`]: `LoadScalar`, `SetValue` and cross-core flags.
//! - [`convert`]: loads, stores and the f16/bf16 ↔ f32 conversions, scalar or 4 lanes wide.

mod convert;
mod copy;
mod expr;
mod mmad;
mod region;
mod scalar;
mod vector;

use cranelift_codegen::ir::{
    AbiParam, Block, FuncRef, InstBuilder, MemFlagsData, Signature, Type, UserFuncName, Value,
    condcodes::IntCC, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};
use cubevec_ir::kernel::exec::BLOCK_VAR;
use cubevec_ir::kernel::print::stmt_to_string;
use cubevec_ir::kernel::{Kernel, Side, Stmt};

use crate::error::CpuError;
use crate::helpers;
use crate::plan::LocalPlan;

/// A run-time check of the generated code: the statement it guards and what failing means.
#[derive(Clone, Debug)]
pub struct Check {
    /// The statement, printed.
    pub stmt: String,
    /// What failed.
    pub message: String,
}

/// The Rust helpers, declared once per module.
pub struct Helpers {
    unary: FuncId,
    max_index: FuncId,
    cross_set: FuncId,
    cross_wait: FuncId,
    lock: FuncId,
    unlock: FuncId,
}

/// Helper symbols and their addresses, for `JITBuilder::symbol`.
pub fn helper_symbols() -> [(&'static str, *const u8); 6] {
    [
        ("cv_unary", helpers::cv_unary as *const u8),
        ("cv_max_index", helpers::cv_max_index as *const u8),
        ("cv_cross_set", helpers::cv_cross_set as *const u8),
        ("cv_cross_wait", helpers::cv_cross_wait as *const u8),
        ("cv_lock", helpers::cv_lock as *const u8),
        ("cv_unlock", helpers::cv_unlock as *const u8),
    ]
}

fn signature(module: &JITModule, params: usize, ret: bool) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..params {
        sig.params.push(AbiParam::new(types::I64));
    }
    if ret {
        sig.returns.push(AbiParam::new(types::I64));
    }
    sig
}

impl Helpers {
    /// Declares the helpers as imports of `module`.
    pub fn declare(module: &mut JITModule) -> Result<Helpers, CpuError> {
        let mut declare = |name: &str, params: usize, ret: bool| {
            let sig = signature(module, params, ret);
            module
                .declare_function(name, Linkage::Import, &sig)
                .map_err(|e| CpuError::Host(e.to_string()))
        };
        Ok(Helpers {
            unary: declare("cv_unary", 5, false)?,
            max_index: declare("cv_max_index", 4, false)?,
            cross_set: declare("cv_cross_set", 2, false)?,
            cross_wait: declare("cv_cross_wait", 2, true)?,
            lock: declare("cv_lock", 2, false)?,
            unlock: declare("cv_unlock", 2, false)?,
        })
    }
}

/// The helpers as callable references inside one function.
struct HelperRefs {
    unary: FuncRef,
    max_index: FuncRef,
    cross_set: FuncRef,
    cross_wait: FuncRef,
    lock: FuncRef,
    unlock: FuncRef,
}

/// Lowering state of one function.
pub(crate) struct Lowerer<'a> {
    b: FunctionBuilder<'a>,
    kernel: &'a Kernel,
    side: Side,
    plan: &'a LocalPlan,
    fns: HelperRefs,
    /// Fused multiply-add is a native instruction on this host.
    fma: bool,
    checks: Vec<Check>,
    /// The statement being lowered, printed (for checks).
    here: String,
    params: Vec<Value>,
    arena: Value,
    ctx: Value,
    /// Returns its block parameter (a check number).
    fail: Block,
    /// Variables in scope, innermost last.
    vars: Vec<(String, Variable)>,
}

/// Flags of every memory access: bounds are checked by the generated code itself.
fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

const I64: Type = types::I64;

/// Lowers the `side` program of `kernel` into a new function of `module`.
pub fn lower_side(
    module: &mut JITModule,
    helpers: &Helpers,
    kernel: &Kernel,
    side: Side,
    plan: &LocalPlan,
    fma: bool,
) -> Result<(FuncId, Vec<Check>), CpuError> {
    let codegen = |e: String| CpuError::Codegen {
        kernel: kernel.name.clone(),
        message: e,
    };
    let sig = signature(module, 4, true);
    let id = module
        .declare_anonymous_function(&sig)
        .map_err(|e| codegen(e.to_string()))?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut fctx = FunctionBuilderContext::new();
    let checks = {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let fns = HelperRefs {
            unary: module.declare_func_in_func(helpers.unary, b.func),
            max_index: module.declare_func_in_func(helpers.max_index, b.func),
            cross_set: module.declare_func_in_func(helpers.cross_set, b.func),
            cross_wait: module.declare_func_in_func(helpers.cross_wait, b.func),
            lock: module.declare_func_in_func(helpers.lock, b.func),
            unlock: module.declare_func_in_func(helpers.unlock, b.func),
        };
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let args = b.block_params(entry).to_vec();
        let params = (0..kernel.params.len())
            .map(|i| b.ins().load(I64, mem(), args[0], (8 * i) as i32))
            .collect();
        let fail = b.create_block();
        b.append_block_param(fail, I64);
        let mut l = Lowerer {
            b,
            kernel,
            side,
            plan,
            fns,
            fma,
            checks: Vec::new(),
            here: String::new(),
            params,
            arena: args[1],
            ctx: args[3],
            fail,
            vars: Vec::new(),
        };
        l.bind(BLOCK_VAR, args[2]);
        l.body(kernel.program(side))?;
        let zero = l.b.ins().iconst(I64, 0);
        l.b.ins().return_(&[zero]);
        l.b.switch_to_block(fail);
        let code = l.b.block_params(fail)[0];
        l.b.ins().return_(&[code]);
        l.b.seal_all_blocks();
        let Lowerer { b, checks, .. } = l;
        b.finalize(module.target_config());
        checks
    };
    module.define_function(id, &mut ctx).map_err(|e| {
        let detail = match &e {
            cranelift_module::ModuleError::Compilation(c) => format!("{c:?}"),
            other => other.to_string(),
        };
        codegen(detail)
    })?;
    module.clear_context(&mut ctx);
    Ok((id, checks))
}

impl<'a> Lowerer<'a> {
    fn unsupported(&self, message: impl Into<String>) -> CpuError {
        CpuError::Unsupported {
            kernel: self.kernel.name.clone(),
            message: format!("`{}`: {}", self.here, message.into()),
        }
    }

    fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(I64, v)
    }

    /// Binds `name` to `value` for the rest of the enclosing body.
    fn bind(&mut self, name: &str, value: Value) {
        let var = self.b.declare_var(I64);
        self.b.def_var(var, value);
        self.vars.push((name.to_string(), var));
    }

    fn body(&mut self, stmts: &'a [Stmt]) -> Result<(), CpuError> {
        let mark = self.vars.len();
        for s in stmts {
            self.stmt(s)?;
        }
        self.vars.truncate(mark);
        Ok(())
    }

    /// Registers a check and branches to the failure exit unless `ok` (an `i8` truth value).
    fn check(&mut self, ok: Value, message: impl Into<String>) {
        self.checks.push(Check {
            stmt: self.here.clone(),
            message: message.into(),
        });
        let code = self.iconst(self.checks.len() as i64);
        let cont = self.b.create_block();
        self.b.ins().brif(ok, cont, &[], self.fail, &[code.into()]);
        self.b.switch_to_block(cont);
    }

    /// Checks `start ≥ 0`, `len ≥ min_len` and `start + len ≤ limit` without overflowing.
    fn check_range(
        &mut self,
        start: Value,
        len: Value,
        min_len: i64,
        limit: i64,
        message: impl Into<String>,
    ) {
        let a = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, start, 0);
        let b = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, len, min_len);
        let c = self
            .b
            .ins()
            .icmp_imm_s(IntCC::SignedLessThanOrEqual, start, limit);
        let lim = self.iconst(limit);
        let room = self.b.ins().isub(lim, start);
        let d = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, len, room);
        let ab = self.b.ins().band(a, b);
        let cd = self.b.ins().band(c, d);
        let ok = self.b.ins().band(ab, cd);
        self.check(ok, message);
    }

    /// Emits `for i in 0..n { body(i) }` (nothing when `n ≤ 0`).
    fn for_n<F>(&mut self, n: Value, body: F) -> Result<(), CpuError>
    where
        F: FnOnce(&mut Self, Value) -> Result<(), CpuError>,
    {
        let var = self.b.declare_var(I64);
        let zero = self.iconst(0);
        self.b.def_var(var, zero);
        let (header, inner, exit) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(var);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, i, n);
        self.b.ins().brif(go, inner, &[], exit, &[]);
        self.b.switch_to_block(inner);
        let i = self.b.use_var(var);
        body(self, i)?;
        let i = self.b.use_var(var);
        let next = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(var, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
        Ok(())
    }

    /// Emits `if cond { then() }` for an `i8` truth value.
    fn if_then<F>(&mut self, cond: Value, then: F) -> Result<(), CpuError>
    where
        F: FnOnce(&mut Self) -> Result<(), CpuError>,
    {
        let (yes, done) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(cond, yes, &[], done, &[]);
        self.b.switch_to_block(yes);
        then(self)?;
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
        Ok(())
    }

    fn stmt(&mut self, s: &'a Stmt) -> Result<(), CpuError> {
        self.here = match s {
            Stmt::For { var, extent, .. } => format!("for {var} in 0..{extent}"),
            other => stmt_to_string(self.kernel, other),
        };
        match s {
            Stmt::Let { var, value } => {
                let v = self.expr(value)?;
                self.bind(var, v);
            }
            Stmt::For {
                var, extent, body, ..
            } => {
                let n = self.expr(extent)?;
                let ok = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, n, 0);
                self.check(ok, format!("loop `{var}` has a negative extent"));
                self.for_n(n, |l, i| {
                    let mark = l.vars.len();
                    l.bind(var, i);
                    l.body(body)?;
                    l.vars.truncate(mark);
                    Ok(())
                })?;
            }
            Stmt::CopyIn { dst, src } => self.copy_in(dst, src)?,
            Stmt::LoadL0 {
                dst,
                src,
                transpose,
            } => self.load_l0(dst, src, *transpose)?,
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
            } => self.mmad((*c, c_stage), (*a, a_stage), (*b, b_stage), (m, n, k), init)?,
            Stmt::Fixpipe {
                dst,
                src,
                relu,
                atomic_add,
            } => self.fixpipe(dst, src, *relu, *atomic_add)?,
            Stmt::CopyOut { dst, src } => self.copy_out(dst, src)?,
            Stmt::Vector {
                op,
                dst,
                srcs,
                count,
            } => self.vector(*op, dst, srcs, count)?,
            Stmt::Reduce {
                kind,
                dst,
                src,
                count,
            } => self.reduce(*kind, dst, src, count)?,
            Stmt::LoadScalar { var, src, .. } => {
                let v = self.load_scalar(src)?;
                self.bind(var, v);
            }
            Stmt::SetValue { dst, value } => self.set_value(dst, value)?,
            // One thread runs each core instance in program order: pipe-to-pipe flags and
            // barriers order nothing further.
            Stmt::SetFlag { .. } | Stmt::WaitFlag { .. } | Stmt::Barrier { .. } => {}
            Stmt::CrossCoreSet { flag, .. } => self.cross_set(*flag)?,
            Stmt::CrossCoreWait { flag } => self.cross_wait(*flag)?,
        }
        Ok(())
    }
}
