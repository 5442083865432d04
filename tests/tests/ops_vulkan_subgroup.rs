//! The op parity suite on the Vulkan backend with the subgroup row kernels forced (one subgroup
//! per row: the automatic choice on GPUs; Mesa's software device gets the serial ones) and
//! uninitialised outputs poisoned to NaN (`MVDIT_VULKAN_POISON=1`), as in `ops_vulkan_tiled.rs`.

use mvdit_backend_vulkan::{GpuDevice, Vulkan};

fn subgroups() -> Option<Vulkan> {
    let be = mvdit_tests::open_gpu(&[("MVDIT_GPU_SUBGROUPS", "on"), ("MVDIT_VULKAN_POISON", "1")], || Vulkan::new(None))?;
    assert!(be.context().row_plan().subgroup.is_some());
    Some(be)
}

mvdit_tests::backend_op_tests!(match subgroups() {
    Some(be) => be,
    None => return,
});
