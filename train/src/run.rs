//! A training run in a directory: config, checkpoints, metrics.jsonl, sample grids, loss curve.

use crate::config::{DiagConfig, TrainConfig};
use crate::data::order::Order;
use crate::shards::ShardSet;
use crate::batches::TrainData;
use crate::data::{DataSource, Dataset};
use crate::depth_split::StageBackend;
use crate::diagnostics::{zero_prediction_loss, Diagnostics};
use crate::dist::Dist;
use crate::images::save_grid;
use crate::observe::{Progress, StepObserver};
use crate::plot::save_loss_curve;
use crate::step::StepOutcome;
use crate::trainer::{Placement, TrainState};
use mvdit_model::{Error, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub step: u64,
    pub interrupted: bool,
    /// Ended before `steps` by `diagnostics.stop_after_mms`.
    pub stopped_after_mms: bool,
    pub last_loss: Option<f64>,
    pub eval_losses: Vec<(u64, f64)>,
    pub checkpoint: PathBuf,
    /// Wall seconds of each training step this run made (the step alone: not checkpoints,
    /// held-out losses or samples), what `mvdit bench` times.
    pub step_seconds: Vec<f64>,
}

impl RunSummary {
    /// Median of [`Self::step_seconds`], if a step ran.
    pub fn median_step_seconds(&self) -> Option<f64> {
        mvdit_core::stats::median(&mut self.step_seconds.clone())
    }
}

fn err<E: std::fmt::Display>(e: E) -> Error {
    Error::new(e.to_string())
}

pub use crate::checkpoints::{checkpoint_dir, list_checkpoints};

/// Deletes the partial checkpoints a killed process left ([`crate::checkpoints::remove_partial_checkpoints`]),
/// reporting those that cannot be removed.
fn remove_partial_checkpoints(run: &Path, progress: &mut dyn Progress) {
    for failed in crate::checkpoints::remove_partial_checkpoints(run) {
        progress.message(&failed);
    }
}

/// Loads the images a config names (in memory) and splits off the evaluation set.
pub fn load_data(cfg: &TrainConfig) -> Result<(Dataset, Dataset)> {
    if cfg.data.shards.is_some() {
        return Err(Error::new("this command reads images in memory; config field `data.shards` names a shard set"));
    }
    let source = match &cfg.data.folder {
        Some(dir) => DataSource::Folder(dir.clone()),
        None => DataSource::Digits,
    };
    // Images load as grey (1 channel) or RGB (3); other channel counts are refused there.
    let data = Dataset::load(&source, cfg.data.image_size, cfg.data.channels).map_err(|e| Error::new(format!("config field `data`: {e}")))?;
    Ok(data.split(cfg.data.eval_fraction, cfg.seed))
}

/// The training samples a config names (images in memory, or a shard set read through
/// memory maps) and the held-out set (in memory).
pub fn open_data(cfg: &TrainConfig) -> Result<(TrainData, Dataset)> {
    let Some(dir) = &cfg.data.shards else {
        let (train, eval) = load_data(cfg)?;
        return Ok((TrainData::Memory(train), eval));
    };
    shard_data(cfg, ShardSet::open(dir)?)
}

/// A shard set as `cfg` trains on it: checked against the config and its fingerprint, the
/// held-out samples split off, the order seeded.
pub fn shard_data(cfg: &TrainConfig, set: ShardSet) -> Result<(TrainData, Dataset)> {
    check_shards(cfg, &set)?;
    set.verify()?;
    if let Some(f) = cfg.data.fingerprint.as_ref().filter(|&f| *f != set.fingerprint()) {
        return Err(Error::new(format!(
            "config field `data.fingerprint`: the shard set in {} changed since this run started ({f}; now {}): prepare into a new folder, or start a new run",
            set.dir.display(),
            set.fingerprint()
        )));
    }
    let (counts, eval) = set.split(cfg.data.eval_fraction)?;
    let order = Order { counts, pool: cfg.data.shuffle_shards, seed: cfg.seed };
    Ok((TrainData::Shards { set, order }, eval))
}

