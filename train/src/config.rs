//! Training configuration: one file (TOML or JSON) or a named preset, every field checked.

mod diag;
mod recompute;
mod workload;

pub use diag::{deep_anchors, default_anchors, DetectorConfig, DiagConfig, DiagSetting, SpikeConfig, DEFAULT_EVERY, DEFAULT_MAX_WORK};
pub use recompute::{ActivationBudget, Recompute, DEFAULT_ACTIVATION_BUDGET_MB, STATE_COPIES};
pub use workload::Workload;
pub use crate::loss_scale::{LossScaleConfig, LossScaleMode};

use crate::optim::OptimConfig;
use crate::sampler::{Method, SampleOptions};
use mvdit_core::{ModelConfig, Residual};
use mvdit_model::suggest::with_suggestion;
use mvdit_model::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Folder of class sub-folders of PNG/JPEG images; absent = the bundled UCI digits.
    #[serde(default)]
    pub folder: Option<PathBuf>,
    /// A shard folder written by `mvdit prepare` (latents with labels or caption contexts),
    /// read through memory maps in a seeded order; replaces `folder`. `mvdit train --data DIR`
    /// sets it, with `image_size`, `channels`, `captions` and `context_tokens`, from the index.
    #[serde(default)]
    pub shards: Option<PathBuf>,
    /// What `train --data` saw of the shard set (samples, shards, a hash of its index); a run
    /// refuses a set that no longer matches (a resume after the folder was prepared again).
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Shards whose samples are shuffled together (the shuffle buffer: reads stay within these).
    #[serde(default = "default_shuffle_shards")]
    pub shuffle_shards: usize,
    /// The samples are conditioned on caption contexts (from the shards; label dropout then
    /// puts the empty prompt's context in a caption's place), not on class labels.
    #[serde(default)]
    pub captions: bool,
    /// Square image side in pixels (8 = the digits' native size; 16 upsamples them); for
    /// shards, the latents' side.
    pub image_size: usize,
    /// 1 = grayscale, 3 = RGB; for shards, the latents' channels.
    #[serde(default = "one")]
    pub channels: usize,
    /// Fraction of each class held out for the evaluation loss.
    #[serde(default = "tenth")]
    pub eval_fraction: f64,
}

fn default_shuffle_shards() -> usize {
    4
}

impl DataConfig {
    /// In-memory images (the digits unless `folder` is set afterwards).
    pub fn new(image_size: usize, channels: usize, eval_fraction: f64) -> Self {
        DataConfig { folder: None, shards: None, fingerprint: None, shuffle_shards: default_shuffle_shards(), captions: false, image_size, channels, eval_fraction }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    pub steps: usize,
    pub cfg_scale: f64,
    pub shift: f64,
    /// Images per class in the periodic sample grids.
    #[serde(default = "default_per_class")]
    pub per_class: usize,
    /// EMA samples scored at each checkpoint by their pixel Fréchet distance to the held-out
    /// images, normalised by two halves of the training images (`kind: "quality"` in
    /// metrics.jsonl; docs: train/src/quality.rs); 0 = off.
    #[serde(default)]
    pub quality: usize,
    /// The sampler of the grids, the scores and `mvdit sample` (when its flags do not say).
    #[serde(default)]
    pub sampler: Method,
    /// Guidance only for t in [lo, hi]; absent: every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_interval: Option<[f64; 2]>,
    /// Step caching's threshold (docs/sampling.md); 0 = off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_threshold: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl SampleConfig {
    /// The official `sample.py` settings of the released model: 35 Euler steps, guidance 2 at
    /// every step, shift 4 (what a checkpoint without a training config samples with).
    pub fn release() -> Self {
        SampleConfig { steps: 35, cfg_scale: 2.0, shift: 4.0, per_class: default_per_class(), quality: 0, sampler: Method::Euler, cfg_interval: None, cache_threshold: 0.0 }
    }

    /// The sampler settings of this section with noise seed `seed`.
    pub fn options(&self, seed: u64) -> SampleOptions {
        SampleOptions { steps: self.steps, cfg_scale: self.cfg_scale, shift: self.shift, seed, method: self.sampler, cfg_interval: self.cfg_interval, cache_threshold: self.cache_threshold }
    }
}

/// Sampler settings asked for (the command line's flags, the bindings' arguments); each absent
/// one comes from a checkpoint's [`SampleConfig`], so a model samples as it was tuned and scored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleRequest {
    pub steps: Option<usize>,
    pub cfg_scale: Option<f64>,
    pub shift: Option<f64>,
    pub sampler: Option<Method>,
    pub cfg_interval: Option<[f64; 2]>,
    pub cache_threshold: Option<f64>,
}

