//! Running mvdit on an application's own wgpu device, as a game engine or editor would: the
//! application opens the device (default WebGPU limits, no optional features), hands clones
//! of its `Device` and `Queue` to `Wgpu::from_device`, trains a tiny MV-Split DiT for a few
//! AdamW steps on one fixed batch (the loss must fall), and then reads a result back through
//! its own queue from the model output's buffer.
//!
//! `cargo run -p mvdit-backend-wgpu --example embed` (needs a Vulkan driver; on Debian/Ubuntu
//! without a GPU: `apt-get install mesa-vulkan-drivers libvulkan1`).

use mvdit_backend_wgpu::Wgpu;
use mvdit_core::ops::AdamW;
use mvdit_core::rng::values;
use mvdit_core::{Backend, Layout, ModelConfig, Residual};
use mvdit_model::{Dit, Keep};
use std::fmt::Display;


/// `?` for the library's error types (mvdit's errors are `Display`; core is `no_std`).
trait Msg<T> {
    fn msg(self) -> Result<T, String>;
}

impl<T, E: Display> Msg<T> for Result<T, E> {
    fn msg(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("embed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    // --- the application's side: its own instance, adapter, device and queue ---------------
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .map_err(|e| format!("no GPU adapter ({e}); install a Vulkan driver (software: apt-get install mesa-vulkan-drivers libvulkan1)"))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor { label: Some("application device"), ..Default::default() })).msg()?;
    println!("application device: {}", adapter.get_info().name);

    // --- mvdit on that device ---------------------------------------------------------------
    let be = Wgpu::from_device(device.clone(), queue.clone()).msg()?;
    let cfg = ModelConfig {
        in_channels: 1,
        patch_size: 2,
        hidden_size: 32,
        depth: 4,
        num_heads: 2,
        mlp_hidden_dim: 64,
        qkv_bias: false,
        context_dim: 32,
        rope_base: 10000.0,
        residual: Residual::Mvsplit,
    };
    let layout = Layout::new(&cfg);
    // Small random weights, MV-Split alpha 0.05 and beta 0.5 (all trainable from the start).
    let host: Vec<Vec<f32>> = layout
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| match s.name.rsplit('.').next() {
            Some("alpha") => vec![0.05; s.numel()],
            Some("beta") => vec![0.5; s.numel()],
            _ => values(s.numel(), 100 + i as u64, 1.0 / (s.shape[1..].iter().product::<usize>().max(1) as f32).sqrt()),
        })
        .collect();
    let mut model = Dit::from_host(&be, cfg, host).msg()?;
    let (x_shape, ctx_shape) = ([4usize, 1, 8, 8], [4usize, 2, 32]);
    let x = be.upload(&values(256, 1, 1.0), &x_shape).msg()?;
    let target = be.upload(&values(256, 2, 1.0), &x_shape).msg()?;
    let ctx = values(256, 3, 1.0);
    let opt = AdamW { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
    let mut moments = Vec::new();
    for p in &model.params {
        moments.push((be.zeros(be.shape(p)).msg()?, be.zeros(be.shape(p)).msg()?));
    }
    let mut losses = Vec::new();
    for step in 1..=8u64 {
        let (v, tape) = model.forward(&be, &x, be.upload(&ctx, &ctx_shape).msg()?, Keep::All).msg()?;
        let (loss, dv) = be.mse(&v, &target).msg()?;
        let grads = model.backward(&be, tape.ok_or("forward kept no tape".to_string())?, &dv).msg()?;
        for ((p, g), (m, v)) in model.params.iter_mut().zip(&grads.params).zip(&mut moments) {
            be.adamw(&opt, step, 1.0, p, g, m, v).msg()?;
        }
        let l = be.download(&loss).msg()?[0];
        println!("step {step}: loss {l:.5}");
        losses.push(l);
    }
    let stats = be.device_stats();
    println!("device buffers created: {}, reused from the pool: {}", stats.buffers_created, stats.buffers_reused);
    if losses.last() >= losses.first() {
        return Err(format!("the loss did not fall: {losses:?}"));
    }

    // --- back on the application's side: read the velocity through its own queue -----------
    let (v, _) = model.forward(&be, &x, be.upload(&ctx, &ctx_shape).msg()?, Keep::Nothing).msg()?;
    be.flush().msg()?;
    let bytes = 4 * 4;
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("application readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("application copy") });
    enc.copy_buffer_to_buffer(v.buffer(), 0, &readback, 0, bytes);
    queue.submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    readback.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely()).msg()?;
    rx.recv().msg()?.msg()?;
    let first: Vec<f32> = bytemuck::cast_slice(&readback.slice(..).get_mapped_range().msg()?).to_vec();
    println!("first velocity values, read by the application: {first:?}");
    Ok(())
}
