//! `diagnostics.stop_after_mms`: a run ends that many steps after the MMS detector fires, as a
//! normal finish (checkpoint at the stop), and resuming it takes no further step.

use mvdit_backend_cpu::Cpu;
use mvdit_train::config::{preset, DetectorConfig, DiagConfig, DiagSetting};
use mvdit_train::diagnostics::read_diagnostics;
use mvdit_train::observe::Quiet;
use mvdit_train::run::{list_checkpoints, train};
use std::sync::atomic::AtomicBool;

#[test]
fn a_run_stops_k_steps_after_the_detector_fires_and_stays_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut cfg = preset("tiny").unwrap();
    cfg.model.depth = 4;
    cfg.steps = 60;
    cfg.checkpoint_every = 1000;
    // A hair-trigger detector: every record counts as collapsed tokens, and any record whose
    // writer ratio tops the earlier median is a shock, so it fires within a few records.
    let detector = DetectorConfig {
        ratio_min: 1e-300,
        jump: 1.0,
        tcs: -2.0,
        ..DetectorConfig::default()
    };
    cfg.diagnostics = DiagSetting::On(DiagConfig {
        anchors: vec![0, 3],
        detector,
        stop_after_mms: Some(3),
        ..DiagConfig::new(1)
    });
    let stop = AtomicBool::new(false);
    let done = train(&Cpu::new(1), &dir, cfg.clone(), false, &stop, &mut Quiet).unwrap();
    let (_, events) = read_diagnostics(&dir);
    let mms: Vec<_> = events.iter().filter(|e| e["event"] == "mms").collect();
    assert_eq!(mms.len(), 1, "{events:?}");
    let fired_at = mms[0]["step"].as_u64().unwrap();
    assert!(done.stopped_after_mms, "ran to step {}", done.step);
    assert_eq!(done.step, fired_at + 3);
    assert_eq!(
        list_checkpoints(&dir).last().map(|c| c.0),
        Some(done.step),
        "a checkpoint at the stop"
    );
    // Resuming replays the detector and takes no step, writes no second checkpoint and no
    // second held-out loss.
    let metrics = std::fs::read(dir.join("metrics.jsonl")).unwrap();
    let again = train(&Cpu::new(1), &dir, cfg, true, &stop, &mut Quiet).unwrap();
    assert!(again.stopped_after_mms);
    assert_eq!(again.step, done.step);
    assert_eq!(std::fs::read(dir.join("metrics.jsonl")).unwrap(), metrics);
    assert_eq!(again.checkpoint, done.checkpoint);
}
