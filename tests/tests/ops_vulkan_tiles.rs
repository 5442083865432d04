//! The op parity suite on the Vulkan backend with GPU kernels forced and attention kept in the
//! workgroup-tiled kernels (`attn_*_t`, what sequences too long for materialised scores use):
//! `ops_vulkan_tiled` covers the score path, which small shapes otherwise always take.

use mvdit_backend_vulkan::GpuDevice;

fn tiles() -> Option<mvdit_backend_vulkan::Vulkan> {
    // Every test of this binary asks for the same values, so concurrent tests agree.
    std::env::set_var("MVDIT_VULKAN_MATMUL", "tiled");
    std::env::set_var("MVDIT_GPU_ATTENTION", "tiles");
    match mvdit_backend_vulkan::Vulkan::new(None) {
        Ok(be) => {
            let plan = be.context().matmul_plan();
            assert!(plan.tiled_attention && !plan.attn_scores);
            Some(be)
        }
        Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipped (MVDIT_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => panic!("no Vulkan device: {e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
    }
}

mvdit_tests::backend_op_tests!(match tiles() {
    Some(be) => be,
    None => return,
});
