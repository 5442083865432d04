//! Dynamic loss scaling through the trainer: a scaled step on f32 products is the unscaled
//! step bit for bit; an overflow skips the step and halves the scale; a resumed run continues
//! the scale exactly.

use mvdit_backend_cpu::Cpu;
use mvdit_model::TensorFile;
use mvdit_train::config::{preset, LossScaleConfig, LossScaleMode, TrainConfig};
use mvdit_train::observe::Quiet;
use mvdit_train::run::train;
use mvdit_train::step::StepOutcome;
use mvdit_train::trainer::TrainState;
use std::sync::atomic::AtomicBool;

fn with_scale(mode: LossScaleMode, init: f64, growth_interval: u64) -> TrainConfig {
    let mut cfg = preset("tiny").unwrap();
    cfg.loss_scale = LossScaleConfig { mode, init, growth_interval };
    cfg.log_every = 1;
    cfg
}

fn weights(s: &TrainState<Cpu>) -> TensorFile {
    let mut f = s.to_checkpoint().unwrap();
    f.metadata.clear();
    f
}

#[test]
fn a_scaled_step_on_f32_products_is_the_unscaled_step_bit_for_bit() {
    let be = Cpu::new(2);
    let off = with_scale(LossScaleMode::Auto, 65536.0, 2);
    let (train_set, _) = mvdit_train::run::load_data(&off).unwrap();
    let mut plain = TrainState::new(&be, off.clone(), train_set.class_names.clone()).unwrap();
    assert!(plain.loss_scaler.is_none(), "auto leaves f32 products unscaled");
    let mut scaled = TrainState::new(&be, with_scale(LossScaleMode::Dynamic, 65536.0, 2), train_set.class_names.clone()).unwrap();
    for _ in 0..4 {
        let (a, b) = (plain.train_step(&train_set).unwrap(), scaled.train_step(&train_set).unwrap());
        assert!(matches!(a, StepOutcome::Updated { .. }));
        assert_eq!(a, b, "loss, gradient norm and lr");
    }
    assert_eq!(weights(&plain), weights(&scaled), "weights, EMA and AdamW moments");
    let s = scaled.loss_scaler.as_ref().unwrap();
    assert_eq!((s.scale, s.good_steps), (262144.0, 0), "doubled after every 2 updates: 2^16 → 2^18");
}

#[test]
fn an_overflow_skips_the_step_and_halves_the_scale_and_a_resumed_run_is_exact() {
    // 2^128 is infinite in f32: the first step's gradients overflow for certain.
    let cfg = with_scale(LossScaleMode::Dynamic, 2f64.powi(128), 2);
    let be = Cpu::new(2);
    let (train_set, _) = mvdit_train::run::load_data(&cfg).unwrap();
    let mut s = TrainState::new(&be, cfg.clone(), train_set.class_names.clone()).unwrap();
    let before = weights(&s);
    let StepOutcome::Overflow { loss, scale } = s.train_step(&train_set).unwrap() else { panic!("no overflow at 2^128") };
    assert!(loss.is_finite());
    assert_eq!(scale, 2f64.powi(127), "halved");
    assert_eq!(weights(&s), before, "an overflow changes no weight, EMA or moment");
    assert_eq!((s.step, s.net.stages[0].opt.step, s.bad_in_row), (1, 0, 0), "the batch is used, the update is not, and it is not a bad step");

    // Whole runs: 10 steps against 5 then resumed to 10; the scale falls until a step fits,
    // then grows, and both runs log the same records and end in the same state.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let stop = AtomicBool::new(false);
    let run = |dir: &std::path::Path, steps: u64, resume: bool| {
        train(&be, dir, TrainConfig { steps, ..cfg.clone() }, resume, &stop, &mut Quiet).unwrap();
    };
    run(&a, 10, false);
    run(&b, 5, false);
    run(&b, 10, true);
    let records = |dir: &std::path::Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        let mut v: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|r: &serde_json::Value| r["kind"] == "train" || r["kind"] == "overflow").collect();
        for r in &mut v {
            r.as_object_mut().unwrap().remove("steps_per_s");
        }
        v
    };
    let (ra, rb) = (records(&a), records(&b));
    assert_eq!(ra, rb, "records differ after resume");
    let kinds: Vec<&str> = ra.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    let overflows = kinds.iter().take_while(|k| **k == "overflow").count();
    assert!(overflows >= 1 && kinds[overflows..].iter().filter(|k| **k == "train").count() >= 2, "{kinds:?}");
    let scales: Vec<f64> = ra.iter().map(|r| r["loss_scale"].as_f64().unwrap()).collect();
    for (i, w) in scales.windows(2).enumerate() {
        let ratio = w[1] / w[0];
        assert!([0.5, 1.0, 2.0].contains(&ratio), "the scale moves by factors of 2: {scales:?} at {i}");
    }
    let last = |dir: &std::path::Path| TensorFile::read(&dir.join("checkpoints/step-00000010.safetensors")).unwrap();
    let (ca, cb) = (last(&a), last(&b));
    assert_eq!(ca.tensors, cb.tensors, "weights, EMA and moments differ after resume");
    assert_eq!(ca.metadata["loss_scale"], cb.metadata["loss_scale"]);
    // A train record gives the scale its step ran at (which may have doubled after it), an
    // overflow record the halved one.
    let saved: f64 = ca.metadata["loss_scale"].split(',').next().unwrap().parse().unwrap();
    let last = scales[scales.len() - 1];
    assert!(saved == last || (kinds[kinds.len() - 1] == "train" && saved == 2.0 * last), "checkpoint scale {saved}, last record {last}");
}
