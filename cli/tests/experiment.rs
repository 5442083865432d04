//! `mvdit experiment mms` end to end at toy size: every variant trains, the table, results,
//! report and figures appear, and a second call reuses the finished runs.

use std::process::Command;

#[test]
fn mms_experiment_writes_table_probe_report_and_reuses_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mms");
    let args = [
        "experiment", "mms", "--depth", "4", "--width", "16", "--steps", "6", "--batch", "4", "--warmup", "2", "--diag-every", "2",
        "--threads", "1", "--out",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    for v in ["postnorm", "postnorm-halflr", "layerscale", "mvsplit"] {
        assert!(table.contains(&format!("| {v} |")), "table lacks {v}:\n{table}");
        assert!(out.join(v).join("diagnostics.jsonl").exists());
    }
    assert!(table.contains("Timestep probe"));
    let res: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let runs = res["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[1]["lr"].as_f64().unwrap() * 2.0, runs[0]["lr"].as_f64().unwrap());
    for r in runs {
        assert!(r["eval_loss"].as_f64().unwrap().is_finite(), "{r}");
        assert_eq!(r["steps"], 6);
    }
    // R² per layer: the embedded input and every block.
    for p in res["timestep_probe"].as_array().unwrap() {
        let r2 = p["r2_by_layer_from_input"].as_array().unwrap();
        assert_eq!(r2.len(), 5);
        assert!(r2.iter().all(|v| v.as_f64().is_some_and(|x| x <= 1.0)), "{p}");
    }
    for f in ["report.html", "figures/loss.png", "figures/tcs_heatmap.png", "figures/timestep_probe.png"] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    // Finished runs are reused, not retrained.
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("reusing").count(), 4, "{err}");
    // A variant named twice would train one folder from two threads: refused.
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).arg(&out).args(["--only", "mvsplit,mvsplit"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`mvsplit` named twice"));
    // Other settings in the same folder are refused.
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).arg(&out).args(["--lr", "1e-3"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("other settings"));
}

/// Appendix B at initialisation through the binary: standard-init post-norm's image tokens
/// align with depth (a TCS front), MV-Split's stay mean-free; tcs.json and the figure appear.
#[test]
fn init_front_shows_the_post_norm_front_and_not_mv_split() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("front");
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit"))
        .args(["experiment", "init-front", "--depth", "96", "--batch", "8", "--threads", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("| layer | postnorm | mvsplit |"), "{table}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("tcs.json")).unwrap()).unwrap();
    let curve = |name: &str| -> Vec<f64> { v["tcs_by_layer"][name].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let (post, mv) = (curve("postnorm"), curve("mvsplit"));
    assert_eq!((post.len(), mv.len()), (97, 97));
    // Both start from the same embedded input, nearly uncorrelated tokens.
    assert_eq!(post[0], mv[0]);
    assert!(post[0] < 0.2, "{}", post[0]);
    // The front: post-norm's tokens point one way by the last layer, MV-Split's never do.
    assert!(post[96] > 0.9, "post-norm TCS at depth 96: {}", post[96]);
    assert!(mv.iter().all(|&t| t < 0.2), "MV-Split TCS: {mv:?}");
    assert!(out.join("tcs_by_depth.png").exists());
}
