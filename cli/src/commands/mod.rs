//! The commands: each a module that turns its arguments into calls of the `mvdit-train`
//! library and says what it did in one line on stderr. Every failure is one line on stderr and
//! a non-zero exit; nothing here panics on bad input.

pub mod bench;
pub mod convert;
pub mod experiment;
pub mod sample;
pub mod train;
pub mod vae;

use crate::args::{Cli, Command};
use mvdit_model::{Error, Result};
use mvdit_train::with_backend;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::train_command(a),
        Command::Plan { config, batch, device_memory, json } => {
            use mvdit_train::plan::{parse_size, Plan, PlanInput};
            let device = parse_size(&device_memory).map_err(|e| e.context("--device-memory"))?;
            let plan = Plan::new(PlanInput::read(&config, batch)?)?;
            if json {
                println!("{}", plan.to_json(device)?);
            } else {
                print!("{}", plan.render(device)?);
            }
            Ok(())
        }
        Command::Bench(a) => bench::bench_command(a),
        Command::Sample(a) => sample::sample_command(a),
        Command::Eval { checkpoint, inputs, out, config, grad, weights, backend } => {
            let cfg = config.as_deref().map(mvdit_train::config::read_model_config).transpose()?;
            let weights: mvdit_train::backends::Weights = weights.into();
            with_backend!(backend.spec()?, |be| mvdit_train::eval::run(&be, &checkpoint, &inputs, &out, cfg.as_ref(), grad, weights.dtype()))
        }
        Command::Convert(a) => convert::run(a),
        Command::Devices => devices_command(),
        Command::Report { runs, out, figures, title, thresholds } => {
            let th = mvdit_train::report::signals::Thresholds::with_overrides(&thresholds)?;
            mvdit_train::report::write_report(&runs, &out, &title, &th, figures.as_deref())?;
            eprintln!("report: {}", out.display());
            Ok(())
        }
        Command::EncodeText { encoder, prompts, prompts_file, out, backend } => {
            let prompts = mvdit_train::frozen::gather_prompts(&prompts, prompts_file.as_deref())?;
            with_backend!(backend.spec()?, |be| mvdit_train::frozen::encode_text(&be, &encoder, &prompts, &out))
        }
        Command::Vae { which } => vae::vae_command(which),
        Command::Prepare { images, vae, text_encoder, captions, size, flip, shard_size, dtype, seed, out, backend } => {
            let a = mvdit_train::prepare::PrepareOptions { images, vae, text_encoder, captions, size, flip, shard_size, dtype: dtype.into(), seed, out };
            let mut bar = crate::progress::ItemBar::new("images");
            with_backend!(backend.spec()?, |be| mvdit_train::prepare::prepare(&be, &a, &mut bar))
        }
        Command::Experiment { which } => experiment::run_command(which),
    }
}

/// `mvdit devices`.
fn devices_command() -> Result<()> {
    let lists = [("wgpu", mvdit_backend_wgpu::Wgpu::adapters()), ("vulkan", mvdit_backend_vulkan::Vulkan::devices())];
    if lists.iter().all(|(_, names)| names.is_empty()) {
        return Err(Error::new("no GPU device found (install a Vulkan driver, e.g. mesa-vulkan-drivers)"));
    }
    for (backend, names) in lists {
        println!("--backend {backend}:");
        for (i, n) in names.iter().enumerate() {
            println!("  {i}: {n}");
        }
    }
    Ok(())
}
