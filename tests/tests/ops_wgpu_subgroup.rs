//! The op parity suite (`mvdit_tests::op_suite`) on the wgpu backend with the subgroup row
//! kernels forced (one subgroup per row: the automatic choice on GPUs; Mesa's software device,
//! subgroups of 8, gets the serial ones), with poisoned allocations as in `ops_wgpu_tiled.rs`.

use mvdit_backend_wgpu::{GpuDevice, GpuOptions, Subgroups, Wgpu, WgpuOptions};

fn subgroups() -> Wgpu {
    let opts = WgpuOptions { gpu: GpuOptions { subgroups: Subgroups::On, poison: true, ..GpuOptions::default() }, ..WgpuOptions::default() };
    let be = Wgpu::with_options(opts).unwrap_or_else(|e| panic!("no wgpu adapter with subgroups: {e}"));
    assert!(be.context().row_plan().subgroup.is_some());
    be
}

mvdit_tests::backend_op_tests!(subgroups());