/// A config's data and model fields against a shard set's index: one error naming the field.
pub fn check_shards(cfg: &TrainConfig, set: &ShardSet) -> Result<()> {
    use crate::shards::ShardKind;
    let bad = |field: &str, msg: String| Err(Error::new(format!("config field `{field}`: {msg} (the shards in {})", set.dir.display())));
    let [c, h, w] = set.latent;
    if h != w {
        return bad("data.shards", format!("latents are {h}×{w}; training takes square latents"));
    }
    if cfg.data.channels != c || cfg.model.in_channels != c {
        return bad("model.in_channels", format!("{} (data.channels {}), but the latents have {c} channels", cfg.model.in_channels, cfg.data.channels));
    }
    if cfg.data.image_size != h {
        return bad("data.image_size", format!("{}, but the latents are {h}×{h}", cfg.data.image_size));
    }
    match &set.kind {
        ShardKind::Classes(_) if cfg.data.captions => bad("data.captions", "is true, but the shards hold class labels".into()),
        ShardKind::Captions { .. } if !cfg.data.captions => bad("data.captions", "is false, but the shards hold caption contexts".into()),
        ShardKind::Captions { tokens, .. } if cfg.context_tokens != *tokens => bad("context_tokens", format!("{}, but the captions have {tokens} positions", cfg.context_tokens)),
        ShardKind::Captions { dim, .. } if cfg.model.context_dim != *dim => bad("model.context_dim", format!("{}, but the text encoder gives {dim} values a position", cfg.model.context_dim)),
        _ => Ok(()),
    }
}

/// The config fields a shard set decides beside its shapes: where it is, its fingerprint, and
/// its conditioning (captions or labels, the context length).
pub fn condition_on(cfg: &mut TrainConfig, set: &ShardSet) {
    use crate::shards::ShardKind;
    cfg.data.shards = Some(set.dir.clone());
    cfg.data.fingerprint = Some(set.fingerprint());
    cfg.data.folder = None;
    cfg.data.captions = matches!(set.kind, ShardKind::Captions { .. });
    if let ShardKind::Captions { tokens, .. } = set.kind {
        cfg.context_tokens = tokens;
    }
}

/// Fills a config's data fields from a shard set's index (`mvdit train --data SHARDS/`):
/// [`condition_on`], and the latents' channels and size; then checks the model against it.
pub fn adopt_shards(cfg: &mut TrainConfig, dir: &Path) -> Result<()> {
    // Absolute: a resume or an MPI rank started in another folder finds the same set.
    let dir = &dir.canonicalize().map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    let set = ShardSet::open(dir)?;
    condition_on(cfg, &set);
    cfg.data.channels = set.latent[0];
    cfg.data.image_size = set.latent[1];
    check_shards(cfg, &set)
}

/// The loss of predicting zero, from the held-out samples (all of them for in-memory data).
fn reference_loss(train: &TrainData, eval: &Dataset) -> f64 {
    match train {
        TrainData::Memory(d) => zero_prediction_loss(d),
        TrainData::Shards { .. } if !eval.is_empty() => zero_prediction_loss(eval),
        // Unit-variance latents, as an autoencoder's normalised ones are.
        TrainData::Shards { .. } => 2.0,
    }
}

struct Metrics {
    file: std::fs::File,
    path: PathBuf,
    /// Records logged since [`Run::report_records`] last handed them to the progress hooks.
    pending: Vec<Value>,
}

impl Metrics {
    /// Opens metrics.jsonl, keeping only records up to `keep_until` (a resumed run rewrites the rest).
    fn open(run: &Path, keep_until: u64) -> Result<Self> {
        let path = run.join("metrics.jsonl");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= keep_until))
            .map(|l| format!("{l}\n"))
            .collect();
        // Atomic: a kill during this rewrite must not lose the lines before the checkpoint.
        mvdit_model::tensorfile::write_atomic(&path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| Error::io(&path, "open", e))?;
        Ok(Metrics { file, path, pending: Vec::new() })
    }

    fn log(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}").map_err(|e| Error::io(&self.path, "append to", e))?;
        self.pending.push(v);
        Ok(())
    }
}

/// Reads metrics.jsonl: (train loss by step, eval loss by step).
pub fn read_metrics(run: &Path) -> (Vec<(f64, f64)>, Vec<(f64, f64)>) {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    let (mut train, mut eval) = (vec![], vec![]);
    for v in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        let step = v["step"].as_f64().unwrap_or(0.0);
        match v["kind"].as_str() {
            Some("train") => train.extend(v["loss"].as_f64().map(|l| (step, l))),
            Some("eval") => eval.extend(v["eval_loss"].as_f64().map(|l| (step, l))),
            _ => {}
        }
    }
    (train, eval)
}

