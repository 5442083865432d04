//! The `mvdit` command line's arguments: every command and flag, with its help text. The
//! commands themselves are in `commands/`.

use crate::backend_args::{BackendArgs, WeightsArg};
use crate::commands::bench::BenchArgs;
use crate::commands::sample::SampleArgs;
use crate::commands::train::TrainArgs;
use crate::commands::experiment::ExperimentCommand;
use crate::commands::vae::VaeCommand;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "mvdit", version, about = "Train and sample MV-Split Diffusion Transformers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Read checkpoints, weights and shards without checking their stored checksums (faster
    /// on huge files; a flipped bit then goes unnoticed).
    #[arg(long, global = true)]
    pub no_verify: bool,
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
    /// Time the matmul kernels for each product shape of a workload on the GPU and keep the
    /// fastest in the tune cache (`--tune-cache`), which later runs on the device use.
    Tune(crate::commands::tune::TuneArgs),
    /// Sample images: from a class-conditional training checkpoint (--class), or from prompts
    /// with a text-conditional model such as the released one (--prompt, --text-encoder, --vae).
    Sample(SampleArgs),
    /// Every sampler at several step counts on a class-conditional checkpoint: its distance from
    /// a many-step Heun reference, the quality score (pixel models) and the model evaluations.
    Samplers(crate::commands::samplers::SamplersArgs),
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
