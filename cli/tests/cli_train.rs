//! `mvdit train` and `mvdit sample` end to end (smoke sizes), and Ctrl-C saving a checkpoint.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mvdit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mvdit"))
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn train_then_sample_writes_every_promised_file() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = mvdit().args(["train", "--preset", "tiny", "--quiet", "--out"]).arg(&run).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["config.json", "metrics.jsonl", "loss.png", "samples/final.png", "checkpoints/step-00000006.safetensors"] {
        assert!(run.join(f).exists(), "missing {f}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    for key in ["step", "loss", "grad_norm", "lr", "steps_per_s"] {
        assert!(first.get(key).is_some(), "metrics line lacks {key}: {first}");
    }
    assert!(metrics.contains("\"eval_loss\""));
    let out = dir.path().join("samples");
    let ck = run.join("checkpoints/step-00000006.safetensors");
    let o = mvdit()
        .args(["sample", "--class", "3", "--class", "7", "--count", "2", "--steps", "3", "--heun", "--checkpoint"])
        .arg(&ck)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["class3_0.png", "class3_1.png", "class7_0.png", "class7_1.png"] {
        assert_eq!(png_size(&out.join(f)), (8, 8), "{f}");
    }
    // 2 columns × 2 rows of 8×8 at scale 4 with 1-pixel gaps.
    assert_eq!(png_size(&out.join("grid.png")), (65, 65));
    let o = mvdit().args(["sample", "--class", "10", "--out"]).arg(&out).arg("--checkpoint").arg(&ck).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--class 10"), "{err}");
}

/// The settings written beside the images.
fn sampling(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("sampling.json")).unwrap()).unwrap()
}

#[test]
fn sampler_flags_default_to_the_checkpoints_sample_section_and_samplers_measures_them() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = mvdit().args(["train", "--preset", "tiny", "--quiet", "--out"]).arg(&run).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ck = run.join("checkpoints/step-00000006.safetensors");
    // No flag: the tiny preset's section (4 Euler steps, guidance 2, shift 4).
    let out = dir.path().join("a");
    let o = mvdit().args(["sample", "--count", "1", "--checkpoint"]).arg(&ck).arg("--out").arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("sampling: euler, 4 steps, guidance 2, shift 4: 8 model evaluations an image (steps, cfg, shift, sampler from the checkpoint)"), "{err}");
    let s = sampling(&out);
    assert_eq!((s["sampler"].as_str(), s["steps"].as_u64(), s["evaluations"].as_u64()), (Some("euler"), Some(4), Some(8)));
    // Flags win; an interval guides only its steps.
    let out = dir.path().join("b");
    let o = mvdit().args(["sample", "--count", "1", "--sampler", "dpm2m", "--steps", "6", "--cfg-interval", "0,0.5", "--checkpoint"]).arg(&ck).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = sampling(&out);
    assert_eq!((s["sampler"].as_str(), s["cfg_interval"].clone(), s["from_checkpoint"].clone()), (Some("dpm2m"), serde_json::json!([0.0, 0.5]), serde_json::json!(["cfg", "shift"])));
    assert!(s["evaluations"].as_u64().unwrap() > 6 && s["evaluations"].as_u64().unwrap() < 12, "{s}");
    for bad in [&["--cfg-interval", "0.9,0.1"][..], &["--sampler", "ddim"], &["--cfg-interval", "0.5"]] {
        let o = mvdit().args(["sample", "--checkpoint", "missing.safetensors", "--out"]).arg(dir.path().join("c")).args(bad).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && !err.contains("missing.safetensors") && !dir.path().join("c").exists(), "{bad:?}: {err}");
    }
    // `mvdit samplers`: a line per setting, the file and the plots.
    let study = dir.path().join("study");
    let o = mvdit().args(["samplers", "--samplers", "euler,dpm2m,sde", "--steps", "2,4", "--reference-steps", "20", "--images", "20", "--checkpoint"]).arg(&ck).arg("--out").arg(&study).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6);
    let (euler2, euler4) = (rows[0]["error"].as_f64().unwrap(), rows[1]["error"].as_f64().unwrap());
    assert!(euler4 < euler2, "more steps, closer to the reference: {rows:?}");
    assert!(rows[5]["error"].is_null() && rows[5]["vs_real"].as_f64().is_some(), "{}", rows[5]);
    assert_eq!(std::fs::read_to_string(study.join("samplers.jsonl")).unwrap().lines().count(), 6);
    assert!(study.join("error.png").is_file() && study.join("quality.png").is_file());
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let child = mvdit()
        .args(["train", "--preset", "tiny", "--steps", "1000000", "--quiet", "--out"])
        .arg(&run)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !run.join("checkpoints/step-00000003.safetensors").exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("checkpoint saved at step"), "{err}");
    let saved: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_string_lossy().strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok())
        .collect();
    let last = *saved.iter().max().unwrap();
    let o = mvdit().args(["train", "--resume", "--quiet", "--steps"]).arg((last + 2).to_string()).arg("--out").arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains(&format!("at step {last}")), "{err}");
}

#[test]
fn trains_on_a_folder_of_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    for (class, bright) in [("dark", 40u8), ("light", 220u8)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..6u8 {
            let img = image::GrayImage::from_fn(12, 12, |x, y| image::Luma([bright.wrapping_add(((x + y) as u8 + i) % 7)]));
            img.save(data.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let run = dir.path().join("run");
    let o = mvdit().args(["train", "--preset", "tiny", "--quiet", "--data"]).arg(&data).arg("--out").arg(&run).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["data"]["folder"].as_str(), Some(data.to_str().unwrap()));
    let o = mvdit().args(["sample", "--count", "1", "--steps", "2", "--checkpoint"]).arg(run.join("checkpoints/step-00000006.safetensors")).arg("--out").arg(dir.path().join("s")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(png_size(&dir.path().join("s/class1_0.png")), (8, 8));
    // An empty folder is a clear error.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = mvdit().args(["train", "--preset", "tiny", "--quiet", "--data"]).arg(&empty).arg("--out").arg(dir.path().join("r2")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("empty"), "{err}");
}

/// Without the `mpi` feature, a launch by `mpirun -np 2` is refused with how to build for it
/// (instead of two processes each training alone into the same directory).
#[cfg(not(feature = "mpi"))]
#[test]
fn mpirun_launch_without_the_mpi_feature_says_how_to_build() {
    let dir = tempfile::tempdir().unwrap();
    let o = mvdit().args(["train", "--preset", "tiny", "--quiet", "--out"]).arg(dir.path().join("run")).env("OMPI_COMM_WORLD_SIZE", "2").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--features mpi"), "{err}");
}
