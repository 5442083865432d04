//! The residual-merge suite (`mvdit_tests::residual_suite`) on the wgpu backend with the subgroup
//! row kernels forced (as in `ops_wgpu_subgroup.rs`), gradients against the CPU backend's.

use mvdit_backend_wgpu::{GpuDevice, GpuOptions, Subgroups, Wgpu, WgpuOptions};

fn subgroups() -> Option<Wgpu> {
    let gpu = GpuOptions { subgroups: Subgroups::On, ..GpuOptions::default() };
    let be = mvdit_tests::gpu_or_skip(Wgpu::with_options(WgpuOptions { gpu, ..WgpuOptions::default() }))?;
    assert!(be.context().row_plan().subgroup.is_some());
    Some(be)
}

mvdit_tests::backend_residual_tests!(
    match subgroups() {
        Some(be) => be,
        None => return,
    },
    gradients_against: mvdit_backend_cpu::Cpu::new(2)
);
