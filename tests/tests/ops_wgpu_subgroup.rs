//! The op parity suite (`mvdit_tests::op_suite`) on the wgpu backend with the subgroup row
//! kernels forced (one subgroup per row: the automatic choice on GPUs; Mesa's software device,
//! subgroups of 8, gets the serial ones), with poisoned allocations as in `ops_wgpu_tiled.rs`.

use mvdit_backend_wgpu::{GpuDevice, GpuOptions, Subgroups, Wgpu, WgpuOptions};

fn subgroups() -> Option<Wgpu> {
    let opts = WgpuOptions { gpu: GpuOptions { subgroups: Subgroups::On, poison: true, ..GpuOptions::default() }, ..WgpuOptions::default() };
    let be = mvdit_tests::gpu_or_skip(Wgpu::with_options(opts))?;
    assert!(be.context().row_plan().subgroup.is_some());
    Some(be)
}

mvdit_tests::backend_op_tests!(match subgroups() {
    Some(be) => be,
    None => return,
});
