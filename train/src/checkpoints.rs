//! Checkpoints of a [`TrainState`] on disk. Written tensor by tensor straight from the devices
//! ([`mvdit_model::stream_write`]): the host holds one tensor at a time, never the whole state;
//! one file `step-NNNNNNNN.safetensors` up to `checkpoint_shard_mb`, above it a directory
//! `step-NNNNNNNN/` of shards with `model.safetensors.index.json`; atomic either way (temporary
//! name, fsync, rename). Read back through memory maps ([`WeightFile`]), tensor by tensor onto
//! the devices, every shard's checksum verified on the way. Also the listing, pruning and
//! clean-up of a run's checkpoint folder.

use crate::config::TrainConfig;
use crate::depth_split::{DepthSplit, StageBackend};
use crate::rng::Rng;
use crate::trainer::{ClassTable, Placement, TrainState, CLASS_TABLE};
use mvdit_core::Backend;
use mvdit_model::checkpoint::parse_config;
use mvdit_model::stream_write::{remove_any, write_checkpoint, Planned, INDEX_NAME};
use mvdit_model::weights::Sums;
use mvdit_model::{compute_shape, Error, HostTensor, Result, TensorFile, WeightFile};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One tensor of a checkpoint: name, shape as stored, and where it lives.
struct Part<'s, B: Backend> {
    name: String,
    shape: Vec<usize>,
    be: &'s B,
    t: &'s B::Tensor,
}

