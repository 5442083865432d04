//! The cross-backend op parity suite (`mvdit_tests::op_suite`) stamped for the Vulkan backend
//! (Mesa's software Vulkan device in CI: `apt-get install mesa-vulkan-drivers libvulkan1`).
//! Without a device every test fails with the reason, unless MVDIT_SKIP_GPU=1 (then each one
//! returns after saying why).

mvdit_tests::backend_op_tests!(match mvdit_tests::open_gpu(|| mvdit_backend_vulkan::Vulkan::new(None)) {
    Some(be) => be,
    None => return,
});
