//! Times linear forward + backward at 1024³ on the default adapter:
//! `cargo run --release -p mvdit-backend-wgpu --example mm_time`.

use mvdit_backend_wgpu::Wgpu;
use mvdit_core::Backend;
use std::time::Instant;

fn main() {
    let be = Wgpu::new(None).unwrap_or_else(|e| panic!("{e}"));
    let (n, k, m) = (1024, 1024, 1024);
    let x = be.upload(&vec![0.5; n * k], &[n, k]).unwrap();
    let w = be.upload(&vec![0.25; m * k], &[m, k]).unwrap();
    let dy = be.upload(&vec![0.25; n * m], &[n, m]).unwrap();
    let reps = 3;
    let t0 = Instant::now();
    for _ in 0..reps {
        let _ = be.linear(&x, &w, None).unwrap();
        let _ = be.linear_backward(&x, &w, &dy, true, false).unwrap();
    }
    be.synchronize().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let flop = reps as f64 * 3.0 * 2.0 * (n * k * m) as f64;
    println!("{}: {n}x{k}x{m} fwd+bwd x{reps}: {secs:.2} s, {:.2} GFLOP/s", be.name(), flop / secs / 1e9);
}
