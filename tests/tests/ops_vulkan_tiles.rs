//! The op parity suite on the Vulkan backend with GPU kernels forced and attention kept in the
//! workgroup-tiled kernels (`attn_*_t`, what sequences too long for materialised scores use):
//! `ops_vulkan_tiled` covers the score path, which small shapes otherwise always take.

use mvdit_backend_vulkan::GpuDevice;

fn tiles() -> Option<mvdit_backend_vulkan::Vulkan> {
    let env = [("MVDIT_VULKAN_MATMUL", "tiled"), ("MVDIT_GPU_ATTENTION", "tiles")];
    let be = mvdit_tests::open_gpu(&env, || mvdit_backend_vulkan::Vulkan::new(None))?;
    let plan = be.context().matmul_plan();
    assert!(plan.tiled_attention && !plan.attn_scores);
    Some(be)
}

mvdit_tests::backend_op_tests!(match tiles() {
    Some(be) => be,
    None => return,
});
