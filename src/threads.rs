//! Thread pools: one rayon pool per requested thread count, built once and
//! reused, so `Parallelism::Threads(n)` costs no pool construction per call.

use crate::isa::Parallelism;

/// How many threads to use for `work` units when each thread should get at
/// least `min_per_thread` of them (at most the requested count, at least 1).
///
/// `min_per_thread` is sized for a call from outside the pool, which wakes
/// the pool's threads and parks the caller. Called from inside the pool
/// (a caller that wraps a whole sequence of kernels in [`install`], as the
/// model's forward step does), the other workers are still spinning from
/// the last parallel section and a fork costs a few microseconds, so an
/// eighth of that work per thread already pays.
pub(crate) fn threads_for(par: Parallelism, work: usize, min_per_thread: usize) -> usize {
    let want = par.threads().max(1);
    let min = if in_pool() {
        min_per_thread / IN_POOL_DISCOUNT
    } else {
        min_per_thread
    };
    let by_work = (work / min.max(1)).max(1);
    want.min(by_work)
}

/// How much less work per thread pays from inside the pool (see
/// [`threads_for`]).
const IN_POOL_DISCOUNT: usize = 8;

/// Whether the calling thread is one of a rayon pool's workers.
fn in_pool() -> bool {
    #[cfg(feature = "rayon")]
    return rayon::current_thread_index().is_some();
    #[cfg(not(feature = "rayon"))]
    false
}

/// Runs `f` inside a pool of `n` threads (`n > 1`), or on the caller when
/// `n <= 1` or the `rayon` feature is off.
#[cfg(feature = "rayon")]
pub(crate) fn install<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    if n <= 1 {
        return f();
    }
    // Already inside a pool of the right size (nested call): run here.
    if rayon::current_thread_index().is_some() && rayon::current_num_threads() == n {
        return f();
    }
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pool = {
        let mut map = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match map.get(&n) {
            Some(p) => Some(p.clone()),
            None => match rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("tk-worker-{i}"))
                .build()
            {
                Ok(p) => {
                    let p = Arc::new(p);
                    map.insert(n, p.clone());
                    Some(p)
                }
                Err(_) => None,
            },
        }
    };
    match pool {
        Some(p) => p.install(f),
        // Could not spawn threads: the work still gets done, on the caller.
        None => f(),
    }
}

#[cfg(not(feature = "rayon"))]
pub(crate) fn install<R: Send>(_n: usize, f: impl FnOnce() -> R + Send) -> R {
    f()
}

/// Runs `f(i)` for `i in 0..jobs`, on up to `n` threads.
pub(crate) fn for_each_index(n: usize, jobs: usize, f: impl Fn(usize) + Sync + Send) {
    #[cfg(feature = "rayon")]
    if n > 1 && jobs > 1 {
        use rayon::prelude::*;
        install(n, || (0..jobs).into_par_iter().for_each(&f));
        return;
    }
    let _ = n;
    (0..jobs).for_each(f);
}