impl<'a, B: StageBackend> TrainState<'a, B> {
    /// Every tensor of the checkpoint: parameters under released names (in their released
    /// shapes), then `ema.`, `optim.m.` and `optim.v.` of every parameter and of [`CLASS_TABLE`]
    /// (when the run has one), each with its device. A split model lists the same tensors as an
    /// unsplit one (its stages hold consecutive runs of the layout).
    fn checkpoint_parts(&self) -> Vec<Part<'_, B>> {
        let mut groups: Vec<(&str, Vec<usize>, &B, [&B::Tensor; 4])> = Vec::new();
        for (stage, ema) in self.net.stages.iter().zip(&self.ema) {
            let specs = &stage.model.layout.specs[stage.model.param_range()];
            for (i, spec) in specs.iter().enumerate() {
                groups.push((&spec.name, spec.shape.clone(), stage.be, [&stage.model.params[i], &ema[i], &stage.opt.m[i], &stage.opt.v[i]]));
            }
        }
        if let Some(t) = &self.table {
            let be = self.home();
            groups.push((CLASS_TABLE, be.shape(&t.weights).to_vec(), be, [&t.weights, &t.ema, &t.opt.m[0], &t.opt.v[0]]));
        }
        let mut out = Vec::with_capacity(4 * groups.len());
        for (name, shape, be, tensors) in groups {
            for (prefix, t) in ["", "ema.", "optim.m.", "optim.v."].into_iter().zip(tensors) {
                out.push(Part { name: format!("{prefix}{name}"), shape: shape.clone(), be, t });
            }
        }
        out
    }

    /// The checkpoint's string metadata: the model `config`, `train_config`, `class_names`,
    /// `step`, `optim_step`, `rng`, `bad_steps`, and `loss_scale` where the run scales its loss.
    fn checkpoint_metadata(&self) -> Result<HashMap<String, String>> {
        let optim_step = self.table.as_ref().map_or(self.net.stages[0].opt.step, |t| t.opt.step);
        let config = serde_json::to_string(&self.net.cfg).map_err(|e| Error::new(format!("cannot serialise config: {e}")))?;
        let loss_scale = self.loss_scaler.as_ref().map(|s| ("loss_scale".to_string(), s.to_state()));
        Ok(HashMap::from_iter([
            ("config".into(), config),
            ("train_config".into(), to_json(&self.cfg)),
            ("class_names".into(), to_json(&self.class_names)),
            ("step".into(), self.step.to_string()),
            ("optim_step".into(), optim_step.to_string()),
            ("rng".into(), self.rng.to_state()),
            ("bad_steps".into(), format!("{},{}", self.bad_in_row, self.bad_total)),
        ].into_iter().chain(loss_scale)))
    }

    /// The whole state as one in-memory checkpoint file (tests and small models; runs write
    /// through [`Self::write_checkpoint`]).
    pub fn to_checkpoint(&self) -> Result<TensorFile> {
        let mut file = TensorFile { metadata: self.checkpoint_metadata()?, ..Default::default() };
        for p in self.checkpoint_parts() {
            file.insert(p.name, HostTensor::new(p.shape, p.be.download(p.t)?));
        }
        Ok(file)
    }

    /// Writes the state as checkpoint `stem` in folder `dir` (`STEM.safetensors`, or `STEM/` of
    /// shards when it exceeds `checkpoint_shard_mb`), each tensor downloaded, written and
    /// dropped in turn: peak host memory about the largest tensor. Returns the path.
    pub fn write_checkpoint(&self, dir: &Path, stem: &str) -> Result<PathBuf> {
        let parts = self.checkpoint_parts();
        let plan = parts.iter().map(|p| Planned { name: p.name.clone(), shape: p.shape.clone() }).collect();
        let by_name: HashMap<&str, &Part<B>> = parts.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut fetch = |name: &str| -> Result<Vec<f32>> {
            let p = by_name.get(name).ok_or_else(|| Error::new(format!("internal: no tensor `{name}`")))?;
            Ok(p.be.download(p.t)?)
        };
        let shard_bytes = (self.cfg.checkpoint_shard_mb * 1e6) as u64;
        write_checkpoint(dir, stem, plan, &self.checkpoint_metadata()?, shard_bytes.max(1), &mut fetch)
    }

    /// Restores a state written by [`Self::to_checkpoint`] (in memory), the whole model on `be`.
    pub fn from_checkpoint(be: &'a B, file: TensorFile, origin: &Path) -> Result<Self> {
        Self::from_checkpoint_placed(Placement::one(be), file, origin)
    }

    /// Restores an in-memory checkpoint (by a split run or not), placed as `place` says.
    pub fn from_checkpoint_placed(place: Placement<'a, B>, mut file: TensorFile, origin: &Path) -> Result<Self> {
        let names: Vec<String> = file.tensors.keys().cloned().collect();
        let meta = std::mem::take(&mut file.metadata);
        let mut get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = file.tensors.remove(name).ok_or_else(|| Error::new(format!("missing tensor `{name}`")))?;
            if t.shape != shape {
                return Err(Error::new(format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.shape)));
            }
            Ok(t.data)
        };
        Self::restore(place, &meta, &names, &mut get).map_err(|e| e.context(origin.display()))
    }

    /// Restores the checkpoint in `w` (a file or a sharded directory, memory-mapped) placed as
    /// `place` says: each tensor decoded from the map, uploaded to its device and dropped; the
    /// stored checksums are verified from the same reads.
    pub fn from_weights(place: Placement<'a, B>, w: &WeightFile) -> Result<Self> {
        let names: Vec<String> = w.names().map(str::to_string).collect();
        let mut sums = Sums::default();
        let mut get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let want: Vec<Option<usize>> = shape.iter().map(|&d| Some(d)).collect();
            Ok(w.get_summed(name, &want, &mut sums)?.data)
        };
        let at = |e: Error| e.context(w.origin());
        let state = Self::restore(place, w.metadata(), &names, &mut get).map_err(at)?;
        w.verify_with(sums)?;
        Ok(state)
    }

    /// The state from a checkpoint's metadata and its tensors, each read once by `get` (name,
    /// stored shape → values) and uploaded; `names` (the file's tensors) must hold nothing else.
    fn restore(place: Placement<'a, B>, meta: &HashMap<String, String>, names: &[String], get: &mut dyn FnMut(&str, &[usize]) -> Result<Vec<f32>>) -> Result<Self> {
        let meta = |k: &str| meta.get(k).ok_or_else(|| Error::new(format!("metadata key `{k}` missing: not a mvdit training checkpoint")));
        let model = parse_config(meta("config")?, "metadata key `config`")?;
        let cfg: TrainConfig = serde_json::from_str(meta("train_config")?).map_err(|e| Error::new(format!("metadata `train_config`: {e}")))?;
        let class_names: Vec<String> = serde_json::from_str(meta("class_names")?).map_err(|e| Error::new(format!("metadata `class_names`: {e}")))?;
        let num = |k: &str| -> Result<u64> { meta(k)?.parse().map_err(|_| Error::new(format!("metadata `{k}` is not a number"))) };
        let (step, opt_step) = (num("step")?, num("optim_step")?);
        let rng = Rng::from_state(meta("rng")?).ok_or_else(|| Error::new("metadata `rng` is malformed"))?;
        let (bad_in_row, bad_total) = meta("bad_steps")?
            .split_once(',')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| Error::new("metadata `bad_steps` is malformed"))?;
        let table_shape = (!cfg.data.captions).then(|| vec![class_names.len() + 1, cfg.context_tokens * cfg.model.context_dim]);
        let mut expected: BTreeSet<String> = mvdit_core::Layout::new(&model).specs.iter().map(|s| s.name.clone()).chain(table_shape.as_ref().map(|_| CLASS_TABLE.to_string())).collect();
        expected = expected.into_iter().flat_map(|n| ["", "ema.", "optim.m.", "optim.v."].map(|p| format!("{p}{n}"))).collect();
        if let Some(extra) = names.iter().find(|n| !expected.contains(n.as_str())) {
            return Err(Error::new(format!("unknown tensor `{extra}` for this config")));
        }
        let micro_batches = place.micro_batches;
        let ranges = place.ranges(model.depth, cfg.batch_size)?;
        let mut net = DepthSplit::load(&place.devices, model, &ranges, cfg.optim.clone(), &mut |be, spec| Ok(be.upload(&get(&spec.name, &spec.shape)?, &compute_shape(&spec.shape))?))?;
        let mut ema = Vec::with_capacity(net.stages.len());
        for stage in &mut net.stages {
            let (be, layout) = (stage.be, &stage.model.layout);
            stage.opt.step = opt_step;
            let mut stage_ema = Vec::with_capacity(stage.model.params.len());
            for (i, spec) in layout.specs[stage.model.param_range()].iter().enumerate() {
                let mut load = |prefix: &str| -> Result<B::Tensor> { Ok(be.upload(&get(&format!("{prefix}{}", spec.name), &spec.shape)?, &compute_shape(&spec.shape))?) };
                stage_ema.push(load("ema.")?);
                stage.opt.m[i] = load("optim.m.")?;
                stage.opt.v[i] = load("optim.v.")?;
            }
            ema.push(stage_ema);
        }
        let be = net.stages[0].be;
        let table = match table_shape {
            None => None,
            Some(shape) => {
                let mut load = |prefix: &str| -> Result<B::Tensor> { Ok(be.upload(&get(&format!("{prefix}{CLASS_TABLE}"), &shape)?, &shape)?) };
                let mut opt = Self::table_optimizer(be, &cfg, shape[0], shape[1])?;
                opt.step = opt_step;
                opt.m[0] = load("optim.m.")?;
                opt.v[0] = load("optim.v.")?;
                Some(ClassTable { weights: load("")?, ema: load("ema.")?, opt })
            }
        };
        let activation_mib = crate::trainer::activation_mib(be, &cfg);
        // A run that scales continues at the saved scale (a checkpoint of an unscaled run: at
        // the config's first scale); one that does not ignores it.
        let loss_scaler = match (crate::trainer::loss_scaler(&net, &cfg), meta("loss_scale")) {
            (Some(s), Ok(text)) => Some(s.with_state(text).ok_or_else(|| Error::new("metadata `loss_scale` is malformed"))?),
            (s, _) => s,
        };
        Ok(TrainState { cfg, net, micro_batches, ema, table, rng, step, bad_in_row, bad_total, class_names, activation_mib, loss_scaler })
    }
}

