//! The mvdit library: training, sampling (class labels and text to image), data and shards,
//! checkpoints, diagnostics, reports, `prepare` and `convert`, over any backend. The command
//! line (`mvdit-cli`) and the Python and C bindings are thin layers over it.
//!
//! One function or type per job:
//! - [`text_to_image::TextToImage`]: `open(checkpoint, text_encoder, vae, options)`, then
//!   `generate(prompts, settings)` → images and latents;
//! - [`class_sample::ClassSampler`]: the same for class-conditional training checkpoints;
//! - [`run::train`] (and [`launch::train_on`] on a [`backends::BackendSpec`]): a run directory,
//!   watched through [`observe::Progress`], stopped through a flag;
//! - [`prepare::prepare`], [`convert::convert`], [`frozen`] (text encoder and autoencoder jobs).

pub mod backends;
pub mod batches;
pub mod bench;
pub mod bench_frozen;
pub mod checkpoints;
pub mod class_sample;
pub mod config;
pub mod convert;
pub mod data;
pub mod depth_split;
pub mod diagnostics;
pub mod dist;
pub mod eval;
pub mod flow;
pub mod frozen;
pub mod images;
pub mod init;
pub mod launch;
pub mod loss_scale;
pub mod memory;
pub mod npz;
pub mod observe;
pub mod optim;
pub mod plan;
pub mod plot;
pub mod prepare;
pub mod quality;
pub mod report;
pub mod rng;
pub mod run;
pub mod run_dir;
pub mod sampler;
pub mod sampler_study;
pub mod shards;
pub mod solver;
pub mod step;
pub mod text_to_image;
pub mod trainer;
pub mod tune;

pub use mvdit_model::{Error, Result};
