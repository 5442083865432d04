//! The cross-backend op parity suite (`mvdit_tests::op_suite`) stamped for the Vulkan backend
//! (Mesa's software Vulkan device in CI: `apt-get install mesa-vulkan-drivers libvulkan1`).
//! Without a device every test fails with the reason, unless MVDIT_SKIP_GPU=1 (then each one
//! returns after saying why).

mvdit_tests::backend_op_tests!(match mvdit_backend_vulkan::Vulkan::new(None) {
    Ok(be) => be,
    Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
        eprintln!("skipped (MVDIT_SKIP_GPU=1): {e}");
        return;
    }
    Err(e) => panic!("no Vulkan device: {e} (set MVDIT_SKIP_GPU=1 to skip the GPU tests)"),
});