impl SampleRequest {
    /// The settings, with noise seed `seed`, and the names of those taken from `defaults`.
    pub fn resolve(&self, defaults: &SampleConfig, seed: u64) -> Result<(SampleOptions, Vec<&'static str>)> {
        let mut from = Vec::new();
        fn pick<T: Copy>(asked: Option<T>, default: T, name: &'static str, from: &mut Vec<&'static str>) -> T {
            asked.unwrap_or_else(|| {
                from.push(name);
                default
            })
        }
        let steps = pick(self.steps, defaults.steps, "steps", &mut from);
        let cfg_scale = pick(self.cfg_scale, defaults.cfg_scale, "cfg", &mut from);
        let shift = pick(self.shift, defaults.shift, "shift", &mut from);
        let method = pick(self.sampler, defaults.sampler, "sampler", &mut from);
        let cfg_interval = match self.cfg_interval {
            Some(i) => Some(i),
            None if defaults.cfg_interval.is_some() => {
                from.push("cfg_interval");
                defaults.cfg_interval
            }
            None => None,
        };
        if steps == 0 {
            return Err(Error::new("--steps must be at least 1"));
        }
        if !(shift > 0.0 && shift.is_finite()) || !cfg_scale.is_finite() {
            return Err(Error::new(format!("--shift must be positive and --cfg finite, got {shift} and {cfg_scale}")));
        }
        if let Some(e) = cfg_interval.map(check_cfg_interval).and_then(|r| r.err()) {
            return Err(Error::new(format!("--cfg-interval {e}")));
        }
        let cache_threshold = match self.cache_threshold {
            Some(c) => c,
            None => {
                if defaults.cache_threshold != 0.0 {
                    from.push("cache_threshold");
                }
                defaults.cache_threshold
            }
        };
        if !(cache_threshold >= 0.0 && cache_threshold.is_finite()) {
            return Err(Error::new(format!("--cache-threshold must be 0 (off) or positive, got {cache_threshold}")));
        }
        Ok((SampleOptions { steps, cfg_scale, shift, seed, method, cfg_interval, cache_threshold }, from))
    }
}

