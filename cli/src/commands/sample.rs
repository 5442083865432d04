//! `mvdit sample`: class labels through [`ClassSampler`], or prompts through [`TextToImage`].

use crate::args::SampleArgs;
use crate::backend_args::WeightsArg;
use mvdit_model::{Error, Result, TensorFile};
use mvdit_train::class_sample::{ClassOptions, ClassSampler};
use mvdit_train::sampler::{Method, SampleOptions};
use mvdit_train::text_to_image::{TextSettings, TextToImage, TextToImageOptions};
use std::path::PathBuf;

pub fn sample_command(a: SampleArgs) -> Result<()> {
    let method = if a.heun { Method::Heun } else { Method::Euler };
    let text = !a.prompts.is_empty() || a.prompts_file.is_some();
    let steps = a.steps.unwrap_or(if text { 35 } else { 25 });
    if steps == 0 {
        return Err(Error::new("--steps must be at least 1"));
    }
    let opts = SampleOptions { steps, cfg_scale: a.cfg, shift: a.shift, seed: a.seed, method };
    if !text && a.weights != WeightsArg::Auto {
        return Err(Error::new("--weights applies to --prompt sampling (class-conditional checkpoints sample in f32)"));
    }
    let spec = a.backend.spec()?;
    if !text {
        if a.count == 0 {
            return Err(Error::new("--count must be at least 1"));
        }
        let sampler = ClassSampler::open(&spec, &a.checkpoint, &ClassOptions { ema: !a.no_ema, vae: a.vae.clone() })?;
        let images = sampler.generate(&a.classes, a.count, &opts)?;
        images.save(&a.out, a.npz.as_deref())?;
        eprintln!("wrote {} samples and grid.png to {}", images.labels.len(), a.out.display());
        return Ok(());
    }
    let need = |p: Option<PathBuf>, flag: &str| p.ok_or_else(|| Error::new(format!("--prompt needs {flag}")));
    let prompts = mvdit_train::frozen::gather_prompts(&a.prompts, a.prompts_file.as_deref())?;
    let text_encoder = need(a.text_encoder, "--text-encoder DIR")?;
    let vae = need(a.vae, "--vae FILE")?;
    let options = TextToImageOptions {
        config: a.config.as_deref().map(mvdit_train::config::read_model_config).transpose()?,
        max_memory: a.max_memory.map(|m| mvdit_train::plan::parse_size(&m).map_err(|e| e.context("--max-memory"))).transpose()?.map(|m| m as usize),
        weights: a.weights.into(),
        ema: !a.no_ema,
    };
    let pipeline = TextToImage::open(&spec, &a.checkpoint, &text_encoder, &vae, &options)?;
    for note in pipeline.notes() {
        eprintln!("{note}");
    }
    let [c, h, w] = pipeline.latent_shape(a.size)?;
    let noise = match &a.noise {
        Some(p) => {
            let t = TensorFile::read(p)?;
            let want = [Some(prompts.len()), Some(c), Some(h), Some(w)];
            Some(t.expect("noise", &want).map_err(|e| e.context(p.display()))?.data.clone())
        }
        None => None,
    };
    let images = pipeline.generate(&prompts, &TextSettings { sample: opts, size: a.size, noise })?;
    for note in &images.notes {
        eprintln!("{note}");
    }
    images.save_text(&a.out, &prompts, a.npz.as_deref())?;
    eprintln!("wrote {} images ({s}x{s}) and latents.safetensors to {}", images.count, a.out.display(), s = images.side);
    Ok(())
}
