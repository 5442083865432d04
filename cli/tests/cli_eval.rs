//! `mvdit eval` end to end: the four PyTorch reference cases through the binary, and bad input
//! giving a one-line error and a non-zero exit.

use mvdit_model::TensorFile;
use std::path::PathBuf;
use std::process::Command;

fn golden(name: &str) -> PathBuf {
    mvdit_tests::golden_dir().join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mvdit-cli-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn mvdit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).output().expect("run mvdit")
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let n: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>().sqrt();
    n / b.iter().map(|&y| (y as f64).powi(2)).sum::<f64>().sqrt().max(1e-30)
}

#[test]
fn eval_with_grad_reproduces_every_golden_case() {
    check_golden_through_eval(&[], 1e-4);
}

/// The software Vulkan device in CI (mesa-vulkan-drivers); f32 shaders, 1e-3 as the issue asks.
/// Without a device: the skip rule of `mvdit_tests::gpu_or_skip`.
#[test]
fn eval_on_wgpu_reproduces_every_golden_case() {
    mvdit_tests::gpu!(mvdit_backend_wgpu::Wgpu::new(None));
    check_golden_through_eval(&["--backend", "wgpu"], 1e-3);
}

/// The same through the Vulkan backend (vulkano; lavapipe in CI), 1e-3 as the issue asks.
#[test]
fn eval_on_vulkan_reproduces_every_golden_case() {
    mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None));
    check_golden_through_eval(&["--backend", "vulkan"], 1e-3);
}

fn check_golden_through_eval(extra: &[&str], tol: f64) {
    for case in mvdit_tests::GOLDEN_CASES {
        let model = golden(&format!("{case}.model.safetensors"));
        let inputs = golden(&format!("{case}.case.safetensors"));
        let out = scratch(&format!("{case}{}.out.safetensors", extra.join("")));
        let mut args = vec!["eval", "--checkpoint", model.to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--out", out.to_str().unwrap(), "--grad"];
        args.extend_from_slice(extra);
        let o = mvdit(&args);
        assert!(o.status.success(), "{case}: {}", String::from_utf8_lossy(&o.stderr));
        let got = TensorFile::read(&out).unwrap();
        let want = TensorFile::read(&inputs).unwrap();
        let mut checked = 0;
        for (name, w) in want.tensors.iter().filter(|(n, _)| n.starts_with("output.") || n.starts_with("grad.")) {
            let g = got.tensors.get(name).unwrap_or_else(|| panic!("{case}: {name} missing from eval output"));
            assert_eq!(g.shape, w.shape, "{case}: {name} shape");
            let e = rel_err(&g.data, &w.data);
            assert!(e < tol, "{case} {extra:?}: {name} rel err {e:e}");
            checked += 1;
        }
        assert!(checked > 10, "{case}: only {checked} tensors compared");
    }
}

#[test]
fn eval_without_grad_writes_only_the_velocity() {
    let out = scratch("g1-nograd.safetensors");
    let (m, i) = (golden("g1-ctxproj.model.safetensors"), golden("g1-ctxproj.case.safetensors"));
    let o = mvdit(&["eval", "--checkpoint", m.to_str().unwrap(), "--inputs", i.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = TensorFile::read(&out).unwrap();
    assert_eq!(got.tensors.keys().collect::<Vec<_>>(), vec!["output.velocity"]);
}

#[test]
fn bad_inputs_fail_with_one_line_naming_the_problem_and_no_output() {
    let m = golden("g1-ctxproj.model.safetensors");
    let out = scratch("never.safetensors");
    // the inputs file is a model checkpoint: no input.x
    let o = mvdit(&["eval", "--checkpoint", m.to_str().unwrap(), "--inputs", m.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("input.x") && err.trim().lines().count() == 1, "{err}");
    assert!(!out.exists());
    // a checkpoint that is not a safetensors file
    let junk = scratch("junk.safetensors");
    std::fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    let o = mvdit(&["eval", "--checkpoint", junk.to_str().unwrap(), "--inputs", m.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("junk.safetensors"), "{err}");
    // a config that does not match the checkpoint's tensors
    let cfg = scratch("cfg.json");
    std::fs::write(&cfg, r#"{"in_channels":1,"patch_size":2,"hidden_size":64,"depth":1,"num_heads":2,"mlp_hidden_dim":64,"context_dim":64}"#).unwrap();
    let o = mvdit(&["eval", "--checkpoint", m.to_str().unwrap(), "--inputs", m.to_str().unwrap(), "--out", out.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("tensor `"), "{err}");
    assert!(!out.exists());
}
