//! A compiled kernel and its launcher: blocks run in parallel on threads, each core instance
//! with its own arena of on-chip memory; the cube and the two vector instances of a MIX block
//! are coroutines on one thread that hand it over at their cross-core waits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use cranelift_jit::JITModule;
use cubevec_ir::kernel::{CoreType, Kernel, ParamRole, Side};

use crate::error::CpuError;
use corosensei::stack::DefaultStack;
use corosensei::{CoroutineResult, ScopedCoroutine, Yielder};

use crate::helpers::{BlockLink, BlockSync, InstanceCtx, Role};
use crate::lower::Check;
use crate::plan::LocalPlan;

/// The generated entry point of one side.
pub type EntryFn = unsafe extern "C" fn(*const *mut u8, *mut u8, i64, *const InstanceCtx) -> i64;

/// One side's function and the checks its failure codes refer to.
pub struct SideCode {
    /// The entry point.
    pub entry: EntryFn,
    /// Check `i` is reported by return code `i + 1`.
    pub checks: Vec<Check>,
}

/// A kernel compiled to native code. Dropping it frees the code.
pub struct CompiledKernel {
    pub(crate) kernel: Kernel,
    pub(crate) plan: LocalPlan,
    pub(crate) cube: Option<SideCode>,
    pub(crate) vector: Option<SideCode>,
    /// Owns the code pages (the module is `Send` but not `Sync`).
    pub(crate) module: Mutex<Option<JITModule>>,
}

impl Drop for CompiledKernel {
    fn drop(&mut self) {
        let module = self
            .module
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(module) = module {
            // SAFETY: the entry points die with `self`; nothing else refers to the code.
            unsafe { module.free_memory() };
        }
    }
}

/// A parameter pointer that may cross threads: blocks write disjoint regions (or accumulate
/// under a lock), as the kernel IR requires.
#[derive(Clone, Copy)]
struct Params<'a>(&'a [*mut u8]);

// SAFETY: the pointers are only dereferenced by the generated code, which follows the kernel's
// schedule (disjoint writes per block, locked atomic accumulation).
unsafe impl Send for Params<'_> {}
// SAFETY: as above.
unsafe impl Sync for Params<'_> {}

/// A zero-based, 64-byte aligned byte arena filled with a poison pattern (all ones: NaN for
/// every float type), so reading memory nothing wrote gives conspicuous results.
struct Arena {
    storage: Vec<u8>,
    start: usize,
}

impl Arena {
    fn new(bytes: u64) -> Arena {
        let storage = vec![0xffu8; bytes as usize + 64];
        let start = storage.as_ptr().align_offset(64);
        Arena { storage, start }
    }

    fn ptr(&mut self) -> *mut u8 {
        self.storage[self.start..].as_mut_ptr()
    }
}

/// The first failure of a launch.
type Failure = Mutex<Option<(Side, u64, i64)>>;