/// A guidance interval [lo, hi] within [0, 1], lo < hi.
pub fn check_cfg_interval(i: [f64; 2]) -> std::result::Result<(), String> {
    match i {
        [lo, hi] if (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi) && lo < hi => Ok(()),
        [lo, hi] => Err(format!("{lo},{hi} is not an interval lo < hi within [0, 1]")),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    /// Condition tokens per class (the context sequence length Lt).
    #[serde(default = "one")]
    pub context_tokens: usize,
    /// Probability of replacing a label by the null class (classifier-free guidance).
    #[serde(default = "tenth")]
    pub label_dropout: f64,
    pub optim: OptimConfig,
    pub batch_size: usize,
    pub steps: u64,
    /// EMA decay of the weights used for sampling (0 disables).
    pub ema_decay: f64,
    /// MV-Split beta at initialisation (1 at moderate depth; ~1/sqrt(depth) at extreme depth).
    pub beta_init: f64,
    /// Std of non-writer weights; absent = 0.02·sqrt(1024/hidden_size).
    #[serde(default)]
    pub weight_std: Option<f64>,
    /// Std of final_proj.weight at initialisation; absent = weight_std.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_std: Option<f64>,
    /// Std of the patch embedding at initialisation; absent = weight_std.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_std: Option<f64>,
    /// LayerScale λ at initialisation (model.residual = "layerscale"), e.g. 1e-2 .. 1e-5.
    #[serde(default = "default_layerscale_init")]
    pub layerscale_init: f64,
    /// Residual writers (W_O, W2) at initialisation: "auto" = zero for mvsplit and postnorm,
    /// N(0, weight_std²) for layerscale (the paper's standard-init comparison); "zero"; "normal".
    #[serde(default)]
    pub writer_init: WriterInit,
    /// Fine-tuning: start from this checkpoint's model weights (a mvdit checkpoint, a converted
    /// release or a `.pt`) instead of the initialisation above; the optimiser starts fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<std::path::PathBuf>,
    /// Per-layer diagnostics every K steps (diagnostics.jsonl) and the MMS detector: absent =
    /// on every 100 steps where the run allows it, `false` = off, a table = these settings
    /// ([`DiagSetting`]).
    #[serde(default, skip_serializing_if = "DiagSetting::is_default")]
    pub diagnostics: DiagSetting,
    /// Training t = shift(u, a) with u ~ U(0, 1): the sampler's time shift applied to uniform draws.
    pub time_shift: f64,
    pub seed: u64,
    /// Which block activations a step keeps for backward ([`Recompute`]): "auto" (default)
    /// recomputes blocks and keeps the last ones' activations within `activation_budget_mb`,
    /// "all" recomputes every block, "none" keeps everything. `mvdit bench` uses the same rule.
    #[serde(default)]
    pub recompute: Recompute,
    /// MiB of block activations a step with `recompute = "auto"` may keep, or "auto" (the
    /// default): half of the memory the process has once its training state is counted
    /// ([`ActivationBudget::mib`]).
    #[serde(default)]
    pub activation_budget_mb: ActivationBudget,
    /// Dynamic loss scaling of the gradients ([`LossScaleConfig`]): by default on where the
    /// backend's products are 16-bit, off on f32.
    #[serde(default, skip_serializing_if = "LossScaleConfig::is_default")]
    pub loss_scale: LossScaleConfig,
    pub log_every: u64,
    pub checkpoint_every: u64,
    /// Sample grid every N steps (0 = only at the end).
    pub sample_every: u64,
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// Megabytes (10⁶ bytes) of tensor data per checkpoint file: a larger checkpoint is a
    /// directory `step-NNNNNNNN/` of shards with `model.safetensors.index.json` (the Hugging
    /// Face layout); a smaller one stays one file `step-NNNNNNNN.safetensors`.
    #[serde(default = "default_shard_mb")]
    pub checkpoint_shard_mb: f64,
    /// Consecutive non-finite steps after which the run stops.
    #[serde(default = "default_max_skips")]
    pub max_bad_steps: u64,
    pub sample: SampleConfig,
}

/// How the residual writers start (see [`TrainConfig::writer_init`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriterInit {
    #[default]
    Auto,
    Zero,
    Normal,
}

impl TrainConfig {
    /// Host multiply-adds of a diagnostics step's writer-gradient split at the default anchors:
    /// anchors × B × L × D × (D + M), what decides whether diagnostics are on by default.
    pub fn diagnostics_work(&self) -> f64 {
        let m = &self.model;
        let tokens = (self.data.image_size / m.patch_size.max(1)).pow(2) + self.context_tokens;
        let anchors = default_anchors(m.depth).len();
        anchors as f64 * self.batch_size as f64 * tokens as f64 * m.hidden_size as f64 * (m.hidden_size + m.mlp_hidden_dim) as f64
    }

    /// Whether W_O and W2 start at zero.
    pub fn zero_writers(&self) -> bool {
        match self.writer_init {
            WriterInit::Zero => true,
            WriterInit::Normal => false,
            WriterInit::Auto => self.model.residual != Residual::Layerscale,
        }
    }
}

