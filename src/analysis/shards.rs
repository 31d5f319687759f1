//! Per-thread shards of a value the request path updates: each thread updates its own copy
//! under its own lock, and a reader merges every copy, so proxy threads recording into the same
//! recorder or tally do not take turns on one lock (or pass one cache line back and forth).
//!
//! Lives here: [`Shards`], as many copies as the process has cores (each on its own cache
//! line), an update going to the copy of the core it runs on (as the kernel's per-CPU
//! counters do; glibc reads the core from the thread's rseq area, no system call), so two
//! threads running at once never share a copy. A thread moved to another core between the
//! pick and the lock only meets a neighbour on one lock. Must not: know what it holds, or lock
//! more than one copy on the update path (only readers and resets lock them all, in order).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Copies per sharded value: the cores this process may use (at most 64).
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 64)
    })
}

/// The core this thread runs on now; where that cannot be read, a number of the thread's own
/// (handed out in the order threads first record).
fn this_core() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    nix::sched::sched_getcpu().unwrap_or_else(|_| MINE.with(|n| *n))
}

/// A lock on its own cache line (two lines: some CPUs fetch lines in pairs).
#[repr(align(128))]
struct Padded<T>(Mutex<T>);

/// One `T` per core; see the module comment.
pub(crate) struct Shards<T> {
    shards: Box<[Padded<T>]>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-update leaves counts at worst one update short: keep recording.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T> Shards<T> {
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Shards<T> {
        Shards {
            shards: (0..shard_count())
                .map(|_| Padded(Mutex::new(make())))
                .collect(),
        }
    }

    /// Update the copy of the core this thread runs on.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let i = this_core() % self.shards.len();
        f(&mut lock(&self.shards[i].0))
    }

    /// Every copy, locked at once (in order, so two of these never deadlock), e.g. to read a
    /// consistent whole or reset them together.
    pub(crate) fn all<R>(&self, f: impl FnOnce(&mut [MutexGuard<'_, T>]) -> R) -> R {
        let mut guards: Vec<_> = self.shards.iter().map(|s| lock(&s.0)).collect();
        f(&mut guards)
    }

    /// Each copy in turn, one locked at a time (for reads that need no consistency across
    /// copies, e.g. adding up counters).
    pub(crate) fn each(&self, mut f: impl FnMut(&T)) {
        for s in self.shards.iter() {
            f(&lock(&s.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn updates_from_many_threads_all_add_up() {
        let shards = Arc::new(Shards::new(|| 0u64));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&shards);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        s.with(|n| *n += 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let mut sum = 0;
        shards.each(|n| sum += n);
        assert_eq!(sum, 80_000);
        let all = shards.all(|g| g.iter().map(|n| **n).sum::<u64>());
        assert_eq!(all, 80_000);
        shards.all(|g| g.iter_mut().for_each(|n| **n = 0));
        shards.each(|n| assert_eq!(*n, 0));
    }

    #[test]
    fn every_update_lands_in_exactly_one_copy() {
        let shards = Shards::new(|| 0u64);
        for _ in 0..5 {
            shards.with(|n| *n += 1);
        }
        let mut seen = Vec::new();
        shards.each(|n| seen.push(*n));
        assert_eq!(seen.len(), shard_count());
        assert_eq!(seen.iter().sum::<u64>(), 5, "{seen:?}");
    }
}
