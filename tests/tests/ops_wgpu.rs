//! The cross-backend op parity suite (`mvdit_tests::op_suite`) stamped for the wgpu backend
//! (Mesa's software Vulkan device in CI: `apt-get install mesa-vulkan-drivers libvulkan1`), under
//! the skip rule of `mvdit_tests::gpu_or_skip`.

mvdit_tests::backend_op_tests!(mvdit_tests::gpu!(mvdit_backend_wgpu::Wgpu::new(None)));
