//! The op parity suite on the Vulkan backend with the subgroup row kernels forced (one subgroup
//! per row: the automatic choice on GPUs; Mesa's software device gets the serial ones) and
//! uninitialised outputs poisoned to NaN (`GpuOptions::poison`), as in `ops_vulkan_tiled.rs`.

use mvdit_backend_vulkan::{open_with, GpuDevice, GpuOptions, Subgroups, Vulkan, VulkanOptions};

fn subgroups() -> Option<Vulkan> {
    let gpu = GpuOptions { subgroups: Subgroups::On, poison: true, ..GpuOptions::default() };
    let be = mvdit_tests::gpu_or_skip(open_with(&VulkanOptions { gpu, ..VulkanOptions::default() }))?;
    assert!(be.context().row_plan().subgroup.is_some());
    Some(be)
}

mvdit_tests::backend_op_tests!(match subgroups() {
    Some(be) => be,
    None => return,
});
