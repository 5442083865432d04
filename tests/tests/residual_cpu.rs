//! The residual-merge suite (`mvdit_tests::residual_suite`) stamped for the CPU backend.

mvdit_tests::backend_residual_tests!(mvdit_backend_cpu::Cpu::new(2));