/// The thread cap set by [`set_max_threads`] (0: none).
static MAX_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Caps the number of threads that take blocks of a launch (`0` restores the default: one per
/// available core).
pub fn set_max_threads(threads: usize) {
    MAX_THREADS.store(threads, Ordering::Relaxed);
}

/// Bytes of parameter data per worker thread below which a launch runs on fewer threads:
/// starting a thread and poisoning its arena cost tens of microseconds, more than a small
/// launch's whole work (measured: a tiny model of 61 launches ran 6× faster on one thread).
const BYTES_PER_WORKER: u64 = 256 << 10;

impl CompiledKernel {
    /// Threads for `jobs` blocks: one per available core (or the [`set_max_threads`] cap), at
    /// most one per block and one per [`BYTES_PER_WORKER`] of the kernel's parameters.
    fn workers(&self, jobs: u64) -> u64 {
        let cores = match MAX_THREADS.load(Ordering::Relaxed) {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            cap => cap,
        } as u64;
        let bytes: u64 = self.kernel.params.iter().map(|p| p.bytes()).sum();
        jobs.min(cores).min(bytes / BYTES_PER_WORKER).max(1)
    }

    /// The kernel this was compiled from.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Runs the kernel on `params`: one little-endian byte buffer per parameter, in parameter
    /// order, each exactly the parameter's size. `OutputZeroed` parameters are zero-filled
    /// first, as the Ascend launcher does.
    pub fn run(&self, params: &mut [&mut [u8]]) -> Result<(), CpuError> {
        let argument = |message: String| CpuError::Argument {
            context: format!("kernel `{}`", self.kernel.name),
            message,
        };
        if params.len() != self.kernel.params.len() {
            return Err(argument(format!(
                "{} buffers for {} parameters",
                params.len(),
                self.kernel.params.len()
            )));
        }
        for (p, buf) in self.kernel.params.iter().zip(params.iter_mut()) {
            if buf.len() as u64 != p.bytes() {
                return Err(argument(format!(
                    "parameter `{}` needs {} bytes, got {}",
                    p.name,
                    p.bytes(),
                    buf.len()
                )));
            }
            if p.role == ParamRole::OutputZeroed {
                buf.fill(0);
            }
        }
        let ptrs: Vec<*mut u8> = params.iter_mut().map(|b| b.as_mut_ptr()).collect();
        // SAFETY: every pointer addresses a buffer of its parameter's size, borrowed mutably
        // for the whole call.
        unsafe { self.run_raw(&ptrs) }
    }

    /// Runs the kernel on raw parameter pointers (several may alias the same tensor).
    ///
    /// # Safety
    /// Each pointer must address `params[i].bytes()` bytes valid for reads and writes for the
    /// duration of the call.
    pub(crate) unsafe fn run_raw(&self, ptrs: &[*mut u8]) -> Result<(), CpuError> {
        let locks: Vec<AtomicBool> = ptrs.iter().map(|_| AtomicBool::new(false)).collect();
        let failure: Failure = Mutex::new(None);
        let params = Params(ptrs);
        match self.kernel.core {
            CoreType::Aic => self.run_pool(Side::Cube, params, &locks, &failure),
            CoreType::Aiv => self.run_pool(Side::Vector, params, &locks, &failure),
            CoreType::Mix1To2 => self.run_mix(params, &locks, &failure),
        }
        let first = failure
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match first {
            None => Ok(()),
            Some((side, instance, code)) => Err(self.runtime_error(side, instance, code)),
        }
    }

    fn code(&self, side: Side) -> Option<&SideCode> {
        match side {
            Side::Cube => self.cube.as_ref(),
            Side::Vector => self.vector.as_ref(),
        }
    }

    fn runtime_error(&self, side: Side, instance: u64, code: i64) -> CpuError {
        if code == NO_STACK {
            return CpuError::Argument {
                context: format!("kernel `{}`", self.kernel.name),
                message: "no memory for the coroutine stacks of a MIX block".into(),
            };
        }
        let check = self
            .code(side)
            .and_then(|c| c.checks.get(code as usize - 1));
        CpuError::Runtime {
            kernel: self.kernel.name.clone(),
            side: match side {
                Side::Cube => "cube",
                Side::Vector => "vector",
            },
            instance,
            stmt: check.map_or_else(String::new, |c| c.stmt.clone()),
            message: check.map_or_else(|| format!("failure code {code}"), |c| c.message.clone()),
        }
    }

    /// Runs one instance; returns its failure code (0 = success).
    fn instance(
        &self,
        side: Side,
        params: Params,
        arena: &mut Arena,
        blk: u64,
        ctx: &InstanceCtx,
    ) -> i64 {
        let Some(code) = self.code(side) else {
            return 0;
        };
        // SAFETY: the entry point was generated for this kernel's parameters and arena plan;
        // every access it makes is bounds-checked against them.
        unsafe { (code.entry)(params.0.as_ptr(), arena.ptr(), blk as i64, ctx) }
    }

    /// Cube-only or vector-only kernels: a pool of threads takes blocks in turn.
    fn run_pool(&self, side: Side, params: Params, locks: &[AtomicBool], failure: &Failure) {
        let instances = self.kernel.instances(side);
        let next = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let work = || {
            let mut arena = Arena::new(self.plan.arena(side).bytes);
            let ctx = InstanceCtx {
                role: Role::Cube,
                block: None,
                locks,
            };
            while !stop.load(Ordering::Relaxed) {
                let blk = next.fetch_add(1, Ordering::Relaxed);
                if blk >= instances {
                    break;
                }
                let code = self.instance(side, params, &mut arena, blk, &ctx);
                if code != 0 {
                    record(failure, (side, blk, code));
                    stop.store(true, Ordering::Relaxed);
                }
            }
        };
        on_workers(self.workers(instances), work);
    }

    /// MIX kernels: each worker takes blocks in turn and runs the block's cube instance and
    /// both vector instances as coroutines on its own thread ([`CompiledKernel::run_block`]).
    fn run_mix(&self, params: Params, locks: &[AtomicBool], failure: &Failure) {
        let blocks = self.kernel.blocks as u64;
        let next = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let work = || {
            let mut arenas = [
                Arena::new(self.plan.cube.bytes),
                Arena::new(self.plan.vector.bytes),
                Arena::new(self.plan.vector.bytes),
            ];
            let stacks = [(); 3].map(|()| DefaultStack::new(COROUTINE_STACK));
            let [Ok(s0), Ok(s1), Ok(s2)] = stacks else {
                record(failure, (Side::Cube, 0, NO_STACK));
                stop.store(true, Ordering::Relaxed);
                return;
            };
            let mut stacks = [s0, s1, s2];
            while !stop.load(Ordering::Relaxed) {
                let blk = next.fetch_add(1, Ordering::Relaxed);
                if blk >= blocks {
                    break;
                }
                let failed = self
                    .run_block(blk, params, locks, &mut arenas, &mut stacks)
                    .into_iter()
                    .find(|&(_, _, code)| code != 0);
                if let Some(first) = failed {
                    record(failure, first);
                    stop.store(true, Ordering::Relaxed);
                }
            }
        };
        on_workers(self.workers(blocks), work);
    }

    /// Runs block `blk` of a MIX kernel: its three instances are coroutines resumed in turn
    /// whenever they can go on, like the cores meeting at their cross-core flags; when all
    /// that are left wait on flags nobody set, their waits fail. Returns `(side, instance,
    /// code)` of each instance in the order they finished.
    fn run_block(
        &self,
        blk: u64,
        params: Params,
        locks: &[AtomicBool],
        [cube, aiv0, aiv1]: &mut [Arena; 3],
        [s0, s1, s2]: &mut [DefaultStack; 3],
    ) -> Vec<(Side, u64, i64)> {
        let sync = BlockSync::default();
        let roles = [Role::Cube, Role::Vector(0), Role::Vector(1)];
        let body = |role: Role, arena| InstanceBody {
            kernel: self,
            role,
            blk,
            params,
            locks,
            sync: &sync,
            arena,
        };
        let c0 = ScopedCoroutine::with_stack(s0, body(roles[0], cube).into_fn());
        let c1 = ScopedCoroutine::with_stack(s1, body(roles[1], aiv0).into_fn());
        let c2 = ScopedCoroutine::with_stack(s2, body(roles[2], aiv1).into_fn());
        c0.scope(|r0| {
            c1.scope(|r1| {
                c2.scope(|r2| {
                    let mut coroutines = [r0, r1, r2];
                    let mut finished = Vec::new();
                    while finished.len() < 3 {
                        let mut resumed = false;
                        for (i, co) in coroutines.iter_mut().enumerate() {
                            if co.done() || !sync.runnable(roles[i]) {
                                continue;
                            }
                            resumed = true;
                            if let CoroutineResult::Return(code) = co.as_mut().resume(()) {
                                let (side, instance) = place(roles[i], blk);
                                finished.push((side, instance, code));
                            }
                        }
                        if !resumed {
                            sync.fail_waits();
                        }
                    }
                    finished
                })
            })
        })
    }
}

/// What one instance coroutine of a MIX block runs.
struct InstanceBody<'a> {
    kernel: &'a CompiledKernel,
    role: Role,
    blk: u64,
    params: Params<'a>,
    locks: &'a [AtomicBool],
    sync: &'a BlockSync,
    arena: &'a mut Arena,
}

