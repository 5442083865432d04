//! The residual-merge suite (`mvdit_tests::residual_suite`) stamped for the wgpu backend: the
//! merge kernels against the f64 reference, and the whole model's gradients against the CPU
//! backend's (which `residual_cpu.rs` checks against finite differences; see the suite's docs
//! for why wgpu is not finite-differenced itself).

mvdit_tests::backend_residual_tests!(
    mvdit_tests::gpu!(mvdit_backend_wgpu::Wgpu::new(None)),
    gradients_against: mvdit_backend_cpu::Cpu::new(2)
);
