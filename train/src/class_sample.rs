//! Images from a class-conditional training checkpoint: [`ClassSampler::open`] (checkpoint,
//! [`ClassOptions`]), then [`ClassSampler::generate`] (classes, images per class,
//! [`SampleOptions`]) → [`ClassImages`]; [`ClassImages::save`] writes what `mvdit sample`
//! writes (a grid and one PNG per sample). A model of latents (trained on `mvdit prepare`
//! shards) has them decoded by the autoencoder (`vae`).

use crate::backends::{BackendSpec, OnBackend};
use crate::config::TrainConfig;
use crate::images::{save_grid, save_image};
use crate::sampler::{sample_reported, Conditioner, Labels, SampleOptions};
use crate::trainer::CLASS_TABLE;
use mvdit_backend_cpu::Cpu;
use mvdit_backend_vulkan::Vulkan;
use mvdit_backend_wgpu::Wgpu;
use mvdit_core::Backend;
use mvdit_model::checkpoint::parse_config;
use mvdit_model::{Autoencoder, Dit, Error, Result, WeightFile};
use std::path::{Path, PathBuf};

/// How a class sampler is opened.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassOptions {
    /// The backend it runs on (for [`ClassSampler::open`]; [`ClassSamplerOn`] is given its own).
    pub backend: BackendSpec,
    /// The checkpoint's EMA weights (`ema.*`) instead of the raw ones.
    pub ema: bool,
    /// The autoencoder that decodes a model of latents.
    pub vae: Option<PathBuf>,
}

impl Default for ClassOptions {
    fn default() -> Self {
        ClassOptions { backend: BackendSpec::default(), ema: true, vae: None }
    }
}

/// Samples, class by class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassImages {
    /// [N, C, S, S] in [-1, 1] (decoded by the autoencoder for a model of latents).
    pub images: Vec<f32>,
    /// The class of each sample.
    pub labels: Vec<u32>,
    pub channels: usize,
    pub side: usize,
    /// Samples per class.
    pub count: usize,
    /// The fraction of block evaluations step caching skipped (None: caching off).
    pub cache_skipped: Option<f64>,
}

impl ClassImages {
    /// [N, S, S, 3] bytes (a one-channel image repeated), truncated as the PNGs are.
    pub fn rgb(&self) -> Vec<u8> {
        crate::npz::to_rgb_u8(&self.images, self.channels, self.side, self.side)
    }

    /// `classK_J.png` per sample and `grid.png` (a row per class) into `out`, and with `npz`
    /// the samples as an ADM `.npz` (uint8 `arr_0` [N, H, W, 3]).
    pub fn save(&self, out: &Path, npz: Option<&Path>) -> Result<()> {
        let (c, s, count) = (self.channels, self.side, self.count);
        std::fs::create_dir_all(out).map_err(|e| Error::new(format!("{}: cannot create: {e}", out.display())))?;
        let per = c * s * s;
        for (k, &label) in self.labels.iter().enumerate() {
            let path = out.join(format!("class{label}_{}.png", k % count));
            save_image(&path, &self.images[k * per..(k + 1) * per], c, s, s).map_err(|e| Error::new(e.to_string()))?;
        }
        save_grid(out.join("grid.png"), &self.images, c, s, s, count, 4).map_err(|e| Error::new(e.to_string()))?;
        if let Some(path) = npz {
            crate::npz::write_npz(path, &self.rgb(), self.labels.len(), s, s)?;
        }
        Ok(())
    }
}

/// The sampler on one backend `B`, which it owns.
pub struct ClassSamplerOn<B: Backend> {
    be: B,
    model: Dit<B>,
    table: B::Tensor,
    ae: Option<Autoencoder<B>>,
    cfg: TrainConfig,
    names: Vec<String>,
}

