//! Checkpoints split into shards (`checkpoint_shard_mb`): a run resumed from a directory of
//! ≥ 3 shards equals an uninterrupted run bit for bit; pruning, listing, `mvdit sample`, `eval`
//! and `--init` take the directory; kill -9 during a sharded write leaves the previous
//! checkpoint whole, and `--resume` continues from it.

use mvdit_backend_cpu::Cpu;
use mvdit_model::stream_write::INDEX_NAME;
use mvdit_model::WeightFile;
use mvdit_train::config::{preset, TrainConfig};
use mvdit_train::observe::Quiet;
use mvdit_train::run::{list_checkpoints, read_metrics, train};
use mvdit_train::trainer::{Placement, TrainState};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;

/// The tiny preset (checkpoints every 3 steps) with shards of 0.02 MB: its ~150 KB state
/// splits into several files.
fn sharded(steps: u64) -> TrainConfig {
    let mut cfg = preset("tiny").unwrap();
    cfg.steps = steps;
    cfg.checkpoint_shard_mb = 0.02;
    cfg
}

fn run(dir: &Path, cfg: &TrainConfig, resume: bool) {
    let stop = AtomicBool::new(false);
    train(&Cpu::new(1), dir, cfg.clone(), resume, &stop, &mut Quiet).unwrap();
}

/// Every tensor and the resume metadata of two checkpoints equal, bit for bit.
fn same_checkpoints(a: &Path, b: &Path) {
    let (a, b) = (WeightFile::open(a).unwrap(), WeightFile::open(b).unwrap());
    assert_eq!(a.names().collect::<Vec<_>>(), b.names().collect::<Vec<_>>());
    for name in a.names() {
        let shape: Vec<Option<usize>> = a.shape(name).unwrap().iter().map(|&d| Some(d)).collect();
        let (x, y) = (a.get(name, &shape).unwrap(), b.get(name, &shape).unwrap());
        assert!(x.data.iter().zip(&y.data).all(|(p, q)| p.to_bits() == q.to_bits()), "tensor `{name}` differs");
    }
    for key in ["step", "rng", "optim_step", "bad_steps"] {
        assert_eq!(a.metadata()[key], b.metadata()[key], "{key}");
    }
    a.verify().unwrap();
    b.verify().unwrap();
}

/// The shard files of a checkpoint directory.
fn shards(dir: &Path) -> Vec<String> {
    let mut f: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).filter(|n: &String| n.starts_with("model-")).collect();
    f.sort();
    f
}

#[test]
fn a_sharded_checkpoint_resumes_bit_for_bit_and_every_reader_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    run(&whole, &sharded(9), false);
    run(&parts, &sharded(3), false);
    let first = list_checkpoints(&parts);
    assert_eq!(first.len(), 1);
    let ck = &first[0].1;
    assert!(ck.ends_with("checkpoints/step-00000003") && ck.join(INDEX_NAME).is_file(), "{ck:?}");
    let files = shards(ck);
    assert!(files.len() >= 3, "{files:?}");
    assert_eq!(files[0], format!("model-00001-of-{:05}.safetensors", files.len()));
    run(&parts, &sharded(9), true);
    let (a, b) = (list_checkpoints(&whole), list_checkpoints(&parts));
    assert_eq!(a.iter().map(|c| c.0).collect::<Vec<_>>(), [6, 9], "keep_checkpoints = 2 prunes directories");
    assert_eq!(b.iter().map(|c| c.0).collect::<Vec<_>>(), [6, 9]);
    assert!(!parts.join("checkpoints/step-00000003").exists());
    same_checkpoints(&a[1].1, &b[1].1);
    assert_eq!(read_metrics(&whole).0, read_metrics(&parts).0, "the same losses");

    // The in-memory state equals what the directory holds.
    let be = Cpu::new(1);
    let w = WeightFile::open(&b[1].1).unwrap();
    let s = TrainState::from_weights(Placement::one(&be), &w).unwrap();
    assert_eq!(s.step, 9);
    let mem = s.to_checkpoint().unwrap();
    for (name, t) in &mem.tensors {
        assert_eq!(w.get(name, &t.shape.iter().map(|&d| Some(d)).collect::<Vec<_>>()).unwrap().data, t.data, "{name}");
    }

    // mvdit sample and eval read the directory; --init starts from its weights.
    let bin = env!("CARGO_BIN_EXE_mvdit");
    let out = dir.path().join("samples");
    let o = Command::new(bin).args(["sample", "--checkpoint"]).arg(&b[1].1).args(["--count", "1", "--steps", "2", "--out"]).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("grid.png").is_file());
    let ck = mvdit_model::load_checkpoint(&b[1].1, None).unwrap();
    assert_eq!(ck.params.len(), mvdit_core::Layout::new(&ck.cfg).specs.len());
    let mut init = sharded(1);
    init.init = Some(b[1].1.clone());
    let s = TrainState::new(&be, init, s.class_names.clone()).unwrap();
    assert_eq!(s.net.to_host().unwrap(), ck.params);
}

