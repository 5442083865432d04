//! Vulkan against the CPU backend through the whole pipeline (`mvdit_tests::pipeline_parity`).
//! Skipped with a message when MVDIT_SKIP_GPU=1 and no Vulkan device opens.

#[test]
fn training_steps_and_sampling_match_the_cpu_backend() {
    let vk = match mvdit_backend_vulkan::Vulkan::new(None) {
        Ok(be) => be,
        Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipped (MVDIT_SKIP_GPU=1): {e}");
            return;
        }
        Err(e) => panic!("no Vulkan device: {e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
    };
    mvdit_tests::pipeline_parity::training_and_sampling_match_the_cpu(&vk, "vulkan");
}