/// Trains until `cfg.steps` (or `stop` is raised), checkpointing into `run`. With `resume`, the
/// latest checkpoint in `run` is continued (its config wins, except `steps`).
pub fn train<B: StageBackend>(be: &B, run: &Path, cfg: TrainConfig, resume: bool, stop: &AtomicBool, progress: &mut dyn Progress) -> Result<RunSummary> {
    train_dist(Placement::one(be), run, cfg, resume, stop, progress, &Dist::single())
}

/// The state to start from: fresh from the seed (with the data it opened for its class names),
/// or (with `resume`) the latest checkpoint, which rank 0 picks; every rank restores it
/// through [`crate::run_dir::open_on_every_rank`].
fn initial_state<'a, B: StageBackend>(
    place: Placement<'a, B>,
    run: &Path,
    cfg: &TrainConfig,
    resume: bool,
    progress: &mut dyn Progress,
    dist: &Dist,
) -> Result<(TrainState<'a, B>, Option<(TrainData, Dataset)>)> {
    let latest = match (dist.is_root(), resume) {
        (true, true) => Some(crate::run_dir::newest_sound_checkpoint(run, progress)?),
        (true, false) => list_checkpoints(run).pop(),
        (false, _) => None,
    };
    if let (false, Some((_, path))) = (resume, &latest) {
        return Err(Error::new(format!("{}: run directory already has checkpoint {}; pass --resume or use another --out", run.display(), path.display())));
    }
    if !resume {
        // Every rank builds the same initial state from the seed.
        let data = open_data(cfg)?;
        let state = TrainState::placed(place, cfg.clone(), data.0.source().class_names())?;
        return Ok((state, Some(data)));
    }
    let origin = latest.as_ref().map(|c| c.1.display().to_string()).unwrap_or_default();
    let (weights, copy) = crate::run_dir::open_on_every_rank(latest.map(|c| c.1), dist)?;
    let restored = TrainState::from_weights(place, &weights);
    drop(weights);
    if let Some(dir) = copy {
        let _ = std::fs::remove_dir_all(dir);
    }
    let mut s = restored?;
    s.cfg.steps = cfg.steps;
    if dist.is_root() {
        progress.message(&format!("resuming {origin} at step {}", s.step));
    }
    Ok((s, None))
}

/// [`train`] with the model placed on one or more devices ([`Placement`]: the depth split), as
/// one rank of a data-parallel group: every rank trains its shard of each batch; rank 0 alone
/// writes the run directory (config, metrics, checkpoints, samples, diagnostics).
pub fn train_dist<B: StageBackend>(
    place: Placement<'_, B>,
    run: &Path,
    cfg: TrainConfig,
    resume: bool,
    stop: &AtomicBool,
    progress: &mut dyn Progress,
    dist: &Dist,
) -> Result<RunSummary> {
    let mut r = Run::open(place, run, &cfg, resume, progress, dist)?;
    progress.start(r.state.step, r.cfg.steps);
    while r.state.step < r.cfg.steps {
        // `stop_after_mms`: rank 0 watches the detector; every rank ends with it (checked
        // before the step, so resuming a run that ended so takes no further step).
        if r.diag_cfg.as_ref().is_some_and(|d| d.stop_after_mms.is_some()) && dist.any(r.diag.as_ref().is_some_and(|d| d.stop_due(r.state.step)))? {
            if r.root {
                progress.message(&format!("stopping at step {}: the MMS detector fired (diagnostics.stop_after_mms)", r.state.step));
            }
            r.summary.stopped_after_mms = true;
            break;
        }
        // A data-parallel step's error (a rank that did not join) names the step.
        r.step(progress, dist).map_err(|e| if dist.comm.size() > 1 { e.context(format!("step {}", r.state.step + 1)) } else { e })?;
        // The step's records first: a hook that raises `stop` there stops the run at this step.
        r.report_records(progress);
        // Ranks may see Ctrl-C at different steps: stop when any rank has.
        let interrupted = dist.any(stop.load(Ordering::SeqCst))?;
        r.after_step(interrupted)?;
        r.report_records(progress);
        if interrupted {
            r.summary.interrupted = true;
            if r.root {
                progress.message(&format!("interrupted: checkpoint saved at step {}; continue with --resume", r.state.step));
            }
            break;
        }
    }
    let summary = r.finish(progress);
    progress.finish();
    summary
}

