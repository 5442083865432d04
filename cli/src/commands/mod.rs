//! The commands: one module per command, each turning its arguments into calls of the
//! `mvdit-train` library and saying what it did in one line on stderr. Every failure is one
//! line on stderr and a non-zero exit; nothing here panics on bad input.

pub mod bench;
pub mod convert;
pub mod devices;
pub mod encode_text;
pub mod eval;
pub mod experiment;
pub mod plan;
pub mod prepare;
pub mod report;
pub mod sample;
pub mod samplers;
pub mod train;
pub mod tune;
pub mod vae;

use crate::args::{Cli, Command};
use mvdit_model::Result;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::train_command(a),
        Command::Plan { config, batch, device_memory, json } => plan::plan_command(&config, batch, &device_memory, json),
        Command::Bench(a) => bench::bench_command(a),
        Command::Tune(a) => tune::tune_command(a),
        Command::Sample(a) => sample::sample_command(a),
        Command::Samplers(a) => samplers::samplers_command(a),
        Command::Eval { checkpoint, inputs, out, config, grad, weights, backend } => eval::eval_command(&checkpoint, &inputs, &out, config, grad, weights, &backend),
        Command::Convert(a) => convert::run(a),
        Command::Devices => devices::devices_command(),
        Command::Report { runs, out, figures, title, thresholds } => report::report_command(&runs, &out, figures.as_deref(), &title, &thresholds),
        Command::EncodeText { encoder, prompts, prompts_file, out, backend } => encode_text::encode_text_command(&encoder, &prompts, prompts_file.as_deref(), &out, &backend),
        Command::Vae { which } => vae::vae_command(which),
        Command::Prepare { images, vae, text_encoder, captions, size, flip, shard_size, dtype, seed, out, backend } => {
            let o = mvdit_train::prepare::PrepareOptions { images, vae, text_encoder, captions, size, flip, shard_size, dtype: dtype.into(), seed, out };
            prepare::prepare_command(o, &backend)
        }
        Command::Experiment { which } => experiment::run_command(which),
    }
}
