//! Data-parallel training over MPI (feature `mpi`): 2 and 3 ranks under `mpirun` train to the
//! same losses and weights as one process with the same global batch, and a 2-rank run resumed
//! from its checkpoint continues exactly; so do 2 ranks each holding a 2-stage depth split. Needs `mpirun` (Debian: openmpi-bin).
#![cfg(feature = "mpi")]

use mvdit_model::TensorFile;
use std::path::Path;
use std::process::Command;

const STEPS: &str = "4";

fn mvdit_args(run: &Path, steps: &str) -> Vec<String> {
    // The tiny preset (batch 8) with a small bucket so gradients travel in several all-reduces.
    ["train", "--preset", "tiny", "--quiet", "--threads", "1", "--bucket-mb", "0.002", "--steps", steps, "--out"]
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(run.display().to_string()))
        .collect()
}

fn single(run: &Path, steps: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit")).args(mvdit_args(run, steps)).output().unwrap();
    assert!(o.status.success(), "single process: {}", String::from_utf8_lossy(&o.stderr));
}

fn mpirun(ranks: usize, run: &Path, steps: &str, resume: bool) {
    mpirun_with(ranks, run, steps, resume, &[]);
}

/// `mpirun -np ranks mvdit train …` with `extra` arguments (e.g. a depth split on every rank).
fn mpirun_with(ranks: usize, run: &Path, steps: &str, resume: bool, extra: &[&str]) {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "-np", &ranks.to_string(), env!("CARGO_BIN_EXE_mvdit")]);
    c.args(mvdit_args(run, steps));
    c.args(extra);
    if resume {
        c.arg("--resume");
    }
    // Open MPI in containers: no shared-memory CMA between processes, plain TCP on loopback.
    c.env("OMPI_MCA_btl_vader_single_copy_mechanism", "none").env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    let o = c.output().unwrap_or_else(|e| panic!("cannot run mpirun (install openmpi-bin): {e}"));
    assert!(o.status.success(), "mpirun -np {ranks}: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

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

fn checkpoint(run: &Path) -> TensorFile {
    TensorFile::read(&run.join(format!("checkpoints/step-{:08}.safetensors", STEPS.parse::<u64>().unwrap()))).unwrap()
}

/// Every tensor of the checkpoint (weights, EMA, AdamW moments, class table) within `tol` of the
/// reference, relative to the tensor's largest magnitude; returns the worst ratio.
fn assert_same_state(got: &TensorFile, want: &TensorFile, tol: f64, what: &str) -> f64 {
    assert_eq!(got.tensors.keys().collect::<Vec<_>>(), want.tensors.keys().collect::<Vec<_>>(), "{what}: tensor names");
    assert_eq!(got.metadata.get("rng"), want.metadata.get("rng"), "{what}: RNG state");
    assert_eq!(got.metadata.get("step"), want.metadata.get("step"), "{what}: step");
    let mut worst = 0.0f64;
    for (name, w) in &want.tensors {
        let g = &got.tensors[name];
        assert_eq!(g.shape, w.shape, "{what}: {name}");
        let scale = w.data.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
        let diff = g.data.iter().zip(&w.data).fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        let rel = if scale > 0.0 { diff / scale } else { diff };
        assert!(rel <= tol, "{what}: {name} differs by {diff:e} (scale {scale:e}, relative {rel:e})");
        worst = worst.max(rel);
    }
    worst
}

fn assert_same_losses(got: &[(String, u64, f64)], want: &[(String, u64, f64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for ((k1, s1, a), (k2, s2, b)) in got.iter().zip(want) {
        assert_eq!((k1, s1), (k2, s2), "{what}");
        assert!(((a - b) / b).abs() <= 1e-5, "{what}: step {s1} loss {a} vs {b}");
    }
}

#[test]
fn two_and_three_ranks_match_one_process_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    single(&one, STEPS);
    let (want_losses, want) = (losses(&one), checkpoint(&one));
    assert_eq!(want_losses.iter().filter(|(_, s, _)| *s == 4).count(), 2, "train and eval loss at the last step: {want_losses:?}");

    for ranks in [2, 3] {
        let run = dir.path().join(format!("np{ranks}"));
        mpirun(ranks, &run, STEPS, false);
        assert_same_losses(&losses(&run), &want_losses, &format!("{ranks} ranks"));
        let worst = assert_same_state(&checkpoint(&run), &want, 1e-5, &format!("{ranks} ranks"));
        eprintln!("{ranks} ranks vs one process: worst relative difference {worst:e}");
        assert!(run.join("samples/final.png").exists() && run.join("loss.png").exists());
    }

    // Stop after 2 steps, resume to 4 on 2 ranks: every rank continues from rank 0's checkpoint.
    let run = dir.path().join("resumed");
    mpirun(2, &run, "2", false);
    mpirun(2, &run, STEPS, true);
    // The first part's final checkpoint at step 2 adds a held-out record the straight run lacks.
    let resumed: Vec<_> = losses(&run).into_iter().filter(|(k, s, _)| !(k == "eval" && *s == 2)).collect();
    assert_same_losses(&resumed, &want_losses, "2 ranks resumed");
    assert_same_state(&checkpoint(&run), &want, 1e-5, "2 ranks resumed");
}

/// Both kinds of parallelism at once: 2 data-parallel ranks, each holding the model split by
/// depth over 2 CPU stages with 2 micro-batches (GPipe), train as one unsplit process does; a
/// resumed run of that layout continues from its checkpoint.
#[test]
fn two_ranks_each_holding_two_depth_stages_match_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    single(&one, STEPS);
    let split = ["--devices", "0,1", "--micro-batches", "2"];
    let run = dir.path().join("np2x2");
    mpirun_with(2, &run, STEPS, false, &split);
    assert_same_losses(&losses(&run), &losses(&one), "2 ranks × 2 stages");
    let worst = assert_same_state(&checkpoint(&run), &checkpoint(&one), 1e-5, "2 ranks × 2 stages");
    eprintln!("2 ranks × 2 depth stages vs one process: worst relative difference {worst:e}");
    let resumed = dir.path().join("np2x2-resumed");
    mpirun_with(2, &resumed, "2", false, &split);
    mpirun_with(2, &resumed, STEPS, true, &split);
    assert_same_state(&checkpoint(&resumed), &checkpoint(&one), 1e-5, "2 ranks × 2 stages resumed");
}

/// Micro-batches finer than a rank's share of the batch: every rank refuses (none waits).
#[test]
fn micro_batches_finer_than_a_ranks_share_are_refused_on_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root", "-np", "2", env!("CARGO_BIN_EXE_mvdit")]);
    c.args(mvdit_args(&run, "2")).args(["--devices", "0,1", "--micro-batches", "5"]);
    let o = c.env("OMPI_MCA_btl_vader_single_copy_mechanism", "none").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--micro-batches 5") && err.contains("4 samples"), "{err}");
}

