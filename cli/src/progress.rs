//! The terminal side of long jobs: `mvdit train`'s progress bar (loss, steps/s, ETA), Ctrl-C
//! and preemption (SIGTERM, SIGUSR1) → checkpoint and exit status; `mvdit prepare`'s bar.

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

/// Exit status of a run stopped by Ctrl-C after its checkpoint (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit status of a run stopped by SIGTERM or SIGUSR1 (a scheduler's preemption) after its
/// checkpoint: `EX_TEMPFAIL` of sysexits.h, so a job script can requeue on it alone.
pub const EXIT_PREEMPTED: i32 = 75;

/// How `mvdit train` starts: fresh, from the latest checkpoint (`--resume`), or whichever the
/// run directory allows (`--resume auto`).
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Resume {
    #[value(skip)]
    Fresh,
    Latest,
    Auto,
}

struct Bar {
    bar: Option<ProgressBar>,
    /// Log lines when there is no bar (rank 0 only).
    lines: bool,
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
            None if self.lines && step % 100 == 0 => eprintln!("step {step}: loss {loss:.4} ({steps_per_s:.2} steps/s)"),
            None => {}
        }
    }
    fn message(&mut self, msg: &str) {
        // A bar drawn nowhere (stderr not a terminal) would swallow the line.
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(msg),
            _ => eprintln!("{msg}"),
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

pub fn run_train<B: StageBackend>(place: Placement<'_, B>, out: &Path, cfg: TrainConfig, resume: Resume, quiet: bool) -> Result<()> {
    match run_train_dist(place, out, cfg, resume, quiet, &Dist::single())? {
        Some(code) => std::process::exit(code),
        None => Ok(()),
    }
}

/// The flags the signal handlers raise: stop after this step, and whether a scheduler asked.
struct Stop {
    now: Arc<AtomicBool>,
    preempted: Arc<AtomicBool>,
}

/// Ctrl-C: a checkpoint after the step (a second Ctrl-C kills at once). SIGTERM and SIGUSR1
/// (Unix): the same, remembered as a preemption.
fn on_signals() -> Stop {
    let stop = Stop { now: Arc::new(AtomicBool::new(false)), preempted: Arc::new(AtomicBool::new(false)) };
    let flag = stop.now.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(EXIT_INTERRUPTED);
        }
        eprintln!("\nCtrl-C: saving a checkpoint after this step (press again to abort)");
    });
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGTERM, SIGUSR1};
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGUSR1]) {
            let (now, preempted) = (stop.now.clone(), stop.preempted.clone());
            let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
                for sig in signals.forever() {
                    preempted.store(true, Ordering::SeqCst);
                    if !now.swap(true, Ordering::SeqCst) {
                        let name = if sig == SIGTERM { "SIGTERM" } else { "SIGUSR1" };
                        eprintln!("\n{name}: preempted; saving a checkpoint after this step, then exiting with status {EXIT_PREEMPTED}");
                    }
                }
            });
        }
    }
    stop
}

/// [`run_train`] as one rank of a data-parallel group; only rank 0 shows progress. Returns the
/// exit status when a signal stopped the run (every rank agrees on it; the caller exits after
/// closing MPI): [`EXIT_INTERRUPTED`] or [`EXIT_PREEMPTED`].
pub fn run_train_dist<B: StageBackend>(place: Placement<'_, B>, out: &Path, cfg: TrainConfig, resume: Resume, quiet: bool, dist: &Dist) -> Result<Option<i32>> {
    let root = dist.is_root();
    let lines = root;
    let quiet = quiet || !root;
    let stop = on_signals();
    let resume = match resume {
        Resume::Fresh => false,
        Resume::Latest => true,
        Resume::Auto => {
            let found = mvdit_train::run_dir::resume_auto(out, dist)?;
            if root && !found {
                eprintln!("--resume auto: no checkpoint in {}; starting a new run", out.display());
            }
            found
        }
    };
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
    let summary = train_dist(place, out, cfg, resume, &stop.now, &mut Bar { bar, lines }, dist)?;
    // Every rank stopped at the same step; a preemption of any rank is the preemption of all.
    let code = match summary.interrupted {
        false => None,
        true if dist.any(stop.preempted.load(Ordering::SeqCst))? => Some(EXIT_PREEMPTED),
        true => Some(EXIT_INTERRUPTED),
    };
    if !root {
        return Ok(code);
    }
    if let Some(median) = summary.median_step_seconds() {
        eprintln!("step time: median {median:.4} s over {} steps (the step alone, as `mvdit bench` times it)", summary.step_seconds.len());
    }
    for (step, loss) in &summary.eval_losses {
        eprintln!("held-out loss at step {step}: {loss:.4}");
    }
    eprintln!("checkpoint: {}", summary.checkpoint.display());
    Ok(code)
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
