//! The residual-merge suite (`mvdit_tests::residual_suite`) stamped for the Vulkan backend: the
//! merge kernels against the f64 reference, and the whole model's gradients against the CPU
//! backend's (as for wgpu; see `residual_wgpu.rs`).

mvdit_tests::backend_residual_tests!(
    mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None)),
    gradients_against: mvdit_backend_cpu::Cpu::new(2)
);
