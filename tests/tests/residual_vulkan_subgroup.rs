//! The residual-merge suite (`mvdit_tests::residual_suite`) on the Vulkan backend with the
//! subgroup row kernels forced (as in `ops_vulkan_subgroup.rs`), gradients against the CPU
//! backend's.

use mvdit_backend_vulkan::{GpuDevice, Vulkan};

fn subgroups() -> Vulkan {
    // Every test of this binary asks for the same value, so concurrent tests agree.
    std::env::set_var("MVDIT_GPU_SUBGROUPS", "on");
    let be = Vulkan::new(None).unwrap_or_else(|e| panic!("no Vulkan device with subgroups: {e}"));
    assert!(be.context().row_plan().subgroup.is_some());
    be
}

mvdit_tests::backend_residual_tests!(subgroups(), gradients_against: mvdit_backend_cpu::Cpu::new(2));
