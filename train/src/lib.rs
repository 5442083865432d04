//! Training, sampling, data, reports and the `mvdit` command line.

pub mod cli;
pub mod data;
pub mod eval;
pub mod flow;
pub mod images;
pub mod optim;
pub mod plot;
pub mod step;
