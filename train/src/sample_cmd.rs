//! `mvdit sample`: images from a class-conditional training checkpoint, as a grid and one PNG
//! per sample; a model of latents (trained on `mvdit prepare` shards) has them decoded by the
//! autoencoder (`--vae`).

use crate::config::TrainConfig;
use crate::images::{save_grid, save_image};
use crate::sampler::{sample, Conditioner, SampleOptions};
use crate::trainer::CLASS_TABLE;
use mvdit_core::Backend;
use mvdit_model::checkpoint::parse_config;
use mvdit_model::{Dit, Error, Result, WeightFile};
use std::path::Path;

#[allow(clippy::too_many_arguments)]
pub fn run_sample<B: Backend>(
    be: &B,
    checkpoint: &Path,
    classes: &[u32],
    count: usize,
    ema: bool,
    opts: &SampleOptions,
    vae: Option<&Path>,
    out: &Path,
    npz: Option<&Path>,
) -> Result<()> {
    let at = |e: Error| e.context(checkpoint.display());
    // A file or a sharded checkpoint directory, read tensor by tensor through memory maps.
    let mut w = WeightFile::open(checkpoint)?;
    let metadata = w.metadata().clone();
    let meta = |k: &str| metadata.get(k).ok_or_else(|| at(Error::new(format!("metadata key `{k}` missing: not a mvdit training checkpoint"))));
    let model_cfg = parse_config(meta("config")?, "metadata key `config`").map_err(at)?;
    let cfg: TrainConfig = serde_json::from_str(meta("train_config")?).map_err(|e| at(Error::new(format!("metadata `train_config`: {e}"))))?;
    let names: Vec<String> = serde_json::from_str(meta("class_names")?).map_err(|e| at(Error::new(format!("metadata `class_names`: {e}"))))?;
    if count == 0 {
        return Err(Error::new("--count must be at least 1"));
    }
    if cfg.data.captions {
        return Err(Error::new(format!("{}: a caption-conditioned model: sample it with --prompt TEXT --text-encoder DIR --vae FILE", checkpoint.display())));
    }
    let ae = match (vae, cfg.data.shards.is_some()) {
        (Some(f), true) => Some(mvdit_model::Autoencoder::load(be, &mvdit_model::WeightFile::open(f)?)?),
        (None, true) => return Err(Error::new(format!("{}: the model makes latents of {} channels: give --vae FILE to decode them", checkpoint.display(), cfg.data.channels))),
        (Some(_), false) => return Err(Error::new(format!("{}: the model makes pixels; --vae is for models of latents", checkpoint.display()))),
        (None, false) => None,
    };
    if let Some(ae) = &ae {
        if ae.cfg.latent_channels() != cfg.data.channels {
            return Err(Error::new(format!("--vae: the autoencoder takes {} latent channels, the model makes {}", ae.cfg.latent_channels(), cfg.data.channels)));
        }
    }
    if let Some(&c) = classes.iter().find(|&&c| c as usize >= names.len()) {
        return Err(Error::new(format!("--class {c}: the checkpoint has {} classes (0..{})", names.len(), names.len().saturating_sub(1))));
    }
    let prefix = if ema { "ema." } else { "" };
    let layout = mvdit_core::Layout::new(&model_cfg);
    let table_name = format!("{prefix}{CLASS_TABLE}");
    for name in layout.specs.iter().map(|s| format!("{prefix}{}", s.name)).chain([table_name.clone()]) {
        if !w.contains(&name) {
            let hint = if ema && name != table_name { " (use --no-ema)" } else { "" };
            return Err(at(Error::new(format!("missing tensor `{name}`{hint}"))));
        }
    }
    if ema {
        w.prefer("ema.");
    }
    let params = mvdit_model::streamed::load_values(&w, &layout, 0..model_cfg.depth)?;
    let table = w.get(CLASS_TABLE, &[Some(names.len() + 1), None])?;
    let model = Dit::from_host(be, model_cfg.clone(), params)?;
    let table = be.upload(&table.data, &table.shape)?;
    let cond = Conditioner { table: &table, context_tokens: cfg.context_tokens, context_dim: model_cfg.context_dim };
    let classes: Vec<u32> = if classes.is_empty() { (0..names.len() as u32).collect() } else { classes.to_vec() };
    let labels: Vec<u32> = classes.iter().flat_map(|&c| std::iter::repeat_n(c, count)).collect();
    let (c, s) = (cfg.data.channels, cfg.data.image_size);
    let images = sample(be, &model, &cond, &labels, [c, s, s], opts)?;
    let (images, c, s) = match &ae {
        Some(ae) => (ae.decode(be, &images, [labels.len(), c, s, s])?, ae.cfg.out_channels, s * ae.cfg.factor()),
        None => (images, c, s),
    };
    std::fs::create_dir_all(out).map_err(|e| Error::new(format!("{}: cannot create: {e}", out.display())))?;
    let per = c * s * s;
    for (k, &label) in labels.iter().enumerate() {
        let path = out.join(format!("class{label}_{}.png", k % count));
        save_image(&path, &images[k * per..(k + 1) * per], c, s, s).map_err(|e| Error::new(e.to_string()))?;
    }
    save_grid(out.join("grid.png"), &images, c, s, s, count, 4).map_err(|e| Error::new(e.to_string()))?;
    if let Some(path) = npz {
        crate::npz::write_npz(path, &crate::npz::to_rgb_u8(&images, c, s, s), labels.len(), s, s)?;
    }
    eprintln!("wrote {} samples and grid.png to {}", labels.len(), out.display());
    Ok(())
}