fn default_layerscale_init() -> f64 {
    1e-2
}

fn one() -> usize {
    1
}
fn tenth() -> f64 {
    0.1
}
fn default_per_class() -> usize {
    8
}
fn default_keep() -> usize {
    3
}
/// 2 GB per checkpoint shard: the size of a file that any file system and copy tool handles.
pub const DEFAULT_CHECKPOINT_SHARD_MB: f64 = 2048.0;
fn default_shard_mb() -> f64 {
    DEFAULT_CHECKPOINT_SHARD_MB
}
fn default_max_skips() -> u64 {
    10
}

/// Built-in presets: `digits` (the default run), `deep1000` (1000 blocks) and `tiny` (smoke tests).
pub const PRESETS: [&str; 3] = ["digits", "deep1000", "tiny"];

fn model(depth: usize, hidden: usize, heads: usize, mlp: usize, patch: usize) -> ModelConfig {
    ModelConfig {
        in_channels: 1,
        patch_size: patch,
        hidden_size: hidden,
        depth,
        num_heads: heads,
        mlp_hidden_dim: mlp,
        qkv_bias: false,
        context_dim: hidden,
        rope_base: 10000.0,
        residual: Default::default(),
    }
}

/// Reads a model config JSON file (a workload such as `benches/*.json` also works).
pub fn read_model_config(path: &Path) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::new(format!("{}: cannot read: {e}", path.display())))?;
    mvdit_model::checkpoint::parse_config(&text, &path.display().to_string())
}

/// A training config from a file (TOML or JSON) or, when `name` names no file, a built-in
/// preset (digits, deep1000, tiny).
pub fn load(name: &str) -> Result<TrainConfig> {
    let path = Path::new(name);
    if path.is_file() || name.ends_with(".toml") || name.ends_with(".json") {
        return TrainConfig::read(path);
    }
    preset(name)
}

pub fn preset(name: &str) -> Result<TrainConfig> {
    let optim = |lr: f64, warmup: u64| OptimConfig { lr, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.1, max_grad_norm: 1.0, warmup_steps: warmup };
    // The default run; the other presets change only what differs.
    let digits = TrainConfig {
        model: model(8, 64, 2, 192, 2),
        data: DataConfig::new(8, 1, 0.1),
        context_tokens: 1,
        label_dropout: 0.1,
        optim: optim(1e-3, 100),
        batch_size: 64,
        steps: 3000,
        ema_decay: 0.995,
        beta_init: 1.0,
        weight_std: None,
        output_std: None,
        patch_std: None,
        layerscale_init: default_layerscale_init(),
        writer_init: WriterInit::Auto,
        init: None,
        diagnostics: DiagSetting::Default,
        time_shift: 1.0,
        seed: 0,
        recompute: Recompute::Auto,
        activation_budget_mb: ActivationBudget::Auto,
        loss_scale: LossScaleConfig::default(),
        log_every: 10,
        checkpoint_every: 250,
        sample_every: 500,
        keep_checkpoints: 3,
        checkpoint_shard_mb: DEFAULT_CHECKPOINT_SHARD_MB,
        max_bad_steps: 10,
        // Grids, the quality score and `mvdit sample` sample unguided with the reverse SDE, 35
        // steps: the Fréchet distance measures diversity too, which guidance trades for crisper
        // digits, and the SDE scored best of every sampler (docs/sampling.md: vs_real 1.157
        // against 1.221 for 25 Euler steps).
        sample: SampleConfig { steps: 35, cfg_scale: 1.0, shift: 4.0, per_class: 8, quality: 200, sampler: Method::Sde, cfg_interval: None, cache_threshold: 0.0 },
    };
    let cfg = match name {
        "digits" => digits,
        "deep1000" => TrainConfig {
            model: model(1000, 64, 1, 192, 2),
            optim: optim(5e-4, 50),
            batch_size: 16,
            steps: 300,
            ema_decay: 0.99,
            beta_init: 1.0 / (1000f64).sqrt(),
            log_every: 1,
            checkpoint_every: 100,
            sample_every: 0,
            keep_checkpoints: 2,
            // One image per class: a guided 25-step sample of 1000 blocks is the costly part here.
            sample: SampleConfig { per_class: 1, quality: 0, cfg_scale: 2.0, steps: 25, sampler: Method::Euler, ..digits.sample.clone() },
            ..digits
        },
        "tiny" => TrainConfig {
            model: model(2, 16, 2, 32, 2),
            context_tokens: 2,
            optim: optim(1e-3, 0),
            batch_size: 8,
            steps: 6,
            ema_decay: 0.9,
            log_every: 1,
            checkpoint_every: 3,
            sample_every: 0,
            keep_checkpoints: 2,
            sample: SampleConfig { steps: 4, cfg_scale: 2.0, shift: 4.0, per_class: 2, quality: 0, sampler: Method::Euler, cfg_interval: None, cache_threshold: 0.0 },
            ..digits
        },
        other => return Err(Error::new(format!("unknown preset `{other}` (known: {})", PRESETS.join(", ")))),
    };
    Ok(cfg)
}

