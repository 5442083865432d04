//! A fork-join team: the calling thread plus `threads − 1` helper threads that spin for a short
//! while between jobs before they park.
//!
//! Why not rayon's `ThreadPool::install`: called from a thread outside the pool (the model's
//! thread), every install injects a job, wakes a worker and blocks the caller on a latch; on the
//! 2-vCPU bench machine that costs 10–17 µs per call, and a deep1000 training step makes ~60,000
//! backend calls (0.6–1 s of hand-offs, as long as the whole step budget). Here the caller posts
//! a job with a few atomic stores, works on it itself, and a spinning helper picks it up within
//! ~100 ns; a parked helper is woken with a futex and the caller does not wait for it (tasks are
//! handed out dynamically, so the caller takes whatever the helper has not started).

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Polls an idle helper spins on before it starts yielding its CPU between polls.
const PURE_SPINS: u32 = 2000;
/// How long an idle helper polls (spinning, then yielding) before it parks.
const SPIN: Duration = Duration::from_micros(300);
/// A wait for helpers longer than this (and longer than the caller's own share of the job)
/// means a helper was descheduled mid-task: the machine is oversubscribed.
const STALL: Duration = Duration::from_micros(50);
/// Serial spell after a stall: starts here, doubles on each further stall, up to MAX_BACKOFF.
const MIN_BACKOFF: Duration = Duration::from_millis(2);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

type Task = dyn Fn(usize) + Sync;

struct Shared {
    /// (epoch << 1) | open.
    state: AtomicU64,
    /// The open job's closure (lifetime erased; valid while the job is open or `active` > 0).
    job: UnsafeCell<*const Task>,
    n: AtomicUsize,
    next: AtomicUsize,
    /// Helpers inside the current job.
    active: AtomicUsize,
    panicked: AtomicBool,
    stop: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the caller while no job is open and no helper is active, and
// read by helpers only after they registered in `active` and saw the job still open (see `run`).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
    /// Serialises callers from different threads (one job at a time); holds the stall back-off.
    caller: Mutex<Backoff>,
}

/// On an oversubscribed machine a helper can be descheduled while it holds a task, and the
/// caller then waits a whole scheduler time slice (milliseconds) for it: measured on the shared
/// 2-vCPU bench machine at load 7, that made 2 threads 2.5× slower than 1. After such a stall
/// the team runs jobs on the caller alone for a while (exponential back-off), so it degrades to
/// single-thread speed instead; on an idle machine stalls never happen.
struct Backoff {
    serial_until: Option<Instant>,
    spell: Duration,
    /// (parallel jobs, serial jobs in back-off, stalls, total wait) for `stats`.
    stats: (u64, u64, u64, Duration),
}

