//! Thread pools: one rayon pool per requested thread count, built once and
//! reused, so `Parallelism::Threads(n)` costs no pool construction per call;
//! and, for a caller that runs a whole sequence of kernels on `n` threads
//! ([`install`]: a model's forward step), a [`Team`] of `n − 1` helper
//! threads that spin between the sequence's parallel sections.
//!
//! Why the team: a decode step is ~150 parallel sections of 10–50 µs with
//! serial work between them. A rayon worker that finds no work soon goes to
//! sleep, and waking it costs a futex call and, in a VM, an interprocessor
//! interrupt — measured here (Intel Xeon, 2-vCPU KVM guest, SmolLM2 int8
//! decode) as 10–15 µs a section: the output projection took 0.82 ms a token
//! on two threads against 0.75 ms on one. A spinning helper sees a new
//! section within ~100 ns (what llama.cpp's thread pool does too). The team
//! spins only inside [`install`] and parks when it returns.

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
    if want == 1 {
        return 1;
    }
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

/// Whether the calling thread is one of a rayon pool's workers, or served
/// by a [`Team`].
fn in_pool() -> bool {
    #[cfg(feature = "rayon")]
    return rayon::current_thread_index().is_some() || team::current().is_some();
    #[cfg(not(feature = "rayon"))]
    false
}

/// Runs `f` with a [`Team`] of `n` threads (`n > 1`) serving the kernels it
/// calls, or on the caller when `n <= 1`, the `rayon` feature is off, or a
/// team is already serving this thread. When the team of that size is busy
/// (another caller's), or cannot be started, falls back to a rayon pool.
#[cfg(feature = "rayon")]
pub(crate) fn install<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    if n <= 1 || team::current().is_some() {
        return f();
    }
    // More spinning threads than cores would take the cores from the
    // threads doing the work: the pool's sleeping workers then.
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n <= cores
        && let Some(t) = team::Team::get(n)
        && let Some(guard) = t.activate()
    {
        let r = f();
        drop(guard);
        return r;
    }
    pool_install(n, f)
}

/// Runs `f` inside the rayon pool of `n` threads.
#[cfg(feature = "rayon")]
fn pool_install<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
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

/// A value carrying raw pointers into the caller's buffers (a kernel's
/// job description), shared with the jobs of one parallel section. Raw
/// pointers are neither `Send` nor `Sync`; [`Shared::new`] is the one
/// place where a kernel promises that sharing them is sound.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(T);

impl<T> Shared<T> {
    /// Wraps `t` for the jobs of a parallel section.
    ///
    /// # Safety
    /// Every pointer in `t` stays valid until that section returns, and its
    /// jobs touch disjoint elements through them (none writes what another
    /// reads or writes).
    pub(crate) unsafe fn new(t: T) -> Self {
        Shared(t)
    }

    /// The wrapped value.
    pub(crate) fn get(&self) -> &T {
        &self.0
    }
}

// SAFETY: the contract of `Shared::new`.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

/// This thread's scratch kept in `key` (`init()` the first time), taken
/// out until the guard drops and then put back: a kernel reuses its
/// buffers across calls on a thread without allocating, and a nested call
/// on the same thread builds its own rather than aliasing the outer one's.
///
/// A guard, not a closure: a closure's body is a function of its own,
/// compiled without the SIMD level's target features of the kernel that
/// calls it (pulp's `vectorize` enables them only for what is inlined into
/// it) — the f32-activation Q4_1 decode ran 15× slower that way.
#[inline(always)]
pub(crate) fn scratch<T: 'static>(
    key: &'static std::thread::LocalKey<std::cell::Cell<Option<T>>>,
    init: impl FnOnce() -> T,
) -> Scratch<T> {
    Scratch {
        key,
        val: Some(key.take().unwrap_or_else(init)),
    }
}

/// See [`scratch`].
pub(crate) struct Scratch<T: 'static> {
    key: &'static std::thread::LocalKey<std::cell::Cell<Option<T>>>,
    val: Option<T>,
}

