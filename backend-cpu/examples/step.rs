//! Training-step benchmark: median seconds per step of forward + MSE + backward + AdamW on the
//! CPU backend, for a workload JSON of benches/ (model config + `image_size` +
//! `context_tokens`; other extra keys are ignored).
//!
//! usage: cargo run --release -p mvdit-backend-cpu --example step -- CONFIG.json
//!        [--batch 16] [--steps 7] [--threads 2] [--keep all|inputs] [--no-opt]
//! `--keep` defaults to block recompute (inputs) for depth >= 100, else all activations.
//! `--no-opt` leaves out the AdamW update (PyTorch's anchor, bench_torch.py, includes it).

use mvdit_backend_cpu::Cpu;
use mvdit_core::ops::AdamW;
use mvdit_core::{Backend, Layout, ModelConfig, SplitMix64};
use mvdit_model::{Dit, Keep};
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad value for {name}")),
        None => default,
    }
}

fn peak_rss_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).filter(|a| !a.starts_with("--")).expect("usage: step CONFIG.json [--batch N] [--steps N] [--threads N] [--keep all|inputs] [--no-opt]");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read config")).expect("parse config");
    let obj = json.as_object_mut().expect("config must be a JSON object");
    let image = obj.remove("image_size").and_then(|v| v.as_u64()).expect("image_size") as usize;
    let lt = obj.remove("context_tokens").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
    let known = ["in_channels", "patch_size", "hidden_size", "depth", "num_heads", "mlp_hidden_dim", "qkv_bias", "context_dim", "rope_base", "residual"];
    obj.retain(|k, _| known.contains(&k.as_str()));
    let cfg: ModelConfig = serde_json::from_value(json).expect("model config");
    let batch: usize = arg(&args, "--batch", 16);
    let steps: usize = arg(&args, "--steps", 7);
    let threads: usize = arg(&args, "--threads", 2);
    let keep = match arg(&args, "--keep", String::from(if cfg.depth >= 100 { "inputs" } else { "all" })).as_str() {
        "all" => Keep::All,
        "inputs" => Keep::BlockInputs,
        k => panic!("--keep all|inputs, got {k}"),
    };
    let with_opt = !args.iter().any(|a| a == "--no-opt");

    let be = Cpu::new(threads);
    let layout = Layout::new(&cfg);
    let mut rng = SplitMix64::new(0x5eed);
    let beta = 1.0 / (cfg.depth as f32).sqrt();
    let values: Vec<Vec<f32>> = layout
        .specs
        .iter()
        .map(|s| {
            let n = s.numel();
            let fan_in = if s.shape.len() >= 2 { s.shape[1..].iter().product::<usize>() } else { 1 };
            let name = s.name.as_str();
            if name.ends_with(".alpha") {
                vec![0.0; n]
            } else if name.ends_with(".beta") {
                vec![beta; n]
            } else if name.ends_with("norm_img_input.weight") || name.ends_with("norm_text_input.weight") {
                vec![1.0; n]
            } else if name.ends_with("operator.proj.weight") || name.ends_with("ffn.w2.weight") {
                rng.f32s(n, 0.01 / (fan_in as f32).sqrt()) // the writers: small
            } else if s.shape.len() >= 2 {
                rng.f32s(n, (3.0 / fan_in as f32).sqrt())
            } else {
                rng.f32s(n, 0.02)
            }
        })
        .collect();
    let mut model = Dit::from_host(&be, cfg.clone(), values).expect("model");
    let (c, d) = (cfg.in_channels, cfg.context_dim);
    let xs = [batch, c, image, image];
    let x_host = rng.f32s(xs.iter().product(), 1.0);
    let ctx_host = rng.f32s(batch * lt * d, 1.0);
    let tgt_host = rng.f32s(xs.iter().product(), 1.0);
    let opt = AdamW { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
    let mut moments: Vec<(_, _)> = if with_opt {
        model.params.iter().map(|p| (be.zeros(be.shape(p)).unwrap(), be.zeros(be.shape(p)).unwrap())).collect()
    } else {
        Vec::new()
    };
    eprintln!(
        "{}: {} params, batch {batch}, {} tokens/sample, keep {keep:?}, AdamW {with_opt}, backend {}",
        path,
        layout.numel(),
        (image / cfg.patch_size).pow(2) + lt,
        be.name()
    );

    let mut times = Vec::new();
    let mut loss = 0.0;
    for i in 0..steps + 2 {
        let t0 = Instant::now();
        let x = be.upload(&x_host, &xs).unwrap();
        let ctx = be.upload(&ctx_host, &[batch, lt, d]).unwrap();
        let tgt = be.upload(&tgt_host, &xs).unwrap();
        let (v, tape) = model.forward(&be, &x, ctx, keep).expect("forward");
        let (l, dv) = be.mse(&v, &tgt).unwrap();
        let grads = model.backward(&be, tape.expect("tape"), &dv).expect("backward");
        if with_opt {
            for (j, (p, (m, v))) in model.params.iter_mut().zip(moments.iter_mut()).enumerate() {
                let wd = if layout.specs[j].decays() { opt.weight_decay } else { 0.0 };
                be.adamw(&AdamW { weight_decay: wd, ..opt }, i as u64 + 1, 1.0, p, &grads.params[j], m, v).unwrap();
            }
        }
        drop(grads);
        loss = be.download(&l).unwrap()[0];
        let dt = t0.elapsed().as_secs_f64();
        if i >= 2 {
            times.push(dt);
        }
        eprintln!("step {i}: {dt:.4} s, loss {loss:.5}");
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = if times.len() % 2 == 1 { times[times.len() / 2] } else { (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0 };
    println!(
        "{{\"config\": \"{path}\", \"median_step_s\": {median:.4}, \"min_step_s\": {:.4}, \"steps\": {steps}, \"batch\": {batch}, \"threads\": {threads}, \"keep\": \"{keep:?}\", \"adamw\": {with_opt}, \"peak_rss_mb\": {:.0}, \"last_loss\": {loss:.5}}}",
        times[0],
        peak_rss_mb()
    );
}
