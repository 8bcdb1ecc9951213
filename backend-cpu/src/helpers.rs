//! Rust functions the generated code calls: transcendental vector ops and the index-returning
//! reduction (once per statement over the whole count, never per element), cross-core flags of
//! MIX kernels, and the per-tensor lock around atomic Fixpipes.
//!
//! Every helper is `extern "C"`, registered with the JIT under its name, and never panics.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use corosensei::Yielder;

use cubevec_ir::DType;

use crate::numeric::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

/// Element-type code passed to helpers.
pub fn dtype_code(dtype: DType) -> i64 {
    match dtype {
        DType::F16 => 1,
        DType::BF16 => 2,
        _ => 0,
    }
}

/// Operation code of [`cv_unary`]: `exp`.
pub const OP_EXP: i64 = 0;
/// Operation code of [`cv_unary`]: natural logarithm.
pub const OP_LN: i64 = 1;

/// Reads element `i` of a float run of type `code` as `f32`.
///
/// # Safety
/// `p` must point at `i + 1` elements of the type.
unsafe fn read(code: i64, p: *const u8, i: usize) -> f32 {
    // SAFETY: the caller guarantees the element exists; reads are unaligned-safe.
    unsafe {
        match code {
            1 => f16_to_f32((p as *const u16).add(i).read_unaligned()),
            2 => bf16_to_f32((p as *const u16).add(i).read_unaligned()),
            _ => (p as *const f32).add(i).read_unaligned(),
        }
    }
}

/// Writes `x`, rounded to type `code`, as element `i`.
///
/// # Safety
/// `p` must point at `i + 1` writable elements of the type.
unsafe fn write(code: i64, p: *mut u8, i: usize, x: f32) {
    // SAFETY: as for `read`.
    unsafe {
        match code {
            1 => (p as *mut u16).add(i).write_unaligned(f32_to_f16(x)),
            2 => (p as *mut u16).add(i).write_unaligned(f32_to_bf16(x)),
            _ => (p as *mut f32).add(i).write_unaligned(x),
        }
    }
}

/// `dst[i] = op(src[i])` for `i < n`, computed in `f32` and rounded to the element type.
///
/// # Safety
/// `src` and `dst` must hold `n` elements of type `code`; they may be the same run.
pub unsafe extern "C" fn cv_unary(op: i64, code: i64, dst: *mut u8, src: *const u8, n: i64) {
    for i in 0..n.max(0) as usize {
        // SAFETY: i < n, guaranteed in bounds by the caller.
        unsafe {
            let x = read(code, src, i);
            let y = if op == OP_EXP { x.exp() } else { x.ln() };
            write(code, dst, i, y);
        }
    }
}

/// `dst[0] = max(src[0..n])`, `dst[1]` = the index of its first occurrence as the element's bit
/// pattern. A NaN is the maximum (the first NaN wins), as the vector `max` propagates NaNs.
///
/// # Safety
/// `src` must hold `n ≥ 1` elements and `dst` two elements of type `code`.
pub unsafe extern "C" fn cv_max_index(code: i64, dst: *mut u8, src: *const u8, n: i64) {
    let (mut best, mut at) = (f32::NEG_INFINITY, 0usize);
    for i in 0..n.max(1) as usize {
        // SAFETY: i < n.
        let x = unsafe { read(code, src, i) };
        if x.is_nan() {
            (best, at) = (x, i);
            break;
        }
        if x > best || i == 0 {
            (best, at) = (x, i);
        }
    }
    // SAFETY: dst holds two elements.
    unsafe {
        write(code, dst, 0, best);
        match code {
            1 | 2 => (dst as *mut u16).add(1).write_unaligned(at as u16),
            _ => (dst as *mut u32).add(1).write_unaligned(at as u32),
        }
    }
}

/// Cross-core flag ids of a MIX kernel (0..=10).
pub const CROSS_FLAGS: usize = 11;

/// Who runs an instance of a MIX block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The AIC.
    Cube,
    /// AIV `0` or `1` of the block.
    Vector(usize),
}

impl Role {
    fn slot(self) -> usize {
        match self {
            Role::Cube => 0,
            Role::Vector(i) => 1 + i,
        }
    }
}

