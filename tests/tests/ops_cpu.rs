//! The cross-backend op parity suite (`mvdit_tests::op_suite`) stamped for the CPU backend.

mvdit_tests::backend_op_tests!(mvdit_backend_cpu::Cpu::new(2));
