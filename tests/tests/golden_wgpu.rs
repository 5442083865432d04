//! The PyTorch float64 reference cases (`mvdit_tests::golden_suite`) on the wgpu backend (Mesa's
//! software Vulkan device in CI), within 1e-3 relative error per tensor; without a device, the
//! skip rule of `mvdit_tests::gpu_or_skip`.

mvdit_tests::backend_golden_tests!(mvdit_tests::gpu!(mvdit_backend_wgpu::Wgpu::new(None)), tol: 1e-3);
