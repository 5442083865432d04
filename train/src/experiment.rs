//! `mvdit experiment mms`: the paper's comparison at CPU scale. Trains post-norm, post-norm at
//! half the learning rate, LayerScale and MV-Split with the same seed, data and steps on a deep
//! narrow model (settings from docs/mms-reference.md, where post-norm collapses
//! within ~150 steps), with diagnostics on; then writes a comparison table (final held-out loss,
//! collapse step, peak G_mean/G_ctr, deep TCS at the end), the timestep probe (ridge regression
//! of t from each layer's image-token mean, R² on held-out images), report.html and figures.

pub mod init_front;

use crate::backends::{make_cpu, BackendArgs};
use crate::config::{DataConfig, DiagConfig, Recompute, SampleConfig, TrainConfig, WriterInit, DEFAULT_ACTIVATION_BUDGET_MB};
use crate::data::Dataset;
use crate::depth_split::StageBackend;
use crate::flow::noised_and_target;
use crate::optim::OptimConfig;
use crate::plot::{save_loss_curve_with, PlotOptions};
use crate::report::{write_figures, RunData};
use crate::rng::Rng;
use crate::observe::Progress;
use crate::run::{list_checkpoints, load_data, train};
use crate::trainer::TrainState;
use mvdit_core::{Backend, ModelConfig, Residual};
use mvdit_model::{Error, Keep, Probe, Recorder, Result, Tap, TensorFile};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
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
    /// Training steps of every variant.
    #[arg(long, default_value_t = 500)]
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
    #[arg(long, default_value_t = 5)]
    pub diag_every: u64,
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
        data: DataConfig { folder: None, image_size: 8, channels: 1, eval_fraction: 0.1 },
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
        activation_budget_mb: DEFAULT_ACTIVATION_BUDGET_MB,
        log_every: 1,
        checkpoint_every: 100,
        sample_every: 0,
        keep_checkpoints: 1,
        max_bad_steps: 10,
        sample: SampleConfig { steps: 10, cfg_scale: 2.0, shift: 4.0, per_class: 2 },
        diagnostics: Some(DiagConfig::new(a.diag_every)),
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
            let be = make_cpu(&a.backend)?;
            let res = run_mms(&be, &a)?;
            println!("{}", res.table);
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

/// Trains (or resumes, or reuses) every selected variant, then writes the outputs.
pub fn run_mms<B: StageBackend>(be: &B, a: &MmsArgs) -> Result<MmsResults> {
    let variants = pick_variants(a)?;
    let dirs = train_variants(be, a, &variants)?;
    // The timestep probe on every run's final weights (MV-Split's is the one the README shows).
    let mut probes = vec![];
    for (v, dir) in &dirs {
        let r2 = timestep_probe_run(be, dir)?;
        probes.push((v.name, r2));
    }
    let runs: Vec<RunData> = dirs.iter().map(|(_, d)| RunData::load(d)).collect::<Result<_>>()?;
    write_report_and_figures(a, &runs, &probes)?;
    let (table, rows) = results_table(a, &dirs, &runs, &probes);
    let results = json!({
        "settings": {"depth": a.depth, "width": a.width, "patch": a.patch, "batch": a.batch, "lr": a.lr, "warmup": a.warmup,
                     "steps": a.steps, "seed": a.seed, "diag_every": a.diag_every, "layerscale_init": a.layerscale_init},
        "runs": rows,
        "timestep_probe": probes.iter().map(|(n, r)| json!({"run": n, "r2_by_layer_from_input": r})).collect::<Vec<_>>(),
    });
    std::fs::write(a.out.join("table.md"), &table).map_err(|e| Error::new(format!("table.md: {e}")))?;
    std::fs::write(a.out.join("results.json"), serde_json::to_string_pretty(&results).unwrap_or_default())
        .map_err(|e| Error::new(format!("results.json: {e}")))?;
    Ok(MmsResults { table, results })
}

