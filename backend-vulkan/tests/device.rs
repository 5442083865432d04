//! The Vulkan device side: opening, every kernel builds, embedding, errors, profiling.
//!
//! Needs a Vulkan device (CI installs lavapipe: `apt-get install mesa-vulkan-drivers
//! libvulkan1`); without one each test follows the skip rule of `mvdit_tests::gpu_or_skip`.
//! The op-by-op parity suite is `tests/tests/ops_vulkan.rs`.

use mvdit_backend_vulkan::{kernel_names, Vulkan};
use mvdit_core::{Backend, BackendError};
use std::sync::OnceLock;

fn gpu() -> Option<&'static Vulkan> {
    static BE: OnceLock<Result<Vulkan, BackendError>> = OnceLock::new();
    mvdit_tests::gpu_or_skip(BE.get_or_init(|| Vulkan::new(None)).as_ref())
}

macro_rules! gpu_or_skip {
    () => {
        match gpu() {
            Some(be) => be,
            None => return,
        }
    };
}

#[test]
fn every_kernel_builds() {
    let be = gpu_or_skip!();
    let names: Vec<&str> = kernel_names().collect();
    assert!(names.len() >= 26, "{names:?}");
    let built = be.context().prepare_all().unwrap();
    let on = be.context().device().enabled_features();
    eprintln!("built {} of {} kernels", built.len(), names.len());
    // Every f32 kernel builds; f16 ones where the device has f16 (lavapipe does).
    assert!(built.contains(&"matmul_tiled") && built.contains(&"attn_fwd_t"), "{built:?}");
    assert_eq!(built.contains(&"to_f16_pad"), on.shader_float16, "{built:?}");
    assert_eq!(built.contains(&"matmul_coop"), on.cooperative_matrix, "{built:?}");
}

#[test]
fn devices_are_listed_and_bad_index_is_a_clear_error() {
    let be = gpu_or_skip!();
    let names = Vulkan::devices();
    assert!(!names.is_empty());
    eprintln!("devices: {names:?}; backend: {}", be.name());
    assert!(be.name().starts_with("vulkan"));
    match Vulkan::new(Some(names.len() + 7)) {
        Err(BackendError::Device(m)) => assert!(m.contains("out of range"), "{m}"),
        other => panic!("expected a Device error, got {:?}", other.err()),
    }
}

#[test]
fn linear_round_trip_and_empty_tensors() {
    let be = gpu_or_skip!();
    let x = be.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let w = be.upload(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap();
    let y = be.linear(&x, &w, None).unwrap();
    assert_eq!(be.download(&y).unwrap(), [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
    let e = be.zeros(&[0, 3]).unwrap();
    assert!(be.download(&e).unwrap().is_empty());
    let z = be.zeros(&[5]).unwrap();
    assert_eq!(be.download(&z).unwrap(), [0.0; 5]);
}

/// Many more commands than one command buffer holds, each depending on the one before.
#[test]
fn long_dependency_chains_cross_submissions() {
    let be = gpu_or_skip!();
    let n = 1000;
    let one = be.upload(&vec![1.0; n], &[n]).unwrap();
    let mut acc = be.zeros(&[n]).unwrap();
    let steps = 3 * mvdit_backend_vulkan::BATCH_COMMANDS as usize / 2 + 7;
    for _ in 0..steps {
        acc = be.axpby(1.0, &acc, 1.0, &one).unwrap();
    }
    let got = be.download(&acc).unwrap();
    assert!(got.iter().all(|&v| v == steps as f32), "{:?}", &got[..4]);
}

/// An application's own device and queue.
#[test]
fn runs_on_an_application_device() {
    let be = gpu_or_skip!();
    let ctx = be.context();
    let own = Vulkan::from_device(ctx.device().clone(), ctx.queue().clone()).unwrap();
    let a = own.upload(&[1.0, 2.0], &[2]).unwrap();
    let b = own.upload(&[10.0, 20.0], &[2]).unwrap();
    let c = own.axpby(2.0, &a, 1.0, &b).unwrap();
    assert_eq!(own.download(&c).unwrap(), [12.0, 24.0]);
}

#[test]
fn oversized_tensors_are_out_of_memory() {
    let be = gpu_or_skip!();
    match be.zeros(&[1 << 20, 1 << 20]) {
        Err(BackendError::OutOfMemory { bytes }) => assert!(bytes >= 1 << 40),
        other => panic!("expected OutOfMemory, got {:?}", other.err()),
    }
}

#[test]
fn profile_lists_kernels_by_time() {
    // Its own device: profiling waits on every submission.
    if gpu().is_none() {
        return;
    }
    let be = Vulkan::new(None).unwrap();
    be.context().set_profiling(true).unwrap();
    let x = be.upload(&[0.5; 64], &[4, 16]).unwrap();
    let w = be.upload(&[0.25; 32 * 16], &[32, 16]).unwrap();
    let y = be.linear(&x, &w, None).unwrap();
    let (loss, _) = be.mse(&y, &y).unwrap();
    assert_eq!(be.download(&loss).unwrap(), [0.0]);
    let prof = be.context().profile().unwrap();
    eprintln!("{prof:?}");
    assert!(prof.iter().any(|k| k.kernel.starts_with("matmul") && k.calls == 1));
    assert!(prof.iter().any(|k| k.kernel == "reduce"));
    assert!(prof.windows(2).all(|w| w[0].total_ms >= w[1].total_ms));
    assert!(prof.iter().all(|k| k.total_ms >= 0.0 && k.total_ms.is_finite()));
}

/// A discrete GPU says how much memory it has; other devices (lavapipe, integrated GPUs, whose
/// device-local heap is host memory) leave the budget to the host's available memory.
#[test]
fn the_device_reports_its_memory_when_discrete() {
    let be = gpu_or_skip!();
    match be.device_memory() {
        Some(bytes) => assert!(bytes >= 1 << 28, "{bytes} bytes"),
        None => assert!(!be.name().contains("NVIDIA") && !be.name().contains("AMD Radeon"), "{}", be.name()),
    }
}
