//! The op parity suite on the Vulkan backend with the workgroup-memory tiled matmul forced (the
//! automatic choice on GPUs; Mesa's software device gets the register-blocked kernels) and
//! uninitialised outputs poisoned to NaN (`MVDIT_VULKAN_POISON=1`), as GPU memory is not zeroed.
//! Row kernels serial (the subgroup ones have `ops_vulkan_subgroup.rs`), so that on a GPU, where
//! the default stamp runs subgroups, the fallback is still checked.

use mvdit_backend_vulkan::GpuDevice;

fn tiled() -> Option<mvdit_backend_vulkan::Vulkan> {
    // Every test of this binary asks for the same value, so concurrent tests agree.
    std::env::set_var("MVDIT_VULKAN_MATMUL", "tiled");
    std::env::set_var("MVDIT_VULKAN_POISON", "1");
    std::env::set_var("MVDIT_GPU_SUBGROUPS", "off");
    match mvdit_backend_vulkan::Vulkan::new(None) {
        Ok(be) => {
            let plan = be.context().matmul_plan();
            assert!(plan.tiled && plan.tiled_attention && plan.attn_scores);
            assert_eq!(be.context().row_plan().subgroup, None);
            Some(be)
        }
        Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipped (MVDIT_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => panic!("no Vulkan device: {e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
    }
}

mvdit_tests::backend_op_tests!(match tiled() {
    Some(be) => be,
    None => return,
});
