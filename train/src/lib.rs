//! Training, sampling and the `mvdit` command line.

pub mod flow;
pub mod optim;
pub mod step;
pub mod cli;
pub mod eval;
