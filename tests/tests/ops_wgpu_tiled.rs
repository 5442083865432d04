//! The op parity suite (`mvdit_tests::op_suite`) on the wgpu backend with the workgroup-memory
//! tiled matmul forced (the automatic choice on Mesa's software device is the register-blocked
//! kernel), and with poisoned allocations: every new tensor starts as NaN, so a kernel that
//! leaves part of its output unwritten fails here even though the buffer pool recycles buffers.
//! Row kernels serial (the subgroup ones have `ops_wgpu_subgroup.rs`), so that on a GPU, where
//! the default stamp runs subgroups, the fallback is still checked.

use mvdit_backend_wgpu::{GpuOptions, MatmulKernel, Subgroups, Wgpu, WgpuOptions};

fn tiled() -> Option<Wgpu> {
    let gpu = GpuOptions { matmul: MatmulKernel::Tiled, subgroups: Subgroups::Off, poison: true, ..GpuOptions::default() };
    let opts = WgpuOptions { gpu, ..WgpuOptions::default() };
    let be = mvdit_tests::gpu_or_skip(Wgpu::with_options(opts))?;
    assert_eq!(be.matmul_plan().0, MatmulKernel::Tiled);
    assert!(mvdit_backend_wgpu::GpuDevice::matmul_plan(be.context()).tiled_attention);
    assert_eq!(mvdit_backend_wgpu::GpuDevice::row_plan(be.context()).subgroup, None);
    Some(be)
}

mvdit_tests::backend_op_tests!(match tiled() {
    Some(be) => be,
    None => return,
});
