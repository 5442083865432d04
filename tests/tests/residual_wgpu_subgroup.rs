//! The residual-merge suite (`mvdit_tests::residual_suite`) on the wgpu backend with the subgroup
//! row kernels forced (as in `ops_wgpu_subgroup.rs`), gradients against the CPU backend's.

use mvdit_backend_wgpu::{GpuDevice, GpuOptions, Subgroups, Wgpu, WgpuOptions};

fn subgroups() -> Wgpu {
    let gpu = GpuOptions { subgroups: Subgroups::On, ..GpuOptions::default() };
    let be = Wgpu::with_options(WgpuOptions { gpu, ..WgpuOptions::default() }).unwrap_or_else(|e| panic!("no wgpu adapter with subgroups: {e}"));
    assert!(be.context().row_plan().subgroup.is_some());
    be
}

mvdit_tests::backend_residual_tests!(subgroups(), gradients_against: mvdit_backend_cpu::Cpu::new(2));
