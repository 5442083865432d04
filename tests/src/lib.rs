//! Shared helpers for the cross-backend tests: golden-case loading and error measures.

pub mod f16_suite;
pub mod op_suite;
pub mod pipeline_parity;
pub mod residual_suite;

use mvdit_model::{Checkpoint, TensorFile};
use std::path::PathBuf;

/// The folder of the PyTorch reference cases: `$MVDIT_GOLDEN_DIR`, else `../shared/golden`
/// beside the repository.
pub fn golden_dir() -> PathBuf {
    match std::env::var_os("MVDIT_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden"),
    }
}

/// A GPU backend from `open`. When it fails: `None`, after saying why, if `MVDIT_SKIP_GPU=1`;
/// otherwise a panic with the reason.
pub fn open_gpu<B>(open: impl FnOnce() -> mvdit_core::BResult<B>) -> Option<B> {
    match open() {
        Ok(be) => Some(be),
        Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipped (MVDIT_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => panic!("no GPU device: {e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
    }
}

/// The four forward/backward reference cases.
pub const GOLDEN_CASES: [&str; 4] = ["g1-ctxproj", "g2-bias-nonsquare", "g3-patch1", "g4-deep24"];

/// Loads `NAME.model.safetensors` and `NAME.case.safetensors`.
pub fn load_case(name: &str) -> (Checkpoint, TensorFile) {
    let dir = golden_dir();
    let model = dir.join(format!("{name}.model.safetensors"));
    let case = dir.join(format!("{name}.case.safetensors"));
    assert!(model.exists(), "golden file {} not found (set MVDIT_GOLDEN_DIR)", model.display());
    let ck = mvdit_model::load_checkpoint(&model, None).unwrap_or_else(|e| panic!("{e}"));
    let case = TensorFile::read(&case).unwrap_or_else(|e| panic!("{e}"));
    (ck, case)
}

/// ‖a − b‖ / ‖b‖ in f64 (‖a‖ when b is all zeros).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum::<f64>().sqrt();
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Deterministic pseudo-random values in [-scale, scale) (SplitMix64), for test inputs.
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Deterministic parameters for `cfg`: weights ~ U(±1/sqrt(fan_in)), alpha 0.05, beta 0.5.
pub fn test_params(cfg: &mvdit_core::ModelConfig, seed: u64) -> Vec<Vec<f32>> {
    let layout = mvdit_core::Layout::new(cfg);
    layout
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.name.ends_with(".alpha") {
                vec![0.05; s.numel()]
            } else if s.name.ends_with(".beta") {
                vec![0.5; s.numel()]
            } else {
                let fan_in: usize = s.shape[1..].iter().product::<usize>().max(1);
                values(s.numel(), seed + i as u64, 1.0 / (fan_in as f32).sqrt())
            }
        })
        .collect()
}

/// One training step that must update the model; its loss.
pub fn step_loss<B: mvdit_train::depth_split::StageBackend>(st: &mut mvdit_train::trainer::TrainState<B>, data: &mvdit_train::data::Dataset) -> f64 {
    match st.train_step(data).unwrap() {
        mvdit_train::step::StepOutcome::Updated { loss, .. } => loss,
        other => panic!("unexpected {other:?}"),
    }
}
