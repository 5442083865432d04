//! The wgpu device side: adapters, embedding in an application's device, allocation errors.
//! Every op, the golden cases and the pipeline run through the shared suites of `tests/`
//! (`ops_wgpu.rs`, `golden_wgpu.rs`, `wgpu_pipeline.rs`, ...).
//!
//! Needs a GPU adapter (CI installs lavapipe: `apt-get install mesa-vulkan-drivers libvulkan1`);
//! without one each test follows the skip rule of `mvdit_tests::gpu_or_skip`.

use mvdit_backend_wgpu::Wgpu;
use mvdit_core::{Backend, BackendError};

#[test]
fn adapters_are_listed_and_bad_index_is_a_clear_error() {
    let be = mvdit_tests::gpu!(Wgpu::new(None));
    let names = Wgpu::adapters();
    assert!(!names.is_empty());
    eprintln!("adapters: {names:?}; backend: {}", be.name());
    match Wgpu::new(Some(names.len() + 7)) {
        Err(BackendError::Device(m)) => assert!(m.contains("out of range"), "{m}"),
        other => panic!("expected a Device error, got {:?}", other.err()),
    }
}

/// A tensor no device can hold is an OutOfMemory error, not a panic.
#[test]
fn oversized_tensors_are_out_of_memory() {
    let be = mvdit_tests::gpu!(Wgpu::new(None));
    match be.zeros(&[1 << 20, 1 << 20]) {
        Err(BackendError::OutOfMemory { bytes }) => assert_eq!(bytes, 4 << 40),
        other => panic!("expected OutOfMemory, got {:?}", other.err()),
    }
}

/// An application's own device, handed to the backend.
#[test]
fn runs_on_an_application_device() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = mvdit_tests::gpu!(pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).map_err(|e| BackendError::Device(e.to_string())));
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let be = Wgpu::from_device(device, queue).unwrap();
    let x = be.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let w = be.upload(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap();
    let y = be.linear(&x, &w, None).unwrap();
    assert_eq!(be.download(&y).unwrap(), [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
    assert!(be.name().contains("wgpu"));
}
