//! Training, sampling, data, reports and the `mvdit` command line.

pub mod backends;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod depth_split;
pub mod diagnostics;
pub mod dist;
pub mod eval;
pub mod experiment;
pub mod flow;
pub mod frozen_cmd;
pub mod images;
pub mod init;
pub mod observe;
pub mod optim;
pub mod plan;
pub mod plot;
pub mod progress;
pub mod report;
pub mod rng;
pub mod run;
pub mod sample_cmd;
pub mod sampler;
pub mod step;
pub mod trainer;
