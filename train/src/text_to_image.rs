//! Text to image with the release's `sample.py` semantics: [`TextToImage::open`] (checkpoint,
//! text encoder, autoencoder, [`TextToImageOptions`]), then [`TextToImage::generate`] (prompts,
//! [`TextSettings`]) → [`Images`]. The conditional prompts and (with guidance, cfg > 1) one
//! empty prompt per image are encoded in one padded batch by the text encoder; Euler (or Heun)
//! on the shifted grid from t = 1 to 0, the model on the conditional and the unconditional
//! context, v = v_u + w·(v_c − v_u); the final latents decoded by the autoencoder;
//! `image·0.5 + 0.5`, ×255, clamped, truncated to 8 bits. [`Images::save_text`] writes what
//! `mvdit sample --prompt` writes: one PNG per prompt and `latents.safetensors` (tensor `latent`).
//!
//! The text encoder is read at each `generate` and freed before the DiT runs, so the peak
//! memory is that of the largest network, not of all three (the released model samples in
//! 6 GB streamed).

use crate::config::SampleConfig;
use crate::backends::{BackendSpec, OnBackend, Weights};
use crate::images::{to_u8_truncated, write_png};
use crate::rng::Rng;
use crate::sampler::{sample_reported, Contexts, SampleOptions};
use mvdit_backend_cpu::Cpu;
use mvdit_backend_vulkan::Vulkan;
use mvdit_backend_wgpu::Wgpu;
use mvdit_core::{Backend, ModelConfig};
use mvdit_model::text_encoder::TextEncoderConfig;
use mvdit_model::{Autoencoder, Error, HostTensor, Result, TensorFile, TextEncoder, WeightFile, WeightedDit};
use std::path::{Path, PathBuf};

/// How a pipeline is opened.
#[derive(Clone, Debug, PartialEq)]
pub struct TextToImageOptions {
    /// The backend it runs on (for [`TextToImage::open`]; [`TextToImageOn`] is given its own).
    pub backend: BackendSpec,
    /// For checkpoints without a `config` metadata key.
    pub config: Option<ModelConfig>,
    /// Bytes of DiT weights to hold at once: above, the model streams in stages. `None`:
    /// [`default_max_memory`].
    pub max_memory: Option<usize>,
    /// The dtype the DiT's weights are held in.
    pub weights: Weights,
    /// A training checkpoint's EMA weights (`ema.*`) where it has them.
    pub ema: bool,
}

impl Default for TextToImageOptions {
    fn default() -> Self {
        TextToImageOptions { backend: BackendSpec::default(), config: None, max_memory: None, weights: Weights::Auto, ema: true }
    }
}

/// How one batch of prompts is sampled.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSettings {
    /// Steps, guidance scale (guidance only above 1), time shift, seed, Euler or Heun.
    pub sample: SampleOptions,
    /// Image side in pixels (a multiple of the autoencoder's factor times the patch size).
    pub size: usize,
    /// Initial latents [N, C, size/f, size/f] instead of the seed's.
    pub noise: Option<Vec<f32>>,
}

impl Default for TextSettings {
    /// The release's `sample.py`: 35 Euler steps, guidance 2, shift 4, 256 pixels.
    fn default() -> Self {
        TextSettings { sample: SampleOptions { steps: 35, cfg_scale: 2.0, shift: 4.0, seed: 0, method: crate::sampler::Method::Euler, cfg_interval: None, cache_threshold: 0.0 }, size: 256, noise: None }
    }
}

/// Generated images and the latents they were decoded from.
#[derive(Clone, Debug, PartialEq)]
pub struct Images {
    /// [N, H, W, C] bytes (C = `channels`), as `sample.py` makes them (truncation).
    pub pixels: Vec<u8>,
    /// The decoded images [N, C, H, W] in [-1, 1] (before the 8-bit conversion).
    pub decoded: Vec<f32>,
    pub count: usize,
    pub side: usize,
    /// 3 (RGB) or 1.
    pub channels: usize,
    /// The final latents, [N, Cz, h, w] as `latent_shape`.
    pub latents: Vec<f32>,
    pub latent_shape: [usize; 4],
    /// What a user should hear of (prompts truncated to the encoder's maximum).
    pub notes: Vec<String>,
}

