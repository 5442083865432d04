//! The PyTorch float64 reference cases (`mvdit_tests::golden_suite`) on the CPU backend:
//! velocity, loss, every parameter gradient and the `t1-train10` trajectory within 1e-4 relative
//! error per tensor.

mvdit_tests::backend_golden_tests!(mvdit_backend_cpu::Cpu::new(2), tol: 1e-4);
