//! `mvdit experiment mms`: the paper's comparison at CPU scale. Trains post-norm, post-norm at
//! half the learning rate, LayerScale and MV-Split with the same seed, data and steps on a deep
//! narrow model (settings from docs/mms-reference.md, where post-norm collapses
//! within ~150 steps), with diagnostics on; then writes a comparison table (final held-out loss,
//! collapse step, peak G_mean/G_ctr, deep TCS at the end), the timestep probe (ridge regression
//! of t from each layer's image-token mean, R² on held-out images), report.html and figures.

pub mod init_front;
pub mod probe;

pub use probe::{timestep_probe, timestep_probe_run, ProbeDraws};

use crate::backend_args::BackendArgs;
use mvdit_train::config::{DataConfig, DiagConfig, DiagSetting, Recompute, SampleConfig, TrainConfig, WriterInit};
use mvdit_train::depth_split::StageBackend;
use mvdit_train::observe::Progress;
use mvdit_train::optim::OptimConfig;
use mvdit_train::plot::{save_loss_curve_with, PlotOptions};
use mvdit_train::report::{write_figures, RunData};
use mvdit_train::run::{list_checkpoints, train};
use mvdit_core::{ModelConfig, Residual};
use mvdit_model::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

#[derive(clap::Subcommand, Clone, Debug)]
pub enum ExperimentCommand {
    /// Post-norm, post-norm at half LR, LayerScale and MV-Split on a deep narrow model: table,
    /// timestep probe, report.html and figures in --out.
    Mms(MmsArgs),
    /// The paper's Appendix B: token cosine similarity by depth at initialisation, standard-init
    /// post-norm against MV-Split (no training; tcs.json and tcs_by_depth.png in --out).
    InitFront(init_front::InitFrontArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct MmsArgs {
    #[arg(long, default_value_t = 200)]
    pub depth: usize,
    /// Training steps of every variant (post-norm at the full LR ends `--stop-after-mms` steps
    /// after the detector fires).
    #[arg(long, default_value_t = 250)]
    pub steps: u64,
    #[arg(long, default_value_t = 32)]
    pub width: usize,
    #[arg(long, default_value_t = 2)]
    pub patch: usize,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Peak learning rate (the half-LR post-norm run uses half of it).
    #[arg(long, default_value_t = 5e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Diagnostics every K steps.
    #[arg(long, default_value_t = 10)]
    pub diag_every: u64,
    /// A run ends this many steps after the MMS detector fires (0: trains on to --steps).
    #[arg(long, default_value_t = 50)]
    pub stop_after_mms: u64,
    /// Variants trained at once (0 = all selected); `--threads` are shared between them.
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// LayerScale λ at initialisation.
    #[arg(long, default_value_t = 1e-2)]
    pub layerscale_init: f64,
    /// Output folder: one run directory per variant, table.md, results.json, report.html, figures/.
    #[arg(long, default_value = "runs/mms")]
    pub out: PathBuf,
    /// Only these variants (comma-separated): postnorm, postnorm-halflr, layerscale, mvsplit.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// One arm of the comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    pub residual: Residual,
    pub lr_scale: f64,
}

pub const VARIANTS: [Variant; 4] = [
    Variant { name: "postnorm", residual: Residual::Postnorm, lr_scale: 1.0 },
    Variant { name: "postnorm-halflr", residual: Residual::Postnorm, lr_scale: 0.5 },
    Variant { name: "layerscale", residual: Residual::Layerscale, lr_scale: 1.0 },
    Variant { name: "mvsplit", residual: Residual::Mvsplit, lr_scale: 1.0 },
];

/// The training config of one variant: everything but the merge and the LR is shared.
pub fn mms_config(a: &MmsArgs, v: &Variant) -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            in_channels: 1,
            patch_size: a.patch,
            hidden_size: a.width,
            depth: a.depth,
            num_heads: 1,
            mlp_hidden_dim: 3 * a.width,
            qkv_bias: false,
            context_dim: a.width,
            rope_base: 10000.0,
            residual: v.residual,
        },
        data: DataConfig::new(8, 1, 0.1),
        context_tokens: 1,
        label_dropout: 0.1,
        optim: OptimConfig { lr: a.lr * v.lr_scale, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.1, max_grad_norm: 1.0, warmup_steps: a.warmup },
        batch_size: a.batch,
        steps: a.steps,
        ema_decay: 0.0,
        // β₀ = 1/√depth, α₀ = 0 (β₀ = 1 stalls at this scale, see the note).
        beta_init: 1.0 / (a.depth as f64).sqrt(),
        weight_std: None,
        // As the PyTorch probe of the note: output layer N(0, 0.02²), patch embedding 1/√(C·P²).
        output_std: Some(0.02),
        patch_std: Some(1.0 / a.patch as f64),
        layerscale_init: a.layerscale_init,
        writer_init: WriterInit::Auto,
        init: None,
        time_shift: 1.0,
        seed: a.seed,
        recompute: Recompute::None,
        activation_budget_mb: mvdit_train::config::ActivationBudget::Auto,
        loss_scale: Default::default(),
        log_every: 1,
        checkpoint_every: 100,
        sample_every: 0,
        keep_checkpoints: 1,
        checkpoint_shard_mb: mvdit_train::config::DEFAULT_CHECKPOINT_SHARD_MB,
        max_bad_steps: 10,
        sample: SampleConfig { steps: 10, cfg_scale: 2.0, shift: 4.0, per_class: 2, quality: 0, sampler: Default::default(), cfg_interval: None, cache_threshold: 0.0 },
        diagnostics: DiagSetting::On(DiagConfig { stop_after_mms: (a.stop_after_mms > 0).then_some(a.stop_after_mms), ..DiagConfig::new(a.diag_every) }),
    }
}