impl Team {
    /// A team of `threads` (≥ 1) threads: the caller and `threads − 1` helpers.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new(std::ptr::null::<fn(usize)>() as *const Task),
            n: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let helpers = (1..threads.max(1))
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new().name(format!("mvdit-cpu-{i}")).spawn(move || helper(&s)).expect("spawn helper thread")
            })
            .collect();
        Team { shared, helpers, caller: Mutex::new(Backoff { serial_until: None, spell: MIN_BACKOFF, stats: Default::default() }) }
    }

    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// A line on the jobs run so far: parallel, serial (back-off), stalls, time spent waiting.
    pub fn stats(&self) -> String {
        let b = self.caller.lock().unwrap_or_else(|e| e.into_inner());
        let (par, ser, stalls, wait) = b.stats;
        format!("{par} parallel jobs, {ser} serial in back-off, {stalls} stalls, {:.3} s waiting for helpers", wait.as_secs_f64())
    }

    /// Runs `f(i)` for every i in 0..n on the team (the calling thread included) and returns
    /// when all are done. Tasks are taken in order from a shared counter. Callers on other
    /// threads wait their turn; `f` must not call `run` on the same team (it would deadlock).
    pub fn run(&self, n: usize, f: impl Fn(usize) + Sync) {
        if n == 0 {
            return;
        }
        if n == 1 || self.helpers.is_empty() {
            (0..n).for_each(f);
            return;
        }
        let mut backoff = self.caller.lock().unwrap_or_else(|e| e.into_inner());
        let start = Instant::now();
        if backoff.serial_until.is_some_and(|t| start < t) {
            backoff.stats.1 += 1;
            (0..n).for_each(f);
            return;
        }
        let s = &*self.shared;
        let task: &(dyn Fn(usize) + Sync + '_) = &f;
        // SAFETY: no job is open and `active` is 0 (the previous `run` waited for both), so no
        // helper reads `job` now; the pointer is only used while this frame is alive (Close).
        unsafe { *s.job.get() = std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), *const Task>(task) };
        s.n.store(n, SeqCst);
        s.next.store(0, SeqCst);
        let open = ((s.state.load(SeqCst) >> 1) + 1) << 1 | 1;
        s.state.store(open, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        /// Closes the job and waits for the helpers, also when `f` panics on this thread.
        struct Close<'a>(&'a Shared, u64);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.0.state.store(self.1 & !1, SeqCst);
                let mut spins = 0u32;
                while self.0.active.load(SeqCst) != 0 {
                    spins += 1;
                    if spins < 1 << 12 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
        let close = Close(s, open);
        loop {
            let i = s.next.fetch_add(1, SeqCst);
            if i >= n {
                break;
            }
            f(i);
        }
        let own = start.elapsed();
        drop(close);
        let waited = start.elapsed() - own;
        backoff.stats.0 += 1;
        backoff.stats.3 += waited;
        if waited > STALL.max(own) {
            backoff.stats.2 += 1;
            backoff.serial_until = Some(Instant::now() + backoff.spell);
            backoff.spell = (backoff.spell * 2).min(MAX_BACKOFF);
        } else if backoff.serial_until.is_some() {
            backoff.serial_until = None;
            backoff.spell = (backoff.spell / 2).max(MIN_BACKOFF);
        }
        if s.panicked.swap(false, SeqCst) {
            panic!("a task panicked on a helper thread");
        }
    }
}

fn helper(s: &Shared) {
    let mut seen = 0u64;
    let mut idle_since = Instant::now();
    let mut polls = 0u32;
    loop {
        let st = s.state.load(SeqCst);
        if s.stop.load(SeqCst) {
            return;
        }
        if st & 1 == 1 && st != seen {
            seen = st;
            s.active.fetch_add(1, SeqCst);
            if s.state.load(SeqCst) == st {
                // SAFETY: the job is open and we are registered in `active`, so the caller's
                // frame (and the closure) stays alive until we deregister.
                let job = unsafe { &**s.job.get() };
                let n = s.n.load(SeqCst);
                loop {
                    let i = s.next.fetch_add(1, SeqCst);
                    if i >= n {
                        break;
                    }
                    if catch_unwind(AssertUnwindSafe(|| job(i))).is_err() {
                        s.panicked.store(true, SeqCst);
                    }
                }
            }
            s.active.fetch_sub(1, SeqCst);
            idle_since = Instant::now();
            polls = 0;
            continue;
        }
        polls += 1;
        if polls < PURE_SPINS {
            std::hint::spin_loop();
            continue;
        }
        if idle_since.elapsed() < SPIN {
            // Yielding keeps the latency low on an idle machine (sched_yield returns at once)
            // and hands the CPU to runnable threads (the caller included) on a busy one.
            std::thread::yield_now();
            continue;
        }
        let g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.sleepers.fetch_add(1, SeqCst);
        let st = s.state.load(SeqCst);
        if (st & 1 == 0 || st == seen) && !s.stop.load(SeqCst) {
            drop(s.wake.wait(g).unwrap_or_else(|e| e.into_inner()));
        }
        s.sleepers.fetch_sub(1, SeqCst);
        idle_since = Instant::now();
        polls = 0;
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Team;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_task_once_and_survives_parking() {
        let team = Team::new(3);
        for round in 0..200 {
            let hits: Vec<AtomicUsize> = (0..37).map(|_| AtomicUsize::new(0)).collect();
            team.run(hits.len(), |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
            if round % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2)); // helpers park
            }
        }
    }

    #[test]
    fn a_panicking_task_panics_the_caller() {
        let team = Team::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| team.run(64, |i| assert!(i != 40))));
        assert!(r.is_err());
        team.run(4, |_| {}); // still usable
    }
}