#[test]
fn a_batch_smaller_than_the_rank_count_is_refused_on_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    let mut v = serde_json::to_value(mvdit_train::config::preset("tiny").unwrap()).unwrap();
    v["batch_size"] = 2.into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    let o = Command::new("mpirun")
        .args(["--oversubscribe", "--allow-run-as-root", "-np", "3", env!("CARGO_BIN_EXE_mvdit"), "train", "--quiet", "--threads", "1", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.path().join("run"))
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("batch_size"), "{err}");
}

/// Every tensor and the metadata of a checkpoint file or sharded directory, in memory.
fn read_any(path: &Path) -> TensorFile {
    let w = mvdit_model::WeightFile::open(path).unwrap();
    let mut f = TensorFile { metadata: w.metadata().clone(), ..Default::default() };
    for name in w.names() {
        let shape: Vec<Option<usize>> = w.shape(name).unwrap().iter().map(|&d| Some(d)).collect();
        f.insert(name, w.get(name, &shape).unwrap());
    }
    f
}

#[test]
fn a_rank_that_cannot_read_the_checkpoint_gets_its_shards_from_rank_0() {
    // Rank 1 works in another folder, so the relative --out names a run it does not have: no
    // shared file system. The checkpoint is sharded (0.02 MB a file) and travels file by file.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = mvdit_train::config::preset("tiny").unwrap();
    cfg.checkpoint_shard_mb = 0.02;
    let cfg_path = dir.path().join("c.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let args = |out: &str, steps: &str, resume: bool| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--quiet", "--threads", "1", "--steps", steps, "--out", out, "--config"].iter().map(|s| s.to_string()).collect();
        v.push(cfg_path.display().to_string());
        if resume {
            v.push("--resume".into());
        }
        v
    };
    let launch = |steps: &str, resume: bool| {
        let mut c = Command::new("mpirun");
        c.args(["--oversubscribe", "--allow-run-as-root", "-np", "1", "--wdir"]).arg(&a).arg(env!("CARGO_BIN_EXE_mvdit")).args(args("run", steps, resume));
        c.args([":", "-np", "1", "--wdir"]).arg(&b).arg(env!("CARGO_BIN_EXE_mvdit")).args(args("run", steps, resume));
        c.env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    };
    launch("2", false);
    launch(STEPS, true);
    assert!(!b.join("run").exists(), "rank 1 wrote nothing of its own");
    let got = read_any(&a.join(format!("run/checkpoints/step-{:08}", STEPS.parse::<u64>().unwrap())));
    let one = dir.path().join("one");
    let o = Command::new(env!("CARGO_BIN_EXE_mvdit")).args(args(one.to_str().unwrap(), STEPS, false)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = read_any(&one.join(format!("checkpoints/step-{:08}", STEPS.parse::<u64>().unwrap())));
    assert_same_state(&got, &want, 1e-5, "2 ranks, rank 1 without the checkpoint");
}

