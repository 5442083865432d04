//! `mvdit samplers`: every sampler at several step counts on one class-conditional checkpoint,
//! measured against a many-step Heun reference and (pixel models) by the quality score; one JSON
//! line per setting on stdout, and `samplers.jsonl`, `error.png`, `quality.png` in --out.

use super::sample::GuidanceArgs;
use crate::backend_args::BackendArgs;
use mvdit_model::{Error, Result};
use mvdit_train::class_sample::{ClassOptions, ClassSampler};
use mvdit_train::sampler::Method;
use mvdit_train::sampler_study::{plot, run, StudyOptions};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SamplersArgs {
    /// A class-conditional training checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Samplers to measure (default: every one).
    #[arg(long, value_delimiter = ',')]
    pub samplers: Vec<Method>,
    /// Step counts.
    #[arg(long, value_delimiter = ',', default_value = "4,8,12,16,25,35")]
    pub steps: Vec<usize>,
    #[command(flatten)]
    pub guidance: GuidanceArgs,
    /// Steps of the Heun reference the errors are measured against.
    #[arg(long, default_value_t = 500)]
    pub reference_steps: usize,
    /// Images a setting samples (spread over the classes; the quality score takes them all).
    #[arg(long, default_value_t = 200)]
    pub images: usize,
    /// The noise seed (default: the one training's quality score uses).
    #[arg(long, default_value_t = mvdit_train::run::QUALITY_SEED)]
    pub seed: u64,
    /// The raw weights instead of their EMA.
    #[arg(long)]
    pub no_ema: bool,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn samplers_command(a: SamplersArgs) -> Result<()> {
    let g = &a.guidance;
    let cfg_interval = g.interval()?;
    let spec = a.backend.spec()?;
    let sampler = ClassSampler::open(&a.checkpoint, &ClassOptions { backend: spec, ema: !a.no_ema, vae: None })?;
    let d = sampler.sample_defaults();
    let o = StudyOptions {
        samplers: if a.samplers.is_empty() { Method::ALL.to_vec() } else { a.samplers },
        steps: a.steps,
        cfg_scale: g.cfg.unwrap_or(d.cfg_scale),
        cfg_interval,
        shift: g.shift.unwrap_or(d.shift),
        reference_steps: a.reference_steps,
        images: a.images,
        seed: a.seed,
        // The measured settings only; the reference computes every block.
        cache_threshold: g.cache_threshold.unwrap_or(0.0),
    };
    std::fs::create_dir_all(&a.out).map_err(|e| Error::new(format!("{}: cannot create: {e}", a.out.display())))?;
    eprintln!("reference: Heun, {} steps, guidance {}, shift {}, {} images", o.reference_steps, o.cfg_scale, o.shift, o.images);
    let mut lines = String::new();
    let (rows, scorer) = run(&sampler, &o, &mut |row| {
        let line = row.to_json().to_string();
        println!("{line}");
        let _ = std::io::stdout().flush();
        lines.push_str(&line);
        lines.push('\n');
    })?;
    mvdit_model::tensorfile::write_atomic(&a.out.join("samplers.jsonl"), lines.as_bytes())?;
    let guidance = match (o.cfg_scale, o.cfg_interval) {
        (c, _) if c == 1.0 => "unguided".to_string(),
        (c, None) => format!("guidance {c}"),
        (c, Some([lo, hi])) => format!("guidance {c} in [{lo}, {hi}]"),
    };
    plot(&rows, &a.out, &guidance)?;
    if let Some(s) = scorer {
        eprintln!("real floor: {:.3} (the normalised score of {} real images; vs_real = score / floor)", s.floor, o.images);
    }
    eprintln!("wrote samplers.jsonl and the plots to {}", a.out.display());
    Ok(())
}
