//! Faults during training: non-finite steps are skipped without touching the state; kill -9 at
//! random moments never corrupts a run, and resuming reproduces the uninterrupted losses.

use mvdit_backend_cpu::Cpu;
use mvdit_core::Backend;
use mvdit_train::config::preset;
use mvdit_train::run::{load_data, read_metrics};
use mvdit_train::trainer::{StepOutcome, TrainState};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_non_finite_step_changes_nothing_and_is_counted() {
    let be = Cpu::new(1);
    let cfg = preset("tiny").unwrap();
    let (data, _) = load_data(&cfg).unwrap();
    let mut s = TrainState::new(&be, cfg, data.class_names.clone()).unwrap();
    s.train_step(&be, &data).unwrap();
    let i = s.model.layout.blocks[0].wq;
    let shape = be.shape(&s.model.params[i]).to_vec();
    let mut poisoned = be.download(&s.model.params[i]).unwrap();
    poisoned[0] = f32::NAN;
    s.model.params[i] = be.upload(&poisoned, &shape).unwrap();
    let before: Vec<Vec<f32>> = s.model.params.iter().chain(&s.opt.m).chain(&s.ema).map(|t| be.download(t).unwrap()).collect();
    let outcome = s.train_step(&be, &data).unwrap();
    assert!(matches!(outcome, StepOutcome::Skipped { .. }), "{outcome:?}");
    let after: Vec<Vec<f32>> = s.model.params.iter().chain(&s.opt.m).chain(&s.ema).map(|t| be.download(t).unwrap()).collect();
    let same = before.iter().zip(&after).all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert!(same, "weights, moments or EMA changed on a skipped step");
    assert_eq!((s.bad_in_row, s.bad_total, s.opt.step), (1, 1, 1));
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

fn has_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).map(|d| d.count() > 0).unwrap_or(false)
}

#[test]
fn kill_9_twenty_times_then_resume_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, killed) = (dir.path().join("clean"), dir.path().join("killed"));
    let steps = 45;
    assert!(train_cmd(&clean, steps, false).status().unwrap().success());
    let mut rng = 12345u64;
    let mut kills = 0;
    while kills < 20 {
        let mut child = train_cmd(&killed, steps, has_checkpoint(&killed)).spawn().unwrap();
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis(5 + (rng >> 33) % 60));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
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
    let (a, b) = (read_metrics(&clean).0, read_metrics(&killed).0);
    assert_eq!(a.len() as u64, steps);
    assert_eq!(a, b, "losses after 20 kills differ from the uninterrupted run");
}
