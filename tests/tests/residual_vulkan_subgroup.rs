//! The residual-merge suite (`mvdit_tests::residual_suite`) on the Vulkan backend with the
//! subgroup row kernels forced (as in `ops_vulkan_subgroup.rs`), gradients against the CPU
//! backend's.

use mvdit_backend_vulkan::{open_with, GpuDevice, GpuOptions, Subgroups, Vulkan, VulkanOptions};

fn subgroups() -> Vulkan {
    let gpu = GpuOptions { subgroups: Subgroups::On, ..GpuOptions::default() };
    let be = open_with(&VulkanOptions { gpu, ..VulkanOptions::default() }).unwrap_or_else(|e| panic!("no Vulkan device with subgroups: {e}"));
    assert!(be.context().row_plan().subgroup.is_some());
    be
}

mvdit_tests::backend_residual_tests!(subgroups(), gradients_against: mvdit_backend_cpu::Cpu::new(2));