impl Images {
    /// [N, H, W, 3] bytes (a one-channel image repeated).
    pub fn rgb(&self) -> Vec<u8> {
        crate::npz::to_rgb_u8(&self.decoded, self.channels, self.side, self.side)
    }

    /// Writes one PNG per prompt (named by its index and first words) and
    /// `latents.safetensors` (tensor `latent`, the prompts in metadata) into `out`, and with
    /// `npz` the images as an ADM `.npz` (uint8 `arr_0` [N, H, W, 3]).
    pub fn save_text(&self, out: &Path, prompts: &[String], npz: Option<&Path>) -> Result<()> {
        std::fs::create_dir_all(out).map_err(|e| Error::new(format!("{}: cannot create: {e}", out.display())))?;
        let mut lat = TensorFile::default();
        lat.insert("latent", HostTensor::new(self.latent_shape.to_vec(), self.latents.clone()));
        lat.metadata.insert("prompts".into(), serde_json::to_string(prompts).map_err(|e| Error::new(e.to_string()))?);
        lat.write(&out.join("latents.safetensors"))?;
        let per = self.channels * self.side * self.side;
        for (i, (img, p)) in self.pixels.chunks_exact(per).zip(prompts).enumerate() {
            write_png(&out.join(png_name(i, p)), img, self.side, self.side, self.channels).map_err(|e| Error::new(e.to_string()))?;
        }
        if let Some(path) = npz {
            crate::npz::write_npz(path, &self.rgb(), self.count, self.side, self.side)?;
        }
        Ok(())
    }
}

/// The weight budget when no `max_memory` is given: 80% of the device's own memory where the
/// backend knows it (the rest for activations and an unpacked stage), else the host's
/// available memory.
pub fn default_max_memory(device: Option<u64>) -> usize {
    device.map_or_else(|| crate::memory::host_available_bytes().unwrap_or(usize::MAX), |b| (b as f64 * 0.8) as usize)
}

/// File names of the PNGs: the prompt's index and the first words of it.
fn png_name(i: usize, prompt: &str) -> String {
    let words: String = prompt.chars().map(|c| if c.is_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(40).collect();
    let words = words.split('-').filter(|w| !w.is_empty()).collect::<Vec<_>>().join("-");
    format!("{i:04}{}{words}.png", if words.is_empty() { "" } else { "-" })
}

/// [N, C, H, W] in [-1, 1] → [N, H, W, C] bytes as `sample.py` makes them (truncation, not rounding).
fn to_bytes(images: &[f32], c: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; images.len()];
    for (img, o) in images.chunks_exact(c * h * w).zip(out.chunks_exact_mut(c * h * w)) {
        for ch in 0..c {
            for p in 0..h * w {
                o[p * c + ch] = to_u8_truncated(img[ch * h * w + p]);
            }
        }
    }
    out
}

/// The pipeline on one backend `B`, which it owns.
pub struct TextToImageOn<B: Backend> {
    be: B,
    model: WeightedDit<B>,
    ae: Autoencoder<B>,
    text_encoder: PathBuf,
    checkpoint: PathBuf,
    /// A model trained here on caption shards saw contexts of exactly its `context_tokens`
    /// positions (the set's longest caption, padding encoded): sampled the same way.
    trained_tokens: Option<usize>,
    /// The training config's `sample` section, or the release's settings.
    sample_defaults: SampleConfig,
    notes: Vec<String>,
}