/// A run in progress: its state, data and (on rank 0) the files it writes.
struct Run<'a, 'p, B: StageBackend> {
    state: TrainState<'a, B>,
    cfg: TrainConfig,
    dir: &'p Path,
    root: bool,
    train_set: TrainData,
    eval_set: Dataset,
    /// Rank 0 only.
    metrics: Option<Metrics>,
    diag: Option<Diagnostics>,
    /// The diagnostics settings in use (every rank).
    diag_cfg: Option<DiagConfig>,
    /// The quality score's normaliser and the score of real images, once computed.
    scorer: Option<crate::quality::Scorer>,
    summary: RunSummary,
    /// Start of the current logging window: (time, step).
    clock: (Instant, u64),
    last_saved: Option<u64>,
    /// Rank 0's lock on the run directory, held until the run ends.
    _claim: Option<crate::run_dir::Claim>,
}

impl<'a, 'p, B: StageBackend> Run<'a, 'p, B> {
    /// Phase 1: the run directory, the state to start from (fresh or resumed), the checks a
    /// run needs before its first step, the data, and rank 0's metrics and diagnostics files.
    fn open(place: Placement<'a, B>, dir: &'p Path, cfg: &TrainConfig, resume: bool, progress: &mut dyn Progress, dist: &Dist) -> Result<Self> {
        let root = dist.is_root();
        // Rank 0 locks the directory (creating it) before reading or tidying it; whatever this
        // open creates goes again if it fails.
        let mut claim = None;
        if root {
            let (c, warning) = crate::run_dir::Claim::take(dir)?;
            claim = Some(c);
            if let Some(w) = warning {
                progress.message(&w);
            }
            remove_partial_checkpoints(dir, progress);
        }
        let (state, opened) = initial_state(place, dir, cfg, resume, progress, dist)?;
        let cfg = state.cfg.clone();
        // Each rank runs its share of the batch through the micro-batches: every rank refuses
        // the same too-fine split (one rank failing alone would leave the others waiting).
        let (size, per_rank) = (dist.comm.size(), cfg.batch_size / dist.comm.size().max(1));
        if size > 1 && state.micro_batches > per_rank.max(1) {
            return Err(Error::new(format!(
                "--micro-batches {}: each of the {size} ranks trains {per_rank} samples a step (batch_size {}); give at most {per_rank}",
                state.micro_batches, cfg.batch_size
            )));
        }
        if root {
            progress.message(&state.keep_note(per_rank.max(1))?);
            if let Some(s) = &state.loss_scaler {
                progress.message(&format!("loss scale: dynamic, at 2^{} (halved on overflow, doubled after {} updates in a row)", s.scale.log2(), cfg.loss_scale.growth_interval));
            }
        }
        // Every rank resolves the same settings (the MMS stop is a collective).
        let diag_cfg = cfg.diagnostics.resolve(state.one_pass(), cfg.diagnostics_work()).map_err(|m| Error::new(format!("config field `diagnostics` {m}")))?;
        if dist.comm.size() > cfg.batch_size {
            return Err(Error::new(format!("config field `batch_size`: {} is smaller than the {} data-parallel ranks", cfg.batch_size, dist.comm.size())));
        }
        // A resumed run opens the data its checkpoint's config names.
        let (train_set, eval_set) = match opened {
            Some(data) => data,
            None => open_data(&cfg)?,
        };
        if train_set.source().class_names() != state.class_names {
            return Err(Error::new(format!("dataset classes {:?} differ from the checkpoint's {:?}", train_set.source().class_names(), state.class_names)));
        }
        let (metrics, diag) = if root {
            let cfg_path = dir.join("config.json");
            mvdit_model::tensorfile::write_atomic(&cfg_path, serde_json::to_string_pretty(&cfg).map_err(err)?.as_bytes())?;
            (Some(Metrics::open(dir, state.step)?), Diagnostics::open(dir, &cfg, diag_cfg.clone(), state.step, reference_loss(&train_set, &eval_set))?)
        } else {
            (None, None)
        };
        let mut summary = RunSummary {
            step: state.step,
            interrupted: false,
            stopped_after_mms: false,
            last_loss: None,
            eval_losses: vec![],
            checkpoint: PathBuf::new(),
            step_seconds: vec![],
        };
        let clock = (Instant::now(), state.step);
        // A resumed state is its checkpoint: finishing at once writes no second one.
        let last_saved = resume.then_some(state.step);
        if resume {
            summary.checkpoint = list_checkpoints(dir).pop().map(|c| c.1).unwrap_or_default();
        }
        if let Some(c) = claim.as_mut() {
            c.keep();
        }
        Ok(Run { state, cfg, dir, root, train_set, eval_set, metrics, diag, diag_cfg, scorer: None, summary, clock, last_saved, _claim: claim })
    }