/// The messages a run prints.
#[derive(Default)]
struct Messages(Vec<String>);

impl mvdit_train::observe::Progress for Messages {
    fn message(&mut self, msg: &str) {
        self.0.push(msg.to_string());
    }
}

#[test]
fn a_flipped_byte_in_a_shard_is_named_and_resume_continues_from_the_checkpoint_before() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, run_dir) = (dir.path().join("clean"), dir.path().join("run"));
    run(&clean, &sharded(9), false);
    run(&run_dir, &sharded(6), false);
    let ck = list_checkpoints(&run_dir).pop().unwrap().1;
    let victim = ck.join(&shards(&ck)[1]);
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    std::fs::write(&victim, bytes).unwrap();
    let e = WeightFile::open(&ck).unwrap().verify().unwrap_err().to_string();
    assert!(e.contains("model-00002-of-") && e.contains(": tensor `") && e.contains("checksum mismatch"), "{e}");
    let stop = AtomicBool::new(false);
    let mut said = Messages::default();
    train(&Cpu::new(1), &run_dir, sharded(9), true, &stop, &mut said).unwrap();
    let warning = said.0.iter().find(|m| m.contains("checkpoint of step 6 fails verification")).unwrap_or_else(|| panic!("{:?}", said.0));
    assert!(warning.contains("model-00002-of-") && warning.contains(".corrupt"), "{warning}");
    assert!(said.0.iter().any(|m| m.contains("step-00000003") && m.contains("at step 3")), "{:?}", said.0);
    assert_eq!(read_metrics(&clean).0, read_metrics(&run_dir).0, "losses after the fall-back differ from an uninterrupted run");
}

/// `mvdit train` of `cfg` into `out`, quiet.
fn train_cmd(cfg: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mvdit"));
    c.args(["train", "--quiet", "--threads", "1", "--config"]).arg(cfg).arg("--out").arg(out);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// The temporary names of unfinished checkpoint writes in a run's checkpoint folder.
fn partial(run: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(run.join("checkpoints")).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.')).collect()
}

#[test]
fn kill_9_inside_a_sharded_write_keeps_the_previous_checkpoint_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint every step, each of ~40 files (one per fsync): the process spends most of
    // its time inside a write, and the kill is sent as soon as one is seen under way.
    let mut cfg = sharded(100_000);
    cfg.checkpoint_every = 1;
    cfg.checkpoint_shard_mb = 0.004;
    let cfg_path = dir.path().join("config.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = dir.path().join("run");
    let mut landed = 0;
    for attempt in 0..40 {
        let mut child = train_cmd(&cfg_path, &out, !list_checkpoints(&out).is_empty()).spawn().unwrap();
        let start = std::time::Instant::now();
        // Wait for a complete checkpoint and a write under way (both with a deadline).
        let mut seen = false;
        while start.elapsed().as_secs() < 60 && child.try_wait().unwrap().is_none() {
            if !list_checkpoints(&out).is_empty() && partial(&out).iter().any(|p| p.is_dir()) {
                seen = true;
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(seen, "attempt {attempt}: no sharded write seen under way");
        if partial(&out).iter().any(|p| p.is_dir()) {
            landed += 1;
        }
        // Whatever the moment: every listed checkpoint is whole and verifies, and no
        // temporary name is listed.
        let all = list_checkpoints(&out);
        assert!(!all.is_empty());
        for (_, p) in &all {
            assert!(!p.file_name().unwrap().to_string_lossy().starts_with('.'), "{p:?}");
            let w = WeightFile::open(p).unwrap_or_else(|e| panic!("after kill {attempt}: {e}"));
            w.verify().unwrap_or_else(|e| panic!("after kill {attempt}: {e}"));
            TrainState::from_weights(Placement::one(&Cpu::new(1)), &w).unwrap_or_else(|e| panic!("after kill {attempt}: {e}"));
        }
        if landed >= 3 {
            break;
        }
    }
    assert!(landed >= 3, "only {landed} kills landed inside a write");
    // --resume continues from the newest complete checkpoint and clears the partial writes.
    let last = list_checkpoints(&out).pop().unwrap().0;
    let mut finish = cfg.clone();
    finish.steps = last + 2;
    std::fs::write(&cfg_path, serde_json::to_string(&finish).unwrap()).unwrap();
    let o = train_cmd(&cfg_path, &out, true).stderr(Stdio::piped()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(list_checkpoints(&out).pop().unwrap().0, last + 2);
    assert!(partial(&out).is_empty(), "partial writes left: {:?}", partial(&out));
}