impl<B: Backend> ClassSamplerOn<B> {
    pub fn open(be: B, checkpoint: &Path, o: &ClassOptions) -> Result<Self> {
        let at = |e: Error| e.context(checkpoint.display());
        // A file or a sharded checkpoint directory, read tensor by tensor through memory maps.
        let mut w = WeightFile::open(checkpoint)?;
        let metadata = w.metadata().clone();
        let meta = |k: &str| metadata.get(k).ok_or_else(|| at(Error::new(format!("metadata key `{k}` missing: not a mvdit training checkpoint"))));
        let model_cfg = parse_config(meta("config")?, "metadata key `config`").map_err(at)?;
        let cfg: TrainConfig = serde_json::from_str(meta("train_config")?).map_err(|e| at(Error::new(format!("metadata `train_config`: {e}"))))?;
        let names: Vec<String> = serde_json::from_str(meta("class_names")?).map_err(|e| at(Error::new(format!("metadata `class_names`: {e}"))))?;
        if cfg.data.captions {
            return Err(Error::new(format!("{}: a caption-conditioned model: sample it with --prompt TEXT --text-encoder DIR --vae FILE", checkpoint.display())));
        }
        let ae = match (&o.vae, cfg.data.shards.is_some()) {
            (Some(f), true) => Some(Autoencoder::load(&be, &WeightFile::open(f)?)?),
            (None, true) => return Err(Error::new(format!("{}: the model makes latents of {} channels: give --vae FILE to decode them", checkpoint.display(), cfg.data.channels))),
            (Some(_), false) => return Err(Error::new(format!("{}: the model makes pixels; --vae is for models of latents", checkpoint.display()))),
            (None, false) => None,
        };
        if let Some(ae) = &ae {
            if ae.cfg.latent_channels() != cfg.data.channels {
                return Err(Error::new(format!("--vae: the autoencoder takes {} latent channels, the model makes {}", ae.cfg.latent_channels(), cfg.data.channels)));
            }
        }
        let prefix = if o.ema { "ema." } else { "" };
        let layout = mvdit_core::Layout::new(&model_cfg);
        let table_name = format!("{prefix}{CLASS_TABLE}");
        for name in layout.specs.iter().map(|s| format!("{prefix}{}", s.name)).chain([table_name.clone()]) {
            if !w.contains(&name) {
                let hint = if o.ema && name != table_name { " (use --no-ema)" } else { "" };
                return Err(at(Error::new(format!("missing tensor `{name}`{hint}"))));
            }
        }
        if o.ema {
            w.prefer("ema.");
        }
        let params = mvdit_model::streamed::load_values(&w, &layout, 0..model_cfg.depth)?;
        let table = w.get(CLASS_TABLE, &[Some(names.len() + 1), None])?;
        let model = Dit::from_host(&be, model_cfg, params)?;
        let table = be.upload(&table.data, &table.shape)?;
        Ok(ClassSamplerOn { be, model, table, ae, cfg, names })
    }

    /// The class names, by label.
    pub fn class_names(&self) -> &[String] {
        &self.names
    }

    /// The sampler settings the model was trained to be sampled with (its config's `sample`).
    pub fn sample_defaults(&self) -> &crate::config::SampleConfig {
        &self.cfg.sample
    }

    /// The training config stored in the checkpoint.
    pub fn train_config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The side in pixels of the images [`Self::generate`] gives.
    pub fn image_side(&self) -> usize {
        let s = self.cfg.data.image_size;
        self.ae.as_ref().map_or(s, |ae| s * ae.cfg.factor())
    }

    /// `count` samples of each class of `classes` (every class when empty).
    pub fn generate(&self, classes: &[u32], count: usize, opts: &SampleOptions) -> Result<ClassImages> {
        let (be, cfg, names) = (&self.be, &self.cfg, &self.names);
        if count == 0 {
            return Err(Error::new("--count must be at least 1"));
        }
        if let Some(&c) = classes.iter().find(|&&c| c as usize >= names.len()) {
            return Err(Error::new(format!("--class {c}: the checkpoint has {} classes (0..{})", names.len(), names.len().saturating_sub(1))));
        }
        let cond = Conditioner { table: &self.table, context_tokens: cfg.context_tokens, context_dim: self.model.cfg.context_dim };
        let classes: Vec<u32> = if classes.is_empty() { (0..names.len() as u32).collect() } else { classes.to_vec() };
        let labels: Vec<u32> = classes.iter().flat_map(|&c| std::iter::repeat_n(c, count)).collect();
        let (c, s) = (cfg.data.channels, cfg.data.image_size);
        let noise = crate::rng::Rng::new(opts.seed).normals(labels.len() * c * s * s);
        let (images, cache_skipped) = sample_reported(be, &self.model, &Labels { cond: &cond, labels: &labels }, &noise, [c, s, s], opts)?;
        let (images, channels) = match &self.ae {
            Some(ae) => (ae.decode(be, &images, [labels.len(), c, s, s])?, ae.cfg.out_channels),
            None => (images, c),
        };
        Ok(ClassImages { images, labels, channels, side: self.image_side(), count, cache_skipped })
    }
}

/// The sampler on the backend a [`BackendSpec`] names: what the bindings hold.
pub type ClassSampler = OnBackend<ClassSamplerOn<Cpu>, ClassSamplerOn<Wgpu>, ClassSamplerOn<Vulkan>>;

impl ClassSampler {
    /// Opens the backend `o.backend`, then [`ClassSamplerOn::open`].
    pub fn open(checkpoint: &Path, o: &ClassOptions) -> Result<Self> {
        Ok(crate::open_on_backend!(o.backend, |be| ClassSamplerOn::open(be, checkpoint, o)?))
    }

    pub fn class_names(&self) -> &[String] {
        crate::on_backend!(self, |s| s.class_names())
    }

    pub fn image_side(&self) -> usize {
        crate::on_backend!(self, |s| s.image_side())
    }

    pub fn sample_defaults(&self) -> &crate::config::SampleConfig {
        crate::on_backend!(self, |s| s.sample_defaults())
    }

    pub fn train_config(&self) -> &TrainConfig {
        crate::on_backend!(self, |s| s.train_config())
    }

    pub fn generate(&self, classes: &[u32], count: usize, opts: &SampleOptions) -> Result<ClassImages> {
        crate::on_backend!(self, |s| s.generate(classes, count, opts))
    }
}