/// `mpirun -np ranks mvdit train …` of the tiny preset into `run`, started (not waited for);
/// `mca` adds Open MPI parameters, `extra` arguments of `mvdit train`.
fn spawn_mpirun(ranks: usize, run: &Path, steps: &str, mca: &[&str], extra: &[&str]) -> std::process::Child {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "--allow-run-as-root"]).args(mca).args(["-np", &ranks.to_string(), env!("CARGO_BIN_EXE_mvdit")]);
    c.args(mvdit_args(run, steps)).args(extra);
    c.env("OMPI_MCA_btl_vader_single_copy_mechanism", "none").env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    c.spawn().unwrap_or_else(|e| panic!("cannot run mpirun (install openmpi-bin): {e}"))
}

/// The PIDs of the ranks under `mpirun` (its children) once rank 0 holds the run's lock
/// (every rank is then past MPI_Init and its signal handlers), rank 0 first.
fn rank_pids(mpirun: &mut std::process::Child, run: &Path, ranks: usize) -> Vec<u32> {
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed().as_secs() < 60 && mpirun.try_wait().unwrap().is_none(), "the ranks did not start");
        let root = std::fs::read_to_string(run.join(mvdit_train::run_dir::LOCK_NAME)).ok().and_then(|s| s.trim().parse::<u32>().ok());
        let out = Command::new("pgrep").args(["-P", &mpirun.id().to_string()]).output().unwrap();
        let mut pids: Vec<u32> = String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if let Some(root) = root.filter(|r| pids.contains(r) && pids.len() == ranks) {
            pids.retain(|&p| p != root);
            pids.insert(0, root);
            return pids;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Waits for `child` at most `secs` seconds; its status and stderr.
fn wait_within(mut child: std::process::Child, secs: u64) -> (std::process::ExitStatus, String) {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() >= secs {
            let _ = child.kill();
            panic!("mpirun still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).to_string())
}

/// The train losses of a run, by step.
fn train_losses(run: &Path) -> Vec<(u64, f64)> {
    losses(run).into_iter().filter(|(k, _, _)| k == "train").map(|(_, s, l)| (s, l)).collect()
}

/// The last checkpoint's step.
fn last_checkpoint(run: &Path) -> u64 {
    mvdit_train::run::list_checkpoints(run).pop().expect("a checkpoint").0
}

/// Resumes `run` on `ranks` to 2 steps past its last checkpoint, then checks its losses against
/// an uninterrupted run of as many steps on as many ranks, exactly.
fn resume_matches_uninterrupted(dir: &Path, run: &Path, ranks: usize, resume: &[&str]) {
    let steps = (last_checkpoint(run) + 2).to_string();
    let (status, err) = wait_within(spawn_mpirun(ranks, run, &steps, &[], resume), 120);
    assert!(status.success(), "resume: {err}");
    let straight = dir.join(format!("straight-{}", run.file_name().unwrap().to_string_lossy()));
    let (status, err) = wait_within(spawn_mpirun(ranks, &straight, &steps, &[], &[]), 120);
    assert!(status.success(), "uninterrupted: {err}");
    assert_eq!(train_losses(run), train_losses(&straight), "{ranks} ranks resumed vs uninterrupted");
}

#[test]
fn sigterm_to_one_rank_stops_every_rank_at_the_same_step_with_status_75() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut job = spawn_mpirun(2, &run, "100000", &[], &[]);
    let pids = rank_pids(&mut job, &run, 2);
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(Command::new("kill").args(["-TERM", &pids[1].to_string()]).status().unwrap().success());
    let (status, err) = wait_within(job, 60);
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(err.contains("SIGTERM: preempted") && err.contains("interrupted: checkpoint saved at step"), "{err}");
    // Rank 0 saved at the step where both stopped: its last train record.
    assert_eq!(train_losses(&run).last().unwrap().0, last_checkpoint(&run));
    resume_matches_uninterrupted(dir.path(), &run, 2, &["--resume", "auto"]);
}

#[test]
fn a_dead_rank_ends_the_others_within_the_collective_timeout_and_resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    // Open MPI's mpirun ends every rank when one dies; told not to (as other launchers may
    // not), the survivors end themselves after --collective-timeout.
    let keep = ["--mca", "orte_abort_on_non_zero_status", "0"];
    for (ranks, victim, mca) in [(2, 1, &[][..]), (2, 1, &keep[..]), (3, 0, &keep[..])] {
        let run = dir.path().join(format!("np{ranks}-kill{victim}-{}", mca.len()));
        let mut job = spawn_mpirun(ranks, &run, "100000", mca, &["--collective-timeout", "2"]);
        let pids = rank_pids(&mut job, &run, ranks);
        // A checkpoint to resume from first (on a loaded machine the first steps can be slow).
        let start = std::time::Instant::now();
        while mvdit_train::run::list_checkpoints(&run).is_empty() {
            assert!(start.elapsed().as_secs() < 60 && job.try_wait().unwrap().is_none(), "no checkpoint written");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(Command::new("kill").args(["-KILL", &pids[victim].to_string()]).status().unwrap().success());
        let (status, err) = wait_within(job, 30);
        assert!(!status.success(), "{err}");
        if !mca.is_empty() {
            assert!(err.contains("did not join the") && err.contains("--collective-timeout") && err.contains("step "), "{err}");
        }
        let left = Command::new("pgrep").args(["-f", &run.display().to_string()]).output().unwrap();
        assert!(left.stdout.is_empty(), "ranks left running: {}", String::from_utf8_lossy(&left.stdout));
        resume_matches_uninterrupted(dir.path(), &run, ranks, &["--resume"]);
    }
}

#[test]
fn killing_the_writer_inside_a_checkpoint_write_keeps_the_last_checkpoint_and_resume_is_exact() {
    // A sharded checkpoint (~40 files, each fsynced) every step: rank 0 spends most of its time
    // writing, and is killed as soon as a write is seen under way.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = mvdit_train::config::preset("tiny").unwrap();
    cfg.checkpoint_every = 1;
    cfg.checkpoint_shard_mb = 0.004;
    let cfg_path = dir.path().join("c.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let run = dir.path().join("run");
    let extra = ["--config", cfg_path.to_str().unwrap(), "--collective-timeout", "2"];
    let mut job = spawn_mpirun(2, &run, "100000", &["--mca", "orte_abort_on_non_zero_status", "0"], &extra);
    let pids = rank_pids(&mut job, &run, 2);
    let writing = |run: &Path| std::fs::read_dir(run.join("checkpoints")).into_iter().flatten().flatten().any(|e| e.file_name().to_string_lossy().starts_with(".step-"));
    let start = std::time::Instant::now();
    while !(mvdit_train::run::list_checkpoints(&run).len() >= 2 && writing(&run)) {
        assert!(start.elapsed().as_secs() < 60, "no checkpoint write seen");
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    assert!(Command::new("kill").args(["-KILL", &pids[0].to_string()]).status().unwrap().success());
    let (status, err) = wait_within(job, 30);
    assert!(!status.success() && err.contains("did not join the"), "{err}");
    let left = Command::new("pgrep").args(["-f", &run.display().to_string()]).output().unwrap();
    assert!(left.stdout.is_empty(), "ranks left running: {}", String::from_utf8_lossy(&left.stdout));
    let newest = mvdit_train::run::list_checkpoints(&run).pop().unwrap().1;
    mvdit_model::WeightFile::open(&newest).unwrap().verify().unwrap();
    let steps = (last_checkpoint(&run) + 2).to_string();
    let resume = ["--config", cfg_path.to_str().unwrap(), "--resume"];
    let (status, err) = wait_within(spawn_mpirun(2, &run, &steps, &[], &resume), 120);
    assert!(status.success(), "resume: {err}");
    let straight = dir.path().join("straight");
    let (status, err) = wait_within(spawn_mpirun(2, &straight, &steps, &[], &resume[..2]), 120);
    assert!(status.success(), "uninterrupted: {err}");
    assert_eq!(train_losses(&run), train_losses(&straight), "resumed after the writer died vs uninterrupted");
}
