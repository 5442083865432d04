//! `mvdit bench --devices` through the binary: a workload split by depth over two CPU backend
//! instances with micro-batches runs and reports its stages; bad splits are refused.

use std::process::Command;

fn bench(extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.json");
    std::fs::write(&w, r#"{"in_channels":1,"patch_size":2,"image_size":8,"hidden_size":16,"depth":3,"num_heads":2,"mlp_hidden_dim":32,"qkv_bias":false,"context_dim":16,"context_tokens":1}"#).unwrap();
    Command::new(env!("CARGO_BIN_EXE_mvdit"))
        .args(["bench", "--batch", "4", "--steps", "1", "--warmup", "0", "--threads", "2", "--config"])
        .arg(&w)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn bench_splits_a_workload_over_two_cpu_instances() {
    let o = bench(&["--devices", "0,1", "--micro-batches", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["devices"], 2);
    assert_eq!(v["micro_batches"], 2);
    assert_eq!(v["stages"], serde_json::json!(["0..1", "1..3"]));
    assert!(v["median_s"].as_f64().unwrap() > 0.0);

    let o = bench(&["--devices", "0,1", "--micro-batches", "5"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("micro-batches"));
    let o = bench(&["--devices", "0,1,2,3"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--devices"));
}
