//! Mapping a slice on several threads with the results in the slice's order, for work whose
//! items are independent and whose result must not depend on how they were scheduled (the
//! kernel verifier's core instances, the GEMM planner's candidates).

use std::sync::atomic::{AtomicUsize, Ordering};

/// `items.iter().map(f)`, shared among up to `threads` scoped threads that each take the next
/// item not yet taken; on the caller's thread alone when `threads` or the item count is below 2.
/// A panic in `f` is resumed on the caller's thread.
pub fn map_ordered<T, R, F>(items: &[T], threads: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = threads.min(items.len());
    if threads < 2 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        done.push((i, f(item)));
                    }
                })
            })
            .collect();
        for worker in workers {
            let done = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (i, result) in done {
                results[i] = Some(result);
            }
        }
    });
    // Every index was taken by exactly one worker, which ran it to the end.
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::map_ordered;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<u64> = (0..1000).collect();
        let want: Vec<u64> = items.iter().map(|x| x * x).collect();
        for threads in [0, 1, 2, 3, 8, 2000] {
            assert_eq!(
                map_ordered(&items, threads, |x| x * x),
                want,
                "{threads} threads"
            );
        }
        assert!(map_ordered(&[] as &[u64], 4, |x| *x).is_empty());
    }
}
