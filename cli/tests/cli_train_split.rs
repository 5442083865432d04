//! `mvdit train --devices 0,1 --micro-batches 2` through the binary: the block stack split over
//! two CPU backend instances trains to the same losses and checkpoint as the unsplit run, writes
//! ordinary checkpoints (resumable split or unsplit, sampleable), resumes exactly, and bad
//! `--devices` values are refused naming the flag.

use mvdit_model::TensorFile;
use std::path::Path;
use std::process::{Command, Output};

fn mvdit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mvdit"))
}

/// `mvdit train` on the tiny preset (2 blocks, batch 8) for `steps` steps with `extra` flags.
fn train(run: &Path, steps: u64, extra: &[&str]) -> Output {
    mvdit().args(["train", "--preset", "tiny", "--quiet", "--threads", "2", "--steps", &steps.to_string(), "--out"]).arg(run).args(extra).output().unwrap()
}

fn train_ok(run: &Path, steps: u64, extra: &[&str]) {
    let o = train(run, steps, extra);
    assert!(o.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&o.stderr));
}

const SPLIT: [&str; 4] = ["--devices", "0,1", "--micro-batches", "2"];

/// (kind, step, loss) of every train and held-out record.
fn losses(run: &Path) -> Vec<(String, u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train" || v["kind"] == "eval")
        .map(|v| (v["kind"].as_str().unwrap().to_string(), v["step"].as_u64().unwrap(), v["loss"].as_f64().or(v["eval_loss"].as_f64()).unwrap()))
        .collect()
}

fn checkpoint(run: &Path, step: u64) -> TensorFile {
    TensorFile::read(&run.join(format!("checkpoints/step-{step:08}.safetensors"))).unwrap()
}

fn assert_same_losses(got: &[(String, u64, f64)], want: &[(String, u64, f64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for ((k1, s1, a), (k2, s2, b)) in got.iter().zip(want) {
        assert_eq!((k1, s1), (k2, s2), "{what}");
        assert!(((a - b) / b).abs() <= 1e-5, "{what}: {k1} loss at step {s1}: {a} vs {b}");
    }
}

/// Same tensor names and shapes, RNG state and step; every tensor (weights, EMA, both AdamW
/// moments, class table) within 1e-5 of the reference's largest magnitude. → the worst ratio.
fn assert_same_state(got: &TensorFile, want: &TensorFile, what: &str) -> f64 {
    assert_eq!(got.tensors.keys().collect::<Vec<_>>(), want.tensors.keys().collect::<Vec<_>>(), "{what}: tensor names");
    for key in ["rng", "step", "optim_step", "config"] {
        assert_eq!(got.metadata.get(key), want.metadata.get(key), "{what}: metadata {key}");
    }
    let mut worst = 0.0f64;
    for (name, w) in &want.tensors {
        let g = &got.tensors[name];
        assert_eq!(g.shape, w.shape, "{what}: {name}");
        let scale = w.data.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
        let diff = g.data.iter().zip(&w.data).fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        let rel = if scale > 0.0 { diff / scale } else { diff };
        assert!(rel <= 1e-5, "{what}: {name} differs by {diff:e} (scale {scale:e})");
        worst = worst.max(rel);
    }
    worst
}

#[test]
fn a_split_run_matches_the_unsplit_run_and_resumes_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let (one, split) = (dir.path().join("one"), dir.path().join("split"));
    train_ok(&one, 4, &[]);
    train_ok(&split, 4, &SPLIT);
    let want = losses(&one);
    assert_eq!(want.len(), 4 + 2, "4 train losses and the held-out losses at steps 3 and 4: {want:?}");
    assert_same_losses(&losses(&split), &want, "split");
    let worst = assert_same_state(&checkpoint(&split, 4), &checkpoint(&one, 4), "split");
    eprintln!("split vs unsplit: worst relative checkpoint difference {worst:e}");
    assert!(split.join("samples/final.png").exists() && split.join("loss.png").exists());

    // A split run stopped at step 2 and resumed split continues exactly where it stopped.
    let resumed = dir.path().join("resumed");
    train_ok(&resumed, 2, &SPLIT);
    train_ok(&resumed, 4, &[&SPLIT[..], &["--resume"]].concat());
    // The first part's final checkpoint at step 2 adds a held-out record the straight run lacks.
    let got: Vec<_> = losses(&resumed).into_iter().filter(|(k, s, _)| !(k == "eval" && *s == 2)).collect();
    assert_eq!(got, losses(&split), "split run resumed split");
    assert_eq!(checkpoint(&resumed, 4).tensors, checkpoint(&split, 4).tensors, "split run resumed split");

    // Checkpoints are ordinary: a split run resumes unsplit, an unsplit run resumes split.
    let crossed = dir.path().join("crossed");
    train_ok(&crossed, 2, &SPLIT);
    train_ok(&crossed, 4, &["--resume"]);
    assert_same_state(&checkpoint(&crossed, 4), &checkpoint(&one, 4), "split, resumed unsplit");
    let crossed = dir.path().join("crossed2");
    train_ok(&crossed, 2, &[]);
    train_ok(&crossed, 4, &["--resume", "--devices", "1,0"]);
    assert_same_state(&checkpoint(&crossed, 4), &checkpoint(&one, 4), "unsplit, resumed split");

    // And `mvdit sample` reads the split run's checkpoint.
    let out = dir.path().join("samples");
    let o = mvdit().args(["sample", "--class", "1", "--count", "1", "--steps", "2", "--checkpoint"]).arg(split.join("checkpoints/step-00000004.safetensors")).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("class1_0.png").exists());
}

#[test]
fn bad_devices_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--devices", "0,x"], "--devices"),
        (&["--devices", ""], "--devices"),
        // The tiny model has 2 blocks: at most 2 stages.
        (&["--devices", "0,1,2"], "--devices"),
        (&["--devices", "0,1", "--device", "0"], "--devices"),
        (&["--devices", "0,1", "--micro-batches", "9"], "--micro-batches"),
        (&["--micro-batches", "0"], "--micro-batches"),
    ];
    for (i, (args, flag)) in cases.iter().enumerate() {
        let o = train(&dir.path().join(format!("r{i}")), 1, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Diagnostics probe one pass of the whole model: refused with a split, naming both.
    let cfg = dir.path().join("diag.json");
    let mut v = serde_json::to_value(mvdit_train::config::preset("tiny").unwrap()).unwrap();
    v["diagnostics"] = serde_json::json!({"every": 1});
    std::fs::write(&cfg, v.to_string()).unwrap();
    let o = mvdit().args(["train", "--quiet", "--steps", "1", "--devices", "0,1", "--config"]).arg(&cfg).arg("--out").arg(dir.path().join("diag")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("`diagnostics`") && err.contains("--devices"), "{err}");
}
