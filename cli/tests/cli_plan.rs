//! `mvdit plan` through the binary: the released 1000-layer configuration's exact parameter
//! count (against `Layout`), the JSON form, and bad input named in one line.

use mvdit_core::Layout;
use std::process::Command;

fn plan(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).arg("plan").args(args).output().unwrap()
}

fn released() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/released-1000.json").to_string()
}

#[test]
fn released_model_plan_counts_every_parameter() {
    let w = mvdit_train::config::Workload::read(std::path::Path::new(&released())).unwrap();
    let n = Layout::new(&w.model).numel();
    // patch 128·1024 + 1024, 1000 blocks of 4·1024² + 3·1024·3072 + 4·1024, final 1024·128 + 128.
    assert_eq!(n, 131_072 + 1024 + 1000 * 13_635_584 + 131_072 + 128);
    let o = plan(&["--config", &released(), "--batch", "16"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("13,635,847,296 (13.6 B)"), "{text}");
    assert!(text.contains("with block recompute"), "{text}");

    let o = plan(&["--config", &released(), "--batch", "16", "--device-memory", "80GB", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["params"].as_u64(), Some(n as u64));
    assert_eq!(v["state_bytes"].as_u64(), Some(20 * n as u64));
    // 273 GB of f32 training state cannot fit fewer than 4 devices of 80 GB.
    assert!(v["devices_recompute"].as_u64().unwrap() >= 4, "{v}");
    assert!(v["devices"].as_u64().unwrap() >= v["devices_recompute"].as_u64().unwrap(), "{v}");
    // Sampling: the whole f32 model needs more than its 54.5 GB of weights; streamed in stages
    // of at most 20 GB (a quarter of 80 GB) it needs far less, over several stages.
    let (whole, streamed) = (v["sampling_bytes"].as_u64().unwrap(), v["sampling_bytes_streamed"].as_u64().unwrap());
    assert!(whole > 4 * n as u64 && streamed < 20_000_000_000 + (whole - 4 * n as u64), "{v}");
    assert!(v["sampling_stages"].as_u64().unwrap() >= 3, "{v}");
    // 16-bit weights: half the f32 weights, plus one unpacked stage and the working set.
    let half = v["sampling_bytes_16bit"].as_u64().unwrap();
    let params = v["params"].as_u64().unwrap();
    assert!(half < whole && half >= 2 * params && half <= 2 * params + (whole - 4 * params) + (256 << 20), "{v}");
}

#[test]
fn bad_plan_input_is_named() {
    let o = plan(&["--config", &released(), "--device-memory", "lots"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--device-memory"));
    let o = plan(&["--config", &released(), "--batch", "0"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("batch"));
    let o = plan(&["--config", "/nonexistent/c.json"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot read"));
}
