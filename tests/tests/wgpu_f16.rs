//! The wgpu backend's f16 matmul path (`Precision::F16`), through the shared f16 suite
//! (`mvdit_tests::f16_suite`), with the f16 products in the 128×128-tile kernel
//! (`BigTiles::On`; `vulkan_f16` runs the 64×64 one). Skipped, with a message, on
//! adapters without SHADER_F16 (the skip rule of `mvdit_tests::gpu_or_skip`).

use mvdit_backend_wgpu::{BigTiles, GpuOptions, Precision, Wgpu, WgpuOptions};
use mvdit_core::{BackendError, Capability};
use mvdit_tests::f16_suite;

fn f16_backend() -> Option<Wgpu> {
    let opts = WgpuOptions { precision: Precision::F16, gpu: GpuOptions { tile: BigTiles::On, ..GpuOptions::default() }, ..WgpuOptions::default() };
    let be = mvdit_tests::gpu_or_skip(Wgpu::with_options(opts))?;
    assert_eq!(mvdit_backend_wgpu::GpuDevice::matmul_plan(be.context()).big_tiles, BigTiles::On);
    Some(be)
}

#[test]
fn linear_in_f16_matches_the_f64_reference() {
    let Some(be) = f16_backend() else { return };
    f16_suite::linear_in_f16_matches_the_f64_reference(&be);
}

#[test]
fn f16_range_is_the_loss_scales_job() {
    let Some(be) = f16_backend() else { return };
    f16_suite::f16_range_is_the_loss_scales_job(&be);
}

/// f16 on a device opened without SHADER_F16 is a clear error, not a shader failure.
#[test]
fn f16_without_the_feature_is_refused() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = mvdit_tests::gpu!(pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).map_err(|e| BackendError::Device(e.to_string())));
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let opts = WgpuOptions { precision: Precision::F16, ..WgpuOptions::default() };
    let err = Wgpu::from_device_with(device, queue, &opts).err().expect("f16 without SHADER_F16 must be refused");
    assert!(err.to_string().contains("SHADER_F16"), "{err}");
    assert_eq!(err.lacks(), Some(Capability::F16), "{err:?}");
}

#[test]
fn training_in_f16_follows_f32() {
    let Some(half) = f16_backend() else { return };
    f16_suite::training_in_f16_follows_f32(&half, &Wgpu::new(None).unwrap());
}
