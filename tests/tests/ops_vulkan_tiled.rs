//! The op parity suite on the Vulkan backend with the workgroup-memory tiled matmul forced (the
//! automatic choice on GPUs; Mesa's software device gets the register-blocked kernels), in its
//! 128×128-tile variant for every product (`MVDIT_GPU_TILE=128`; `ops_wgpu_tiled` runs the
//! 64×64 one), and uninitialised outputs poisoned to NaN (`MVDIT_VULKAN_POISON=1`), as GPU
//! memory is not zeroed.
//! Row kernels serial (the subgroup ones have `ops_vulkan_subgroup.rs`), so that on a GPU, where
//! the default stamp runs subgroups, the fallback is still checked.

use mvdit_backend_vulkan::GpuDevice;

fn tiled() -> Option<mvdit_backend_vulkan::Vulkan> {
    let env = [("MVDIT_VULKAN_MATMUL", "tiled"), ("MVDIT_GPU_TILE", "128"), ("MVDIT_VULKAN_POISON", "1"), ("MVDIT_GPU_SUBGROUPS", "off")];
    let be = mvdit_tests::open_gpu(&env, || mvdit_backend_vulkan::Vulkan::new(None))?;
    let plan = be.context().matmul_plan();
    assert!(plan.tiled && plan.tiled_attention && plan.attn_scores);
    assert_eq!(plan.big_tiles, mvdit_backend_vulkan::BigTiles::On);
    assert_eq!(be.context().row_plan().subgroup, None);
    Some(be)
}

mvdit_tests::backend_op_tests!(match tiled() {
    Some(be) => be,
    None => return,
});
