//! The `mvdit` command line's arguments: every command and flag, with its help text. The
//! commands themselves are in `commands/`.

use crate::backend_args::{BackendArgs, WeightsArg};
use crate::commands::experiment::ExperimentCommand;
use crate::commands::vae::VaeCommand;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
    Sample(SampleArgs),
    /// A PyTorch `.pt` state dict (the released model.pt) → an mvdit safetensors checkpoint.
    Convert(crate::commands::convert::ConvertArgs),
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
        weights: WeightsArg,
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
        dtype: crate::commands::convert::OutDtype,
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
        which: ExperimentCommand,
    },
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training config (TOML or JSON); overrides --preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Built-in preset: digits, deep1000, tiny.
    #[arg(long, default_value = "digits")]
    pub preset: String,
    /// Run directory (config, checkpoints, metrics.jsonl, samples, loss.png).
    #[arg(long, default_value = "runs/digits")]
    pub out: PathBuf,
    /// Train on a folder of images (one sub-folder per class) instead of the digits, or on a
    /// shard folder written by `mvdit prepare` (latents with labels or captions; its shapes
    /// and conditioning come from its shards.json).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Total steps (overrides the config).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Continue from the latest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Fine-tune: start from this checkpoint's model weights (config field `init`), fresh optimiser.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// No progress bar (log lines only).
    #[arg(long)]
    pub quiet: bool,
    /// Data-parallel runs (`mpirun -np N mvdit train ...`, feature `mpi`): megabytes of
    /// gradients per all-reduce bucket.
    #[arg(long, default_value_t = mvdit_train::dist::DEFAULT_BUCKET_MB)]
    pub bucket_mb: f64,
    /// Depth split: the blocks divided evenly over these devices, e.g. 0,1 (wgpu adapter
    /// indices, see `mvdit devices`; on the CPU backend one `Cpu` instance per entry sharing
    /// --threads). Checkpoints are the same as an unsplit run's.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<usize>,
    /// Micro-batches per step (GPipe schedule over the --devices stages; without --devices,
    /// gradient accumulation on one device).
    #[arg(long, default_value_t = 1)]
    pub micro_batches: usize,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Workload JSON: model config + image_size + context_tokens (see benches/).
    #[arg(long, required_unless_present_any = ["gemm", "frozen"], conflicts_with_all = ["gemm", "frozen"])]
    pub config: Option<PathBuf>,
    /// Time a frozen network at its file's size instead: ae-decode, ae-encode (--vae FILE,
    /// --image-size) or text-encode (--text-encoder DIR, two prompts of --prompt-tokens).
    #[arg(long, value_enum, conflicts_with = "gemm")]
    pub frozen: Option<crate::commands::bench::FrozenArg>,
    /// The autoencoder's weights for --frozen ae-decode|ae-encode.
    #[arg(long)]
    pub vae: Option<PathBuf>,
    /// The text encoder's model directory for --frozen text-encode.
    #[arg(long)]
    pub text_encoder: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    pub image_size: usize,
    #[arg(long, default_value_t = 32)]
    pub prompt_tokens: usize,
    /// Time one product y = x·Wᵀ (x: [M, K], W: [N, K]) through the linear layer instead of
    /// training steps: --steps products after --warmup, TFLOP/s (with --profile, the matmul
    /// kernels' own rate too), e.g. --gemm 8192,8192,8192.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub gemm: Option<Vec<usize>>,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Time inference forwards only.
    #[arg(long)]
    pub forward_only: bool,
    /// With --forward-only: the dtype the weights are held in (16 bits: unpacked to f32 per
    /// stage, as `sample --weights`).
    #[arg(long, value_enum, default_value = "f32")]
    pub weights: WeightsArg,
    /// Block recompute as the trainer's config field `recompute`: auto (keep what fits
    /// --activation-budget-mb, recompute the rest), all, none.
    #[arg(long, default_value = "auto")]
    pub recompute: mvdit_train::config::Recompute,
    /// Megabytes of block activations `--recompute auto` keeps (config field
    /// `activation_budget_mb`).
    #[arg(long, default_value_t = mvdit_train::config::DEFAULT_ACTIVATION_BUDGET_MB)]
    pub activation_budget_mb: usize,
    /// Depth split: the blocks divided evenly over these devices (wgpu adapter indices; on
    /// the CPU backend, one `Cpu` instance per entry sharing --threads), e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<usize>,
    /// Micro-batches per step with --devices (GPipe schedule).
    #[arg(long, default_value_t = 1)]
    pub micro_batches: usize,
    /// Draw the training batches from this shard set (`mvdit prepare`'s output, read as
    /// `train --data` reads it) instead of random images in memory; the workload's input must
    /// match its latents.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Per-kernel GPU time of the timed steps from timestamp queries (`--backend vulkan`):
    /// a sorted table on stderr and a "profile" list in the JSON line.
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
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
    /// Euler steps (default 35 with --prompt as the release's sample.py, else 25).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale (1 = conditional only; with --prompt, guidance only above 1).
    #[arg(long, default_value_t = 2.0)]
    pub cfg: f64,
    /// Time shift a in t·a/(1+(a−1)t).
    #[arg(long, default_value_t = 4.0)]
    pub shift: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use a training checkpoint's raw weights instead of their EMA.
    #[arg(long)]
    pub no_ema: bool,
    /// Heun's second-order method instead of Euler.
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
