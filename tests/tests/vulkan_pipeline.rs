//! Vulkan against the CPU backend through the whole pipeline (`mvdit_tests::pipeline_parity`).
//! Skipped with a message when MVDIT_SKIP_GPU=1 and no Vulkan device opens.

#[test]
fn training_steps_and_sampling_match_the_cpu_backend() {
    let Some(vk) = mvdit_tests::open_gpu(|| mvdit_backend_vulkan::Vulkan::new(None)) else { return };
    mvdit_tests::pipeline_parity::training_and_sampling_match_the_cpu(&vk, "vulkan");
}
