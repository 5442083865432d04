//! `mvdit sample --prompt`: text to image with the release's `sample.py` semantics. The
//! conditional prompts and (with guidance, cfg > 1) one empty prompt per image are encoded in
//! one padded batch by the text encoder; Euler on the shifted grid from t = 1 to 0, the model on
//! the conditional and the unconditional context, v = v_u + w·(v_c − v_u); the final latents
//! decoded by the autoencoder; `image·0.5 + 0.5`, ×255, clamped, truncated to 8 bits, one PNG
//! per prompt, and the latents in `DIR/latents.safetensors` (tensor `latent`).

use crate::images::{to_u8_truncated, write_png};
use crate::rng::Rng;
use crate::sampler::{sample_from, Contexts, SampleOptions};
use mvdit_core::{Backend, ModelConfig};
use mvdit_model::{Autoencoder, Error, HostTensor, Result, TensorFile, TextEncoder, WeightFile, WeightedDit};
use std::path::PathBuf;

/// What `mvdit sample --prompt` reads and writes.
pub struct TextSample {
    pub checkpoint: PathBuf,
    /// For checkpoints without a `config` metadata key.
    pub config: Option<ModelConfig>,
    pub text_encoder: PathBuf,
    pub vae: PathBuf,
    pub prompts: Vec<String>,
    /// Image side in pixels (a multiple of the autoencoder's factor).
    pub size: usize,
    /// Initial latents (tensor `noise` [B, C, h, w]) instead of the seed's.
    pub noise: Option<PathBuf>,
    /// Also write the images as an ADM `.npz` (uint8 `arr_0` [N, H, W, 3]).
    pub npz: Option<PathBuf>,
    /// Bytes of DiT weights to hold at once: above, the model streams in stages. `None`:
    /// [`default_max_memory`].
    pub max_memory: Option<usize>,
    /// The dtype the DiT's weights are held in.
    pub weights: crate::backends::WeightsArg,
    /// A training checkpoint's EMA weights (`ema.*`) where it has them.
    pub ema: bool,
    pub out: PathBuf,
}

/// The weight budget when `--max-memory` is not given: 80% of the device's own memory where
/// the backend knows it (the rest for activations and an unpacked stage), else the host's
/// available memory.
pub fn default_max_memory(device: Option<u64>) -> usize {
    device.map_or_else(host_available_bytes, |b| (b as f64 * 0.8) as usize)
}

/// The host's available memory (MemAvailable), or no limit where /proc does not say.
pub fn host_available_bytes() -> usize {
    let kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemAvailable:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok()));
    kb.map_or(usize::MAX, |k| k * 1024)
}

/// File names of the PNGs: the prompt's index and the first words of it.
fn png_name(i: usize, prompt: &str) -> String {
    let words: String = prompt.chars().map(|c| if c.is_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(40).collect();
    let words = words.split('-').filter(|w| !w.is_empty()).collect::<Vec<_>>().join("-");
    format!("{i:04}{}{words}.png", if words.is_empty() { "" } else { "-" })
}

/// [C, H, W] in [-1, 1] → HWC bytes as `sample.py` makes them (truncation, not rounding).
fn to_bytes(img: &[f32], c: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; c * h * w];
    for ch in 0..c {
        for p in 0..h * w {
            out[p * c + ch] = to_u8_truncated(img[ch * h * w + p]);
        }
    }
    out
}