struct Log {
    name: String,
    every: u64,
}

impl Progress for Log {
    fn step(&mut self, step: u64, loss: f64, steps_per_s: f64) {
        if step.is_multiple_of(self.every) {
            eprintln!("[{}] step {step}: loss {loss:.4} ({steps_per_s:.2} steps/s)", self.name);
        }
    }
    fn message(&mut self, msg: &str) {
        eprintln!("[{}] {msg}", self.name);
    }
}

pub fn run_command(cmd: ExperimentCommand) -> Result<()> {
    match cmd {
        ExperimentCommand::Mms(a) => {
            let t0 = Instant::now();
            let res = run_mms(&a)?;
            println!("{}", res.table);
            println!("wall time: {:.0} s", t0.elapsed().as_secs_f64());
            eprintln!("results in {} (table.md, results.json, report.html, figures/)", a.out.display());
            Ok(())
        }
        ExperimentCommand::InitFront(a) => {
            println!("{}", init_front::run_init_front(&a)?);
            eprintln!("results in {} (tcs.json, tcs_by_depth.png)", a.out.display());
            Ok(())
        }
    }
}

/// What the experiment produced.
pub struct MmsResults {
    pub table: String,
    pub results: Value,
}

/// Trains (or resumes, or reuses) every selected variant, `--jobs` at a time on CPU backends
/// of their own, and probes each one's final weights; then writes the outputs.
pub fn run_mms(a: &MmsArgs) -> Result<MmsResults> {
    let variants = pick_variants(a)?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::new(format!("{}: cannot create: {e}", a.out.display())))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (jobs, threads) = schedule(variants.len(), a.jobs, if a.backend.threads == 0 { cores } else { a.backend.threads });
    let backend = BackendArgs { threads, ..a.backend.clone() };
    backend.spec().and_then(|s| s.cpu_only())?;
    // Settings are checked for every variant before any trains.
    let cfgs: Vec<TrainConfig> = variants.iter().map(|v| check_variant(a, v)).collect::<Result<_>>()?;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done: Vec<(usize, Result<(PathBuf, Vec<f64>)>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = vec![];
                    // After a failure no worker takes a new variant.
                    while !failed.load(Ordering::SeqCst) {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(v) = variants.get(i) else { break };
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.spec().and_then(|s| s.cpu_only()).and_then(|be| train_and_probe(&be, a, v, cfgs[i].clone()))))
                            .unwrap_or_else(|p| {
                                let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                                Err(Error::new(format!("[{}] the training thread panicked: {msg}", v.name)))
                            });
                        failed.fetch_or(r.is_err(), Ordering::SeqCst);
                        out.push((i, r));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|_| vec![])).collect()
    });
    let mut by_variant: Vec<Option<Result<(PathBuf, Vec<f64>)>>> = (0..variants.len()).map(|_| None).collect();
    for (i, r) in done {
        by_variant[i] = Some(r);
    }
    // The first failure in variant order.
    let by_variant: Vec<Option<(PathBuf, Vec<f64>)>> = by_variant.into_iter().map(Option::transpose).collect::<Result<_>>()?;
    let mut dirs = vec![];
    let mut probes = vec![];
    for (v, r) in variants.iter().zip(by_variant) {
        let (dir, r2) = r.ok_or_else(|| Error::new(format!("[{}] the training thread ended without a result", v.name)))?;
        dirs.push((*v, dir));
        probes.push((v.name, r2));
    }
    let runs: Vec<RunData> = dirs.iter().map(|(_, d)| RunData::load(d)).collect::<Result<_>>()?;
    write_report_and_figures(a, &runs, &probes)?;
    let (table, rows) = results_table(a, &dirs, &runs, &probes);
    let results = json!({
        "settings": {"depth": a.depth, "width": a.width, "patch": a.patch, "batch": a.batch, "lr": a.lr, "warmup": a.warmup,
                     "steps": a.steps, "seed": a.seed, "diag_every": a.diag_every, "stop_after_mms": a.stop_after_mms,
                     "layerscale_init": a.layerscale_init, "jobs": jobs, "threads_per_job": threads},
        "runs": rows,
        "timestep_probe": probes.iter().map(|(n, r)| json!({"run": n, "r2_by_layer_from_input": r})).collect::<Vec<_>>(),
    });
    std::fs::write(a.out.join("table.md"), &table).map_err(|e| Error::new(format!("table.md: {e}")))?;
    std::fs::write(a.out.join("results.json"), serde_json::to_string_pretty(&results).unwrap_or_default())
        .map_err(|e| Error::new(format!("results.json: {e}")))?;
    Ok(MmsResults { table, results })
}

