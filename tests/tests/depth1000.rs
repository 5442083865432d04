//! A depth-1000 stack (hidden 64, 1 head, 8×8 image, patch 2) runs forward and backward on CPU
//! with block recompute; its peak memory is printed (and recorded in the README).

use mvdit_backend_cpu::Cpu;
use mvdit_core::{Backend, ModelConfig};
use mvdit_model::{Dit, Keep};
use mvdit_tests::{test_params, values};
use mvdit_train::bench::peak_rss_mb;

#[test]
fn depth_1000_forward_backward_with_block_recompute() {
    let cfg: ModelConfig = serde_json::from_str(
        r#"{"in_channels":1,"patch_size":2,"hidden_size":64,"depth":1000,"num_heads":1,
            "mlp_hidden_dim":192,"qkv_bias":false,"context_dim":64}"#,
    )
    .unwrap();
    let (b, lt) = (4, 1);
    let be = Cpu::new(2);
    let model = Dit::from_host(&be, cfg.clone(), test_params(&cfg, 11)).unwrap();
    let x = be.upload(&values(b * 64, 1, 1.0), &[b, 1, 8, 8]).unwrap();
    let ctx = be.upload(&values(b * lt * 64, 2, 1.0), &[b, lt, 64]).unwrap();
    let target = be.upload(&values(b * 64, 3, 1.0), &[b, 1, 8, 8]).unwrap();
    let start = std::time::Instant::now();
    let (v, tape) = model.forward(&be, &x, ctx, Keep::BlockInputs).unwrap();
    let (loss, dv) = be.mse(&v, &target).unwrap();
    let grads = model.backward(&be, tape.unwrap(), &dv).unwrap();
    let loss = be.download(&loss).unwrap()[0];
    let norm2 = be.sum_squares(&grads.params.iter().collect::<Vec<_>>()).unwrap();
    assert!(loss.is_finite() && norm2.is_finite() && norm2 > 0.0, "loss {loss}, |g|² {norm2}");
    // The deepest block still receives gradient: nothing vanished or overflowed on the way down.
    let first = be.download(&grads.params[model.layout.blocks[0].w13]).unwrap();
    assert!(first.iter().any(|&g| g != 0.0));
    let params_mb = model.layout.numel() as f64 * 4.0 / 1e6;
    let stored_inputs_mb = (cfg.depth * b * 17 * 64 * 4) as f64 / 1e6;
    let peak = peak_rss_mb().map_or("unknown".into(), |p| format!("{:.0} MB", p * 1.048576));
    eprintln!(
        "depth 1000, batch {b}: forward+backward {:.2} s, peak RSS {peak} (parameters {params_mb:.0} MB, \
         gradients {params_mb:.0} MB, stored block inputs {stored_inputs_mb:.1} MB)",
        start.elapsed().as_secs_f64()
    );
}
