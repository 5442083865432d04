//! The op parity suite on the Vulkan backend with GPU kernels forced and attention kept in the
//! workgroup-tiled kernels (`attn_*_t`, what sequences too long for materialised scores use):
//! `ops_vulkan_tiled` covers the score path, which small shapes otherwise always take.

use mvdit_backend_vulkan::{open_with, Attention, GpuDevice, GpuOptions, MatmulKernel, VulkanOptions};

fn tiles() -> Option<mvdit_backend_vulkan::Vulkan> {
    let gpu = GpuOptions { matmul: MatmulKernel::Tiled, attention: Attention::Tiles, ..GpuOptions::default() };
    let be = mvdit_tests::gpu_or_skip(open_with(&VulkanOptions { gpu, ..VulkanOptions::default() }))?;
    let plan = be.context().matmul_plan();
    assert!(plan.tiled_attention && !plan.attn_scores);
    Some(be)
}

mvdit_tests::backend_op_tests!(match tiles() {
    Some(be) => be,
    None => return,
});