/// (variants trained at once, CPU threads each) for `n` variants, `jobs` asked (0 = all) and
/// `threads` in all: every job gets at least one thread, so 4 variants on 2 threads share the
/// cores (one thread each is faster per core than two on one run at this model size).
pub fn schedule(n: usize, jobs: usize, threads: usize) -> (usize, usize) {
    let jobs = if jobs == 0 { n } else { jobs.min(n) }.max(1);
    (jobs, (threads / jobs).max(1))
}

/// The variants `--only` names (all when empty).
fn pick_variants(a: &MmsArgs) -> Result<Vec<Variant>> {
    if a.only.is_empty() {
        Ok(VARIANTS.to_vec())
    } else {
        if let Some(n) = a.only.iter().enumerate().find_map(|(i, n)| a.only[..i].contains(n).then_some(n)) {
            return Err(Error::new(format!("--only: `{n}` named twice")));
        }
        a.only
            .iter()
            .map(|n| {
                VARIANTS
                    .iter()
                    .copied()
                    .find(|v| v.name == n)
                    .ok_or_else(|| Error::new(format!("unknown variant `{n}` (known: {})", VARIANTS.iter().map(|v| v.name).collect::<Vec<_>>().join(", "))))
            })
            .collect()
    }
}

/// Variant `v`'s training config, valid, and refused when `OUT/NAME` holds a run with other
/// settings (`steps` aside: a run may be trained on).
fn check_variant(a: &MmsArgs, v: &Variant) -> Result<TrainConfig> {
    let dir = a.out.join(v.name);
    let cfg = mms_config(a, v);
    cfg.validate()?;
    if let Some(old) = std::fs::read_to_string(dir.join("config.json")).ok().and_then(|t| serde_json::from_str::<TrainConfig>(&t).ok()) {
        if (TrainConfig { steps: cfg.steps, ..old }) != cfg {
            return Err(Error::new(format!("{} holds a run with other settings; choose another --out", dir.display())));
        }
    }
    Ok(cfg)
}