impl TrainConfig {
    /// Reads a TOML or JSON file (by extension; JSON when unsure).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::new(format!("{}: cannot read: {e}", path.display())))?;
        let toml = path.extension().is_some_and(|e| e == "toml");
        let cfg: TrainConfig = if toml {
            toml::from_str(&text).map_err(|e| Error::new(format!("{}: {}", path.display(), with_suggestion(e.to_string().trim_end()))))?
        } else {
            serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: {}", path.display(), with_suggestion(&e.to_string()))))?
        };
        cfg.validate().map_err(|e| e.context(path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let bad = |field: &str, msg: String| Err(Error::new(format!("config field `{field}`: {msg}")));
        let d = &self.data;
        if d.image_size == 0 || d.image_size % self.model.patch_size != 0 {
            return bad("data.image_size", format!("{} is not a positive multiple of patch_size {}", d.image_size, self.model.patch_size));
        }
        if d.channels != self.model.in_channels {
            return bad("data.channels", format!("{} but model.in_channels is {}", d.channels, self.model.in_channels));
        }
        if !(0.0..1.0).contains(&d.eval_fraction) {
            return bad("data.eval_fraction", format!("must be in [0, 1), got {}", d.eval_fraction));
        }
        if d.shards.is_some() && d.folder.is_some() {
            return bad("data.shards", "and data.folder are both set: train on one of them".into());
        }
        if d.shuffle_shards == 0 {
            return bad("data.shuffle_shards", "must be at least 1".into());
        }
        if d.captions && d.shards.is_none() {
            return bad("data.captions", "caption contexts come from a shard set: set data.shards (mvdit train --data SHARDS/)".into());
        }
        if self.context_tokens == 0 {
            return bad("context_tokens", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.label_dropout) {
            return bad("label_dropout", format!("must be in [0, 1), got {}", self.label_dropout));
        }
        let o = &self.optim;
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            return bad("optim.lr", format!("must be a positive number, got {}", o.lr));
        }
        if !(0.0..1.0).contains(&o.betas[0]) || !(0.0..1.0).contains(&o.betas[1]) {
            return bad("optim.betas", format!("each must be in [0, 1), got {:?}", o.betas));
        }
        if o.eps <= 0.0 || o.weight_decay < 0.0 || o.max_grad_norm < 0.0 {
            return bad("optim", "eps must be > 0; weight_decay and max_grad_norm >= 0".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("ema_decay", format!("must be in [0, 1), got {}", self.ema_decay));
        }
        if !(self.time_shift > 0.0 && self.time_shift.is_finite()) {
            return bad("time_shift", format!("must be positive, got {}", self.time_shift));
        }
        if self.log_every == 0 || self.checkpoint_every == 0 {
            return bad("log_every/checkpoint_every", "must be at least 1".into());
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints", "must be at least 1".into());
        }
        if !(self.checkpoint_shard_mb.is_finite() && self.checkpoint_shard_mb >= 1e-3) {
            return bad("checkpoint_shard_mb", format!("must be a number of megabytes of at least 0.001, got {}", self.checkpoint_shard_mb));
        }
        if self.sample.steps == 0 || !(self.sample.shift > 0.0) {
            return bad("sample", "steps must be >= 1 and shift > 0".into());
        }
        if let Some(e) = self.sample.cfg_interval.map(check_cfg_interval).and_then(|r| r.err()) {
            return bad("sample.cfg_interval", e);
        }
        let values = d.channels * d.image_size * d.image_size;
        if self.sample.quality > 0 && values > 1024 {
            return bad("sample.quality", format!("the pixel Fréchet score needs images of at most 1024 values, these have {values}: set it to 0"));
        }
        if let Err((field, msg)) = self.loss_scale.check() {
            return bad(field, msg);
        }
        if !self.layerscale_init.is_finite() {
            return bad("layerscale_init", format!("must be a finite number, got {}", self.layerscale_init));
        }
        if let DiagSetting::On(d) = &self.diagnostics {
            d.validate(self.model.depth).map_err(|m| Error::new(format!("config field `diagnostics`: {m}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_text_to_image_config_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/t2i-latents.json");
        let cfg = TrainConfig::read(&path).unwrap();
        assert!(cfg.data.captions && cfg.data.shards.is_some());
        assert_eq!((cfg.model.in_channels, cfg.model.context_dim, cfg.data.image_size), (128, 1024, 16), "FLUX.2 latents at 256 px, Qwen3-0.6B contexts");
    }

    #[test]
    fn presets_are_valid_and_unknown_names_are_refused() {
        for p in PRESETS {
            preset(p).unwrap().validate().unwrap();
        }
        assert!(preset("nope").unwrap_err().0.contains("digits, deep1000, tiny"));
    }

    #[test]
    fn default_diagnostics_are_on_for_the_presets_and_off_at_the_released_size() {
        for name in ["digits", "deep1000", "tiny"] {
            let c = preset(name).unwrap();
            assert!(c.diagnostics_work() <= DEFAULT_MAX_WORK, "{name}: {}", c.diagnostics_work());
            assert!(c.diagnostics.resolve(true, c.diagnostics_work()).unwrap().is_some(), "{name}");
        }
        let mut big = preset("digits").unwrap();
        (big.model.depth, big.model.hidden_size, big.model.mlp_hidden_dim, big.data.image_size) = (1000, 1024, 4096, 64);
        assert!(big.diagnostics.resolve(true, big.diagnostics_work()).unwrap().is_none());
        // Quality scores need small images.
        (big.data.channels, big.model.in_channels) = (3, 3);
        let e = big.validate().unwrap_err().to_string();
        assert!(e.contains("sample.quality"), "{e}");
    }

    #[test]
    fn toml_and_json_round_trip_and_bad_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = preset("tiny").unwrap();
        let t = dir.path().join("c.toml");
        std::fs::write(&t, toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(TrainConfig::read(&t).unwrap(), cfg);
        let j = dir.path().join("c.json");
        let mut v = serde_json::to_value(&cfg).unwrap();
        v["batch_size"] = 0.into();
        std::fs::write(&j, v.to_string()).unwrap();
        assert!(TrainConfig::read(&j).unwrap_err().0.contains("batch_size"));
        v["batch_size"] = 4.into();
        v["bacth"] = 4.into();
        std::fs::write(&j, v.to_string()).unwrap();
        let e = TrainConfig::read(&j).unwrap_err().0;
        assert!(e.contains("bacth") && e.contains("did you mean `batch_size`"), "{e}");
        std::fs::write(&t, "model = [").unwrap();
        let e = TrainConfig::read(&t).unwrap_err().0;
        assert!(e.contains("c.toml") && e.contains("line 1"), "{e}");
    }
}
