//! The `mvdit` command line: argument definitions and dispatch. Every failure is one line on
//! stderr and a non-zero exit; nothing here panics on bad input.

use clap::{Parser, Subcommand, ValueEnum};
use mvdit_backend_cpu::Cpu;
use mvdit_core::{Backend, ModelConfig};
use mvdit_model::checkpoint::parse_config;
use mvdit_model::{load_checkpoint, Dit, Error, Result};
use crate::config::TrainConfig;
use crate::sampler::{Method, SampleOptions};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "mvdit", version, about = "Train and sample MV-Split Diffusion Transformers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    Cpu,
}

#[derive(clap::Args, Clone, Debug)]
pub struct BackendArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a class-conditional model (default: the bundled digits, preset `digits`).
    Train {
        /// Training config (TOML or JSON); overrides --preset.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Built-in preset: digits, deep1000, tiny.
        #[arg(long, default_value = "digits")]
        preset: String,
        /// Run directory (config, checkpoints, metrics.jsonl, samples, loss.png).
        #[arg(long, default_value = "runs/digits")]
        out: PathBuf,
        /// Train on a folder of images (one sub-folder per class) instead of the digits.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Total steps (overrides the config).
        #[arg(long)]
        steps: Option<u64>,
        /// Continue from the latest checkpoint in --out.
        #[arg(long)]
        resume: bool,
        /// No progress bar (log lines only).
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Sample images from a training checkpoint.
    Sample {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Classes to draw (repeatable); default: every class.
        #[arg(long = "class")]
        classes: Vec<u32>,
        /// Images per class.
        #[arg(long, default_value_t = 8)]
        count: usize,
        #[arg(long, default_value_t = 25)]
        steps: usize,
        /// Classifier-free guidance scale (1 = conditional only).
        #[arg(long, default_value_t = 2.0)]
        cfg: f64,
        /// Time shift a in t·a/(1+(a−1)t).
        #[arg(long, default_value_t = 4.0)]
        shift: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Use the raw weights instead of their EMA.
        #[arg(long)]
        no_ema: bool,
        /// Heun's second-order method instead of Euler.
        #[arg(long)]
        heun: bool,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Velocity of a checkpoint on inputs; with --grad also the loss and every parameter gradient.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        /// safetensors with input.x [B,C,H,W], input.context [B,Lt,context_dim] (and input.target for --grad).
        #[arg(long)]
        inputs: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Model config JSON, for checkpoints without a `config` metadata key (overrides it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also write output.loss and grad.<parameter> for every parameter.
        #[arg(long)]
        grad: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// One self-contained interactive HTML page (loss, diagnostics, heat maps, MMS events) of runs.
    Report {
        /// Run directories (each with metrics.jsonl and, when diagnostics were on, diagnostics.jsonl).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
        /// Also write PNG figures (loss, deep G_mean/G_ctr and TCS, heat maps) into this folder.
        #[arg(long)]
        figures: Option<PathBuf>,
        #[arg(long, default_value = "mvdit report")]
        title: String,
    },
    /// Built-in experiments; `mms`: post-norm vs LayerScale vs MV-Split on a deep narrow model.
    Experiment {
        #[command(subcommand)]
        which: crate::experiment::ExperimentCommand,
    },
}

/// Reads a model config JSON file.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::new(format!("{}: cannot read: {e}", path.display())))?;
    parse_config(&text, &path.display().to_string())
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { config, preset, out, data, steps, resume, quiet, backend } => {
            let mut cfg = match &config {
                Some(path) => TrainConfig::read(path)?,
                None => crate::config::preset(&preset)?,
            };
            if let Some(dir) = data {
                cfg.data.folder = Some(dir);
            }
            if let Some(n) = steps {
                cfg.steps = n;
            }
            cfg.validate()?;
            let be = make_cpu(&backend);
            crate::progress::run_train(&be, &out, cfg, resume, quiet)
        }
        Command::Sample { checkpoint, classes, count, steps, cfg, shift, seed, no_ema, heun, out, backend } => {
            let be = make_cpu(&backend);
            let method = if heun { Method::Heun } else { Method::Euler };
            let opts = SampleOptions { steps, cfg_scale: cfg, shift, seed, method };
            crate::sample_cmd::run_sample(&be, &checkpoint, &classes, count, !no_ema, &opts, &out)
        }
        Command::Eval { checkpoint, inputs, out, config, grad, backend } => {
            let be = make_cpu(&backend);
            run_eval(&be, &checkpoint, &inputs, &out, config.as_deref(), grad)
        }
        Command::Report { runs, out, figures, title } => {
            crate::report::write_report(&runs, &out, &title, figures.as_deref())?;
            eprintln!("report: {}", out.display());
            Ok(())
        }
        Command::Experiment { which } => crate::experiment::run_command(which),
    }
}

pub(crate) fn make_cpu(args: &BackendArgs) -> Cpu {
    match args.backend {
        BackendKind::Cpu => Cpu::new(args.threads),
    }
}

fn run_eval<B: Backend>(be: &B, checkpoint: &Path, inputs: &Path, out: &Path, config: Option<&Path>, grad: bool) -> Result<()> {
    let cfg = config.map(read_config).transpose()?;
    let ck = load_checkpoint(checkpoint, cfg.as_ref())?;
    let model = Dit::from_host(be, ck.cfg, ck.params).map_err(|e| e.context(checkpoint.display()))?;
    let input_file = mvdit_model::TensorFile::read(inputs)?;
    let result = crate::eval::eval(be, &model, &input_file, inputs, grad)?;
    result.write(out)
}