impl<B: Backend> TextToImageOn<B> {
    /// Opens the DiT checkpoint (a file or a sharded directory, streamed above
    /// `max_memory`), the autoencoder file and the text encoder's model directory, and checks
    /// that they fit together.
    pub fn open(be: B, checkpoint: &Path, text_encoder: &Path, vae: &Path, o: &TextToImageOptions) -> Result<Self> {
        let max_memory = o.max_memory.unwrap_or_else(|| default_max_memory(be.device_memory()));
        let mut notes = Vec::new();
        let mut weights = WeightFile::open(checkpoint)?;
        let trained = weights.metadata().get("train_config").and_then(|j| serde_json::from_str::<crate::config::TrainConfig>(j).ok());
        let trained_tokens = trained.as_ref().filter(|c| c.data.captions).map(|c| c.context_tokens);
        let sample_defaults = trained.map_or_else(SampleConfig::release, |c| c.sample);
        if o.ema && weights.prefer("ema.") > 0 {
            notes.push(format!("{}: sampling with the EMA weights (--no-ema for the raw ones)", checkpoint.display()));
        }
        let model = WeightedDit::open(&be, weights, o.config.clone(), max_memory, o.weights.dtype())?;
        notes.push(format!("DiT weights {} (--max-memory {})", model.describe(), mvdit_model::streamed::mb(max_memory)));
        let ae = Autoencoder::load(&be, &WeightFile::open(vae)?)?;
        let cfg = &model.cfg;
        let c = ae.cfg.latent_channels();
        if cfg.in_channels != c {
            return Err(Error::new(format!("{}: the model takes {} channels, the autoencoder {} gives {c}", checkpoint.display(), cfg.in_channels, vae.display())));
        }
        let oc = ae.cfg.out_channels;
        if oc != 3 && oc != 1 {
            return Err(Error::new(format!("{}: the autoencoder gives {oc} channels (images take 1 or 3)", vae.display())));
        }
        let hidden = TextEncoderConfig::read(text_encoder)?.hidden;
        if cfg.context_dim != hidden {
            return Err(Error::new(format!("{}: the model's context_dim is {}, the text encoder's hidden size {hidden}", checkpoint.display(), cfg.context_dim)));
        }
        Ok(TextToImageOn { be, model, ae, text_encoder: text_encoder.to_path_buf(), checkpoint: checkpoint.to_path_buf(), trained_tokens, sample_defaults, notes })
    }

    /// What opening found worth saying (EMA weights, where the weights are held).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The sampler settings the checkpoint names: its training config's `sample` section, or,
    /// for a checkpoint without one (the release), the official `sample.py` settings.
    pub fn sample_defaults(&self) -> &SampleConfig {
        &self.sample_defaults
    }

    /// The DiT's config.
    pub fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    /// The latent shape [Cz, h, w] of an image of `size` pixels, or why the size does not fit.
    pub fn latent_shape(&self, size: usize) -> Result<[usize; 3]> {
        let f = self.ae.cfg.factor();
        if size == 0 || size % f != 0 || (size / f) % self.model.cfg.patch_size != 0 {
            return Err(Error::new(format!("--size {size}: not a positive multiple of {}", f * self.model.cfg.patch_size)));
        }
        Ok([self.ae.cfg.latent_channels(), size / f, size / f])
    }

