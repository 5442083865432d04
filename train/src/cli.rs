//! The `mvdit` command line: argument definitions and dispatch. Every failure is one line on
//! stderr and a non-zero exit; nothing here panics on bad input.

use clap::{Parser, Subcommand};
use mvdit_core::ModelConfig;
use mvdit_model::checkpoint::parse_config;
use mvdit_model::{Error, Result};
use crate::backends::{with_backend, with_devices, BackendArgs, BackendKind};
use crate::config::TrainConfig;
use crate::trainer::Placement;
use crate::sampler::{Method, SampleOptions};
use std::path::{Path, PathBuf};

mod vae;
pub use vae::VaeCommand;
use vae::vae_command;

#[derive(Parser)]
#[command(name = "mvdit", version, about = "Train and sample MV-Split Diffusion Transformers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List the GPU devices `--backend wgpu|vulkan --device N` can use.
    Devices,
    /// Train a class-conditional model (default: the bundled digits, preset `digits`).
    Train(TrainArgs),
    /// Exact parameter count, memory (optimiser, gradients, activations with and without block
    /// recompute), FLOPs per step and the fewest devices that hold a config with the depth split.
    Plan {
        /// Training config (TOML/JSON, as `mvdit train --config`) or a workload JSON (as `benches/`).
        #[arg(long)]
        config: PathBuf,
        /// Samples per step (default: the config's batch_size; 16 for a workload).
        #[arg(long)]
        batch: Option<usize>,
        /// Memory of one device, e.g. 80GB or 96GiB.
        #[arg(long, default_value = "80GB")]
        device_memory: String,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Time the trainer's step on a benchmark workload (benches/*.json), or one matrix
    /// product with --gemm; prints one JSON line.
    Bench(BenchArgs),
    /// Sample images: from a class-conditional training checkpoint (--class), or from prompts
    /// with a text-conditional model such as the released one (--prompt, --text-encoder, --vae).
    Sample {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Classes to draw (repeatable); default: every class.
        #[arg(long = "class")]
        classes: Vec<u32>,
        /// Images per class.
        #[arg(long, default_value_t = 8)]
        count: usize,
        /// A prompt (repeatable): text to image.
        #[arg(long = "prompt", conflicts_with_all = ["classes", "count"])]
        prompts: Vec<String>,
        /// A file of prompts, one per line.
        #[arg(long = "prompts", conflicts_with_all = ["classes", "count"])]
        prompts_file: Option<PathBuf>,
        /// The Qwen3 model directory (with --prompt).
        #[arg(long)]
        text_encoder: Option<PathBuf>,
        /// The FLUX.2 autoencoder file (with --prompt, or a class-conditional model of latents).
        #[arg(long)]
        vae: Option<PathBuf>,
        /// Image side in pixels (with --prompt).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Initial latents [B, C, size/16, size/16] (tensor `noise`) instead of the seed's (with --prompt).
        #[arg(long)]
        noise: Option<PathBuf>,
        /// Model config JSON for checkpoints without a `config` metadata key (with --prompt).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Memory for the DiT's weights, e.g. 8GB (with --prompt); a larger model streams
        /// its blocks from the memory-mapped file in every pass. Default: 80% of a GPU's own
        /// memory (Vulkan says it), else the host's available memory.
        #[arg(long)]
        max_memory: Option<String>,
        /// The dtype the DiT's weights are held in (with --prompt; compute stays f32): auto =
        /// as the checkpoint stores them (bf16 for the release), halving the memory of f32.
        #[arg(long, value_enum, default_value = "auto")]
        weights: crate::backends::WeightsArg,
        /// Euler steps (default 35 with --prompt as the release's sample.py, else 25).
        #[arg(long)]
        steps: Option<usize>,
        /// Classifier-free guidance scale (1 = conditional only; with --prompt, guidance only above 1).
        #[arg(long, default_value_t = 2.0)]
        cfg: f64,
        /// Time shift a in t·a/(1+(a−1)t).
        #[arg(long, default_value_t = 4.0)]
        shift: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Use a training checkpoint's raw weights instead of their EMA.
        #[arg(long)]
        no_ema: bool,
        /// Heun's second-order method instead of Euler.
        #[arg(long)]
        heun: bool,
        /// Also write every sample to this .npz (uint8 `arr_0` [N, H, W, 3], the ADM evaluation
        /// suite's input for FID/IS).
        #[arg(long)]
        npz: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// A PyTorch `.pt` state dict (the released model.pt) → an mvdit safetensors checkpoint.
    Convert(crate::convert_cmd::ConvertArgs),
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
        /// Round the weights to this dtype first (the numbers of a model held in 16 bits;
        /// compute stays f32); auto = f32 here.
        #[arg(long, value_enum, default_value = "f32")]
        weights: crate::backends::WeightsArg,
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
        /// Warn and crit levels of a live value, e.g. grad_norm=1,2 (repeatable; the keys and
        /// defaults are listed in docs/diagnostics.md and in the page).
        #[arg(long = "threshold", value_name = "KEY=WARN,CRIT")]
        thresholds: Vec<String>,
    },
    /// Last hidden states of prompts from a Qwen3 text encoder (a Hugging Face model directory):
    /// `context` [B, L, hidden] and `mask` [B, L] (1 token, 0 padding), one padded batch.
    EncodeText {
        /// Model directory: config.json, model.safetensors (or shards + index), tokenizer.json.
        #[arg(long)]
        encoder: PathBuf,
        /// A prompt (repeatable; "" is the empty prompt of guidance).
        #[arg(long = "prompt")]
        prompts: Vec<String>,
        /// A file of prompts, one per line.
        #[arg(long = "prompts")]
        prompts_file: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// An image folder to training shards: latents (and caption contexts, or class labels)
    /// with an index, resumable.
    Prepare {
        /// Images in class sub-folders, or a flat folder with --captions.
        #[arg(long)]
        images: PathBuf,
        /// The autoencoder's weights.
        #[arg(long)]
        vae: PathBuf,
        /// The text encoder's model directory (with --captions).
        #[arg(long)]
        text_encoder: Option<PathBuf>,
        /// JSON lines {"file": ..., "caption": ...}, files relative to --images.
        #[arg(long)]
        captions: Option<PathBuf>,
        /// Side of the square images are centre-cropped and resized to.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Also store each image mirrored.
        #[arg(long)]
        flip: bool,
        /// Samples per shard.
        #[arg(long, default_value_t = 2048)]
        shard_size: usize,
        /// Storage type of latents and contexts.
        #[arg(long, value_enum, default_value = "bf16")]
        dtype: crate::convert_cmd::OutDtype,
        /// Seed of the shuffle that spreads the images over the shards (training shuffles only
        /// within a few shards at a time, so class folders must not stay together).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The shard folder (shard-NNNNN.safetensors, shards.json, samples.jsonl, empty.safetensors).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// The FLUX.2 autoencoder: images ↔ the DiT's normalised latents.
    Vae {
        #[command(subcommand)]
        which: VaeCommand,
    },
    /// Built-in experiments; `mms`: post-norm vs LayerScale vs MV-Split on a deep narrow model.
    Experiment {
        #[command(subcommand)]
        which: crate::experiment::ExperimentCommand,
    },
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training config (TOML or JSON); overrides --preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Built-in preset: digits, deep1000, tiny.
    #[arg(long, default_value = "digits")]
    preset: String,
    /// Run directory (config, checkpoints, metrics.jsonl, samples, loss.png).
    #[arg(long, default_value = "runs/digits")]
    out: PathBuf,
    /// Train on a folder of images (one sub-folder per class) instead of the digits, or on a
    /// shard folder written by `mvdit prepare` (latents with labels or captions; its shapes
    /// and conditioning come from its shards.json).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Total steps (overrides the config).
    #[arg(long)]
    steps: Option<u64>,
    /// Continue from the latest checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Fine-tune: start from this checkpoint's model weights (config field `init`), fresh optimiser.
    #[arg(long)]
    init: Option<PathBuf>,
    /// No progress bar (log lines only).
    #[arg(long)]
    quiet: bool,
    /// Data-parallel runs (`mpirun -np N mvdit train ...`, feature `mpi`): megabytes of
    /// gradients per all-reduce bucket.
    #[arg(long, default_value_t = crate::dist::DEFAULT_BUCKET_MB)]
    bucket_mb: f64,
    /// Depth split: the blocks divided evenly over these devices, e.g. 0,1 (wgpu adapter
    /// indices, see `mvdit devices`; on the CPU backend one `Cpu` instance per entry sharing
    /// --threads). Checkpoints are the same as an unsplit run's.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<usize>,
    /// Micro-batches per step (GPipe schedule over the --devices stages; without --devices,
    /// gradient accumulation on one device).
    #[arg(long, default_value_t = 1)]
    micro_batches: usize,
    #[command(flatten)]
    backend: BackendArgs,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Workload JSON: model config + image_size + context_tokens (see benches/).
    #[arg(long, required_unless_present_any = ["gemm", "frozen"], conflicts_with_all = ["gemm", "frozen"])]
    config: Option<PathBuf>,
    /// Time a frozen network at its file's size instead: ae-decode, ae-encode (--vae FILE,
    /// --image-size) or text-encode (--text-encoder DIR, two prompts of --prompt-tokens).
    #[arg(long, value_enum, conflicts_with = "gemm")]
    frozen: Option<crate::bench_frozen::Frozen>,
    /// The autoencoder's weights for --frozen ae-decode|ae-encode.
    #[arg(long)]
    vae: Option<PathBuf>,
    /// The text encoder's model directory for --frozen text-encode.
    #[arg(long)]
    text_encoder: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    image_size: usize,
    #[arg(long, default_value_t = 32)]
    prompt_tokens: usize,
    /// Time one product y = x·Wᵀ (x: [M, K], W: [N, K]) through the linear layer instead of
    /// training steps: --steps products after --warmup, TFLOP/s (with --profile, the matmul
    /// kernels' own rate too), e.g. --gemm 8192,8192,8192.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    gemm: Option<Vec<usize>>,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Time inference forwards only.
    #[arg(long)]
    forward_only: bool,
    /// With --forward-only: the dtype the weights are held in (16 bits: unpacked to f32 per
    /// stage, as `sample --weights`).
    #[arg(long, value_enum, default_value = "f32")]
    weights: crate::backends::WeightsArg,
    /// Block recompute as the trainer's config field `recompute`: auto (keep what fits
    /// --activation-budget-mb, recompute the rest), all, none.
    #[arg(long, default_value = "auto")]
    recompute: crate::config::Recompute,
    /// Megabytes of block activations `--recompute auto` keeps (config field
    /// `activation_budget_mb`).
    #[arg(long, default_value_t = crate::config::DEFAULT_ACTIVATION_BUDGET_MB)]
    activation_budget_mb: usize,
    /// Depth split: the blocks divided evenly over these devices (wgpu adapter indices; on
    /// the CPU backend, one `Cpu` instance per entry sharing --threads), e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<usize>,
    /// Micro-batches per step with --devices (GPipe schedule).
    #[arg(long, default_value_t = 1)]
    micro_batches: usize,
    /// Draw the training batches from this shard set (`mvdit prepare`'s output, read as
    /// `train --data` reads it) instead of random images in memory; the workload's input must
    /// match its latents.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Per-kernel GPU time of the timed steps from timestamp queries (`--backend vulkan`):
    /// a sorted table on stderr and a "profile" list in the JSON line.
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// Reads a model config JSON file.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::new(format!("{}: cannot read: {e}", path.display())))?;
    parse_config(&text, &path.display().to_string())
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train_command(a),
        Command::Plan { config, batch, device_memory, json } => {
            let device = crate::plan::parse_size(&device_memory).map_err(|e| e.context("--device-memory"))?;
            let plan = crate::plan::Plan::new(crate::plan::PlanInput::read(&config, batch)?)?;
            if json {
                println!("{}", plan.to_json(device)?);
            } else {
                print!("{}", plan.render(device)?);
            }
            Ok(())
        }
        Command::Bench(a) => bench_command(a),
        Command::Sample { checkpoint, classes, count, prompts, prompts_file, text_encoder, vae, size, noise, config, max_memory, weights, steps, cfg, shift, seed, no_ema, heun, npz, out, backend } => {
            let method = if heun { Method::Heun } else { Method::Euler };
            let text = !prompts.is_empty() || prompts_file.is_some();
            let steps = steps.unwrap_or(if text { 35 } else { 25 });
            if steps == 0 {
                return Err(Error::new("--steps must be at least 1"));
            }
            let opts = SampleOptions { steps, cfg_scale: cfg, shift, seed, method };
            if !text && weights != crate::backends::WeightsArg::Auto {
                return Err(Error::new("--weights applies to --prompt sampling (class-conditional checkpoints sample in f32)"));
            }
            if !text {
                return with_backend!(backend, |be| crate::sample_cmd::run_sample(&be, &checkpoint, &classes, count, !no_ema, &opts, vae.as_deref(), &out, npz.as_deref()));
            }
            let need = |p: Option<PathBuf>, flag: &str| p.ok_or_else(|| Error::new(format!("--prompt needs {flag}")));
            let job = crate::text_sample::TextSample {
                checkpoint,
                config: config.as_deref().map(read_config).transpose()?,
                text_encoder: need(text_encoder, "--text-encoder DIR")?,
                vae: need(vae, "--vae FILE")?,
                prompts: crate::frozen_cmd::gather_prompts(&prompts, prompts_file.as_deref())?,
                size,
                noise,
                npz,
                max_memory: max_memory.map(|m| crate::plan::parse_size(&m).map_err(|e| e.context("--max-memory"))).transpose()?.map(|m| m as usize),
                weights,
                ema: !no_ema,
                out,
            };
            with_backend!(backend, |be| crate::text_sample::run_text_sample(&be, &job, &opts))
        }
        Command::Eval { checkpoint, inputs, out, config, grad, weights, backend } => {
            let cfg = config.as_deref().map(read_config).transpose()?;
            with_backend!(backend, |be| crate::eval::run(&be, &checkpoint, &inputs, &out, cfg.as_ref(), grad, weights.dtype()))
        }
        Command::Convert(a) => crate::convert_cmd::run(a),
        Command::Devices => devices_command(),
        Command::Report { runs, out, figures, title, thresholds } => {
            let th = crate::report::signals::Thresholds::with_overrides(&thresholds)?;
            crate::report::write_report(&runs, &out, &title, &th, figures.as_deref())?;
            eprintln!("report: {}", out.display());
            Ok(())
        }
        Command::EncodeText { encoder, prompts, prompts_file, out, backend } => {
            let prompts = crate::frozen_cmd::gather_prompts(&prompts, prompts_file.as_deref())?;
            with_backend!(backend, |be| crate::frozen_cmd::encode_text(&be, &encoder, &prompts, &out))
        }
        Command::Vae { which } => vae_command(which),
        Command::Prepare { images, vae, text_encoder, captions, size, flip, shard_size, dtype, seed, out, backend } => {
            let a = crate::prepare::PrepareArgs { images, vae, text_encoder, captions, size, flip, shard_size, dtype: dtype.into(), seed, out };
            with_backend!(backend, |be| crate::prepare::run_prepare(&be, &a))
        }
        Command::Experiment { which } => crate::experiment::run_command(which),
    }
}

/// `mvdit train`: the config (file or preset, then the flags that override it), then
/// [`train_on`].
fn train_command(a: TrainArgs) -> Result<()> {
    let TrainArgs { config, preset, out, data, steps, resume, init, quiet, bucket_mb, devices, micro_batches, backend } = a;
    let mut cfg = match &config {
        Some(path) => TrainConfig::read(path)?,
        None => crate::config::preset(&preset)?,
    };
    match data {
        // A shard set (`mvdit prepare`'s output) carries its own shapes and conditioning.
        Some(dir) if dir.join("shards.json").is_file() => crate::run::adopt_shards(&mut cfg, &dir)?,
        Some(dir) => {
            cfg.data.folder = Some(dir);
            cfg.data.shards = None;
        }
        None => {}
    }
    if let Some(n) = steps {
        cfg.steps = n;
    }
    if init.is_some() {
        cfg.init = init;
    }
    cfg.validate()?;
    if !(bucket_mb > 0.0 && bucket_mb.is_finite()) {
        return Err(Error::new(format!("--bucket-mb must be a positive number, got {bucket_mb}")));
    }
    let split = Split { devices, micro_batches };
    train_on(cfg, &out, resume, quiet, crate::dist::bucket_elems(bucket_mb), split, backend)
}

/// `mvdit bench`: one matrix product (`--gemm`) or the trainer's step on a workload, on one
/// device or split by depth (`--devices`); one JSON line on stdout.
fn bench_command(a: BenchArgs) -> Result<()> {
    let BenchArgs { config, gemm, frozen, vae, text_encoder, image_size, prompt_tokens, batch, steps, warmup, forward_only, weights, recompute, activation_budget_mb, devices, micro_batches, data, profile, backend } = a;
    if batch == 0 || steps == 0 {
        return Err(Error::new("--batch and --steps must be at least 1"));
    }
    if profile && backend.backend != BackendKind::Vulkan {
        return Err(Error::new("--profile needs --backend vulkan (GPU timestamps)"));
    }
    let opts = crate::bench::BenchOptions { batch, steps, warmup, forward_only, recompute, activation_budget_mb, weights: weights.dtype(), data };
    if (frozen.is_some() || gemm.is_some()) && weights.dtype().is_some_and(|d| d != mvdit_core::dtype::Dtype::F32) {
        return Err(Error::new("--weights applies to the DiT's --forward-only bench, not --frozen or --gemm"));
    }
    if let Some(which) = frozen {
        let inputs = crate::bench_frozen::FrozenInputs { vae: vae.as_deref(), text_encoder: text_encoder.as_deref(), image_size, prompt_tokens };
        println!("{}", with_backend!(backend, |be| crate::bench_frozen::bench_frozen(&be, which, &inputs, &opts)?));
        return Ok(());
    }
    if let Some(dims) = gemm {
        let &[m, n, k] = dims.as_slice() else {
            return Err(Error::new(format!("--gemm: expected M,N,K (three sizes), got {} values", dims.len())));
        };
        if m == 0 || n == 0 || k == 0 {
            return Err(Error::new("--gemm: every size must be at least 1"));
        }
        let line = if profile {
            let be = mvdit_backend_vulkan::open_with(&backend.vulkan_options(backend.device)?)?;
            crate::bench::bench_gemm_vulkan_profiled(&be, (m, n, k), &opts)?
        } else {
            with_backend!(backend, |be| crate::bench::bench_gemm(&be, (m, n, k), &opts, &mut || Ok(()))?)
        };
        println!("{line}");
        return Ok(());
    }
    let config = config.ok_or_else(|| Error::new("--config or --gemm is required"))?;
    let w = crate::config::Workload::read(&config)?;
    let name = config.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    if !devices.is_empty() {
        println!("{}", bench_split_command(&w, &name, &opts, &devices, micro_batches, &backend)?);
        return Ok(());
    }
    let threads = if backend.backend == BackendKind::Cpu { backend.cpu_options(backend.threads)?.thread_count() } else { 0 };
    let line = if profile {
        let be = mvdit_backend_vulkan::open_with(&backend.vulkan_options(backend.device)?)?;
        crate::bench::bench_vulkan_profiled(&be, &w, &name, &opts)?
    } else {
        with_backend!(backend, |be| crate::bench::bench(&be, &w, &name, threads, &opts)?)
    };
    println!("{line}");
    Ok(())
}

/// `mvdit devices`.
fn devices_command() -> Result<()> {
    let lists = [("wgpu", mvdit_backend_wgpu::Wgpu::adapters()), ("vulkan", mvdit_backend_vulkan::Vulkan::devices())];
    if lists.iter().all(|(_, names)| names.is_empty()) {
        return Err(Error::new("no GPU device found (install a Vulkan driver, e.g. mesa-vulkan-drivers)"));
    }
    for (backend, names) in lists {
        println!("--backend {backend}:");
        for (i, n) in names.iter().enumerate() {
            println!("  {i}: {n}");
        }
    }
    Ok(())
}

/// `mvdit bench --devices`: one backend instance per listed device.
fn bench_split_command(w: &crate::config::Workload, name: &str, o: &crate::bench::BenchOptions, devices: &[usize], micro: usize, args: &BackendArgs) -> Result<serde_json::Value> {
    with_devices!(args, devices, |bes| crate::bench::bench_with(Placement { devices: bes, micro_batches: micro }, w, name, 0, o, &mut || Ok(())))
}

/// `mvdit train --devices D --micro-batches M`.
struct Split {
    devices: Vec<usize>,
    micro_batches: usize,
}

/// Trains `cfg` in one process (the model on one device or split by depth over --devices), or
/// as one rank of `mpirun -np N` (feature `mpi`).
fn train_on(cfg: TrainConfig, out: &Path, resume: bool, quiet: bool, bucket_elems: usize, split: Split, backend: BackendArgs) -> Result<()> {
    if split.micro_batches == 0 {
        return Err(Error::new("--micro-batches must be at least 1"));
    }
    if !split.devices.is_empty() && backend.device.is_some() {
        return Err(Error::new("--devices and --device: give one (--devices lists the adapter of every depth stage)"));
    }
    if crate::dist::under_mpi_launcher() {
        return train_mpi(cfg, out, resume, quiet, bucket_elems, split, backend);
    }
    let micro_batches = split.micro_batches;
    if split.devices.is_empty() {
        return with_backend!(backend, |be| crate::progress::run_train(Placement { devices: vec![&be], micro_batches }, out, cfg, resume, quiet));
    }
    with_devices!(backend, split.devices, |bes| crate::progress::run_train(Placement { devices: bes, micro_batches }, out, cfg, resume, quiet))
}

/// One rank of `mpirun -np R mvdit train`: data parallelism over the ranks, each rank holding
/// the whole model on one device or, with --devices, a depth-split pipeline over several.
#[cfg(feature = "mpi")]
fn train_mpi(cfg: TrainConfig, out: &Path, resume: bool, quiet: bool, bucket_elems: usize, split: Split, mut backend: BackendArgs) -> Result<()> {
    use crate::dist::Comm;
    let comm = crate::dist::mpi::MpiComm::init()?;
    // One rank per GPU: without --device, rank k on a node takes that node's adapter k.
    if backend.backend == BackendKind::Wgpu && backend.device.is_none() && split.devices.is_empty() {
        backend.device = crate::dist::local_rank();
    }
    let dist = crate::dist::Dist { comm: &comm, bucket_elems };
    let micro_batches = split.micro_batches;
    let run = || -> Result<bool> {
        if split.devices.is_empty() {
            return with_backend!(backend, |be| crate::progress::run_train_dist(Placement { devices: vec![&be], micro_batches }, out, cfg, resume, quiet, &dist));
        }
        with_devices!(backend, split.devices, |bes| crate::progress::run_train_dist(Placement { devices: bes, micro_batches }, out, cfg, resume, quiet, &dist))
    };
    match run() {
        Ok(interrupted) => {
            drop(comm); // MPI_Finalize before exiting
            if interrupted {
                std::process::exit(130);
            }
            Ok(())
        }
        Err(e) => {
            // Without MPI_Abort the other ranks would wait for this one forever.
            eprintln!("error (rank {}): {e}", comm.rank());
            comm.abort(1)
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn train_mpi(cfg: TrainConfig, out: &Path, resume: bool, quiet: bool, _: usize, split: Split, backend: BackendArgs) -> Result<()> {
    match crate::dist::launcher_size() {
        Some(size) if size > 1 => Err(Error::new(format!(
            "started by mpirun as one of {size} ranks, but this mvdit was built without MPI; rebuild with \
             `cargo build --release -p mvdit-train --features mpi` (needs openmpi-bin libopenmpi-dev libclang-dev)"
        ))),
        // `mpirun -np 1`: one process is all there is.
        _ if split.devices.is_empty() => {
            with_backend!(backend, |be| crate::progress::run_train(Placement { devices: vec![&be], micro_batches: split.micro_batches }, out, cfg, resume, quiet))
        }
        _ => with_devices!(backend, split.devices, |bes| crate::progress::run_train(Placement { devices: bes, micro_batches: split.micro_batches }, out, cfg, resume, quiet)),
    }
}
