//! Per-op timing of the CPU backend (`CpuOptions::profile`): call counts and total time per op,
//! printed to stderr when the backend is dropped.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::Instant;

/// Calls and seconds per op.
#[derive(Default)]
pub(crate) struct Profile(Mutex<BTreeMap<&'static str, (u64, f64)>>);

/// Adds the time since its creation to its op's entry.
pub(crate) struct OpTimer<'a>(&'a Profile, &'static str, Instant);

impl Drop for OpTimer<'_> {
    fn drop(&mut self) {
        let mut p = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        let e = p.entry(self.1).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += self.2.elapsed().as_secs_f64();
    }
}

impl Profile {
    /// Times op `op` until the returned timer is dropped.
    pub(crate) fn timer(&self, op: &'static str) -> OpTimer<'_> {
        OpTimer(self, op, Instant::now())
    }

    /// The table on stderr, longest op first, after a line with the total and `team`.
    pub(crate) fn report(&self, team: impl Display) {
        let p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let total: f64 = p.values().map(|v| v.1).sum();
        eprintln!("mvdit-cpu profile: {total:.3} s in ops; team: {team}");
        let mut rows: Vec<_> = p.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        for (op, (n, t)) in rows {
            eprintln!("  {op:24} {n:9} calls {t:9.3} s {:5.1}% {:8.2} us/call", 100.0 * t / total, t / *n as f64 * 1e6);
        }
    }
}
