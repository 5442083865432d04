//! The op parity suite on the Vulkan backend with the workgroup-memory tiled matmul forced (the
//! automatic choice on GPUs; Mesa's software device gets the register-blocked kernels), in its
//! 128×128-tile variant for every product (`BigTiles::On`; `ops_wgpu_tiled` runs the
//! 64×64 one), and uninitialised outputs poisoned to NaN (`GpuOptions::poison`), as GPU
//! memory is not zeroed.
//! Row kernels serial (the subgroup ones have `ops_vulkan_subgroup.rs`), so that on a GPU, where
//! the default stamp runs subgroups, the fallback is still checked.

use mvdit_backend_vulkan::{open_with, BigTiles, GpuDevice, GpuOptions, MatmulKernel, Subgroups, VulkanOptions};

fn tiled() -> Option<mvdit_backend_vulkan::Vulkan> {
    let gpu = GpuOptions { matmul: MatmulKernel::Tiled, tile: BigTiles::On, poison: true, subgroups: Subgroups::Off, ..GpuOptions::default() };
    let be = mvdit_tests::gpu_or_skip(open_with(&VulkanOptions { gpu, ..VulkanOptions::default() }))?;
    let plan = be.context().matmul_plan();
    assert!(plan.tiled && plan.tiled_attention && plan.attn_scores);
    assert_eq!(plan.big_tiles, BigTiles::On);
    assert_eq!(be.context().row_plan().subgroup, None);
    Some(be)
}

mvdit_tests::backend_op_tests!(match tiled() {
    Some(be) => be,
    None => return,
});