pub fn run_text_sample<B: Backend>(be: &B, a: &TextSample, opts: &SampleOptions) -> Result<()> {
    let n = a.prompts.len();
    if n == 0 {
        return Err(Error::new("no prompt: give --prompt TEXT (repeatable) or --prompts FILE"));
    }
    let max_memory = a.max_memory.unwrap_or_else(|| default_max_memory(be.device_memory()));
    let mut weights = WeightFile::open(&a.checkpoint)?;
    // A model trained here on caption shards saw contexts of exactly its `context_tokens`
    // positions (the set's longest caption, padding encoded): sampled the same way.
    let trained_tokens = weights
        .metadata()
        .get("train_config")
        .and_then(|j| serde_json::from_str::<crate::config::TrainConfig>(j).ok())
        .filter(|c| c.data.captions)
        .map(|c| c.context_tokens);
    if a.ema && weights.prefer("ema.") > 0 {
        eprintln!("{}: sampling with the EMA weights (--no-ema for the raw ones)", a.checkpoint.display());
    }
    let model = WeightedDit::open(be, weights, a.config.clone(), max_memory, a.weights.dtype())?;
    let cfg = model.cfg.clone();
    let ae = Autoencoder::load(be, &WeightFile::open(&a.vae)?)?;
    let enc = TextEncoder::load(be, &a.text_encoder)?;
    let (c, f) = (ae.cfg.latent_channels(), ae.cfg.factor());
    if cfg.in_channels != c {
        return Err(Error::new(format!(
            "{}: the model takes {} channels, the autoencoder {} gives {c}",
            a.checkpoint.display(),
            cfg.in_channels,
            a.vae.display()
        )));
    }
    if cfg.context_dim != enc.cfg.hidden {
        return Err(Error::new(format!(
            "{}: the model's context_dim is {}, the text encoder's hidden size {}",
            a.checkpoint.display(),
            cfg.context_dim,
            enc.cfg.hidden
        )));
    }
    if a.size == 0 || a.size % f != 0 || (a.size / f) % cfg.patch_size != 0 {
        return Err(Error::new(format!("--size {}: not a positive multiple of {}", a.size, f * cfg.patch_size)));
    }
    let h = a.size / f;
    let shape = [n, c, h, h];
    let noise = match &a.noise {
        Some(p) => {
            let t = TensorFile::read(p)?;
            let want: Vec<Option<usize>> = shape.iter().map(|&s| Some(s)).collect();
            t.expect("noise", &want).map_err(|e| e.context(p.display()))?.data.clone()
        }
        None => Rng::new(opts.seed).normals(shape.iter().product()),
    };
    eprintln!("DiT weights {} (--max-memory {})", model.describe(), mvdit_model::streamed::mb(max_memory));
    // As sample.py: guidance only above 1, and then the empty prompts share the batch.
    let guided = opts.cfg_scale > 1.0;
    let mut batch = a.prompts.clone();
    if guided {
        batch.extend(std::iter::repeat_n(String::new(), n));
    }
    let e = enc.encode_prompts_at_least(be, &batch, trained_tokens.unwrap_or(0))?;
    for &(i, len) in &e.tokens.truncated {
        eprintln!("prompt {} has {len} tokens: truncated to {}", i + 1, mvdit_model::MAX_TOKENS);
    }
    let l = e.tokens.len;
    if let Some(t) = trained_tokens.filter(|&t| l > t) {
        return Err(Error::new(format!(
            "{}: a prompt has {l} tokens, but this model was trained on captions of {t} (its shards' longest): shorten it",
            a.checkpoint.display()
        )));
    }
    if l == 0 {
        return Err(Error::new("every prompt is empty: nothing to condition on (the empty prompt is guidance's other half)"));
    }
    let per = l * e.hidden;
    let cond = e.context[..n * per].to_vec();
    let uncond = if guided { e.context[n * per..].to_vec() } else { cond.clone() };
    drop(enc);
    let contexts = Contexts { cond, uncond, shape: [n, l, e.hidden] };
    let opts = SampleOptions { cfg_scale: if guided { opts.cfg_scale } else { 1.0 }, ..opts.clone() };
    let latents = sample_from(be, &model, &contexts, &noise, [c, h, h], &opts)?;
    drop(model);
    let images = ae.decode(be, &latents, shape)?;
    let (oc, side) = (ae.cfg.out_channels, h * f);
    if oc != 3 && oc != 1 {
        return Err(Error::new(format!("{}: the autoencoder gives {oc} channels (PNG takes 1 or 3)", a.vae.display())));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::new(format!("{}: cannot create: {e}", a.out.display())))?;
    let mut lat = TensorFile::default();
    lat.insert("latent", HostTensor::new(shape.to_vec(), latents));
    lat.metadata.insert("prompts".into(), serde_json::to_string(&a.prompts).map_err(|e| Error::new(e.to_string()))?);
    lat.write(&a.out.join("latents.safetensors"))?;
    let per_img = oc * side * side;
    for (i, (img, p)) in images.chunks_exact(per_img).zip(&a.prompts).enumerate() {
        let path = a.out.join(png_name(i, p));
        write_png(&path, &to_bytes(img, oc, side, side), side, side, oc).map_err(|e| Error::new(e.to_string()))?;
    }
    if let Some(path) = &a.npz {
        crate::npz::write_npz(path, &crate::npz::to_rgb_u8(&images, oc, side, side), n, side, side)?;
    }
    eprintln!("wrote {n} images ({side}x{side}) and latents.safetensors to {}", a.out.display());
    Ok(())
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
    }
}
