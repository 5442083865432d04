//! `mvdit tune`: the fastest matmul kernel for each product shape of a workload, timed once on
//! the device it will run on, kept in a cache file, and applied whenever a GPU backend opens.
//!
//! The cache (`$XDG_CACHE_HOME/mvdit/tune.json` or `~/.cache/mvdit/tune.json`, or `--tune-cache
//! PATH`) is a JSON list of entries, each a device (the backend's name: API, adapter, driver
//! version and kernel plan), a product shape ([`GemmKey`]) and the kernel that won, with the
//! times measured. A shape already in the cache for the device is not timed again. A candidate
//! that fails on the device, or whose product disagrees with the first candidate's (the 64×64
//! tiled kernel, which the op and f16 suites check), is skipped with a note. A damaged cache is
//! refused in one line and tuned afresh.

use crate::bench::{bench_with, BenchOptions};
use crate::config::Workload;
use crate::trainer::Placement;
use mvdit_backend_wgpu::{GemmKey, GpuBackend, GpuDevice, MatmulChoice};
use mvdit_core::Backend;
use mvdit_model::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format of the cache file this version writes and reads.
const FORMAT: u32 = 1;

/// One tuned shape on one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub device: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub f16: bool,
    /// The winner ([`MatmulChoice::name`]).
    pub kernel: String,
    /// Median seconds per product of each candidate that ran and agreed.
    pub seconds: Vec<(String, f64)>,
}

impl Entry {
    pub fn key(&self) -> GemmKey {
        GemmKey { m: self.m, n: self.n, k: self.k, batch: self.batch, f16: self.f16 }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    format: u32,
    entries: Vec<Entry>,
}

/// The default cache file: `$XDG_CACHE_HOME/mvdit/tune.json` or `~/.cache/mvdit/tune.json`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("mvdit").join("tune.json"))
}

/// The entries of the cache at `path` (none when it does not exist); a file that cannot be read
/// as a cache of this format is an error naming it.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::new(format!("tune cache {}: {e}", path.display()))),
    };
    let file: CacheFile = serde_json::from_str(&text).map_err(|e| Error::new(format!("tune cache {}: damaged ({e})", path.display())))?;
    if file.format != FORMAT {
        return Err(Error::new(format!("tune cache {}: format {} (this version reads {FORMAT})", path.display(), file.format)));
    }
    if let Some(e) = file.entries.iter().find(|e| MatmulChoice::from_name(&e.kernel).is_none()) {
        return Err(Error::new(format!("tune cache {}: damaged (unknown kernel `{}`)", path.display(), e.kernel)));
    }
    Ok(file.entries)
}

