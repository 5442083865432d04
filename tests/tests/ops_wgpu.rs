//! The cross-backend op parity suite (`mvdit_tests::op_suite`) stamped for the wgpu backend
//! (Mesa's software Vulkan device in CI: `apt-get install mesa-vulkan-drivers libvulkan1`).

mvdit_tests::backend_op_tests!(mvdit_backend_wgpu::Wgpu::new(None).unwrap_or_else(|e| panic!("no wgpu adapter: {e}")));
