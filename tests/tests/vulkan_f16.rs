//! The Vulkan backend's f16 matmul path (`Precision::F16`) through the shared f16 suite
//! (`mvdit_tests::f16_suite`), once per f16 product kernel: `tiled` (the tiled kernel rounding
//! its operands to f16 as it stages them, cooperative matrices off), `staged` and `direct` (`matmul_coop_ws` and
//! `matmul_coop` on cooperative-matrix units: tensor cores, or Mesa ≥ 26's lavapipe, 8×8×8).
//! GPU kernels on every device, so attention takes the score path (its products in f16).
//!
//! Devices without f16 skip every test, devices without cooperative matrices the `staged` and
//! `direct` ones, each with a message; with `MVDIT_REQUIRE_COOP=1` the latter fail instead, so a
//! run on a GPU (`scripts/gpu-check`) proves the cooperative kernels ran.

use mvdit_backend_vulkan::{open_with, CoopKernel, CoopMatrices, GpuDevice, GpuOptions, MatmulKernel, Precision, Vulkan, VulkanOptions};
use mvdit_core::Backend;
use mvdit_tests::f16_suite;

/// The tiled GPU kernels (what f16 compares against, too).
fn tiled() -> GpuOptions {
    GpuOptions { matmul: MatmulKernel::Tiled, ..GpuOptions::default() }
}

/// The f16 backend with cooperative matrices `coop` (`On` with `kernel`, or `Off`), under the
/// skip rule of `mvdit_tests::gpu_or_skip`.
fn f16_backend(coop: CoopMatrices, kernel: CoopKernel) -> Option<Vulkan> {
    let opts = VulkanOptions { precision: Precision::F16, gpu: tiled(), coop, coop_kernel: kernel, ..VulkanOptions::default() };
    let be = mvdit_tests::gpu_or_skip(open_with(&opts))?;
    eprintln!("device: {}", be.name());
    Some(be)
}

/// The f16 suite on one product kernel.
macro_rules! f16_tests {
    ($kernel:ident, $coop:expr, $coop_kernel:expr) => {
        mod $kernel {
            use super::*;

            #[test]
            fn linear_in_f16_matches_the_f64_reference() {
                let Some(be) = f16_backend($coop, $coop_kernel) else { return };
                assert!(be.name().contains("f16"), "{}", be.name());
                f16_suite::linear_in_f16_matches_the_f64_reference(&be);
            }

            #[test]
            fn f16_range_is_the_loss_scales_job() {
                let Some(be) = f16_backend($coop, $coop_kernel) else { return };
                f16_suite::f16_range_is_the_loss_scales_job(&be);
            }

            #[test]
            fn training_in_f16_follows_f32() {
                let Some(half) = f16_backend($coop, $coop_kernel) else { return };
                let full = open_with(&VulkanOptions { gpu: tiled(), ..VulkanOptions::default() }).unwrap();
                f16_suite::training_in_f16_follows_f32(&half, &full);
            }

            #[test]
            fn attention_in_f16_matches_the_f64_reference() {
                let Some(be) = f16_backend($coop, $coop_kernel) else { return };
                assert!(be.context().matmul_plan().attn_scores);
                f16_suite::attention_in_f16_matches_the_f64_reference(&be);
            }
        }
    };
}

f16_tests!(tiled, CoopMatrices::Off, CoopKernel::Staged);
f16_tests!(staged, CoopMatrices::On, CoopKernel::Staged);
f16_tests!(direct, CoopMatrices::On, CoopKernel::Direct);
