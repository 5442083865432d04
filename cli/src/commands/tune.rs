//! `mvdit tune`: times the matmul kernels for each product shape of a workload on the GPU and
//! keeps the fastest of each in the tune cache, which every later run on the device reads.

use crate::backend_args::BackendArgs;
use mvdit_backend_wgpu::{GpuBackend, GpuDevice, Wgpu};
use mvdit_core::Backend;
use mvdit_model::{Error, Result};
use mvdit_train::backends::BackendKind;
use mvdit_train::config::Workload;
use mvdit_train::depth_split::StageBackend;
use mvdit_train::tune::{self, Outcome};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// Workload JSON (as `benches/`): the products of its training step at --batch and of a
    /// guided sampling pass (twice --batch) are tuned.
    #[arg(long)]
    pub config: PathBuf,
    /// Samples per training step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Timed runs of each candidate (their median counts), after one warm-up.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Time every shape again, also those already in the cache.
    #[arg(long)]
    pub retune: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn tune_command(a: TuneArgs) -> Result<()> {
    if a.batch == 0 || a.reps == 0 {
        return Err(Error::new("--batch and --reps must be at least 1"));
    }
    if a.backend.kind() == BackendKind::Cpu {
        return Err(Error::new("mvdit tune times GPU kernels: give --backend wgpu or vulkan"));
    }
    let spec = a.backend.spec()?;
    let path = spec.flags.tune_cache.clone().or_else(tune::default_path).ok_or_else(|| Error::new("no cache directory ($XDG_CACHE_HOME or $HOME): give --tune-cache PATH"))?;
    let w = Workload::read(&a.config)?;
    match spec.kind {
        BackendKind::Wgpu => run(&Wgpu::with_options(spec.wgpu_options()?)?, &w, &a, &path),
        _ => run(&mvdit_backend_vulkan::open_with(&spec.vulkan_options(spec.device)?)?, &w, &a, &path),
    }
}

fn run<D: GpuDevice>(be: &GpuBackend<D>, w: &Workload, a: &TuneArgs, path: &Path) -> Result<()>
where
    GpuBackend<D>: StageBackend,
{
    let mut entries = tune::read(path).unwrap_or_else(|e| {
        eprintln!("{e}; tuning afresh");
        vec![]
    });
    let keys = tune::workload_gemms(be, w, a.batch)?;
    eprintln!("tuning {} product shapes on {}", keys.len(), be.name());
    let outcomes = tune::tune(be, &keys, &mut entries, a.reps, a.retune, &mut |o| eprintln!("  {}", line(o)))?;
    tune::write(path, &entries)?;
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    eprintln!(
        "tune: {} timed, {} from the cache, {} with one kernel, {} failed → {}",
        count(|o| matches!(o, Outcome::Tuned(..))),
        count(|o| matches!(o, Outcome::Cached(..))),
        count(|o| matches!(o, Outcome::Single(..))),
        count(|o| matches!(o, Outcome::Failed(..))),
        path.display()
    );
    Ok(())
}

/// One shape's outcome in words.
fn line(o: &Outcome) -> String {
    let shape = |k: mvdit_backend_wgpu::GemmKey| format!("{}x{}x{} (batch {}{})", k.m, k.n, k.k, k.batch, if k.f16 { ", f16" } else { "" });
    match o {
        Outcome::Tuned(e, notes) => {
            let times: Vec<String> = e.seconds.iter().map(|(k, s)| format!("{k} {:.3} ms", s * 1e3)).collect();
            let skipped = if notes.is_empty() { String::new() } else { format!("; skipped: {}", notes.join("; ")) };
            format!("{}: {} ({}){skipped}", shape(e.key()), e.kernel, times.join(", "))
        }
        Outcome::Cached(e) => format!("{}: {} (cached)", shape(e.key()), e.kernel),
        Outcome::Single(k) => format!("{}: one kernel, nothing to choose", shape(*k)),
        Outcome::Failed(k, notes) => format!("{}: no kernel ran ({}); left to the device plan", shape(*k), notes.join("; ")),
    }
}
