//! The terminal side of long jobs: `mvdit train`'s progress bar (loss, steps/s, ETA) and
//! Ctrl-C → checkpoint; `mvdit prepare`'s bar of images.

use indicatif::{ProgressBar, ProgressStyle};
use mvdit_train::config::TrainConfig;
use mvdit_train::depth_split::StageBackend;
use mvdit_train::dist::Dist;
use mvdit_train::observe::Progress;
use mvdit_train::run::train_dist;
use mvdit_train::trainer::Placement;
use mvdit_model::Result;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Bar {
    bar: Option<ProgressBar>,
}

impl Progress for Bar {
    fn start(&mut self, from: u64, to: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(to);
            bar.set_position(from);
            bar.reset_eta();
        }
    }
    fn step(&mut self, step: u64, loss: f64, steps_per_s: f64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                bar.set_message(format!("loss {loss:.4}  {steps_per_s:.2} steps/s"));
            }
            None if step % 100 == 0 => eprintln!("step {step}: loss {loss:.4} ({steps_per_s:.2} steps/s)"),
            None => {}
        }
    }
    fn message(&mut self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

pub fn run_train<B: StageBackend>(place: Placement<'_, B>, out: &Path, cfg: TrainConfig, resume: bool, quiet: bool) -> Result<()> {
    if run_train_dist(place, out, cfg, resume, quiet, &Dist::single())? {
        std::process::exit(130);
    }
    Ok(())
}

/// [`run_train`] as one rank of a data-parallel group; only rank 0 shows progress. Returns
/// whether Ctrl-C interrupted the run (the caller exits with 130 after closing MPI).
pub fn run_train_dist<B: StageBackend>(place: Placement<'_, B>, out: &Path, cfg: TrainConfig, resume: bool, quiet: bool, dist: &Dist) -> Result<bool> {
    let root = dist.is_root();
    let quiet = quiet || !root;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second Ctrl-C kills at once; the first asks for a checkpoint at the end of the step.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: saving a checkpoint after this step (press again to abort)");
    });
    let bar = (!quiet).then(|| {
        let bar = ProgressBar::new(cfg.steps);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}").expect("static template"),
        );
        bar
    });
    if root {
        let ranks = dist.comm.size();
        let be = place.devices[0].name();
        let on = match (ranks, place.devices.len(), place.micro_batches) {
            (1, 1, 1) => be,
            (1, 1, m) => format!("{be} in {m} micro-batches"),
            (1, n, m) => {
                let names: Vec<String> = place.devices.iter().map(|d| d.name()).collect();
                format!("{n} depth stages ({}), {m} micro-batches", names.join(", "))
            }
            (r, _, _) => format!("{r} data-parallel ranks of {be}"),
        };
        eprintln!("training on {on} → {}", out.display());
    }
    let summary = train_dist(place, out, cfg, resume, &stop, &mut Bar { bar }, dist)?;
    if !root {
        return Ok(summary.interrupted);
    }
    if let Some(median) = summary.median_step_seconds() {
        eprintln!("step time: median {median:.4} s over {} steps (the step alone, as `mvdit bench` times it)", summary.step_seconds.len());
    }
    for (step, loss) in &summary.eval_losses {
        eprintln!("held-out loss at step {step}: {loss:.4}");
    }
    eprintln!("checkpoint: {}", summary.checkpoint.display());
    Ok(summary.interrupted)
}

/// A bar of items done (`mvdit prepare`: images), hidden when stderr is not a terminal.
pub struct ItemBar {
    bar: ProgressBar,
}

impl ItemBar {
    pub fn new(items: &str) -> Self {
        let bar = ProgressBar::new(0);
        let template = format!("{{bar:30}} {{pos}}/{{len}} {items} [{{elapsed_precise}} < {{eta_precise}}, {{per_sec}}] {{msg}}");
        bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        ItemBar { bar }
    }
}

impl Progress for ItemBar {
    fn start(&mut self, from: u64, to: u64) {
        self.bar.set_length(to);
        self.bar.set_position(from);
    }
    fn advance(&mut self, done: u64) {
        self.bar.set_position(done);
    }
    fn message(&mut self, msg: &str) {
        match self.bar.is_hidden() {
            true => eprintln!("{msg}"),
            false => self.bar.println(msg),
        }
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
