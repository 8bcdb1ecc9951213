//! Rust functions the generated code calls: transcendental vector ops and the index-returning
//! reduction (once per statement over the whole count, never per element), cross-core flags of
//! MIX kernels, and the per-tensor lock around atomic Fixpipes.
//!
//! Every helper is `extern "C"`, registered with the JIT under its name, and never panics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

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
    /// Which of cube, AIV 0, AIV 1 have returned.
    done: [bool; 3],
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

    /// No instance can make progress: each has returned or waits on an unset flag.
    fn stuck(&self) -> bool {
        [Role::Cube, Role::Vector(0), Role::Vector(1)]
            .into_iter()
            .all(|r| match self.waiting[r.slot()] {
                Some(flag) => !self.ready(r, flag),
                None => self.done[r.slot()],
            })
    }
}

/// The cross-core flag counters of one MIX block (`CrossCoreSetFlag<2, …>` semantics: an AIC
/// set signals both AIVs, an AIC wait needs a set from each AIV).
#[derive(Default)]
pub struct BlockSync {
    flags: Mutex<Flags>,
    changed: Condvar,
}

impl BlockSync {
    /// Records that `role` returned, so waits that only it could answer fail instead of
    /// hanging.
    pub fn finish(&self, role: Role) {
        let mut f = self.flags.lock().unwrap_or_else(PoisonError::into_inner);
        f.done[role.slot()] = true;
        f.waiting[role.slot()] = None;
        self.changed.notify_all();
    }

    fn set(&self, role: Role, flag: usize) {
        let mut f = self.flags.lock().unwrap_or_else(PoisonError::into_inner);
        match role {
            Role::Cube => f.to_vector[flag].iter_mut().for_each(|c| *c += 1),
            Role::Vector(i) => f.to_cube[flag][i] += 1,
        }
        self.changed.notify_all();
    }

    /// Waits for the partner's signal; `false` when it can never come (every instance still
    /// running is blocked on a flag nobody set).
    fn wait(&self, role: Role, flag: usize) -> bool {
        let mut f = self.flags.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if f.ready(role, flag) {
                match role {
                    Role::Cube => f.to_cube[flag].iter_mut().for_each(|c| *c -= 1),
                    Role::Vector(i) => f.to_vector[flag][i] -= 1,
                }
                f.waiting[role.slot()] = None;
                return true;
            }
            f.waiting[role.slot()] = Some(flag);
            if f.deadlock || f.stuck() {
                f.deadlock = true;
                self.changed.notify_all();
                return false;
            }
            f = self.changed.wait(f).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What the generated code of one instance can reach through its context pointer.
pub struct InstanceCtx<'a> {
    /// The instance's role in its block.
    pub role: Role,
    /// The block's flags (MIX kernels only).
    pub sync: Option<&'a BlockSync>,
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
    if let Some(sync) = ctx.sync {
        sync.set(ctx.role, flag as usize % CROSS_FLAGS);
    }
}

/// `CrossCoreWaitFlag(flag)`: 0 once the partner signalled, 1 if it never can (deadlock).
///
/// # Safety
/// `ctx` must point at a live [`InstanceCtx`].
pub unsafe extern "C" fn cv_cross_wait(ctx: *const InstanceCtx, flag: i64) -> i64 {
    // SAFETY: guaranteed by the caller.
    let ctx = unsafe { &*ctx };
    match ctx.sync {
        Some(sync) if sync.wait(ctx.role, flag as usize % CROSS_FLAGS) => 0,
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

    #[test]
    fn a_cube_wait_needs_both_vector_sets_and_fails_when_they_are_gone() {
        let sync = BlockSync::default();
        sync.set(Role::Vector(0), 3);
        sync.set(Role::Vector(1), 3);
        assert!(sync.wait(Role::Cube, 3));
        sync.set(Role::Cube, 1);
        assert!(sync.wait(Role::Vector(0), 1) && sync.wait(Role::Vector(1), 1));
        sync.set(Role::Vector(0), 3);
        sync.finish(Role::Vector(0));
        sync.finish(Role::Vector(1));
        assert!(!sync.wait(Role::Cube, 3));
    }

    #[test]
    fn instances_waiting_on_each_other_are_a_deadlock_not_a_hang() {
        let sync = &BlockSync::default();
        std::thread::scope(|s| {
            let waits: Vec<_> = [Role::Vector(0), Role::Vector(1)]
                .into_iter()
                .map(|r| s.spawn(move || sync.wait(r, 2)))
                .collect();
            let cube = sync.wait(Role::Cube, 1);
            let vectors: Vec<bool> = waits
                .into_iter()
                .map(|h| h.join().unwrap_or(true))
                .collect();
            assert_eq!((cube, vectors), (false, vec![false, false]));
        });
    }
}