/// The variants `--only` names (all when empty).
fn pick_variants(a: &MmsArgs) -> Result<Vec<Variant>> {
    if a.only.is_empty() {
        Ok(VARIANTS.to_vec())
    } else {
        a.only
            .iter()
            .map(|n| {
                VARIANTS.iter().copied().find(|v| v.name == n).ok_or_else(|| {
                    Error::new(format!("unknown variant `{n}` (known: {})", VARIANTS.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")))
                })
            })
            .collect()
    }
}

/// Trains every variant into `OUT/NAME` (a finished run is reused, an unfinished one resumed,
/// one with other settings refused) → (variant, run directory).
fn train_variants<B: StageBackend>(be: &B, a: &MmsArgs, variants: &[Variant]) -> Result<Vec<(Variant, PathBuf)>> {
    std::fs::create_dir_all(&a.out).map_err(|e| Error::new(format!("{}: cannot create: {e}", a.out.display())))?;
    let stop = AtomicBool::new(false);
    let mut dirs = vec![];
    for v in variants {
        let dir = a.out.join(v.name);
        let cfg = mms_config(a, v);
        cfg.validate()?;
        let last = list_checkpoints(&dir).last().map(|c| c.0);
        if let Some(old) = std::fs::read_to_string(dir.join("config.json")).ok().and_then(|t| serde_json::from_str::<TrainConfig>(&t).ok()) {
            if (TrainConfig { steps: cfg.steps, ..old }) != cfg {
                return Err(Error::new(format!("{} holds a run with other settings; choose another --out", dir.display())));
            }
        }
        if last == Some(cfg.steps) {
            eprintln!("[{}] already trained to step {}: reusing {}", v.name, cfg.steps, dir.display());
        } else {
            eprintln!("[{}] training {} steps at lr {} → {}", v.name, cfg.steps, cfg.optim.lr, dir.display());
            let t0 = Instant::now();
            let done = train(be, &dir, cfg.clone(), last.is_some(), &stop, &mut Log { name: v.name.into(), every: 50 })?;
            let secs = t0.elapsed().as_secs_f64() + read_seconds(&dir);
            let timing = json!({"seconds": secs, "steps": done.step, "backend": be.name()});
            std::fs::write(dir.join("timing.json"), timing.to_string()).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
        }
        dirs.push((*v, dir));
    }
    Ok(dirs)
}

/// `OUT/report.html`, the report's figures and the timestep probe's figure in `OUT/figures`.
fn write_report_and_figures(a: &MmsArgs, runs: &[RunData], probes: &[(&str, Vec<f64>)]) -> Result<()> {
    let title = format!("MMS at CPU scale: depth {}, width {}, batch {}, LR {}, {} steps", a.depth, a.width, a.batch, a.lr, a.steps);
    std::fs::write(a.out.join("report.html"), crate::report::render_html(runs, &title)).map_err(|e| Error::new(format!("report.html: {e}")))?;
    let fig = a.out.join("figures");
    write_figures(runs, &fig)?;
    let probe_series: Vec<(String, Vec<(f64, f64)>)> =
        probes.iter().map(|(n, r)| (n.to_string(), r.iter().enumerate().map(|(i, v)| (i as f64 - 1.0, *v)).collect())).collect();
    let opts = PlotOptions {
        width: 900,
        height: 480,
        log_y: false,
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
    table += "\nTimestep probe: R² of ridge regression of t from the per-layer image-token mean (fit on training images, scored on held-out ones)\n\n| layer | ";
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

fn read_seconds(dir: &Path) -> f64 {
    std::fs::read_to_string(dir.join("timing.json")).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()).and_then(|v| v["seconds"].as_f64()).unwrap_or(0.0)
}

// ------------------------------------------------------------------------------------------
// The timestep probe

/// Loads the latest checkpoint of `dir` and runs [`timestep_probe`] (fit on training images,
/// scored on the held-out ones).
pub fn timestep_probe_run<B: StageBackend>(be: &B, dir: &Path) -> Result<Vec<f64>> {
    let (_, path) = list_checkpoints(dir).pop().ok_or_else(|| Error::new(format!("{}: no checkpoint", dir.display())))?;
    let state = TrainState::from_checkpoint(be, TensorFile::read(&path)?, &path)?;
    let (train_set, eval_set) = load_data(&state.cfg)?;
    timestep_probe(be, &state, &train_set, &eval_set, 4, 0x7153)
}

/// Records the embedded input (block 0's input) and every block's output.
#[derive(Default)]
struct LayerOutputs(Recorder);

impl Probe for LayerOutputs {
    fn wants(&self, block: usize, tap: Tap) -> bool {
        tap == Tap::BlockOut || (block == 0 && tap == Tap::BlockIn)
    }
    fn record(&mut self, block: usize, tap: Tap, shape: &[usize], values: Vec<f32>) {
        self.0.record(block, tap, shape, values);
    }
}

/// Per-layer features of samples, [layer][sample][D], and the sample targets.
pub type LayerFeatures = (Vec<Vec<Vec<f64>>>, Vec<f64>);

/// Per-layer image-token means of noised images at random t: (features[layer][sample][D], t).
/// Layer 0 is the embedded input (block 0's input), layer i+1 block i's output.
pub fn token_mean_features<B: Backend>(be: &B, state: &TrainState<B>, data: &Dataset, draws: usize, seed: u64) -> Result<LayerFeatures> {
    let cfg = &state.cfg;
    let depth = cfg.model.depth;
    let (d, p) = (cfg.model.hidden_size, cfg.model.patch_size);
    let li = (cfg.data.image_size / p).pow(2);
    let per = data.image_len();
    let mut rng = Rng::new(seed);
    let samples: Vec<usize> = (0..data.len()).flat_map(|i| std::iter::repeat_n(i, draws)).collect();
    let mut feats = vec![vec![]; depth + 1];
    let mut ts = vec![];
    for chunk in samples.chunks(64) {
        let n = chunk.len();
        let x0: Vec<f32> = chunk.iter().flat_map(|&i| data.image(i).iter().copied()).collect();
        let labels: Vec<u32> = chunk.iter().map(|&i| data.label(i)).collect();
        let t: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
        let eps = rng.normals(n * per);
        let (xt, _) = noised_and_target(&x0, &eps, &t);
        let shape = [n, cfg.data.channels, cfg.data.image_size, cfg.data.image_size];
        let mut rec = LayerOutputs::default();
        let ctx = state.conditioner().context(be, &labels)?;
        state.unsplit()?.forward_probed(be, &be.upload(&xt, &shape)?, ctx, Keep::Nothing, Some(&mut rec as &mut dyn Probe))?;
        for (layer, feat) in feats.iter_mut().enumerate() {
            let (shape, v) = if layer == 0 { rec.0.get(0, Tap::BlockIn) } else { rec.0.get(layer - 1, Tap::BlockOut) }
                .ok_or_else(|| Error::new("timestep probe: missing block tensor"))?;
            let l = shape[1];
            for bi in 0..n {
                let mut m = vec![0.0f64; d];
                for tok in 0..li {
                    for c in 0..d {
                        m[c] += v[(bi * l + tok) * d + c] as f64;
                    }
                }
                m.iter_mut().for_each(|x| *x /= li as f64);
                feat.push(m);
            }
        }
        ts.extend(t.iter().map(|&x| x as f64));
    }
    Ok((feats, ts))
}

/// R² per layer (embedded input first) of ridge regressions of t from the image-token mean,
/// fit on `fit` images and scored on `test` images (`draws` noise levels per image).
pub fn timestep_probe<B: Backend>(be: &B, state: &TrainState<B>, fit: &Dataset, test: &Dataset, draws: usize, seed: u64) -> Result<Vec<f64>> {
    let (fx, fy) = token_mean_features(be, state, fit, draws, seed)?;
    let (tx, ty) = token_mean_features(be, state, test, draws, seed + 1)?;
    Ok(fx.iter().zip(&tx).map(|(f, t)| ridge_r2(f, &fy, t, &ty, 1.0)).collect())
}

/// Ridge regression on standardised features (penalty `lambda`, intercept free), fit on
/// (x, y) and scored on (xt, yt): R² = 1 − SS_res / SS_tot around the test mean.
pub fn ridge_r2(x: &[Vec<f64>], y: &[f64], xt: &[Vec<f64>], yt: &[f64], lambda: f64) -> f64 {
    let (n, d) = (x.len(), x.first().map_or(0, Vec::len));
    if n == 0 || d == 0 || xt.is_empty() {
        return f64::NAN;
    }
    let mean: Vec<f64> = (0..d).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
    let sd: Vec<f64> = (0..d).map(|j| (x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n as f64).sqrt().max(1e-12)).collect();
    let z = |r: &[f64]| -> Vec<f64> { (0..d).map(|j| (r[j] - mean[j]) / sd[j]).collect() };
    let ym = y.iter().sum::<f64>() / n as f64;
    // (ZᵀZ + λI) w = Zᵀ(y − ȳ).
    let mut a = vec![0.0; d * d];
    let mut b = vec![0.0; d];
    for (r, &yv) in x.iter().zip(y) {
        let zr = z(r);
        for i in 0..d {
            b[i] += zr[i] * (yv - ym);
            for j in 0..d {
                a[i * d + j] += zr[i] * zr[j];
            }
        }
    }
    (0..d).for_each(|i| a[i * d + i] += lambda);
    let w = solve_spd(a, b, d);
    let tm = yt.iter().sum::<f64>() / yt.len() as f64;
    let (mut res, mut tot) = (0.0, 0.0);
    for (r, &yv) in xt.iter().zip(yt) {
        let pred = ym + z(r).iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
        res += (yv - pred).powi(2);
        tot += (yv - tm).powi(2);
    }
    1.0 - res / tot.max(1e-300)
}

/// Solves A w = b for symmetric positive definite A (Cholesky).
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, d: usize) -> Vec<f64> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= a[j * d + k] * a[j * d + k];
        }
        let l = s.max(1e-300).sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / l;
        }
    }
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * d + k] * b[k];
        }
        b[i] = s / a[i * d + i];
    }
    for i in (0..d).rev() {
        let mut s = b[i];
        for k in i + 1..d {
            s -= a[k * d + i] * b[k];
        }
        b[i] = s / a[i * d + i];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_target_and_scores_noise_near_zero() {
        let mut rng = Rng::new(3);
        let gen = |rng: &mut Rng, n: usize| -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
            let x: Vec<Vec<f64>> = (0..n).map(|_| (0..5).map(|_| rng.normal() as f64).collect()).collect();
            let y: Vec<f64> = x.iter().map(|r| 0.3 + 2.0 * r[0] - r[3]).collect();
            let noise: Vec<f64> = (0..n).map(|_| rng.normal() as f64).collect();
            (x, y, noise)
        };
        let (x, y, ny) = gen(&mut rng, 400);
        let (xt, yt, nyt) = gen(&mut rng, 300);
        let r2 = ridge_r2(&x, &y, &xt, &yt, 1e-6);
        assert!(r2 > 0.999_99, "{r2}");
        let r2n = ridge_r2(&x, &ny, &xt, &nyt, 1.0);
        assert!(r2n.abs() < 0.05, "{r2n}");
        // Heavy ridge shrinks toward the mean: R² falls but stays positive.
        let r2h = ridge_r2(&x, &y, &xt, &yt, 1e3);
        assert!(r2h > 0.0 && r2h < r2, "{r2h}");
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
            layerscale_init: 1e-3,
            out: "x".into(),
            only: vec![],
            backend: BackendArgs { backend: crate::backends::BackendKind::Cpu, threads: 1, device: None, precision: crate::backends::PrecisionArg::F32, flags: Default::default() },
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
