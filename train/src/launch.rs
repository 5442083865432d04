//! A training run as a user starts one: the config with the overrides of `mvdit train`'s
//! flags ([`with_overrides`]), then [`train_on`] the backend a [`BackendSpec`] names, whole or
//! split by depth over several devices ([`Split`]). Progress reaches a [`Progress`]; raising
//! `stop` ends the run after the current step with a checkpoint (as Ctrl-C does).

use crate::backends::BackendSpec;
use crate::config::TrainConfig;
use crate::dist::Dist;
use crate::observe::Progress;
use crate::run::{train_dist, RunSummary};
use crate::trainer::Placement;
use mvdit_model::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The depth split: the blocks divided evenly over `devices` (adapter indices; on the CPU one
/// instance per entry), `micro_batches` per step (GPipe schedule; without devices, gradient
/// accumulation on one device).
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub devices: Vec<usize>,
    pub micro_batches: usize,
}

impl Default for Split {
    fn default() -> Self {
        Split { devices: Vec::new(), micro_batches: 1 }
    }
}

impl Split {
    /// Refuses what cannot run.
    pub fn check(&self, spec: &BackendSpec) -> Result<()> {
        if self.micro_batches == 0 {
            return Err(Error::new("--micro-batches must be at least 1"));
        }
        if !self.devices.is_empty() && spec.device.is_some() {
            return Err(Error::new("--devices and --device: give one (--devices lists the adapter of every depth stage)"));
        }
        Ok(())
    }
}

/// `cfg` with a data folder or shard set (`data`: a shard set carries its own shapes and
/// conditioning), a step count and a checkpoint to start from, then validated.
pub fn with_overrides(mut cfg: TrainConfig, data: Option<PathBuf>, steps: Option<u64>, init: Option<PathBuf>) -> Result<TrainConfig> {
    match data {
        Some(dir) if dir.join("shards.json").is_file() => crate::run::adopt_shards(&mut cfg, &dir)?,
        Some(dir) => {
            cfg.data.folder = Some(dir);
            cfg.data.shards = None;
        }
        None => {}
    }
    if let Some(n) = steps {
        cfg.steps = n;
    }
    if init.is_some() {
        cfg.init = init;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Trains `cfg` into the run directory `out` in this process (with `resume`, from its latest
/// checkpoint), on the backend `spec` names, split by depth as `split` says.
pub fn train_on(spec: &BackendSpec, split: &Split, out: &Path, cfg: TrainConfig, resume: bool, stop: &AtomicBool, progress: &mut dyn Progress) -> Result<RunSummary> {
    split.check(spec)?;
    let micro_batches = split.micro_batches;
    if split.devices.is_empty() {
        return crate::with_backend!(spec, |be| train_dist(Placement { devices: vec![&be], micro_batches }, out, cfg, resume, stop, progress, &Dist::single()));
    }
    crate::with_devices!(spec, split.devices, |bes| train_dist(Placement { devices: bes, micro_batches }, out, cfg, resume, stop, progress, &Dist::single()))
}
