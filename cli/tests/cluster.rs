//! What a cluster does to a run: SIGTERM (a scheduler's preemption) at random moments, then
//! `--resume auto`, equals an uninterrupted run; a second run on a live directory is refused
//! naming the holder's PID, and a killed holder leaves no stale lock; a run that cannot open
//! leaves nothing; a flipped byte in a checkpoint is named by tensor, and a resume continues
//! exactly from the checkpoint before it.

use mvdit_train::run::{list_checkpoints, read_metrics};
use mvdit_train::run_dir::LOCK_NAME;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `mvdit train` of the tiny preset into `run`, quiet, one thread, `extra` appended.
fn train_cmd(run: &Path, steps: u64, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mvdit"));
    c.args(["train", "--preset", "tiny", "--quiet", "--threads", "1", "--steps", &steps.to_string(), "--out"]).arg(run).args(extra);
    c
}

fn mvdit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args).output().unwrap()
}

/// Waits until `child` holds the lock of `run` (its PID in the lock file: the run has opened,
/// its signal handlers are in place); false when it ended first.
fn wait_for_lock(child: &mut Child, run: &Path) -> bool {
    let (pid, start) = (child.id().to_string(), Instant::now());
    while start.elapsed() < Duration::from_secs(60) {
        if std::fs::read_to_string(run.join(LOCK_NAME)).is_ok_and(|s| s.trim() == pid) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the run did not open within a minute");
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

#[test]
fn sigterm_ten_times_exits_75_and_resume_auto_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, preempted) = (dir.path().join("clean"), dir.path().join("preempted"));
    let steps = 45;
    assert!(train_cmd(&clean, steps, &[]).status().unwrap().success());
    let mut rng = 2024u64;
    let (mut stops, mut spawns) = (0, 0);
    while stops < 10 {
        spawns += 1;
        assert!(spawns <= 300, "only {stops} preemptions landed inside a run in {spawns} tries");
        let mut child = train_cmd(&preempted, steps, &["--resume", "auto"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        if wait_for_lock(&mut child, &preempted) {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            std::thread::sleep(Duration::from_millis((rng >> 33) % 40));
            if child.try_wait().unwrap().is_none() {
                signal(&child, if stops % 2 == 0 { "-TERM" } else { "-USR1" });
            }
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        match o.status.code() {
            Some(75) => {
                assert!(err.contains("preempted; saving a checkpoint after this step") && err.contains("interrupted: checkpoint saved at step"), "{err}");
                stops += 1;
            }
            // The signal came after the last step: start over, so the next ones land inside.
            Some(0) => std::fs::remove_dir_all(&preempted).unwrap(),
            other => panic!("status {other:?} after a preemption: {err}"),
        }
    }
    let o = train_cmd(&preempted, steps, &["--resume", "auto"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (read_metrics(&clean).0, read_metrics(&preempted).0);
    assert_eq!(a.len() as u64, steps);
    assert_eq!(a, b, "losses after 10 preemptions differ from the uninterrupted run");
}

#[test]
fn a_second_run_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut first = train_cmd(&run, 1_000_000, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    assert!(wait_for_lock(&mut first, &run));
    let o = train_cmd(&run, 5, &["--resume", "auto"]).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let last = e.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains(&format!("in use by another mvdit run (PID {})", first.id())), "{e}");
    // Let the first write a checkpoint, then kill it: the OS drops its lock.
    while list_checkpoints(&run).is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let step = list_checkpoints(&run).pop().unwrap().0;
    let o = train_cmd(&run, step + 2, &["--resume", "auto"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(list_checkpoints(&run).pop().unwrap().0, step + 2);
}

#[test]
fn a_run_that_cannot_open_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, existing) = (dir.path().join("new/run"), dir.path().join("existing"));
    std::fs::create_dir(&existing).unwrap();
    for out in [&fresh, &existing] {
        let o = train_cmd(out, 5, &["--data", "/nonexistent/images"]).output().unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(1) && e.contains("/nonexistent/images"), "{e}");
    }
    assert!(!dir.path().join("new").exists(), "a directory the failed run created is gone");
    assert_eq!(std::fs::read_dir(&existing).unwrap().count(), 0, "an existing directory is left as it was");
}

/// Flips the lowest bit of the first value of tensor `name` in safetensors file `path`.
fn flip(path: &Path, name: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let at = 8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_is_named_and_resume_continues_exactly_from_the_checkpoint_before() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, run) = (dir.path().join("clean"), dir.path().join("run"));
    assert!(train_cmd(&clean, 9, &[]).status().unwrap().success());
    assert!(train_cmd(&run, 6, &[]).status().unwrap().success());
    let newest = run.join("checkpoints/step-00000006.safetensors");
    flip(&newest, "ema.final_proj.weight");
    let ck = newest.to_str().unwrap();
    let out = dir.path().join("samples");
    let args = ["sample", "--checkpoint", ck, "--class", "0", "--count", "1", "--steps", "2", "--out", out.to_str().unwrap()];
    let o = mvdit(&args);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.trim().lines().count() == 1, "{e}");
    assert!(e.contains("step-00000006.safetensors: tensor `ema.final_proj.weight`: checksum mismatch"), "{e}");
    // `--no-verify` reads it as it is.
    assert!(mvdit(&[&args[..], &["--no-verify"]].concat()).status.success());
    let o = train_cmd(&run, 9, &["--resume"]).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("warning: checkpoint of step 6 fails verification") && e.contains("ema.final_proj.weight") && e.contains("resuming"), "{e}");
    assert!(run.join("checkpoints/step-00000006.safetensors.corrupt").is_file(), "the damaged checkpoint is kept aside");
    assert_eq!(read_metrics(&clean).0, read_metrics(&run).0, "losses after the fall-back differ from an uninterrupted run");
}