    /// Whether the run trains on pixels, which sample grids show (latents need the autoencoder:
    /// `mvdit sample --vae`).
    fn pixels(&self) -> bool {
        matches!(self.train_set, TrainData::Memory(_))
    }

    /// Phase 2: one training step (with the diagnostics observer in a run with diagnostics), its metrics
    /// line and progress; a run of non-finite steps stops the run with a checkpoint.
    fn step(&mut self, progress: &mut dyn Progress, dist: &Dist) -> Result<()> {
        let scale = self.state.loss_scale();
        let mut observer = self.diag.as_ref().map(|d| d.observer(self.state.step + 1, scale));
        let started = Instant::now();
        let outcome = self.state.train_step_with(self.train_set.source(), observer.as_mut().map(|o| o as &mut dyn StepObserver<B>), dist)?;
        self.summary.step_seconds.push(started.elapsed().as_secs_f64());
        if let (Some(d), Some(o)) = (self.diag.as_mut(), observer) {
            d.after_step(&self.state, outcome, o, progress)?;
        }
        let step = self.state.step;
        match outcome {
            StepOutcome::Updated { loss, grad_norm, lr } => {
                self.summary.last_loss = Some(loss);
                let rate = (step - self.clock.1) as f64 / self.clock.0.elapsed().as_secs_f64().max(1e-9);
                progress.step(step, loss, rate);
                if step % self.cfg.log_every == 0 {
                    if let Some(m) = self.metrics.as_mut() {
                        let mut record = json!({"kind": "train", "step": step, "loss": loss, "grad_norm": grad_norm, "lr": lr, "steps_per_s": rate});
                        // The scale this step ran at (the overflow record gives the halved one).
                        if self.state.loss_scaler.is_some() {
                            record["loss_scale"] = json!(scale);
                        }
                        m.log(record)?;
                    }
                    self.clock = (Instant::now(), step);
                }
            }
            // An overflow at the loss scale is routine (the scale finds its level): recorded,
            // not reported, not counted towards `max_bad_steps`.
            StepOutcome::Overflow { loss, scale } => {
                if let Some(m) = self.metrics.as_mut() {
                    m.log(json!({"kind": "overflow", "step": step, "loss": loss, "loss_scale": scale}))?;
                }
            }
            StepOutcome::Skipped { loss, grad_norm } => {
                if let Some(m) = self.metrics.as_mut() {
                    m.log(json!({"kind": "skip", "step": step, "loss": loss.to_string(), "grad_norm": grad_norm.to_string()}))?;
                    progress.message(&format!("step {step}: non-finite loss {loss} or gradient norm {grad_norm}; update skipped"));
                }
                // Every rank sees the same summed loss and norm, so all stop together here.
                if self.state.bad_in_row >= self.cfg.max_bad_steps {
                    let saved = match self.metrics.is_some() {
                        true => format!(" (checkpoint {})", self.save(false)?.display()),
                        false => String::new(),
                    };
                    return Err(Error::new(format!(
                        "stopped after {} non-finite steps in a row at step {step}{saved}: lower optim.lr, raise warm-up, or check the data",
                        self.state.bad_in_row,
                    )));
                }
            }
        }
        Ok(())
    }

    /// Hands the records logged since the last call to [`Progress::record`] (rank 0).
    fn report_records(&mut self, progress: &mut dyn Progress) {
        for record in self.metrics.as_mut().map(|m| std::mem::take(&mut m.pending)).unwrap_or_default() {
            progress.record(&record);
        }
    }

    /// Checkpoint (every `checkpoint_every` steps, at the end, and when interrupted) and the
    /// periodic sample grid.
    fn after_step(&mut self, interrupted: bool) -> Result<()> {
        let step = self.state.step;
        if step % self.cfg.checkpoint_every == 0 || step == self.cfg.steps || interrupted {
            if self.metrics.is_some() {
                self.summary.checkpoint = self.save(!interrupted)?;
            }
            self.last_saved = Some(step);
        }
        if self.root && self.pixels() && self.cfg.sample_every > 0 && step % self.cfg.sample_every == 0 && step != self.cfg.steps {
            write_samples(&mut self.state, &self.dir.join(format!("samples/step-{step:08}.png")))?;
        }
        Ok(())
    }

