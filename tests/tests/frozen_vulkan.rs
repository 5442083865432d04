//! The frozen networks (`mvdit_tests::frozen_suite`) on the Vulkan backend (lavapipe in CI),
//! within 1e-3 relative error; without a device, the skip rule of `mvdit_tests::gpu_or_skip`.

mvdit_tests::backend_frozen_tests!(mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None)), tol: 1e-3);
