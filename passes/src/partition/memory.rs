//! Memory planning: placing a program's intermediate tensors in one device allocation.
//!
//! Every intermediate lives from the first launch that touches it to the last (graph outputs to
//! the end). Tensors whose lifetimes are disjoint may share bytes, so the arena a forward pass
//! needs is about the largest set of tensors alive at once rather than the sum of all of them
//! (for a 61-layer model, a layer's worth instead of 61). Placement is greedy best-fit in
//! decreasing size order, the usual heuristic for this offline problem (as in TensorFlow Lite's
//! and XLA's arena planners); it is deterministic.

use cubevec_ir::kernel::{MemoryPlan, Program, TensorKind};

/// Arena offsets are multiples of this: GM transfers go in 512-byte bursts and unaligned ones
/// are rounded up, so 512-byte aligned tensors never share a burst.
pub const ARENA_ALIGNMENT: u64 = 512;

/// Places the intermediates of `program` in one arena (inputs and constants stay on their own;
/// intermediates no launch touches get no memory).
pub fn plan_memory(program: &Program) -> MemoryPlan {
    let life = program.lifetimes();
    let mut order: Vec<usize> = (0..program.tensors.len())
        .filter(|&i| program.tensors[i].kind == TensorKind::Intermediate && life[i].is_some())
        .collect();
    let size = |i: usize| program.tensors[i].bytes().next_multiple_of(ARENA_ALIGNMENT);
    order.sort_by_key(|&i| (std::cmp::Reverse(size(i)), life[i], i));
    let mut offsets = vec![None; program.tensors.len()];
    // Placed tensors: (offset, end, first launch, last launch).
    let mut placed: Vec<(u64, u64, usize, usize)> = Vec::with_capacity(order.len());
    let mut arena_bytes = 0;
    for i in order {
        let (first, last) = life[i].expect("filtered to live tensors");
        let bytes = size(i);
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&(_, _, f, l)| f <= last && first <= l)
            .map(|&(start, end, _, _)| (start, end))
            .collect();
        busy.sort_unstable();
        // The smallest gap between busy ranges that fits, else the end of the last one.
        let mut best: Option<(u64, u64)> = None;
        let mut cursor = 0;
        for (start, end) in busy {
            if start >= cursor + bytes {
                let gap = start - cursor;
                if best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let offset = best.map_or(cursor, |(_, offset)| offset);
        placed.push((offset, offset + bytes, first, last));
        offsets[i] = Some(offset);
        arena_bytes = arena_bytes.max(offset + bytes);
    }
    MemoryPlan {
        arena_bytes,
        offsets,
    }
}
