//! Shared helpers for the cross-backend tests: golden-case loading, error measures, test
//! values and the skip rule of the GPU tests.

pub mod f16_suite;
pub mod frozen_suite;
pub mod golden_suite;
pub mod op_suite;
pub mod pipeline_parity;
pub mod residual_suite;

use mvdit_core::{BackendError, Capability};
use mvdit_model::{Checkpoint, TensorFile};
use std::borrow::Borrow;
use std::path::PathBuf;

/// The folder of the PyTorch reference cases: `$MVDIT_GOLDEN_DIR` (test binaries run away from
/// their source tree, as `scripts/gpu-check` does), else `tests/golden` (see its README).
pub fn golden_dir() -> PathBuf {
    match std::env::var_os("MVDIT_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden"),
    }
}

/// The skip rule of every GPU test, applied to the result of opening its device: the device; or
/// `None` after printing "skipped: …" when the device lacks an optional capability the test
/// needs ([`BackendError::Unsupported`]: f16 shaders, subgroup arithmetic, cooperative
/// matrices; whatever `MVDIT_SKIP_GPU` says: a property of the device, not a missing GPU;
/// except cooperative matrices under `MVDIT_REQUIRE_COOP=1`, how a run proves that the
/// cooperative kernels ran, which panic) or when there is no device and `MVDIT_SKIP_GPU=1`;
/// otherwise a panic with the reason.
pub fn gpu_or_skip<B, E: Borrow<BackendError>>(opened: Result<B, E>) -> Option<B> {
    let e = match opened {
        Ok(be) => return Some(be),
        Err(e) => e,
    };
    let e = e.borrow();
    let coop_required = std::env::var("MVDIT_REQUIRE_COOP").as_deref() == Ok("1");
    match e.lacks() {
        Some(Capability::CooperativeMatrices) if coop_required => panic!("{e} (MVDIT_REQUIRE_COOP=1: cooperative matrices are required)"),
        Some(_) => {
            eprintln!("skipped: the device lacks a capability this test needs: {e}");
            None
        }
        None if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipped: no GPU device (MVDIT_SKIP_GPU=1): {e}");
            None
        }
        None => panic!("no GPU device: {e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
    }
}

/// `gpu!(opened)` in a test function: the backend, or `return` from the test under the skip
/// rule of [`gpu_or_skip`].
#[macro_export]
macro_rules! gpu {
    ($opened:expr) => {
        match $crate::gpu_or_skip($opened) {
            Some(be) => be,
            None => return,
        }
    };
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

pub use mvdit_core::rng::values;

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

#[cfg(test)]
mod tests {
    use super::gpu_or_skip;
    use mvdit_core::{BackendError, Capability};

    #[test]
    fn the_skip_rule() {
        assert_eq!(gpu_or_skip(Ok::<u8, BackendError>(3)), Some(3));
        for lacking in [Capability::F16, Capability::Subgroups] {
            let e = BackendError::Unsupported(lacking, "device `x` lacks it".into());
            assert_eq!(gpu_or_skip(Err::<u8, _>(&e)), None, "{lacking:?}");
        }
        let no_coop = std::panic::catch_unwind(|| gpu_or_skip(Err::<u8, _>(BackendError::Unsupported(Capability::CooperativeMatrices, "cooperative matrices required (coop on): ...".into()))));
        match std::env::var("MVDIT_REQUIRE_COOP").as_deref() {
            Ok("1") => assert!(no_coop.is_err(), "MVDIT_REQUIRE_COOP=1: a device without cooperative matrices must fail"),
            _ => assert_eq!(no_coop.ok(), Some(None)),
        }
        // Not a missing capability, however the message reads: the no-device rule.
        for other in [BackendError::Device("no adapter".into()), BackendError::Device("adapter lacks SHADER_F16".into())] {
            let no_device = std::panic::catch_unwind(|| gpu_or_skip(Err::<u8, _>(other.clone())));
            match std::env::var("MVDIT_SKIP_GPU").as_deref() {
                Ok("1") => assert_eq!(no_device.ok(), Some(None)),
                _ => assert!(no_device.is_err(), "no device without MVDIT_SKIP_GPU=1 must fail"),
            }
        }
    }
}
