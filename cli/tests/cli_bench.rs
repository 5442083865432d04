//! `mvdit bench` flags: `--profile` (per-kernel GPU times on Vulkan, a clear error elsewhere),
//! `--precision` on the GPU backends only, `--gemm` (one matrix product).

use std::process::Command;

const TINY: &str = r#"{"in_channels":1,"patch_size":2,"image_size":4,"hidden_size":8,"depth":2,"num_heads":2,"mlp_hidden_dim":16,"qkv_bias":false,"context_dim":8,"context_tokens":1,"rope_base":10000}"#;

fn bench(extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("tiny.json");
    std::fs::write(&w, TINY).unwrap();
    let mut args = vec!["bench", "--config", w.to_str().unwrap(), "--batch", "1", "--steps", "2", "--warmup", "1"];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(&args).output().expect("run mvdit")
}

#[test]
fn profile_needs_the_vulkan_backend() {
    let o = bench(&["--profile"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--profile needs --backend vulkan"), "{err}");
}

/// Without a Vulkan device: the skip rule of `mvdit_tests::gpu_or_skip`.
#[test]
fn vulkan_profile_lists_kernels_sorted() {
    mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None));
    let o = bench(&["--backend", "vulkan", "--profile"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let prof = line["profile"].as_array().expect("a profile list");
    let ms: Vec<f64> = prof.iter().map(|k| k["ms_per_step"].as_f64().unwrap()).collect();
    assert!(ms.windows(2).all(|w| w[0] >= w[1]), "not sorted: {ms:?}");
    for kernel in ["adamw", "attn_fwd", "attn_dkdv", "mvsplit"] {
        assert!(prof.iter().any(|k| k["kernel"] == kernel), "{kernel} missing: {prof:?}");
    }
    assert!(err.contains("ms/step") && err.contains("adamw") && err.contains("barriers"), "{err}");
    assert!(line["matmul_tflops"].as_f64().is_some_and(|t| t > 0.0), "{line}");
    // Counts: every kernel dispatch binds buffers; a step's dependent dispatches wait on barriers;
    // AdamW writes the weights and moments it reads the gradients for.
    let total = &line["profile_total"];
    let dispatches: u64 = prof.iter().filter(|k| !k["kernel"].as_str().unwrap().starts_with('(')).map(|k| k["calls"].as_u64().unwrap()).sum();
    assert!(total["calls_per_step"].as_f64().unwrap() >= dispatches as f64 / 2.0, "{total}");
    let barriers = total["barriers_per_step"].as_f64().unwrap();
    assert!(barriers > 0.0 && barriers < dispatches as f64, "{total}");
    let adamw = prof.iter().find(|k| k["kernel"] == "adamw").unwrap();
    assert!(adamw["mb_written_per_step"].as_f64().unwrap() > adamw["mb_read_per_step"].as_f64().unwrap(), "{adamw}");
}

#[test]
fn gpu_flags_are_refused_on_the_cpu_backend() {
    let o = bench(&["--precision", "f16"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--precision applies to --backend wgpu or vulkan only"), "{err}");
    let o = bench(&["--gpu-tile", "128"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--gpu-tile does not apply to --backend cpu"), "{err}");
}

/// `--precision f16` reaches the Vulkan backend: its name says which f16 matmul runs, and the
/// profile shows its kernels: the tiled kernel's f16 build and no conversion pass, or (with
/// cooperative matrices) the padded copies. Never a max-magnitude pass. Skipped like the
/// profile test.
#[test]
fn vulkan_takes_precision_f16() {
    mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None));
    let o = bench(&["--backend", "vulkan", "--precision", "f16", "--profile"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let name = line["backend"].as_str().unwrap();
    assert!(name.contains("f16"), "{name}");
    let prof = line["profile"].as_array().expect("a profile list");
    let has = |kernel: &str| prof.iter().any(|k| k["kernel"].as_str().is_some_and(|n| n.starts_with(kernel)));
    assert!(!has("absmax"), "{prof:?}");
    if has("matmul_coop") {
        assert!(has("to_f16_pad"), "{prof:?}");
    } else {
        assert!(has("matmul_tiled") && !has("to_f16_pad") && !has("matmul_out"), "{prof:?}");
        assert!(prof.iter().any(|k| k["kernel"].as_str().is_some_and(|n| n.ends_with("_h"))), "the f16 build: {prof:?}");
    }
}

fn mvdit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).output().expect("run mvdit")
}

/// `--gemm M,N,K` times one product instead of training steps; bad sizes are named.
#[test]
fn gemm_times_one_product() {
    let o = mvdit(&["bench", "--gemm", "64,48,32", "--steps", "3", "--warmup", "1", "--threads", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["gemm"], serde_json::json!([64, 48, 32]));
    assert!(line["tflops"].as_f64().is_some_and(|t| t > 0.0) && line["s_per_product"].as_f64().is_some_and(|s| s > 0.0), "{line}");
    for (args, want) in [
        (&["bench", "--gemm", "64,48"][..], "--gemm: expected M,N,K"),
        (&["bench", "--gemm", "64,0,32"][..], "--gemm: every size must be at least 1"),
        (&["bench"][..], "--config"),
    ] {
        let o = mvdit(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
    }
}
