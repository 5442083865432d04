//! `mvdit experiment init-front`: the paper's Appendix B at initialisation. A standard-init
//! post-norm stack (every weight, the residual writers included, N(0, 0.02²) at width 1024 and
//! the same gain, 0.02·√(1024/width), at other widths; no gating)
//! drives the image tokens of a batch towards one direction as depth grows, a front of token
//! cosine similarity (TCS) moving through the layers; MV-Split with the same weights does not.
//! No training: one forward of a batch of noised digits per variant, TCS of the image tokens
//! after every block.

use crate::backend_args::BackendArgs;
use mvdit_train::config::{preset, Recompute, TrainConfig, WriterInit};
use mvdit_train::depth_split::StageBackend;
use mvdit_train::diagnostics::{image_tokens, wide};
use mvdit_train::flow::noised_and_target;
use mvdit_train::init::default_weight_std;
use mvdit_train::plot::{save_loss_curve_with, PlotOptions};
use mvdit_train::rng::Rng;
use mvdit_train::run::load_data;
use mvdit_train::trainer::TrainState;
use mvdit_core::{mms, Residual};
use mvdit_model::{Error, Keep, Probe, Recorder, Result, Tap};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
pub struct InitFrontArgs {
    #[arg(long, default_value_t = 128)]
    pub depth: usize,
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// Noised digits in the batch (t uniform in (0, 1)).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Std of every weight at initialisation ("standard init"); default 0.02·√(1024/width):
    /// N(0, 0.02²) at the released width 1024, the same per-layer gain at narrower widths.
    #[arg(long)]
    pub std: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for tcs.json and tcs_by_depth.png.
    #[arg(long, default_value = "runs/init-front")]
    pub out: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// The residual kinds compared.
pub const FRONT_VARIANTS: [(&str, Residual); 2] = [("postnorm", Residual::Postnorm), ("mvsplit", Residual::Mvsplit)];

/// The untrained model of a variant: the `digits` preset at `depth` × `width`, every weight
/// N(0, std²), writers included, MV-Split's beta 1 and alpha 0.
pub fn front_config(a: &InitFrontArgs, residual: Residual) -> Result<TrainConfig> {
    let std = a.std.unwrap_or_else(|| default_weight_std(a.width));
    let mut cfg = preset("digits")?;
    let m = &mut cfg.model;
    (m.depth, m.hidden_size, m.context_dim, m.mlp_hidden_dim, m.num_heads, m.residual) = (a.depth, a.width, a.width, 3 * a.width, 1, residual);
    cfg.weight_std = Some(std);
    cfg.output_std = Some(std);
    cfg.patch_std = Some(std);
    cfg.writer_init = WriterInit::Normal;
    cfg.beta_init = 1.0;
    cfg.batch_size = a.batch;
    cfg.seed = a.seed;
    cfg.recompute = Recompute::None;
    cfg.validate()?;
    Ok(cfg)
}

/// TCS of the image tokens by layer for every variant: layer 0 is the embedded input, layer
/// i + 1 block i's output.
pub fn init_front<B: StageBackend>(be: &B, a: &InitFrontArgs) -> Result<Vec<(&'static str, Vec<f64>)>> {
    if a.batch == 0 || a.depth == 0 {
        return Err(Error::new("--batch and --depth must be at least 1"));
    }
    // The variants differ only in their merges: one data set serves all.
    let (data, _) = load_data(&front_config(a, Residual::Postnorm)?)?;
    let mut out = vec![];
    for (name, residual) in FRONT_VARIANTS {
        let cfg = front_config(a, residual)?;
        let state = TrainState::new(be, cfg.clone(), data.class_names.clone())?;
        // The same images, t and noise for every variant.
        let mut rng = Rng::new(a.seed ^ 0xB);
        let n = a.batch.min(data.len());
        let picks: Vec<usize> = (0..n).map(|_| rng.below(data.len())).collect();
        let x0: Vec<f32> = picks.iter().flat_map(|&i| data.image(i).iter().copied()).collect();
        let labels: Vec<u32> = picks.iter().map(|&i| data.label(i)).collect();
        let t: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
        let (xt, _) = noised_and_target(&x0, &rng.normals(x0.len()), &t);
        let shape = [n, cfg.data.channels, cfg.data.image_size, cfg.data.image_size];
        // Block inputs and outputs (block 0's input: the embedded tokens).
        let mut rec = Recorder::new((0..a.depth).collect(), vec![Tap::BlockIn, Tap::BlockOut]);
        let ctx = state.conditioner()?.context(be, &labels)?;
        state.unsplit()?.forward_probed(be, &be.upload(&xt, &shape)?, ctx, Keep::Nothing, Some(&mut rec as &mut dyn Probe))?;
        let li = (cfg.data.image_size / cfg.model.patch_size).pow(2);
        let tcs = (0..=a.depth)
            .map(|layer| {
                let (shape, v) = if layer == 0 { rec.get(0, Tap::BlockIn) } else { rec.get(layer - 1, Tap::BlockOut) }
                    .ok_or_else(|| Error::new("init-front: missing block tensor"))?;
                let (b, l, d) = (shape[0], shape[1], shape[2]);
                Ok(mms::token_cosine_similarity(&image_tokens(&wide(v), b, l, d, li), b, li, d))
            })
            .collect::<Result<Vec<f64>>>()?;
        out.push((name, tcs));
    }
    Ok(out)
}

/// The first layer whose TCS reaches `level`, if any.
pub fn front_layer(tcs: &[f64], level: f64) -> Option<usize> {
    tcs.iter().position(|&v| v >= level)
}

/// `mvdit experiment init-front`: runs [`init_front`], writes `tcs.json` and the figure, and
/// returns the table it prints.
pub fn run_init_front(a: &InitFrontArgs) -> Result<String> {
    let be = a.backend.spec().and_then(|s| s.cpu_only())?;
    let started = std::time::Instant::now();
    let curves = init_front(&be, a)?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::new(format!("{}: cannot create: {e}", a.out.display())))?;
    let series: Vec<(String, Vec<(f64, f64)>)> = curves.iter().map(|(n, v)| (n.to_string(), v.iter().enumerate().map(|(l, &x)| (l as f64, x)).collect())).collect();
    let opts = PlotOptions {
        width: 900,
        height: 480,
        log_y: false,
        log_x: false,
        title: format!("token cosine similarity at initialisation: width {}, weights N(0, std {:.3})", a.width, a.std.unwrap_or_else(|| default_weight_std(a.width))),
        x_label: "layer (0 = embedded input)".into(),
        y_label: "TCS of image tokens".into(),
    };
    save_loss_curve_with(a.out.join("tcs_by_depth.png"), &series, &opts).map_err(|e| Error::new(format!("figure: {e}")))?;
    let record = json!({
        "settings": {"depth": a.depth, "width": a.width, "batch": a.batch, "std": a.std.unwrap_or_else(|| default_weight_std(a.width)), "seed": a.seed},
        "tcs_by_layer": curves.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    std::fs::write(a.out.join("tcs.json"), serde_json::to_string_pretty(&record).unwrap_or_default()).map_err(|e| Error::new(format!("tcs.json: {e}")))?;
    let picks: Vec<usize> = [0, 1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128, 192, 256, 512, 1000].into_iter().filter(|&l| l <= a.depth).collect();
    let mut table = format!("| layer | {} |\n|---|{}\n", curves.iter().map(|c| c.0).collect::<Vec<_>>().join(" | "), "---|".repeat(curves.len()));
    for l in picks {
        table += &format!("| {l} | {} |\n", curves.iter().map(|c| format!("{:.3}", c.1[l])).collect::<Vec<_>>().join(" | "));
    }
    for (name, v) in &curves {
        let at = |level: f64| front_layer(v, level).map_or("never".to_string(), |l| format!("layer {l}"));
        table += &format!("\n{name}: TCS ≥ 0.5 at {}, ≥ 0.9 at {}, ≥ 0.99 at {}", at(0.5), at(0.9), at(0.99));
    }
    table += &format!("\n({:.1} s)\n", started.elapsed().as_secs_f64());
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_layer_is_the_first_crossing() {
        assert_eq!(front_layer(&[0.1, 0.4, 0.95, 0.5], 0.9), Some(2));
        assert_eq!(front_layer(&[0.1, 0.4], 0.9), None);
    }
}
