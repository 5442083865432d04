//! The Vulkan backend's f16 matmul path (`Precision::F16`) through the shared f16 suite
//! (`mvdit_tests::f16_suite`). On devices with cooperative matrices the product runs in
//! `matmul_coop_ws` or `matmul_coop` (tensor cores, `MVDIT_VULKAN_COOP_KERNEL`), elsewhere
//! (Mesa 22's software device in CI) in the tiled kernel over the same padded f16 operands.
//! `MVDIT_VULKAN_COOP=on` makes an f16 device without cooperative matrices an error, so a run
//! on a GPU (or on Mesa ≥ 26's lavapipe, 8×8×8) can prove the cooperative kernel ran.

use mvdit_backend_vulkan::{open_with, Precision, Vulkan, VulkanOptions};
use mvdit_backend_vulkan::GpuDevice;
use mvdit_core::Backend;
use mvdit_tests::f16_suite;

fn f16_backend() -> Option<Vulkan> {
    // GPU kernels on every device, so attention takes the score path (its products in f16);
    // every test of this binary sets the same value.
    std::env::set_var("MVDIT_VULKAN_MATMUL", "tiled");
    match open_with(&VulkanOptions { precision: Precision::F16, ..VulkanOptions::default() }) {
        Ok(be) => {
            eprintln!("device: {}", be.name());
            Some(be)
        }
        Err(e) if e.to_string().contains("shaderFloat16") => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipped (MVDIT_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => panic!("{e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
    }
}

#[test]
fn linear_in_f16_matches_the_f64_reference() {
    let Some(be) = f16_backend() else { return };
    assert!(be.name().contains("f16"), "{}", be.name());
    f16_suite::linear_in_f16_matches_the_f64_reference(&be);
}

#[test]
fn training_in_f16_follows_f32() {
    let Some(half) = f16_backend() else { return };
    f16_suite::training_in_f16_follows_f32(&half, &Vulkan::new(None).unwrap());
}

#[test]
fn attention_in_f16_matches_the_f64_reference() {
    let Some(be) = f16_backend() else { return };
    assert!(be.context().matmul_plan().attn_scores);
    f16_suite::attention_in_f16_matches_the_f64_reference(&be);
}