impl<'a> InstanceBody<'a> {
    /// The coroutine's function: runs the instance, returns its failure code.
    fn into_fn(self) -> impl FnOnce(&Yielder<(), ()>, ()) -> i64 + 'a {
        move |yielder, ()| {
            let ctx = InstanceCtx {
                role: self.role,
                block: Some(BlockLink {
                    sync: self.sync,
                    yielder,
                }),
                locks: self.locks,
            };
            let (side, instance) = place(self.role, self.blk);
            self.kernel
                .instance(side, self.params, self.arena, instance, &ctx)
        }
    }
}

/// The side and instance index of `role` in block `blk`.
fn place(role: Role, blk: u64) -> (Side, u64) {
    match role {
        Role::Cube => (Side::Cube, blk),
        Role::Vector(i) => (Side::Vector, 2 * blk + i as u64),
    }
}

/// Stack of each instance coroutine of a MIX block: the generated code keeps its data in its
/// arena, so its frames and the helpers' are small.
const COROUTINE_STACK: usize = 256 << 10;

/// The failure code of a worker that could not allocate its coroutine stacks.
const NO_STACK: i64 = -1;

/// Runs `work` on `n` threads (on the caller's when `n` is 1).
fn on_workers(n: u64, work: impl Fn() + Sync) {
    if n == 1 {
        work();
    } else {
        thread::scope(|s| {
            for _ in 0..n {
                s.spawn(&work);
            }
        });
    }
}

fn record(failure: &Failure, what: (Side, u64, i64)) {
    let mut f = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if f.is_none() {
        *f = Some(what);
    }
}
