//! The residual-merge suite (`mvdit_tests::residual_suite`) on the Vulkan backend with the
//! subgroup row kernels forced (as in `ops_vulkan_subgroup.rs`), gradients against the CPU
//! backend's.

use mvdit_backend_vulkan::{open_with, GpuDevice, GpuOptions, Subgroups, Vulkan, VulkanOptions};

fn subgroups() -> Option<Vulkan> {
    let gpu = GpuOptions { subgroups: Subgroups::On, ..GpuOptions::default() };
    let be = mvdit_tests::gpu_or_skip(open_with(&VulkanOptions { gpu, ..VulkanOptions::default() }))?;
    assert!(be.context().row_plan().subgroup.is_some());
    Some(be)
}

mvdit_tests::backend_residual_tests!(
    match subgroups() {
        Some(be) => be,
        None => return,
    },
    gradients_against: mvdit_backend_cpu::Cpu::new(2)
);
