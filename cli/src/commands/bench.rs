//! `mvdit bench`: one matrix product (`--gemm`), a frozen network (`--frozen`) or the
//! trainer's step on a workload, on one device or split by depth (`--devices`); one JSON line
//! on stdout.

use crate::args::BenchArgs;
use mvdit_core::dtype::Dtype;
use mvdit_model::{Error, Result};
use mvdit_train::backends::{BackendKind, BackendSpec, Weights};
use mvdit_train::bench::BenchOptions;
use mvdit_train::bench_frozen::{Frozen, FrozenInputs};
use mvdit_train::config::Workload;
use mvdit_train::trainer::Placement;
use mvdit_train::{with_backend, with_devices};

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
