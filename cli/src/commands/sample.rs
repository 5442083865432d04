//! `mvdit sample`: class labels through [`ClassSampler`], or prompts through [`TextToImage`].

use crate::backend_args::{BackendArgs, WeightsArg};
use mvdit_model::{Error, Result, TensorFile};
use mvdit_train::class_sample::{ClassOptions, ClassSampler};
use mvdit_train::config::{SampleConfig, SampleRequest};
use mvdit_train::sampler::{Method, SampleOptions};
use mvdit_train::text_to_image::{TextSettings, TextToImage, TextToImageOptions};
use std::path::PathBuf;

/// The guidance, time-grid and caching flags of `mvdit sample` and `mvdit samplers`.
#[derive(clap::Args)]
pub struct GuidanceArgs {
    /// Classifier-free guidance scale (1 = conditional only; with --prompt, guidance only above
    /// 1). Default: the checkpoint's `sample` section.
    #[arg(long)]
    pub cfg: Option<f64>,
    /// Guidance only for t in [LO, HI] (e.g. 0.1,0.9); one model evaluation a step elsewhere.
    #[arg(long, value_name = "LO,HI", value_delimiter = ',', allow_hyphen_values = true)]
    pub cfg_interval: Option<Vec<f64>>,
    /// Time shift a in t·a/(1+(a−1)t). Default: the checkpoint's.
    #[arg(long)]
    pub shift: Option<f64>,
    /// Step caching: reuse a block's update while its input moved less than this (relative
    /// RMS) since it was computed; 0 = off, exact. Models held whole (not streamed). Default:
    /// the checkpoint's for `sample`, 0 for `samplers`.
    #[arg(long)]
    pub cache_threshold: Option<f64>,
}

impl GuidanceArgs {
    /// `--cfg-interval LO,HI`: two numbers, an interval within [0, 1].
    pub fn interval(&self) -> Result<Option<[f64; 2]>> {
        match self.cfg_interval.as_deref() {
            None => Ok(None),
            Some(&[lo, hi]) => {
                mvdit_train::config::check_cfg_interval([lo, hi]).map_err(|e| Error::new(format!("--cfg-interval {e}")))?;
                Ok(Some([lo, hi]))
            }
            Some(v) => Err(Error::new(format!("--cfg-interval takes two numbers LO,HI, got {}", v.len()))),
        }
    }
}