#[derive(Default)]
struct Flags {
    /// Pending AIC → AIV signals per flag and AIV.
    to_vector: [[u32; 2]; CROSS_FLAGS],
    /// Pending AIV → AIC signals per flag and AIV.
    to_cube: [[u32; 2]; CROSS_FLAGS],
    /// The flag each of cube, AIV 0, AIV 1 is blocked on.
    waiting: [Option<usize>; 3],
    /// Every instance still running is blocked: nobody can set a flag any more.
    deadlock: bool,
}

impl Flags {
    fn ready(&self, role: Role, flag: usize) -> bool {
        match role {
            Role::Cube => self.to_cube[flag].iter().all(|&c| c > 0),
            Role::Vector(i) => self.to_vector[flag][i] > 0,
        }
    }
}

/// The cross-core flag counters of one MIX block (`CrossCoreSetFlag<2, …>` semantics: an AIC
/// set signals both AIVs, an AIC wait needs a set from each AIV). The block's three instances
/// run as coroutines on one thread: a wait whose flag is not set suspends its instance, and the
/// launcher resumes whichever instance can go on.
#[derive(Default)]
pub struct BlockSync {
    flags: RefCell<Flags>,
}

impl BlockSync {
    fn set(&self, role: Role, flag: usize) {
        let mut f = self.flags.borrow_mut();
        match role {
            Role::Cube => f.to_vector[flag].iter_mut().for_each(|c| *c += 1),
            Role::Vector(i) => f.to_cube[flag][i] += 1,
        }
    }

    /// Whether `role` can go on: it waits on nothing, its flag is set, or the block is stuck
    /// (its wait then fails).
    pub fn runnable(&self, role: Role) -> bool {
        let f = self.flags.borrow();
        f.deadlock || f.waiting[role.slot()].is_none_or(|flag| f.ready(role, flag))
    }

    /// Every instance still running waits on a flag nobody set: their waits fail from now on.
    pub fn fail_waits(&self) {
        self.flags.borrow_mut().deadlock = true;
    }

    /// Waits for the partner's signal, suspending the instance's coroutine until it comes;
    /// `false` when it never can ([`BlockSync::fail_waits`]).
    fn wait(&self, role: Role, flag: usize, yielder: &Yielder<(), ()>) -> bool {
        loop {
            {
                let mut f = self.flags.borrow_mut();
                if f.ready(role, flag) {
                    match role {
                        Role::Cube => f.to_cube[flag].iter_mut().for_each(|c| *c -= 1),
                        Role::Vector(i) => f.to_vector[flag][i] -= 1,
                    }
                    f.waiting[role.slot()] = None;
                    return true;
                }
                if f.deadlock {
                    return false;
                }
                f.waiting[role.slot()] = Some(flag);
            }
            yielder.suspend(());
        }
    }
}

/// What a MIX instance's code reaches of its block: the flags and its own coroutine.
#[derive(Clone, Copy)]
pub struct BlockLink<'a> {
    /// The block's flags.
    pub sync: &'a BlockSync,
    /// Suspends the instance's coroutine.
    pub yielder: &'a Yielder<(), ()>,
}

/// What the generated code of one instance can reach through its context pointer.
pub struct InstanceCtx<'a> {
    /// The instance's role in its block.
    pub role: Role,
    /// Its block (MIX kernels only).
    pub block: Option<BlockLink<'a>>,
    /// One lock per kernel parameter, taken around atomic Fixpipes.
    pub locks: &'a [AtomicBool],
}

/// `CrossCoreSetFlag(flag)`.
///
/// # Safety
/// `ctx` must point at a live [`InstanceCtx`].
pub unsafe extern "C" fn cv_cross_set(ctx: *const InstanceCtx, flag: i64) {
    // SAFETY: guaranteed by the caller.
    let ctx = unsafe { &*ctx };
    if let Some(block) = ctx.block {
        block.sync.set(ctx.role, flag as usize % CROSS_FLAGS);
    }
}

/// `CrossCoreWaitFlag(flag)`: 0 once the partner signalled, 1 if it never can (deadlock).
///
/// # Safety
/// `ctx` must point at a live [`InstanceCtx`].
pub unsafe extern "C" fn cv_cross_wait(ctx: *const InstanceCtx, flag: i64) -> i64 {
    // SAFETY: guaranteed by the caller.
    let ctx = unsafe { &*ctx };
    match ctx.block {
        Some(b)
            if b.sync
                .wait(ctx.role, flag as usize % CROSS_FLAGS, b.yielder) =>
        {
            0
        }
        _ => 1,
    }
}

