//! `mvdit bench`: time the trainer's own step ([`TrainState::train_step`]: batch and t/noise
//! draw, forward, MSE, backward, clip, AdamW, EMA, with the trainer's block-recompute rule) on a
//! benchmark workload, on one device or split by depth, and print one JSON line; or time one
//! matrix product (`--gemm`).

use crate::config::{preset, ActivationBudget, DataConfig, Recompute, TrainConfig, Workload};
use crate::batches::TrainData;
use crate::data::Dataset;
use crate::shards::ShardSet;
use crate::depth_split::StageBackend;
use crate::rng::Rng;
use crate::trainer::{Placement, TrainState};
use mvdit_core::dtype::Dtype;
use mvdit_core::{Backend, Layout};
use mvdit_model::streamed::{dtype_name, unpack_stages};
use mvdit_model::{Error, PackedDit, Result};
use serde_json::{json, Value};
use std::time::Instant;

/// Peak resident memory of this process in MB (VmHWM), where /proc has it.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub struct BenchOptions {
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    /// Time inference forwards (no tape) instead of training steps.
    pub forward_only: bool,
    /// The trainer's block-recompute rule and budget (config fields `recompute`,
    /// `activation_budget_mb`).
    pub recompute: Recompute,
    pub activation_budget_mb: ActivationBudget,
    /// With `forward_only`: hold the weights in 16 bits (unpacked to f32 per stage, as
    /// `sample --weights` does); `None` or F32: f32.
    pub weights: Option<Dtype>,
    /// Draw the batches from this shard set (`mvdit prepare`'s output, read as `train --data`
    /// reads it) instead of a batch's worth of random images in memory.
    pub data: Option<std::path::PathBuf>,
}

/// Classes of the synthetic data set a workload is timed on.
const BENCH_CLASSES: usize = 10;

/// The training config `mvdit bench` runs a workload with: the `digits` preset's trainer
/// settings (label dropout, AdamW, clipping, EMA) on the workload's model and input, beta
/// 1/√depth, lr 1e-4 without warm-up.
pub fn bench_config(w: &Workload, o: &BenchOptions) -> Result<TrainConfig> {
    let mut cfg = preset("digits")?;
    cfg.model = w.model.clone();
    cfg.data = DataConfig::new(w.image_size, w.model.in_channels, 0.0);
    cfg.context_tokens = w.context_tokens;
    cfg.batch_size = o.batch;
    cfg.beta_init = 1.0 / (w.model.depth as f64).sqrt();
    cfg.optim.lr = 1e-4;
    cfg.optim.warmup_steps = 0;
    cfg.recompute = o.recompute;
    cfg.activation_budget_mb = o.activation_budget_mb;
    // A bench never scores samples (and the score takes images of at most 1024 values).
    cfg.sample.quality = 0;
    cfg.validate()?;
    Ok(cfg)
}

/// A batch's worth of N(0, 1) images of [`BENCH_CLASSES`] classes at the workload's input size.
fn bench_data(cfg: &TrainConfig) -> Result<Dataset> {
    let mut rng = Rng::new(0);
    let (n, d) = (cfg.batch_size, &cfg.data);
    let images = rng.normals(n * d.channels * d.image_size * d.image_size);
    let labels = (0..n).map(|i| (i % BENCH_CLASSES) as u32).collect();
    let names = (0..BENCH_CLASSES).map(|c| c.to_string()).collect();
    Dataset::new(d.channels, d.image_size, images, labels, names).map_err(|e| Error::new(e.to_string()))
}

/// Runs the benchmark on one device and returns its JSON record.
pub fn bench<B: StageBackend>(be: &B, w: &Workload, name: &str, threads: usize, o: &BenchOptions) -> Result<Value> {
    bench_with(Placement::one(be), w, name, threads, o, &mut || Ok(()))
}

/// `mvdit bench --gemm M,N,K`: one matrix product y = x·Wᵀ through the backend's linear layer
/// (x: [M, K], W: [N, K], no bias), `o.warmup` untimed then `o.steps` timed calls back to back,
/// waited for once at the end (a sum of squares of the last y, one value downloaded). Reports
/// seconds per product and TFLOP/s (2·M·N·K per product).
pub fn bench_gemm<B: Backend>(be: &B, (m, n, k): (usize, usize, usize), o: &BenchOptions, on_timed: &mut dyn FnMut() -> Result<()>) -> Result<Value> {
    let mut rng = Rng::new(0);
    let x = be.upload(&rng.normals(m * k), &[1, m, k])?;
    let w = be.upload(&rng.normals(n * k), &[n, k])?;
    let run = |reps: usize| -> Result<f64> {
        let start = Instant::now();
        let mut last = None;
        for _ in 0..reps {
            last = Some(be.linear(&x, &w, None)?);
        }
        if let Some(y) = last {
            be.sum_squares(&[&y])?;
        }
        Ok(start.elapsed().as_secs_f64())
    };
    run(o.warmup)?;
    on_timed()?;
    let per = run(o.steps)? / o.steps as f64;
    Ok(json!({
        "gemm": [m, n, k],
        "backend": be.name(),
        "steps": o.steps,
        "s_per_product": per,
        "tflops": 2.0 * (m * n * k) as f64 / per / 1e12,
    }))
}

