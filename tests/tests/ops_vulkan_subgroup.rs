//! The op parity suite on the Vulkan backend with the subgroup row kernels forced (one subgroup
//! per row: the automatic choice on GPUs; Mesa's software device gets the serial ones) and
//! uninitialised outputs poisoned to NaN (`MVDIT_VULKAN_POISON=1`), as in `ops_vulkan_tiled.rs`.

use mvdit_backend_vulkan::{GpuDevice, Vulkan};

fn subgroups() -> Option<Vulkan> {
    // Every test of this binary asks for the same value, so concurrent tests agree.
    std::env::set_var("MVDIT_GPU_SUBGROUPS", "on");
    std::env::set_var("MVDIT_VULKAN_POISON", "1");
    match Vulkan::new(None) {
        Ok(be) => {
            assert!(be.context().row_plan().subgroup.is_some());
            Some(be)
        }
        Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipped (MVDIT_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => panic!("no Vulkan device with subgroups: {e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
    }
}

mvdit_tests::backend_op_tests!(match subgroups() {
    Some(be) => be,
    None => return,
});