    /// Phase 3: the last checkpoint if not yet written, the final sample grid and the loss curve.
    fn finish(mut self, progress: &mut dyn Progress) -> Result<RunSummary> {
        if self.metrics.is_some() && self.last_saved != Some(self.state.step) && !self.summary.interrupted {
            self.summary.checkpoint = self.save(true)?;
        }
        if self.root && !self.summary.interrupted {
            if self.pixels() {
                write_samples(&mut self.state, &self.dir.join("samples/final.png"))?;
            }
            let (train_curve, eval_curve) = read_metrics(self.dir);
            if !train_curve.is_empty() {
                let mut series = vec![("train loss".to_string(), train_curve)];
                if !eval_curve.is_empty() {
                    series.push(("held-out loss".to_string(), eval_curve));
                }
                save_loss_curve(self.dir.join("loss.png"), &series, true).map_err(err)?;
            }
        }
        self.report_records(progress);
        self.summary.step = self.state.step;
        Ok(self.summary)
    }

    /// Writes a checkpoint (rank 0), logs the held-out loss and (with `quality`, not when
    /// interrupted or stopping on errors) the sample quality, prunes old checkpoints.
    fn save(&mut self, quality: bool) -> Result<PathBuf> {
        let metrics = self.metrics.as_mut().ok_or_else(|| Error::new("internal: only rank 0 writes checkpoints"))?;
        let path = save(&self.state, self.dir, metrics, &self.eval_set, &mut self.summary)?;
        let n = self.cfg.sample.quality;
        // Pixels only (latents would need decoding), and too few images for a covariance: no score.
        let TrainData::Memory(train_set) = &self.train_set else { return Ok(path) };
        if !quality || n == 0 || self.eval_set.len() < 2 || train_set.len() < 4 {
            return Ok(path);
        }
        // The normaliser, and the score of as many real (training) images as samples: the floor.
        let scorer = self.scorer.get_or_insert_with(|| crate::quality::Scorer::new(&train_set.images, &self.eval_set.images, train_set.image_len(), n));
        // Identical halves (a constant set): no scale to score on.
        if scorer.usable() {
            let classes = self.state.class_names.len().max(1);
            let (grid, _) = self.state.sample_grid(n.div_ceil(classes), QUALITY_SEED)?;
            let q = scorer.score(&grid);
            let score = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
            metrics.log(json!({"kind": "quality", "step": self.state.step, "fd_norm": score(q.fd_norm), "fd": score(q.fd), "real_fd": scorer.norm, "real_floor": score(scorer.floor), "vs_real": score(q.vs_real), "samples": q.samples}))?;
        }
        Ok(path)
    }
}

/// The noise seed of the samples that the quality score takes (`mvdit samplers` uses it too).
pub const QUALITY_SEED: u64 = 0x0F1D;

/// Writes a checkpoint, logs the held-out loss, prunes old checkpoints.
fn save<B: StageBackend>(state: &TrainState<B>, run: &Path, metrics: &mut Metrics, eval: &Dataset, summary: &mut RunSummary) -> Result<PathBuf> {
    let stem = crate::checkpoints::checkpoint_stem(state.step);
    let path = state.write_checkpoint(&checkpoint_dir(run), &stem).map_err(|e| Error::new(format!("{e} (the previous checkpoint is untouched)")))?;
    if !eval.is_empty() {
        let loss = state.eval_loss(eval)?;
        metrics.log(json!({"kind": "eval", "step": state.step, "eval_loss": loss}))?;
        summary.eval_losses.push((state.step, loss));
    }
    crate::checkpoints::prune_checkpoints(run, state.cfg.keep_checkpoints);
    Ok(path)
}

fn write_samples<B: StageBackend>(state: &mut TrainState<B>, path: &Path) -> Result<()> {
    let per = state.cfg.sample.per_class;
    let (images, _) = state.sample_grid(per, 1234)?;
    let d = &state.cfg.data;
    save_grid(path, &images, d.channels, d.image_size, d.image_size, per, 4).map_err(err)
}
