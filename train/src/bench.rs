//! `mvdit bench`: time training steps (t and noise draw, forward, MSE, full backward, AdamW) on a
//! benchmark workload and print one JSON line.

use crate::flow::noised_and_target;
use crate::init::{default_weight_std, init_params};
use crate::optim::{OptimConfig, Optimizer};
use crate::rng::Rng;
use crate::step::{loss_and_grads, Watchers};
use mvdit_core::{Backend, ModelConfig};
use mvdit_model::{compute_shape, Dit, Error, Keep, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// A benchmark workload: a model config plus `image_size` and `context_tokens`.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub model: ModelConfig,
    pub image_size: usize,
    pub context_tokens: usize,
}

impl Workload {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::new(format!("{}: cannot read: {e}", path.display())))?;
        let mut v: Value = serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
        let obj = v.as_object_mut().ok_or_else(|| Error::new(format!("{}: expected a JSON object", path.display())))?;
        let mut take = |k: &str| -> Result<usize> {
            obj.remove(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| Error::new(format!("{}: field `{k}` (a positive integer) is missing", path.display())))
        };
        let (image_size, context_tokens) = (take("image_size")?, take("context_tokens")?);
        let model = mvdit_model::checkpoint::parse_config(&v.to_string(), &path.display().to_string())?;
        Ok(Workload { model, image_size, context_tokens })
    }

    /// Forward FLOPs of one sample: every matmul (2·m·n·k) and attention's QKᵀ and PV.
    pub fn forward_flops_per_sample(&self) -> f64 {
        let c = &self.model;
        let p = c.patch_size;
        let li = (self.image_size / p).pow(2) as f64;
        let dc = c.context_dim as f64;
        let d = c.hidden_size as f64;
        let block = self.block_flops_per_sample();
        let patch = (c.in_channels * p * p) as f64;
        let stem = 2.0 * li * patch * d * 2.0 + if c.context_dim != c.hidden_size { 2.0 * self.context_tokens as f64 * dc * d } else { 0.0 };
        c.depth as f64 * block + stem
    }

    /// Forward FLOPs of one block for one sample: Q, K, V, O (4·L·D² each ×2), W13 and W2
    /// (3·L·D·M ×2) and attention's QKᵀ and PV (2·L²·D ×2).
    pub fn block_flops_per_sample(&self) -> f64 {
        let c = &self.model;
        let l = ((self.image_size / c.patch_size).pow(2) + self.context_tokens) as f64;
        let (d, m) = (c.hidden_size as f64, c.mlp_hidden_dim as f64);
        2.0 * l * (4.0 * d * d + 2.0 * d * m + m * d) + 2.0 * 2.0 * l * l * d
    }
}

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
    pub forward_only: bool,
    /// None: recompute from depth 100.
    pub recompute: Option<bool>,
}

/// Activation memory that recomputing workloads may spend on keeping their last blocks'
/// activations (see `Keep::Tail`): 186 of deep1000's 1000 blocks at batch 16. The buffer pool
/// keeps the previous step's gradient buffers, so this adds to the peak one for one (deep1000:
/// 899 MB with none kept, 1216 MB with 320 MiB).
pub const KEEP_BUDGET_BYTES: usize = 224 << 20;

