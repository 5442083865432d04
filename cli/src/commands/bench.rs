//! `mvdit bench`: one matrix product (`--gemm`), a frozen network (`--frozen`) or the
//! trainer's step on a workload, on one device or split by depth (`--devices`); one JSON line
//! on stdout.

use crate::backend_args::{BackendArgs, WeightsArg};
use mvdit_core::dtype::Dtype;
use mvdit_model::{Error, Result};
use mvdit_train::backends::{BackendKind, BackendSpec, Weights};
use mvdit_train::bench::BenchOptions;
use mvdit_train::bench_frozen::{Frozen, FrozenInputs};
use mvdit_train::config::Workload;
use mvdit_train::trainer::Placement;
use mvdit_train::{with_backend, with_devices};
use std::path::PathBuf;

/// `--frozen`: the frozen-network workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FrozenArg {
    /// Decode one latent [1, 4z, S/f, S/f] to an S×S image.
    AeDecode,
    /// Encode one S×S image.
    AeEncode,
    /// Two prompts of `--prompt-tokens` tokens through the text encoder.
    TextEncode,
}

impl From<FrozenArg> for Frozen {
    fn from(f: FrozenArg) -> Frozen {
        match f {
            FrozenArg::AeDecode => Frozen::AeDecode,
            FrozenArg::AeEncode => Frozen::AeEncode,
            FrozenArg::TextEncode => Frozen::TextEncode,
        }
    }
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
    /// MiB of block activations `--recompute auto` keeps, or auto: half of the memory this
    /// process has after the training state (config field `activation_budget_mb`).
    #[arg(long, default_value = "auto")]
    pub activation_budget_mb: mvdit_train::config::ActivationBudget,
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

pub fn bench_command(a: BenchArgs) -> Result<()> {
    let BenchArgs { config, gemm, frozen, vae, text_encoder, image_size, prompt_tokens, batch, steps, warmup, forward_only, weights, recompute, activation_budget_mb, devices, micro_batches, data, profile, backend } = a;
    if batch == 0 || steps == 0 {
        return Err(Error::new("--batch and --steps must be at least 1"));
    }
    let spec = backend.spec()?;
    if profile && spec.kind != BackendKind::Vulkan {
        return Err(Error::new("--profile needs --backend vulkan (GPU timestamps)"));
    }
    let weights = Weights::from(weights).dtype();
    let opts = BenchOptions { batch, steps, warmup, forward_only, recompute, activation_budget_mb, weights, data };
    if (frozen.is_some() || gemm.is_some()) && weights.is_some_and(|d| d != Dtype::F32) {
        return Err(Error::new("--weights applies to the DiT's --forward-only bench, not --frozen or --gemm"));
    }
    if let Some(which) = frozen {
        let inputs = FrozenInputs { vae: vae.as_deref(), text_encoder: text_encoder.as_deref(), image_size, prompt_tokens };
        println!("{}", with_backend!(spec, |be| mvdit_train::bench_frozen::bench_frozen(&be, which.into(), &inputs, &opts)?));
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
            mvdit_train::bench::bench_gemm_vulkan_profiled(&spec.open_vulkan()?, (m, n, k), &opts)?
        } else {
            with_backend!(spec, |be| mvdit_train::bench::bench_gemm(&be, (m, n, k), &opts, &mut || Ok(()))?)
        };
        println!("{line}");
        return Ok(());
    }
    let config = config.ok_or_else(|| Error::new("--config or --gemm is required"))?;
    let w = Workload::read(&config)?;
    let name = config.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    if !devices.is_empty() {
        println!("{}", bench_split(&w, &name, &opts, &devices, micro_batches, &spec)?);
        return Ok(());
    }
    let threads = if spec.kind == BackendKind::Cpu { spec.cpu_options()?.thread_count() } else { 0 };
    let line = if profile {
        mvdit_train::bench::bench_vulkan_profiled(&spec.open_vulkan()?, &w, &name, &opts)?
    } else {
        with_backend!(spec, |be| mvdit_train::bench::bench(&be, &w, &name, threads, &opts)?)
    };
    println!("{line}");
    Ok(())
}

/// `mvdit bench --devices`: one backend instance per listed device.
fn bench_split(w: &Workload, name: &str, o: &BenchOptions, devices: &[usize], micro: usize, spec: &BackendSpec) -> Result<serde_json::Value> {
    with_devices!(spec, devices, |bes| mvdit_train::bench::bench_with(Placement { devices: bes, micro_batches: micro }, w, name, 0, o, &mut || Ok(())))
}
