//! Vulkan against the CPU backend through the whole pipeline (`mvdit_tests::pipeline_parity`).
//! Without a device: the skip rule of `mvdit_tests::gpu_or_skip`.

#[test]
fn training_steps_and_sampling_match_the_cpu_backend() {
    let vk = mvdit_tests::gpu!(mvdit_backend_vulkan::Vulkan::new(None));
    mvdit_tests::pipeline_parity::training_and_sampling_match_the_cpu(&vk, "vulkan");
}