    /// One image per prompt.
    pub fn generate(&self, prompts: &[String], s: &TextSettings) -> Result<Images> {
        let (be, n) = (&self.be, prompts.len());
        if n == 0 {
            return Err(Error::new("no prompt: give --prompt TEXT (repeatable) or --prompts FILE"));
        }
        let [c, h, _] = self.latent_shape(s.size)?;
        let shape = [n, c, h, h];
        let seeded;
        let noise: &[f32] = match &s.noise {
            Some(v) if v.len() != shape.iter().product::<usize>() => {
                return Err(Error::new(format!("noise: {} values, expected {shape:?} for {n} prompts at --size {}", v.len(), s.size)))
            }
            Some(v) => v,
            None => {
                seeded = Rng::new(s.sample.seed).normals(shape.iter().product());
                &seeded
            }
        };
        // As sample.py: guidance only above 1, and then the empty prompts share the batch.
        let guided = s.sample.cfg_scale > 1.0;
        let mut batch = prompts.to_vec();
        if guided {
            batch.extend(std::iter::repeat_n(String::new(), n));
        }
        let mut notes = Vec::new();
        let enc = TextEncoder::load(be, &self.text_encoder)?;
        let e = enc.encode_prompts_at_least(be, &batch, self.trained_tokens.unwrap_or(0))?;
        drop(enc);
        for &(i, len) in &e.tokens.truncated {
            notes.push(format!("prompt {} has {len} tokens: truncated to {}", i + 1, mvdit_model::MAX_TOKENS));
        }
        let l = e.tokens.len;
        if let Some(t) = self.trained_tokens.filter(|&t| l > t) {
            return Err(Error::new(format!("{}: a prompt has {l} tokens, but this model was trained on captions of {t} (its shards' longest): shorten it", self.checkpoint.display())));
        }
        if l == 0 {
            return Err(Error::new("every prompt is empty: nothing to condition on (the empty prompt is guidance's other half)"));
        }
        let per = l * e.hidden;
        let cond = e.context[..n * per].to_vec();
        let uncond = if guided { e.context[n * per..].to_vec() } else { cond.clone() };
        let contexts = Contexts { cond, uncond, shape: [n, l, e.hidden] };
        let opts = SampleOptions { cfg_scale: if guided { s.sample.cfg_scale } else { 1.0 }, ..s.sample.clone() };
        let (latents, skipped) = sample_reported(be, &self.model, &contexts, noise, [c, h, h], &opts)?;
        if let Some(f) = skipped {
            notes.push(format!("step caching skipped {:.1}% of the block evaluations", 100.0 * f));
        }
        let decoded = self.ae.decode(be, &latents, shape)?;
        let (oc, side) = (self.ae.cfg.out_channels, h * self.ae.cfg.factor());
        Ok(Images { pixels: to_bytes(&decoded, oc, side, side), decoded, count: n, side, channels: oc, latents, latent_shape: shape, notes })
    }
}

/// The pipeline on the backend a [`BackendSpec`] names: what the bindings hold.
pub type TextToImage = OnBackend<TextToImageOn<Cpu>, TextToImageOn<Wgpu>, TextToImageOn<Vulkan>>;

impl TextToImage {
    /// Opens the backend `o.backend`, then [`TextToImageOn::open`].
    pub fn open(checkpoint: &Path, text_encoder: &Path, vae: &Path, o: &TextToImageOptions) -> Result<Self> {
        Ok(crate::open_on_backend!(o.backend, |be| TextToImageOn::open(be, checkpoint, text_encoder, vae, o)?))
    }

    pub fn notes(&self) -> &[String] {
        crate::on_backend!(self, |p| p.notes())
    }

    pub fn sample_defaults(&self) -> &SampleConfig {
        crate::on_backend!(self, |p| p.sample_defaults())
    }

    pub fn config(&self) -> &ModelConfig {
        crate::on_backend!(self, |p| p.config())
    }

    pub fn latent_shape(&self, size: usize) -> Result<[usize; 3]> {
        crate::on_backend!(self, |p| p.latent_shape(size))
    }

    pub fn generate(&self, prompts: &[String], s: &TextSettings) -> Result<Images> {
        crate::on_backend!(self, |p| p.generate(prompts, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_most_of_a_gpu_or_the_hosts_available_memory() {
        assert_eq!(default_max_memory(Some(80_000_000_000)), 64_000_000_000);
        assert!(default_max_memory(None) > 0, "the host's available memory");
    }

    #[test]
    fn png_names_are_plain() {
        assert_eq!(png_name(3, "A red fox, in the snow!"), "0003-a-red-fox-in-the-snow.png");
        assert_eq!(png_name(0, ""), "0000.png");
        assert_eq!(png_name(1, "日本"), "0001-日本.png");
    }

    #[test]
    fn bytes_truncate_like_sample_py() {
        // (v·0.5 + 0.5)·255: 0.999 → 254.87 → 254; −2 → 0; 2 → 255.
        assert_eq!(to_bytes(&[0.999, -2.0, 2.0], 1, 1, 3), [254, 0, 255]);
        // Channels interleave per pixel, image by image.
        assert_eq!(to_bytes(&[-1.0, 1.0, 1.0, -1.0, 1.0, 1.0, -1.0, -1.0], 2, 1, 2), [0, 255, 255, 0, 255, 0, 255, 0]);
    }
}
