//! Times one training step (forward + mse + backward + global grad norm) of a small random model
//! on the CPU backend and on wgpu: `cargo run --release -p mvdit-backend-wgpu --example step_time`.
//! Optional args: depth hidden batch image_size (defaults 4 128 4 16).

use mvdit_backend_cpu::Cpu;
use mvdit_backend_wgpu::Wgpu;
use mvdit_core::rng::values;
use mvdit_core::{Backend, Layout, ModelConfig};
use mvdit_model::{Dit, Keep};
use std::time::Instant;

fn step<B: Backend>(be: &B, model: &Dit<B>, x: &[f32], c: &[f32], t: &[f32], xs: &[usize], cs: &[usize]) -> (f32, f64) {
    let x = be.upload(x, xs).unwrap();
    let ctx = be.upload(c, cs).unwrap();
    let tgt = be.upload(t, xs).unwrap();
    let (v, tape) = model.forward(be, &x, ctx, Keep::All).unwrap();
    let (loss, dv) = be.mse(&v, &tgt).unwrap();
    let g = model.backward(be, tape.unwrap(), &dv).unwrap();
    let norm2 = be.sum_squares(&g.params.iter().collect::<Vec<_>>()).unwrap();
    (be.download(&loss).unwrap()[0], norm2)
}

fn time<B: Backend>(be: &B, cfg: &ModelConfig, params: Vec<Vec<f32>>, data: (&[f32], &[f32], &[f32]), xs: &[usize], cs: &[usize]) {
    let model = Dit::from_host(be, cfg.clone(), params).unwrap();
    let t0 = Instant::now();
    let (loss, n2) = step(be, &model, data.0, data.1, data.2, xs, cs);
    let first = t0.elapsed();
    let reps = 3;
    let t0 = Instant::now();
    for _ in 0..reps {
        step(be, &model, data.0, data.1, data.2, xs, cs);
    }
    let per = t0.elapsed() / reps;
    println!("{:<48} first step {:>8.1?}, then {:>8.1?}/step  (loss {loss:.6}, |g|² {n2:.6})", be.name(), first, per);
}

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().expect("numeric args")).collect();
    let arg = |i: usize, d: usize| a.get(i).copied().unwrap_or(d);
    let (depth, hidden, batch, img) = (arg(0, 4), arg(1, 128), arg(2, 4), arg(3, 16));
    let cfg = ModelConfig {
        in_channels: 4,
        patch_size: 2,
        hidden_size: hidden,
        depth,
        num_heads: hidden / 32,
        mlp_hidden_dim: hidden * 2,
        qkv_bias: false,
        context_dim: 64,
        rope_base: 10000.0,
        residual: Default::default(),
    };
    let layout = Layout::new(&cfg);
    let params: Vec<Vec<f32>> = layout
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let fan_in: usize = s.shape[1..].iter().product::<usize>().max(1);
            values(s.numel(), i as u64, 1.0 / (fan_in as f32).sqrt())
        })
        .collect();
    let lt = 8;
    let xs = [batch, 4, img, img];
    let cs = [batch, lt, 64];
    let x = values(xs.iter().product(), 1000, 1.0);
    let c = values(cs.iter().product(), 1001, 1.0);
    let t = values(xs.iter().product(), 1002, 1.0);
    println!("depth {depth}, D {hidden}, batch {batch}, {img}x{img} (L = {})", (img / 2) * (img / 2) + lt);
    time(&Cpu::new(2), &cfg, params.clone(), (&x, &c, &t), &xs, &cs);
    let gpu = Wgpu::new(None).unwrap_or_else(|e| panic!("{e}"));
    time(&gpu, &cfg, params, (&x, &c, &t), &xs, &cs);
}