/// JSON text of plain data (metadata values are strings).
fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

/// The checkpoint folder of run directory `run`.
pub fn checkpoint_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

/// The name of the checkpoint of `step`, without `.safetensors`: `step-NNNNNNNN`.
pub fn checkpoint_stem(step: u64) -> String {
    format!("step-{step:08}")
}

/// The step of a checkpoint folder entry: a file `step-N.safetensors`, or a directory `step-N`
/// holding its index (a directory appears only once complete: it is renamed into place).
fn checkpoint_step(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let stem = match name.strip_suffix(".safetensors") {
        Some(stem) => stem,
        None if path.join(INDEX_NAME).is_file() => name,
        None => return None,
    };
    stem.strip_prefix("step-")?.parse().ok()
}

/// Checkpoints of a run (files and sharded directories), oldest first; one per step.
pub fn list_checkpoints(run: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> =
        std::fs::read_dir(checkpoint_dir(run)).into_iter().flatten().flatten().filter_map(|e| Some((checkpoint_step(&e.path())?, e.path()))).collect();
    out.sort();
    out.dedup_by_key(|c| c.0);
    out
}

/// Removes every checkpoint but the newest `keep` (both forms of a step).
pub fn prune_checkpoints(run: &Path, keep: usize) {
    let all = list_checkpoints(run);
    for (step, _) in all.iter().take(all.len().saturating_sub(keep)) {
        let stem = checkpoint_stem(*step);
        remove_any(&checkpoint_dir(run).join(format!("{stem}.safetensors")));
        remove_any(&checkpoint_dir(run).join(stem));
    }
}

/// Deletes what checkpoint writes that a killed process left in the run's checkpoint folder
/// (temporary files and directories, see `tensorfile::interrupted_write`): each is as large as
/// a checkpoint, and none is ever read. Best effort: one that cannot be removed is returned
/// with the reason.
pub fn remove_partial_checkpoints(run: &Path) -> Vec<String> {
    let mut failed = Vec::new();
    for entry in std::fs::read_dir(checkpoint_dir(run)).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if mvdit_model::tensorfile::interrupted_write(&name).is_some() {
            let p = entry.path();
            let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            if let Err(e) = r {
                failed.push(format!("{}: cannot remove a partial checkpoint: {e}", p.display()));
            }
        }
    }
    failed
}
