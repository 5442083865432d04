//! Shared helpers for the cross-backend tests: golden-case loading and error measures.

pub mod op_suite;

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
