//! The frozen networks (`mvdit_tests::frozen_suite`) on the CPU backend, within 1e-4 relative
//! error of the PyTorch float64 references.

mvdit_tests::backend_frozen_tests!(mvdit_backend_cpu::Cpu::new(2), tol: 1e-4);