#[derive(clap::Args)]
pub struct SampleArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Classes to draw (repeatable); default: every class.
    #[arg(long = "class")]
    pub classes: Vec<u32>,
    /// Images per class.
    #[arg(long, default_value_t = 8)]
    pub count: usize,
    /// A prompt (repeatable): text to image.
    #[arg(long = "prompt", conflicts_with_all = ["classes", "count"])]
    pub prompts: Vec<String>,
    /// A file of prompts, one per line.
    #[arg(long = "prompts", conflicts_with_all = ["classes", "count"])]
    pub prompts_file: Option<PathBuf>,
    /// The Qwen3 model directory (with --prompt).
    #[arg(long)]
    pub text_encoder: Option<PathBuf>,
    /// The FLUX.2 autoencoder file (with --prompt, or a class-conditional model of latents).
    #[arg(long)]
    pub vae: Option<PathBuf>,
    /// Image side in pixels (with --prompt).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Initial latents [B, C, size/16, size/16] (tensor `noise`) instead of the seed's (with --prompt).
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Model config JSON for checkpoints without a `config` metadata key (with --prompt).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Memory for the DiT's weights, e.g. 8GB (with --prompt); a larger model streams
    /// its blocks from the memory-mapped file in every pass. Default: 80% of a GPU's own
    /// memory (Vulkan says it), else the host's available memory.
    #[arg(long)]
    pub max_memory: Option<String>,
    /// The dtype the DiT's weights are held in (with --prompt; compute stays f32): auto =
    /// as the checkpoint stores them (bf16 for the release), halving the memory of f32.
    #[arg(long, value_enum, default_value = "auto")]
    pub weights: WeightsArg,
    /// Steps. This and the other sampler flags default to the checkpoint's `sample` section
    /// (the settings it was trained to be sampled and scored with); for a checkpoint without
    /// one (the release), to the official sample.py: 35 Euler steps, guidance 2, shift 4.
    #[arg(long)]
    pub steps: Option<usize>,
    /// The sampler: euler, heun (two evaluations a step), dpm2m, dpm3m (DPM-Solver++
    /// multistep), ab2, ab3 (Adams–Bashforth in t), sde (the reverse SDE, seeded).
    #[arg(long, conflicts_with = "heun")]
    pub sampler: Option<Method>,
    #[command(flatten)]
    pub guidance: GuidanceArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use a training checkpoint's raw weights instead of their EMA.
    #[arg(long)]
    pub no_ema: bool,
    /// The same as --sampler heun.
    #[arg(long)]
    pub heun: bool,
    /// Also write every sample to this .npz (uint8 `arr_0` [N, H, W, 3], the ADM evaluation
    /// suite's input for FID/IS).
    #[arg(long)]
    pub npz: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn sample_command(a: SampleArgs) -> Result<()> {
    let text = !a.prompts.is_empty() || a.prompts_file.is_some();
    let g = &a.guidance;
    let request = SampleRequest { steps: a.steps, cfg_scale: g.cfg, shift: g.shift, sampler: if a.heun { Some(Method::Heun) } else { a.sampler }, cfg_interval: g.interval()?, cache_threshold: g.cache_threshold };
    // The flags alone, checked before any file is read.
    request.resolve(&SampleConfig::release(), a.seed)?;
    if !text && a.weights != WeightsArg::Auto {
        return Err(Error::new("--weights applies to --prompt sampling (class-conditional checkpoints sample in f32)"));
    }
    let spec = a.backend.spec()?;
    if !text {
        if a.count == 0 {
            return Err(Error::new("--count must be at least 1"));
        }
        let sampler = ClassSampler::open(&a.checkpoint, &ClassOptions { backend: spec, ema: !a.no_ema, vae: a.vae.clone() })?;
        let opts = settings(&request, sampler.sample_defaults(), a.seed)?;
        let images = sampler.generate(&a.classes, a.count, &opts.0)?;
        images.save(&a.out, a.npz.as_deref())?;
        write_settings(&a.out, &opts)?;
        if let Some(f) = images.cache_skipped {
            eprintln!("step caching skipped {:.1}% of the block evaluations", 100.0 * f);
        }
        eprintln!("wrote {} samples and grid.png to {}", images.labels.len(), a.out.display());
        return Ok(());
    }
    let need = |p: Option<PathBuf>, flag: &str| p.ok_or_else(|| Error::new(format!("--prompt needs {flag}")));
    let prompts = mvdit_train::frozen::gather_prompts(&a.prompts, a.prompts_file.as_deref())?;
    let text_encoder = need(a.text_encoder, "--text-encoder DIR")?;
    let vae = need(a.vae, "--vae FILE")?;
    let options = TextToImageOptions {
        backend: spec,
        config: a.config.as_deref().map(mvdit_train::config::read_model_config).transpose()?,
        max_memory: a.max_memory.map(|m| mvdit_train::plan::parse_size(&m).map_err(|e| e.context("--max-memory"))).transpose()?.map(|m| m as usize),
        weights: a.weights.into(),
        ema: !a.no_ema,
    };
    let pipeline = TextToImage::open(&a.checkpoint, &text_encoder, &vae, &options)?;
    // Bad flags are refused in one line, before anything else is said.
    let [c, h, w] = pipeline.latent_shape(a.size)?;
    let noise = match &a.noise {
        Some(p) => {
            let t = TensorFile::read(p)?;
            let want = [Some(prompts.len()), Some(c), Some(h), Some(w)];
            Some(t.expect("noise", &want).map_err(|e| e.context(p.display()))?.data.clone())
        }
        None => None,
    };
    for note in pipeline.notes() {
        eprintln!("{note}");
    }
    let opts = settings(&request, pipeline.sample_defaults(), a.seed)?;
    let images = pipeline.generate(&prompts, &TextSettings { sample: opts.0.clone(), size: a.size, noise })?;
    for note in &images.notes {
        eprintln!("{note}");
    }
    images.save_text(&a.out, &prompts, a.npz.as_deref())?;
    write_settings(&a.out, &opts)?;
    eprintln!("wrote {} images ({s}x{s}) and latents.safetensors to {}", images.count, a.out.display(), s = images.side);
    Ok(())
}

/// The flags over the checkpoint's settings, said in one line.
fn settings(request: &SampleRequest, defaults: &SampleConfig, seed: u64) -> Result<(SampleOptions, Vec<&'static str>)> {
    let (opts, from) = request.resolve(defaults, seed)?;
    let source = if from.is_empty() { String::new() } else { format!(" ({} from the checkpoint)", from.join(", ")) };
    eprintln!("sampling: {}{source}", opts.describe());
    Ok((opts, from))
}

/// `sampling.json` beside the images: the settings used.
fn write_settings(out: &std::path::Path, (opts, from): &(SampleOptions, Vec<&'static str>)) -> Result<()> {
    let text = serde_json::to_string_pretty(&opts.to_json(from)).map_err(|e| Error::new(e.to_string()))?;
    mvdit_model::tensorfile::write_atomic(&out.join("sampling.json"), text.as_bytes())
}