/// Trains variant `v` with its checked config `cfg` ([`check_variant`]) into `OUT/NAME` (a
/// finished run is reused, an unfinished one resumed), then runs the timestep probe on its final
/// weights → (run directory, R² by layer).
fn train_and_probe<B: StageBackend>(be: &B, a: &MmsArgs, v: &Variant, cfg: TrainConfig) -> Result<(PathBuf, Vec<f64>)> {
    let dir = a.out.join(v.name);
    let last = list_checkpoints(&dir).last().map(|c| c.0);
    let timing = read_timing(&dir);
    let finished = last.is_some() && (last == Some(cfg.steps) || (timing["stopped_after_mms"] == true && timing["steps"].as_u64() == last));
    if finished {
        eprintln!("[{}] already trained to step {}: reusing {}", v.name, last.unwrap_or(0), dir.display());
    } else {
        eprintln!("[{}] training {} steps at lr {} → {}", v.name, cfg.steps, cfg.optim.lr, dir.display());
        let t0 = Instant::now();
        let stop = AtomicBool::new(false);
        let done = train(be, &dir, cfg.clone(), last.is_some(), &stop, &mut Log { name: v.name.into(), every: 50 })?;
        let secs = t0.elapsed().as_secs_f64() + read_seconds(&dir);
        let timing = json!({"seconds": secs, "steps": done.step, "stopped_after_mms": done.stopped_after_mms, "backend": be.name()});
        std::fs::write(dir.join("timing.json"), timing.to_string()).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    }
    let r2 = timestep_probe_run(be, &dir)?;
    Ok((dir, r2))
}

/// `OUT/report.html`, the report's figures and the timestep probe's figure in `OUT/figures`.
fn write_report_and_figures(a: &MmsArgs, runs: &[RunData], probes: &[(&str, Vec<f64>)]) -> Result<()> {
    let title = format!("MMS at CPU scale: depth {}, width {}, batch {}, LR {}, {} steps", a.depth, a.width, a.batch, a.lr, a.steps);
    std::fs::write(a.out.join("report.html"), mvdit_train::report::render_html(runs, &title)).map_err(|e| Error::new(format!("report.html: {e}")))?;
    let fig = a.out.join("figures");
    write_figures(runs, &fig)?;
    let probe_series: Vec<(String, Vec<(f64, f64)>)> =
        probes.iter().map(|(n, r)| (n.to_string(), r.iter().enumerate().map(|(i, v)| (i as f64 - 1.0, *v)).collect())).collect();
    let opts = PlotOptions {
        width: 900,
        height: 480,
        log_y: false,
        log_x: false,
        title: "timestep probe: R² of t from each layer's image-token mean (held-out)".into(),
        x_label: "layer (-1 = embedded input)".into(),
        y_label: "R²".into(),
    };
    save_loss_curve_with(fig.join("timestep_probe.png"), &probe_series, &opts).map_err(|e| Error::new(format!("figure: {e}")))?;

    Ok(())
}