/// [`bench`] on the Vulkan backend with timestamp profiling over the timed steps: the JSON
/// record gains `"profile"` (per kernel: calls and ms per step, longest first), and the same
/// table goes to stderr.
pub fn bench_vulkan_profiled(be: &mvdit_backend_vulkan::Vulkan, w: &Workload, name: &str, o: &BenchOptions) -> Result<Value> {
    let mut line = bench_with(Placement::one(be), w, name, 0, o, &mut || Ok(be.context().set_profiling(true)?))?;
    let flops = w.forward_flops_per_sample() * o.batch as f64 * if o.forward_only { 1.0 } else { 3.0 };
    add_profile(be, &mut line, o.steps, flops)?;
    Ok(line)
}

/// [`bench_gemm`] on the Vulkan backend with timestamp profiling, as [`bench_vulkan_profiled`].
pub fn bench_gemm_vulkan_profiled(be: &mvdit_backend_vulkan::Vulkan, dims: (usize, usize, usize), o: &BenchOptions) -> Result<Value> {
    let mut line = bench_gemm(be, dims, o, &mut || Ok(be.context().set_profiling(true)?))?;
    add_profile(be, &mut line, o.steps, 2.0 * (dims.0 * dims.1 * dims.2) as f64)?;
    Ok(line)
}

/// The kernel profile since profiling was turned on, per step (or product): a table on stderr,
/// `"profile"` in `line`, and the matmul kernels' own rate for `flops` per step.
fn add_profile(be: &mvdit_backend_vulkan::Vulkan, line: &mut Value, steps: usize, flops: f64) -> Result<()> {
    let prof = be.context().profile()?;
    let total: f64 = prof.iter().map(|k| k.total_ms).sum();
    let steps = steps as f64;
    let mb = |bytes: u64| bytes as f64 / 1e6 / steps;
    eprintln!("{:<16} {:>8} {:>12} {:>7} {:>10} {:>10} {:>9}", "kernel", "calls", "ms/step", "share", "MB read", "MB written", "barriers");
    for k in &prof {
        eprintln!(
            "{:<16} {:>8} {:>12.3} {:>6.1}% {:>10.1} {:>10.1} {:>9}",
            k.kernel, k.calls, k.total_ms / steps, 100.0 * k.total_ms / total.max(1e-12), mb(k.bytes_read), mb(k.bytes_written), k.barriers
        );
    }
    let sum = |f: fn(&mvdit_backend_vulkan::KernelTime) -> u64| prof.iter().map(f).sum::<u64>();
    let (calls, read, written, barriers) = (sum(|k| k.calls), sum(|k| k.bytes_read), sum(|k| k.bytes_written), sum(|k| k.barriers));
    eprintln!("{:<16} {:>8} {:>12.3} {:>7} {:>10.1} {:>10.1} {:>9} (per step; GPU time with a wait after every submission; bytes: the sizes of the buffers bound)", "total", calls as f64 / steps, total / steps, "", mb(read), mb(written), barriers as f64 / steps);
    line["profile"] = prof
        .iter()
        .map(|k| json!({"kernel": k.kernel, "calls": k.calls, "ms_per_step": k.total_ms / steps, "mb_read_per_step": mb(k.bytes_read), "mb_written_per_step": mb(k.bytes_written), "barriers": k.barriers}))
        .collect();
    line["profile_total"] = json!({"calls_per_step": calls as f64 / steps, "mb_read_per_step": mb(read), "mb_written_per_step": mb(written), "barriers_per_step": barriers as f64 / steps});
    // The matmul kernels' own rate: the step's GEMM FLOPs (linear layers and attention products,
    // backward = 2× forward; block recompute's extra forward not counted) over their GPU time
    // (the products only: not the f16 conversion and cut-back passes).
    let gemm_ms: f64 = prof.iter().filter(|k| k.kernel.starts_with("matmul") && k.kernel != "matmul_out").map(|k| k.total_ms).sum::<f64>() / steps;
    if gemm_ms > 0.0 {
        let tflops = flops / (gemm_ms * 1e-3) / 1e12;
        eprintln!("matmul kernels: {gemm_ms:.3} ms/step, {tflops:.2} TFLOP/s");
        line["matmul_ms_per_step"] = json!(gemm_ms);
        line["matmul_tflops"] = json!(tflops);
    }
    Ok(())
}