/// Writes `entries` to `path` (a temporary file renamed over it, so readers never see half).
pub fn write(path: &Path, entries: &[Entry]) -> Result<()> {
    let io = |e: std::io::Error| Error::new(format!("tune cache {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_json::to_string_pretty(&CacheFile { format: FORMAT, entries: entries.to_vec() }).map_err(|e| Error::new(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Installs on `be` the cached choices made on its device; returns how many.
pub fn apply<D: GpuDevice>(be: &GpuBackend<D>, entries: &[Entry]) -> usize {
    let device = be.name();
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.device == device).collect();
    for e in &mine {
        be.set_matmul_choice(e.key(), MatmulChoice::from_name(&e.kernel));
    }
    mine.len()
}

/// The cache at `path` (or the default one) applied to `be` when a GPU backend opens: a damaged
/// cache is reported in one line on stderr and left for `mvdit tune` to rewrite; the run goes
/// on with the device plan's kernels.
pub fn apply_cache<D: GpuDevice>(be: &GpuBackend<D>, path: Option<&Path>) {
    let Some(path) = path.map(Path::to_path_buf).or_else(default_path) else { return };
    match read(&path) {
        Ok(entries) => {
            apply(be, &entries);
        }
        Err(e) => eprintln!("{e}; not used (`mvdit tune` rewrites it)"),
    }
}

/// The product shapes a workload uses on `be` at `batch`: one training step and one forward
/// pass of a guided sampling step (twice the batch), recorded by the backend.
pub fn workload_gemms<D: GpuDevice>(be: &GpuBackend<D>, w: &Workload, batch: usize) -> Result<Vec<GemmKey>>
where
    GpuBackend<D>: crate::depth_split::StageBackend,
{
    let opts = |batch, forward_only| BenchOptions {
        batch,
        steps: 1,
        warmup: 0,
        forward_only,
        recompute: Default::default(),
        activation_budget_mb: Default::default(),
        weights: None,
        data: None,
    };
    let mut keys = vec![];
    for (n, forward) in [(batch, false), (2 * batch, true)] {
        bench_with(Placement::one(be), w, "tune", 0, &opts(n, forward), &mut || {
            be.record_gemms(true);
            Ok(())
        })?;
        keys.extend(be.record_gemms(false));
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// What [`tune`] did to one shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Timed: the entry written, and the candidates skipped with why.
    Tuned(Entry, Vec<String>),
    /// In the cache already: not timed.
    Cached(Entry),
    /// One candidate or none: nothing to choose.
    Single(GemmKey),
    /// No candidate ran or agreed: left to the device plan, with why.
    Failed(GemmKey, Vec<String>),
}

/// Times every candidate kernel of each shape in `keys` on `be` (median of `reps` after one
/// warm-up), keeps the fastest that agrees with the first, installs it, and merges the results
/// into the cache `entries` (cached shapes are not timed, unless `retune`).
pub fn tune<D: GpuDevice>(be: &GpuBackend<D>, keys: &[GemmKey], entries: &mut Vec<Entry>, reps: usize, retune: bool, report: &mut dyn FnMut(&Outcome)) -> Result<Vec<Outcome>> {
    let device = be.name();
    let mut out = vec![];
    for &key in keys {
        let cached = entries.iter().position(|e| e.device == device && e.key() == key);
        if let (Some(i), false) = (cached, retune) {
            be.set_matmul_choice(key, MatmulChoice::from_name(&entries[i].kernel));
            out.push(Outcome::Cached(entries[i].clone()));
            report(out.last().unwrap());
            continue;
        }
        let candidates = be.matmul_candidates(key);
        if candidates.len() < 2 {
            out.push(Outcome::Single(key));
            report(out.last().unwrap());
            continue;
        }
        let tol = if key.f16 { 1e-2 } else { 1e-4 };
        let mut reference: Option<Vec<f32>> = None;
        let mut times: Vec<(MatmulChoice, f64)> = vec![];
        let mut notes: Vec<String> = vec![];
        for &choice in &candidates {
            match be.time_gemm(key, choice, reps) {
                Err(e) => notes.push(format!("{}: {e}", choice.name())),
                Ok((secs, c)) => match &reference {
                    None => {
                        reference = Some(c);
                        times.push((choice, secs));
                    }
                    Some(r) => match mvdit_model::step_cache::relative_change(&c, r) {
                        err if err <= tol => times.push((choice, secs)),
                        err => notes.push(format!("{}: differs from {} by {err:.1e} (tolerance {tol:.0e})", choice.name(), times[0].0.name())),
                    },
                },
            }
        }
        let Some(&(best, _)) = times.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
            out.push(Outcome::Failed(key, notes));
            report(out.last().unwrap());
            continue;
        };
        be.set_matmul_choice(key, Some(best));
        let entry = Entry {
            device: device.clone(),
            m: key.m,
            n: key.n,
            k: key.k,
            batch: key.batch,
            f16: key.f16,
            kernel: best.name().into(),
            seconds: times.iter().map(|(c, s)| (c.name().to_string(), *s)).collect(),
        };
        entries.retain(|e| !(e.device == device && e.key() == key));
        entries.push(entry.clone());
        out.push(Outcome::Tuned(entry, notes));
        report(out.last().unwrap());
    }
    Ok(out)
}