impl<T> std::ops::Deref for Scratch<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // Some until dropped.
        self.val.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl<T> std::ops::DerefMut for Scratch<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        self.val.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl<T> Drop for Scratch<T> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(v) = self.val.take() {
            self.key.set(Some(v));
        }
    }
}

/// Runs `f(i)` for `i in 0..jobs`, on up to `n` threads: the team serving
/// this thread when there is one, else a rayon pool.
pub(crate) fn for_each_index(n: usize, jobs: usize, f: impl Fn(usize) + Sync + Send) {
    #[cfg(feature = "rayon")]
    if n > 1 && jobs > 1 && !team::in_job() {
        if let Some(t) = team::current() {
            t.run(jobs, &f);
            return;
        }
        use rayon::prelude::*;
        pool_install(n, || (0..jobs).into_par_iter().for_each(&f));
        return;
    }
    let _ = n;
    (0..jobs).for_each(f);
}

#[cfg(feature = "rayon")]
mod team {
    //! The spinning team of [`super::install`].

    use std::cell::{Cell, UnsafeCell};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Mutex, OnceLock};

    /// A job as the helpers see it: `f(i)` for each claimed index.
    type Job = *const (dyn Fn(usize) + Sync);

    /// `n − 1` helper threads and the caller that activated them. One
    /// parallel section at a time: `state` packs its number (24 bits,
    /// wrapping), its index count and the next index to claim (20 bits
    /// each), so a claim is one compare-and-swap that fails once the
    /// section has moved on.
    pub(super) struct Team {
        size: usize,
        state: AtomicU64,
        /// The current section's function; written only while no index of
        /// the previous section is outstanding, read only by the holder of
        /// a claim.
        job: UnsafeCell<Option<Job>>,
        /// Indices of the current section finished.
        done: AtomicUsize,
        /// A helper's job panicked in the current section.
        panicked: AtomicBool,
        /// Helpers spin while set, park while not.
        active: AtomicBool,
        /// Held by the caller the team serves.
        busy: AtomicBool,
        helpers: Mutex<Vec<std::thread::Thread>>,
    }

    // SAFETY: `job` is the only non-Sync field; it is written by the one
    // caller holding `busy` while no claim of the previous section is
    // outstanding (all its indices are done), and read by a thread only
    // after its claim on the current section succeeded, which orders the
    // read after the write (the claim's Acquire of the Release that
    // published the section).
    unsafe impl Sync for Team {}
    // SAFETY: as above; the raw pointer in `job` is used only as described.
    unsafe impl Send for Team {}

    /// Bits of the index count and of the next index; the section number
    /// has the other 24, so a helper's stale compare-and-swap could succeed
    /// only after 16 million sections passed between its load and its swap.
    const BITS: u32 = 20;
    const MASK: u64 = (1 << BITS) - 1;
    const SECTION: u64 = (1 << (64 - 2 * BITS)) - 1;

    fn unpack(s: u64) -> (u64, usize, usize) {
        (
            s >> (2 * BITS),
            ((s >> BITS) & MASK) as usize,
            (s & MASK) as usize,
        )
    }

    thread_local! {
        /// The team serving this thread (the caller that activated it).
        static CURRENT: Cell<Option<&'static Team>> = const { Cell::new(None) };
        /// This thread is running a section's index (nested sections run
        /// serially).
        static IN_JOB: Cell<bool> = const { Cell::new(false) };
    }

    /// Whether the calling thread runs a team's job (its own sections then
    /// run serially).
    pub(super) fn in_job() -> bool {
        IN_JOB.get()
    }

    /// The team serving the calling thread, outside a job.
    pub(super) fn current() -> Option<&'static Team> {
        if IN_JOB.get() { None } else { CURRENT.get() }
    }

    /// Deactivates the team when the caller's sequence ends (or unwinds).
    pub(super) struct Active(&'static Team);

    impl Drop for Active {
        fn drop(&mut self) {
            CURRENT.set(None);
            self.0.active.store(false, Ordering::Release);
            self.0.busy.store(false, Ordering::Release);
        }
    }

    impl Team {
        /// The team of `n` threads (started on first use and kept; `None`
        /// when a thread cannot be spawned).
        pub(super) fn get(n: usize) -> Option<&'static Team> {
            static TEAMS: OnceLock<Mutex<HashMap<usize, &'static Team>>> = OnceLock::new();
            let mut map = TEAMS
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(t) = map.get(&n) {
                return Some(t);
            }
            // Leaked on purpose: helpers live as long as the process, as a
            // rayon global pool's do.
            let t: &'static Team = Box::leak(Box::new(Team {
                size: n,
                state: AtomicU64::new(0),
                job: UnsafeCell::new(None),
                done: AtomicUsize::new(0),
                panicked: AtomicBool::new(false),
                active: AtomicBool::new(false),
                busy: AtomicBool::new(false),
                helpers: Mutex::new(Vec::new()),
            }));
            let mut helpers = Vec::with_capacity(n - 1);
            for i in 1..n {
                let h = std::thread::Builder::new()
                    .name(format!("tk-team{n}-{i}"))
                    .spawn(move || t.serve())
                    .ok()?;
                helpers.push(h.thread().clone());
            }
            *t.helpers.lock().unwrap_or_else(|e| e.into_inner()) = helpers;
            map.insert(n, t);
            Some(t)
        }

        /// Makes the team serve the calling thread until the guard drops;
        /// `None` when it serves another caller now.
        pub(super) fn activate(&'static self) -> Option<Active> {
            if self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return None;
            }
            self.active.store(true, Ordering::Release);
            for h in self
                .helpers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                h.unpark();
            }
            CURRENT.set(Some(self));
            Some(Active(self))
        }

        /// A helper's life: spin for sections while active (yielding the
        /// core to other processes after ~2¹⁴ idle turns, so a step's long
        /// serial stretch does not starve a shared machine), park while not.
        fn serve(&'static self) {
            IN_JOB.set(true);
            let mut idle = 0u32;
            loop {
                if !self.active.load(Ordering::Acquire) {
                    std::thread::park();
                    idle = 0;
                    continue;
                }
                if self.claim_and_run() {
                    idle = 0;
                } else if idle < 1 << 14 {
                    idle += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }

        /// Claims one index of the current section and runs it; false when
        /// there was none to claim.
        fn claim_and_run(&self) -> bool {
            let s = self.state.load(Ordering::Acquire);
            let (_, jobs, next) = unpack(s);
            if next >= jobs {
                return false;
            }
            if self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                return true;
            }
            // SAFETY: the claim succeeded on the section `s` names, so its
            // function was written before it was published and stays valid
            // until this index is counted done (see the Sync impl).
            let f = unsafe { (*self.job.get()).unwrap_unchecked() };
            // SAFETY: the function outlives the section (`run` waits for
            // every index before returning).
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*f)(next) }));
            if r.is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
            true
        }

        /// Runs `f(i)` for `i in 0..jobs` on the team (the caller too), and
        /// returns when all are done.
        pub(super) fn run(&self, jobs: usize, f: &(dyn Fn(usize) + Sync)) {
            if jobs as u64 > MASK || self.size < 2 {
                (0..jobs).for_each(f);
                return;
            }
            // SAFETY: only the lifetime is erased; the pointer is used only
            // until every index is done, before this function returns.
            let job: Job =
                unsafe { core::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Job>(f) };
            let (section, _, _) = unpack(self.state.load(Ordering::Relaxed));
            // SAFETY: the previous section's indices are all done (its `run`
            // returned), so no thread reads `job` now.
            unsafe { *self.job.get() = Some(job) };
            self.done.store(0, Ordering::Relaxed);
            self.panicked.store(false, Ordering::Relaxed);
            let next = (((section + 1) & SECTION) << (2 * BITS)) | ((jobs as u64) << BITS);
            self.state.store(next, Ordering::Release);
            IN_JOB.set(true);
            while self.claim_and_run() {}
            IN_JOB.set(false);
            while self.done.load(Ordering::Acquire) < jobs {
                std::hint::spin_loop();
            }
            if self.panicked.load(Ordering::Relaxed) {
                panic!("a kernel job of a parallel section panicked");
            }
        }
    }
}