/// Runs the benchmark and returns its JSON record.
pub fn bench<B: Backend>(be: &B, w: &Workload, name: &str, threads: usize, o: &BenchOptions) -> Result<Value> {
    bench_with(be, w, name, threads, o, &mut || Ok(()))
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
    let mut line = bench_with(be, w, name, 0, o, &mut || Ok(be.context().set_profiling(true)?))?;
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
    eprintln!("{:<14} {:>8} {:>12} {:>7}", "kernel", "calls", "ms/step", "share");
    for k in &prof {
        eprintln!("{:<14} {:>8} {:>12.3} {:>6.1}%", k.kernel, k.calls, k.total_ms / steps, 100.0 * k.total_ms / total.max(1e-12));
    }
    eprintln!("{:<14} {:>8} {:>12.3} (GPU time; profiling waits after every submission)", "total", "", total / steps);
    line["profile"] = prof.iter().map(|k| json!({"kernel": k.kernel, "calls": k.calls, "ms_per_step": k.total_ms / steps})).collect();
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

/// [`bench`] with `on_timed` called once, just before the first timed step.
pub fn bench_with<B: Backend>(be: &B, w: &Workload, name: &str, threads: usize, o: &BenchOptions, on_timed: &mut dyn FnMut() -> Result<()>) -> Result<Value> {
    let mut rng = Rng::new(0);
    let cfg = &w.model;
    let params = init_params(cfg, default_weight_std(cfg.hidden_size), 1.0 / (cfg.depth as f64).sqrt(), &mut rng);
    let mut model = Dit::from_host(be, cfg.clone(), params)?;
    let shapes: Vec<Vec<usize>> = model.layout.specs.iter().map(|s| compute_shape(&s.shape)).collect();
    let optim = OptimConfig { lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.1, max_grad_norm: 1.0, warmup_steps: 0 };
    let mut opt = Optimizer::new(be, optim, &shapes, Optimizer::<B>::decays_of(&model.layout))?;
    let (b, s) = (o.batch, w.image_size);
    let shape = [b, cfg.in_channels, s, s];
    let per: usize = shape[1..].iter().product();
    let x0 = rng.normals(b * per);
    let ctx = rng.normals(b * w.context_tokens * cfg.context_dim);
    let keep = if o.recompute.unwrap_or(cfg.depth >= 100) {
        // Block recompute, with the last blocks' activations kept within KEEP_BUDGET_BYTES.
        let dims = mvdit_core::Dims::new(cfg, b, s, s, w.context_tokens)?;
        let per_block = 4 * mvdit_model::block_activation_elems(&dims);
        Keep::Tail((KEEP_BUDGET_BYTES / per_block.max(1)).min(cfg.depth))
    } else {
        Keep::All
    };
    let mut times = Vec::with_capacity(o.steps);
    for i in 0..o.warmup + o.steps {
        if i == o.warmup {
            on_timed()?;
        }
        let start = Instant::now();
        let t: Vec<f32> = (0..b).map(|_| rng.uniform() as f32).collect();
        let (xt, target) = noised_and_target(&x0, &rng.normals(b * per), &t);
        let xt = be.upload(&xt, &shape)?;
        let c = be.upload(&ctx, &[b, w.context_tokens, cfg.context_dim])?;
        if o.forward_only {
            let (v, _) = model.forward(be, &xt, c, Keep::Nothing)?;
            be.download(&v)?;
        } else {
            let target = be.upload(&target, &shape)?;
            let (_, grads, _) = loss_and_grads(be, &model, &xt, c, &target, keep, Watchers::default())?;
            let refs: Vec<&B::Tensor> = grads.iter().collect();
            opt.update(be, model.params.iter_mut().collect(), &refs)?;
        }
        if i >= o.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let flops = w.forward_flops_per_sample() * b as f64 * if o.forward_only { 1.0 } else { 3.0 };
    let tokens = (b * ((s / cfg.patch_size).pow(2) + w.context_tokens)) as f64;
    Ok(json!({
        "workload": name,
        "backend": be.name(),
        "threads": threads,
        "batch": b,
        "steps": o.steps,
        "forward_only": o.forward_only,
        "recompute": keep != Keep::All,
        "kept_blocks": match keep { Keep::Tail(n) => n, _ => cfg.depth },
        "median_s": median,
        "min_s": times[0],
        "tokens_per_s": tokens / median,
        "gflops": flops / median / 1e9,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// [`bench`] with the model split by depth over `backends` (evenly, see
/// [`crate::plan::even_split`]) and each batch cut into `micro` micro-batches (GPipe schedule).
pub fn bench_split<B>(backends: &[&B], w: &Workload, name: &str, o: &BenchOptions, micro: usize) -> Result<Value>
where
    B: Backend + Sync,
    B::Tensor: Send + Sync,
{
    if o.forward_only {
        return Err(Error::new("--forward-only times the unsplit model; drop --devices"));
    }
    let cfg = &w.model;
    if backends.len() > cfg.depth {
        return Err(Error::new(format!("--devices: {} devices for {} blocks", backends.len(), cfg.depth)));
    }
    let mut rng = Rng::new(0);
    let params = init_params(cfg, default_weight_std(cfg.hidden_size), 1.0 / (cfg.depth as f64).sqrt(), &mut rng);
    let optim = OptimConfig { lr: 1e-4, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.1, max_grad_norm: 1.0, warmup_steps: 0 };
    let ranges = crate::plan::even_split(cfg.depth, backends.len());
    let mut split = crate::depth_split::DepthSplit::new(backends, cfg.clone(), params, &ranges, optim)?;
    let (b, s) = (o.batch, w.image_size);
    let image = [b, cfg.in_channels, s, s];
    let per: usize = image[1..].iter().product();
    let x0 = rng.normals(b * per);
    let ctx = rng.normals(b * w.context_tokens * cfg.context_dim);
    let keep = if o.recompute.unwrap_or(cfg.depth >= 100) { Keep::BlockInputs } else { Keep::All };
    let mut times = Vec::with_capacity(o.steps);
    for i in 0..o.warmup + o.steps {
        let start = Instant::now();
        let t: Vec<f32> = (0..b).map(|_| rng.uniform() as f32).collect();
        let (xt, target) = noised_and_target(&x0, &rng.normals(b * per), &t);
        split.train_step(&xt, image, &ctx, w.context_tokens, &target, micro, keep)?;
        if i >= o.warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tokens = (b * ((s / cfg.patch_size).pow(2) + w.context_tokens)) as f64;
    Ok(json!({
        "workload": name,
        "backend": backends[0].name(),
        "devices": backends.len(),
        "micro_batches": micro,
        "stages": ranges.iter().map(|r| format!("{}..{}", r.start, r.end)).collect::<Vec<_>>(),
        "batch": b,
        "steps": o.steps,
        "recompute": keep == Keep::BlockInputs,
        "median_s": median,
        "min_s": times[0],
        "tokens_per_s": tokens / median,
        "gflops": w.forward_flops_per_sample() * b as f64 * 3.0 / median / 1e9,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_workloads_and_counts_flops() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.json");
        std::fs::write(&p, r#"{"in_channels":1,"patch_size":2,"image_size":4,"hidden_size":8,"depth":2,"num_heads":2,"mlp_hidden_dim":16,"qkv_bias":false,"context_dim":8,"context_tokens":1,"rope_base":10000}"#).unwrap();
        let w = Workload::read(&p).unwrap();
        assert_eq!((w.image_size, w.context_tokens, w.model.depth), (4, 1, 2));
        // L = 4 + 1; block = 2·5·(4·64 + 2·128 + 128) + 4·25·8; stem = 2·4·4·8·2
        let block = 2.0 * 5.0 * (256.0 + 256.0 + 128.0) + 4.0 * 25.0 * 8.0;
        assert_eq!(w.forward_flops_per_sample(), 2.0 * block + 2.0 * 4.0 * 4.0 * 8.0 * 2.0);
        std::fs::write(&p, r#"{"in_channels":1}"#).unwrap();
        assert!(Workload::read(&p).unwrap_err().0.contains("image_size"));
    }
}