/// Takes the lock of parameter `param` (spinning, then yielding).
///
/// # Safety
/// `ctx` must point at a live [`InstanceCtx`].
pub unsafe extern "C" fn cv_lock(ctx: *const InstanceCtx, param: i64) {
    // SAFETY: guaranteed by the caller.
    let ctx = unsafe { &*ctx };
    let lock = &ctx.locks[param as usize];
    let mut spins = 0u32;
    while lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Releases the lock of parameter `param`.
///
/// # Safety
/// `ctx` must point at a live [`InstanceCtx`] whose lock `param` this instance holds.
pub unsafe extern "C" fn cv_unlock(ctx: *const InstanceCtx, param: i64) {
    // SAFETY: guaranteed by the caller.
    let ctx = unsafe { &*ctx };
    ctx.locks[param as usize].store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use corosensei::{CoroutineResult, ScopedCoroutine};

    use super::*;

    #[test]
    fn unary_and_max_index_work_on_f16_runs() {
        let src: Vec<u16> = [0.0f32, 1.0, -2.0, 3.0, 3.0]
            .iter()
            .map(|&x| f32_to_f16(x))
            .collect();
        let mut dst = vec![0u16; 5];
        // SAFETY: both runs hold five f16 elements.
        unsafe {
            cv_unary(
                OP_EXP,
                1,
                dst.as_mut_ptr() as *mut u8,
                src.as_ptr() as *const u8,
                5,
            )
        };
        assert_eq!(f16_to_f32(dst[1]), f16_to_f32(f32_to_f16(1f32.exp())));
        let mut two = [0u16; 2];
        // SAFETY: five sources, two destinations.
        unsafe { cv_max_index(1, two.as_mut_ptr() as *mut u8, src.as_ptr() as *const u8, 5) };
        assert_eq!((f16_to_f32(two[0]), two[1]), (3.0, 3));
    }

    /// Runs `wait(role, flag)` in a coroutine: `None` while it is suspended after `steps`
    /// (run between resumes), else what it returned.
    fn wait_in_coroutine(
        sync: &BlockSync,
        role: Role,
        flag: usize,
        steps: &[&dyn Fn()],
    ) -> Vec<Option<bool>> {
        let co =
            ScopedCoroutine::new(|yielder: &Yielder<(), ()>, ()| sync.wait(role, flag, yielder));
        co.scope(|mut co| {
            let mut seen = Vec::new();
            let mut step = steps.iter();
            loop {
                match co.as_mut().resume(()) {
                    CoroutineResult::Yield(()) => seen.push(None),
                    CoroutineResult::Return(ok) => {
                        seen.push(Some(ok));
                        return seen;
                    }
                }
                // Suspended on an unset flag: the launcher must not resume it yet.
                assert!(!sync.runnable(role));
                match step.next() {
                    Some(f) => f(),
                    None => return seen,
                }
            }
        })
    }

    #[test]
    fn a_cube_wait_suspends_until_both_vectors_set() {
        let sync = BlockSync::default();
        sync.set(Role::Vector(0), 3);
        let seen = wait_in_coroutine(&sync, Role::Cube, 3, &[&|| sync.set(Role::Vector(1), 3)]);
        assert_eq!(seen, [None, Some(true)]);
        // Consumed: a second wait suspends again.
        assert_eq!(wait_in_coroutine(&sync, Role::Cube, 3, &[]), [None]);
        sync.set(Role::Cube, 1);
        assert_eq!(
            wait_in_coroutine(&sync, Role::Vector(1), 1, &[]),
            [Some(true)]
        );
    }

    #[test]
    fn a_suspended_wait_fails_once_the_block_is_stuck() {
        let sync = BlockSync::default();
        let seen = wait_in_coroutine(&sync, Role::Vector(0), 2, &[&|| sync.fail_waits()]);
        assert_eq!(seen, [None, Some(false)]);
        assert!(sync.runnable(Role::Vector(1)));
    }
}
