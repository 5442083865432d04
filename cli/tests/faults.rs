//! Faults during training: non-finite steps are skipped without touching the state; kill -9 at
//! random moments never corrupts a run, and resuming reproduces the uninterrupted losses.

use mvdit_backend_cpu::Cpu;
use mvdit_core::Backend;
use mvdit_train::config::preset;
use mvdit_train::run::{list_checkpoints, load_data, read_metrics};
use mvdit_train::step::StepOutcome;
use mvdit_train::trainer::TrainState;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_non_finite_step_changes_nothing_and_is_counted() {
    let be = Cpu::new(1);
    let cfg = preset("tiny").unwrap();
    let (data, _) = load_data(&cfg).unwrap();
    let mut s = TrainState::new(&be, cfg, data.class_names.clone()).unwrap();
    s.train_step(&data).unwrap();
    let stage = &mut s.net.stages[0];
    let i = stage.model.layout.blocks[0].wq;
    let shape = be.shape(&stage.model.params[i]).to_vec();
    let mut poisoned = be.download(&stage.model.params[i]).unwrap();
    poisoned[0] = f32::NAN;
    stage.model.params[i] = be.upload(&poisoned, &shape).unwrap();
    let all = |s: &TrainState<Cpu>| -> Vec<Vec<f32>> {
        let (st, t) = (&s.net.stages[0], s.table.as_ref().unwrap());
        st.model.params.iter().chain(&st.opt.m).chain(&s.ema[0]).chain([&t.weights, &t.opt.m[0], &t.ema]).map(|t| be.download(t).unwrap()).collect()
    };
    let before = all(&s);
    let outcome = s.train_step(&data).unwrap();
    assert!(matches!(outcome, StepOutcome::Skipped { .. }), "{outcome:?}");
    let after = all(&s);
    let same = before.iter().zip(&after).all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(same, "weights, moments or EMA changed on a skipped step");
    assert_eq!((s.bad_in_row, s.bad_total, s.net.stages[0].opt.step, s.table.as_ref().unwrap().opt.step), (1, 1, 1, 1));
}

fn train_cmd(run: &Path, steps: u64, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mvdit"));
    c.args(["train", "--preset", "tiny", "--quiet", "--steps", &steps.to_string(), "--out"]).arg(run);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Whether `--resume` has a checkpoint to continue: the trainer's own listing, so a temporary
/// file that a kill left behind during the first checkpoint's write does not count (a resume
/// would then refuse to start, and every later spawn with it).
fn has_checkpoint(run: &Path) -> bool {
    !list_checkpoints(run).is_empty()
}

#[test]
fn kill_9_twenty_times_then_resume_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, killed) = (dir.path().join("clean"), dir.path().join("killed"));
    let steps = 45;
    assert!(train_cmd(&clean, steps, false).status().unwrap().success());
    let mut rng = 12345u64;
    let (mut kills, mut spawns) = (0, 0);
    while kills < 20 {
        spawns += 1;
        assert!(spawns <= 2000, "only {kills} kills landed inside a run in {spawns} tries");
        let mut child = train_cmd(&killed, steps, has_checkpoint(&killed)).spawn().unwrap();
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis(5 + (rng >> 33) % 60));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        } else if read_metrics(&killed).0.len() as u64 >= steps {
            // The run reached its last step between kills (fast machines): start it over, so
            // the remaining kills land inside a run instead of after its end.
            std::fs::remove_dir_all(&killed).unwrap();
        }
        child.wait().unwrap();
        // Every checkpoint left behind is complete and verifies.
        for e in std::fs::read_dir(killed.join("checkpoints")).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "safetensors") {
                mvdit_model::TensorFile::read(&p).unwrap_or_else(|err| panic!("corrupt after kill {kills}: {err}"));
            }
        }
        if kills % 5 == 4 {
            // Let some runs finish a few checkpoints so the kills land at different steps.
            let _ = train_cmd(&killed, (3 * (kills as u64 + 1)).min(steps - 3), has_checkpoint(&killed)).status();
        }
    }
    assert!(train_cmd(&killed, steps, has_checkpoint(&killed)).status().unwrap().success());
    // The last run removed the partial checkpoint files the kills left.
    let partial: Vec<String> = std::fs::read_dir(killed.join("checkpoints")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).filter(|n| n.starts_with('.')).collect();
    assert!(partial.is_empty(), "partial checkpoints left: {partial:?}");
    let (a, b) = (read_metrics(&clean).0, read_metrics(&killed).0);
    assert_eq!(a.len() as u64, steps);
    assert_eq!(a, b, "losses after 20 kills differ from the uninterrupted run");
}

/// Unmounts the scratch tmpfs when the test ends, pass or fail.
struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_while_checkpointing_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // Size one checkpoint, then give the run a file system that holds it and not a second one.
    let probe = dir.path().join("probe");
    let mut cfg = preset("tiny").unwrap();
    cfg.steps = 3;
    let stop = std::sync::atomic::AtomicBool::new(false);
    mvdit_train::run::train(&Cpu::new(1), &probe, cfg.clone(), false, &stop, &mut mvdit_train::observe::Quiet).unwrap();
    let ck_bytes = std::fs::metadata(probe.join("checkpoints/step-00000003.safetensors")).unwrap().len();
    let fs = dir.path().join("small-fs");
    std::fs::create_dir_all(&fs).unwrap();
    let size_kb = (ck_bytes * 3 / 2) / 1024 + 8;
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size_kb}k"), "tmpfs"]).arg(&fs).status();
    if !mounted.is_ok_and(|s| s.success()) {
        panic!("this test needs root to mount a small tmpfs (run as root, as CI does)");
    }
    let _guard = Mount(fs.clone());
    let run = fs.join("run");
    cfg.steps = 9;
    cfg.sample.per_class = 1;
    let err = mvdit_train::run::train(&Cpu::new(1), &run, cfg, false, &stop, &mut mvdit_train::observe::Quiet).unwrap_err();
    assert!(err.0.contains("previous checkpoint is untouched"), "{err}");
    let kept = run.join("checkpoints/step-00000003.safetensors");
    mvdit_model::TensorFile::read(&kept).unwrap_or_else(|e| panic!("previous checkpoint damaged: {e}"));
    let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary files left behind: {leftovers:?}");
}

#[test]
fn a_run_removes_the_partial_checkpoint_files_a_kill_left() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let ck = run.join("checkpoints");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(ck.join(".step-00000003.safetensors.tmp4242"), b"cut short").unwrap();
    std::fs::write(ck.join(".notes"), b"not ours").unwrap();
    let mut cfg = preset("tiny").unwrap();
    cfg.steps = 1;
    let stop = std::sync::atomic::AtomicBool::new(false);
    mvdit_train::run::train(&Cpu::new(1), &run, cfg, false, &stop, &mut mvdit_train::observe::Quiet).unwrap();
    assert!(!ck.join(".step-00000003.safetensors.tmp4242").exists(), "the partial checkpoint is still there");
    assert!(ck.join(".notes").exists(), "a file that is not a partial checkpoint was removed");
    assert_eq!(list_checkpoints(&run).len(), 1);
}
