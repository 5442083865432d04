//! mvdit core: configs, shapes, parameter layout, the scalar reference operators (forward and
//! backward) and the [`Backend`] trait. `no_std` + `alloc`, so it builds for bare-metal targets.
#![no_std]

extern crate alloc;

pub mod backend;
pub mod choice;
pub mod config;
pub mod dtype;
pub mod mms;
pub mod ops;
pub mod params;
pub mod real;
pub mod rng;
pub mod shape;
pub mod stats;

pub use backend::{BResult, Backend, BackendError, Capability, LinearGrads, MultiLinearGrads, MvSplitGrads, ResidualGrads};
pub use choice::parse_choice;
pub use config::{ConfigError, ModelConfig, Residual};
pub use params::{Layout, ParamSpec, Part};
pub use real::Real;
pub use rng::SplitMix64;
pub use shape::Dims;
