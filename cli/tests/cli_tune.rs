//! `mvdit tune`: times the candidate matmul kernels of a workload's product shapes on the
//! device, writes the tune cache, reuses it without timing, refuses a damaged one in one line
//! and tunes afresh; a run given the cache takes its kernels. Skipped without a Vulkan device
//! (the skip rule of `mvdit_tests::gpu_or_skip`).

use std::path::Path;
use std::process::{Command, Output};

const TINY: &str = r#"{"in_channels":1,"patch_size":2,"image_size":8,"hidden_size":32,"depth":2,"num_heads":2,"mlp_hidden_dim":64,"qkv_bias":false,"context_dim":8,"context_tokens":1,"rope_base":10000}"#;

fn mvdit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir()).output().expect("run mvdit")
}

fn tune(w: &Path, cache: &Path) -> (String, Output) {
    let o = mvdit(&["tune", "--config", w.to_str().unwrap(), "--batch", "2", "--reps", "1", "--backend", "vulkan", "--precision", "f16", "--tune-cache", cache.to_str().unwrap()]);
    (String::from_utf8_lossy(&o.stderr).to_string(), o)
}

/// The matmul kernels of one profiled training step with the cache `cache`.
fn profiled_matmuls(w: &Path, cache: &Path) -> Vec<String> {
    let o = mvdit(&["bench", "--config", w.to_str().unwrap(), "--batch", "2", "--steps", "1", "--warmup", "0", "--backend", "vulkan", "--precision", "f16", "--profile", "--tune-cache", cache.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    line["profile"].as_array().unwrap().iter().filter_map(|k| k["kernel"].as_str()).filter(|k| k.starts_with("matmul")).map(String::from).collect()
}

#[test]
fn tune_writes_reuses_and_refuses_a_damaged_cache() {
    mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None));
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("tiny.json");
    std::fs::write(&w, TINY).unwrap();
    let cache = dir.path().join("cache/tune.json");
    let (err, o) = tune(&w, &cache);
    assert!(o.status.success(), "{err}");
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let entries = file["entries"].as_array().unwrap();
    let timed = entries.len();
    assert!(timed >= 4, "{err}");
    assert!(entries.iter().all(|e| e["seconds"].as_array().unwrap().len() >= 2 && e["f16"] == true), "{file}");
    assert!(err.contains(&format!("tune: {timed} timed, 0 from the cache")), "{err}");

    // Again: every shape from the cache, nothing timed, the file unchanged.
    let before = std::fs::read_to_string(&cache).unwrap();
    let (err, o) = tune(&w, &cache);
    assert!(o.status.success() && err.contains(&format!("tune: 0 timed, {timed} from the cache")), "{err}");
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), before);

    // A run given the cache takes its kernels without timing: all 128×128 tiles, then all 64×64.
    for (kernel, want) in [("tiled128", "matmul_tiled128_h"), ("tiled64", "matmul_tiled_h")] {
        let forced = before.replace("\"kernel\": \"tiled64\"", &format!("\"kernel\": \"{kernel}\"")).replace("\"kernel\": \"tiled128\"", &format!("\"kernel\": \"{kernel}\""));
        let path = dir.path().join(format!("{kernel}.json"));
        std::fs::write(&path, forced).unwrap();
        let used = profiled_matmuls(&w, &path);
        assert!(!used.is_empty() && used.iter().all(|k| k == want), "{kernel}: {used:?}");
    }

    // A damaged cache: one line naming the file, then tuned afresh and rewritten whole.
    std::fs::write(&cache, "{\"format\": 1, \"entries\": [").unwrap();
    let (err, o) = tune(&w, &cache);
    assert!(o.status.success(), "{err}");
    let first = err.lines().next().unwrap();
    assert!(first.contains(&cache.display().to_string()) && first.contains("damaged") && first.contains("tuning afresh"), "{err}");
    assert!(err.contains(&format!("tune: {timed} timed")), "{err}");
    let back: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_eq!(back["entries"].as_array().unwrap().len(), timed);
}

#[test]
fn tune_needs_a_gpu_backend() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("tiny.json");
    std::fs::write(&w, TINY).unwrap();
    let o = mvdit(&["tune", "--config", w.to_str().unwrap(), "--tune-cache", dir.path().join("t.json").to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--backend wgpu or vulkan") && err.lines().count() == 1, "{err}");
    assert!(!dir.path().join("t.json").exists(), "a refused run writes nothing");
}