/// [`bench`] placed as `place` says (several devices: the depth split, `--devices`), with
/// `on_timed` called once, just before the first timed step.
pub fn bench_with<B: StageBackend>(
    place: Placement<'_, B>,
    w: &Workload,
    name: &str,
    threads: usize,
    o: &BenchOptions,
    on_timed: &mut dyn FnMut() -> Result<()>,
) -> Result<Value> {
    let cfg = bench_config(w, o)?;
    let packed = o.weights.filter(|&d| d != Dtype::F32);
    if packed.is_some() && !o.forward_only {
        return Err(Error::new("--weights bf16|f16 needs --forward-only: training keeps its weights in f32"));
    }
    if o.forward_only && (place.devices.len() > 1 || place.micro_batches > 1) {
        return Err(Error::new("--forward-only times the unsplit model; drop --devices and --micro-batches"));
    }
    let (devices, micro) = (place.devices.len(), place.micro_batches);
    let mut cfg = cfg;
    let data = match &o.data {
        None => TrainData::Memory(bench_data(&cfg)?),
        Some(_) if o.forward_only => return Err(Error::new("--data times training steps; drop --forward-only")),
        Some(dir) => {
            // The workload keeps its shapes (checked against the latents); the set decides the
            // conditioning. No sample is held out (eval_fraction 0).
            let set = ShardSet::open(dir)?;
            crate::run::condition_on(&mut cfg, &set);
            crate::run::shard_data(&cfg, set)?.0
        }
    };
    let mut state = TrainState::placed(place, cfg, data.source().class_names())?;
    let packed = match packed {
        Some(dtype) => Some(packed_copy(&state, dtype)?),
        None => None,
    };
    let mut times = Vec::with_capacity(o.steps);
    for i in 0..o.warmup + o.steps {
        if i == o.warmup {
            on_timed()?;
        }
        let start = Instant::now();
        match &data {
            TrainData::Memory(d) if o.forward_only => forward_pass(&state, packed.as_ref(), d)?,
            _ => {
                state.train_step(data.source())?;
            }
        }
        if i >= o.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let median = mvdit_core::stats::median(&mut times).ok_or_else(|| Error::new("no timed steps"))?;
    let (b, s) = (o.batch, w.image_size);
    let flops = w.forward_flops_per_sample() * b as f64 * if o.forward_only { 1.0 } else { 3.0 };
    let tokens = (b * ((s / w.model.patch_size).pow(2) + w.context_tokens)) as f64;
    // What the trainer keeps for a pass over the batch (per micro-batch tapes add up to it).
    let kept_blocks = state.keep(b)?.kept_blocks(w.model.depth);
    let mut line = json!({
        "workload": name,
        "backend": state.home().name(),
        "threads": threads,
        "batch": b,
        "steps": o.steps,
        "forward_only": o.forward_only,
        "weights": dtype_name(packed.as_ref().map_or(Dtype::F32, |p| p.dtype)),
        "recompute": state.cfg.recompute,
        "kept_blocks": kept_blocks,
        "median_s": median,
        "min_s": times[0],
        "tokens_per_s": tokens / median,
        "gflops": flops / median / 1e9,
        "peak_rss_mb": peak_rss_mb(),
        "data": o.data.as_ref().map_or_else(|| json!("memory"), |d| json!(d.display().to_string())),
    });
    if devices > 1 || micro > 1 {
        line["devices"] = json!(devices);
        line["micro_batches"] = json!(micro);
        line["stages"] = state.net.stages.iter().map(|st| format!("{}..{}", st.model.blocks().start, st.model.blocks().end)).collect();
    }
    Ok(line)
}

/// One inference forward of the data set's first batch (its N(0, 1) images as x, conditional
/// labels), waited for.
/// The model of `state` held in 16-bit `dtype`, unpacked in stages as the sampler's.
fn packed_copy<B: StageBackend>(state: &TrainState<'_, B>, dtype: Dtype) -> Result<PackedDit<B>> {
    let be = state.home();
    let values = state.unsplit()?.to_host(be)?;
    let cfg = state.cfg.model.clone();
    let stages = unpack_stages(&Layout::new(&cfg), cfg.depth, usize::MAX);
    PackedDit::build(be, cfg, dtype, stages, "bench", |i| Ok(values[i].clone()))
}

fn forward_pass<B: StageBackend>(state: &TrainState<'_, B>, packed: Option<&PackedDit<B>>, data: &Dataset) -> Result<()> {
    let be = state.home();
    let n = state.cfg.batch_size;
    let labels: Vec<u32> = (0..n).map(|i| data.label(i)).collect();
    let shape = [n, data.channels, data.size, data.size];
    let x = be.upload(&data.images[..n * data.image_len()], &shape)?;
    let ctx = state.conditioner()?.context(be, &labels)?;
    let v = match packed {
        Some(p) => p.velocity(be, &x, ctx)?,
        None => state.net.forward(&x, ctx)?,
    };
    be.download(&v)?;
    Ok(())
}