/// The comparison table (markdown, with the timestep probe by layer) and one JSON row per run.
fn results_table(a: &MmsArgs, dirs: &[(Variant, PathBuf)], runs: &[RunData], probes: &[(&str, Vec<f64>)]) -> (String, Vec<Value>) {
    let mut rows = vec![];
    let mut table = String::from(
        "| run | residual | LR | steps | final held-out loss | final train loss (last 20) | collapse (MMS onset step) | peak G_mean/G_ctr (step, layer) | deep TCS at end | wall time |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((v, dir), run) in dirs.iter().zip(runs) {
        let s = run.summary();
        let cfg = mms_config(a, v);
        let secs = read_seconds(dir);
        let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.4}"));
        table += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            v.name,
            v.residual,
            cfg.optim.lr,
            s.steps,
            f(s.eval_loss),
            f(s.final_train_loss),
            s.mms_onset.map_or("none".to_string(), |x| x.to_string()),
            s.peak_ratio.map_or("–".to_string(), |(r, st, l)| format!("{r:.3} ({st}, {l})")),
            f(s.deep_tcs_end),
            if secs > 0.0 { format!("{:.0} s", secs) } else { "–".into() },
        );
        rows.push(json!({
            "name": v.name, "residual": v.residual.name(), "lr": cfg.optim.lr, "steps": s.steps, "eval_loss": s.eval_loss,
            "final_train_loss": s.final_train_loss, "mms_onset": s.mms_onset,
            "peak_ratio": s.peak_ratio.map(|p| json!({"ratio": p.0, "step": p.1, "layer": p.2})),
            "deep_tcs_end": s.deep_tcs_end, "seconds": secs,
        }));
    }
    let depth = a.depth;
    let picks: Vec<usize> = [0usize, 1, 2, 4, 8, 16, 32, 64, 100, 128, 150, 199, 255, 399, 511, 999]
        .into_iter()
        .filter(|&l| l < depth)
        .chain(std::iter::once(depth - 1))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    table +=
        "\nTimestep probe: R² of ridge regression of t from the per-layer image-token mean (fit on training images, scored on held-out ones)\n\n| layer | ";
    table += &probes.iter().map(|p| p.0).collect::<Vec<_>>().join(" | ");
    table += " |\n|---|";
    table += &"---|".repeat(probes.len());
    table += "\n";
    for l in std::iter::once(-1i64).chain(picks.iter().map(|&l| l as i64)) {
        let label = if l < 0 { "input (embedded)".to_string() } else { l.to_string() };
        table += &format!("| {label} | {} |\n", probes.iter().map(|p| format!("{:.3}", p.1[(l + 1) as usize])).collect::<Vec<_>>().join(" | "));
    }
    (table, rows)
}

/// A run's timing.json (`Null` when absent).
fn read_timing(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("timing.json")).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()).unwrap_or(Value::Null)
}

fn read_seconds(dir: &Path) -> f64 {
    read_timing(dir)["seconds"].as_f64().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_shares_the_threads_and_gives_each_job_one() {
        assert_eq!(schedule(4, 0, 2), (4, 1));
        assert_eq!(schedule(4, 2, 8), (2, 4));
        assert_eq!(schedule(1, 0, 2), (1, 2));
        assert_eq!(schedule(2, 9, 2), (2, 1));
        assert_eq!(schedule(0, 0, 2), (1, 2));
    }

    #[test]
    fn variants_share_everything_but_merge_and_lr() {
        let a = MmsArgs {
            depth: 8,
            steps: 10,
            width: 16,
            patch: 2,
            batch: 4,
            lr: 4e-3,
            warmup: 5,
            seed: 3,
            diag_every: 2,
            stop_after_mms: 10,
            jobs: 0,
            layerscale_init: 1e-3,
            out: "x".into(),
            only: vec![],
            backend: BackendArgs {
                backend: crate::backend_args::BackendArg::Cpu,
                threads: 1,
                device: None,
                precision: crate::backend_args::PrecisionArg::F32,
                flags: Default::default(),
            },
        };
        let cfgs: Vec<TrainConfig> = VARIANTS.iter().map(|v| mms_config(&a, v)).collect();
        for c in &cfgs {
            c.validate().unwrap();
            let base = TrainConfig { model: ModelConfig { residual: Residual::Mvsplit, ..c.model.clone() }, optim: cfgs[3].optim.clone(), ..c.clone() };
            assert_eq!(base, cfgs[3]);
        }
        assert_eq!(cfgs[1].optim.lr, 2e-3);
        assert!(!cfgs[2].zero_writers() && cfgs[0].zero_writers() && cfgs[3].zero_writers());
    }
}
