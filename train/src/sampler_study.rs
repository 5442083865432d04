//! What each sampler buys on a class-conditional checkpoint (`mvdit samplers`): for every
//! sampler and step count, the distance of its images from a many-step Heun reference of the
//! same ODE from the same noise (the solver's error), the quality score of those images against
//! the held-out data (pixel models: [`crate::quality::Scorer`], as training logs it), the model
//! evaluations an image costs, and the time.

use crate::class_sample::ClassSampler;
use crate::quality::{Score, Scorer};
#[cfg(doc)]
use crate::run::QUALITY_SEED;
use crate::sampler::{Method, SampleOptions};
use mvdit_model::step_cache::relative_change;
use mvdit_model::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    pub samplers: Vec<Method>,
    pub steps: Vec<usize>,
    pub cfg_scale: f64,
    pub cfg_interval: Option<[f64; 2]>,
    pub shift: f64,
    /// Steps of the Heun reference.
    pub reference_steps: usize,
    /// Images sampled per setting (spread evenly over the classes).
    pub images: usize,
    /// The noise seed (training's quality score uses [`QUALITY_SEED`]).
    pub seed: u64,
    /// Step caching of the measured settings (the reference computes every block).
    pub cache_threshold: f64,
}

/// One sampler at one step count.
#[derive(Clone, Debug)]
pub struct StudyRow {
    pub sampler: Method,
    pub steps: usize,
    pub evaluations: usize,
    /// RMS distance from the reference over the reference's RMS (none for the SDE, which does
    /// not follow the ODE).
    pub error: Option<f64>,
    pub score: Option<Score>,
    pub seconds: f64,
    /// The fraction of block evaluations step caching skipped (None: caching off).
    pub skipped: Option<f64>,
}

impl StudyRow {
    pub fn to_json(&self) -> Value {
        let finite = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        json!({
            "sampler": self.sampler.name(), "steps": self.steps, "evaluations": self.evaluations,
            "error": self.error.map(finite), "vs_real": self.score.map(|s| finite(s.vs_real)),
            "fd_norm": self.score.map(|s| finite(s.fd_norm)), "seconds": self.seconds, "cache_skipped": self.skipped,
        })
    }
}

/// Runs the study; `report` hears each row as it is measured. Returns the rows and, for pixel
/// models, the scorer (its floor: the score of as many real images).
pub fn run(s: &ClassSampler, o: &StudyOptions, report: &mut dyn FnMut(&StudyRow)) -> Result<(Vec<StudyRow>, Option<Scorer>)> {
    if o.images == 0 || o.reference_steps == 0 || o.steps.contains(&0) {
        return Err(Error::new("--images, --reference-steps and every --steps must be at least 1"));
    }
    let cfg = s.train_config();
    let scorer = match cfg.data.shards {
        Some(_) => None,
        None => {
            let (train, eval) = crate::run::load_data(cfg)?;
            Some(Scorer::new(&train.images, &eval.images, train.image_len(), o.images)).filter(|s| s.usable() && !eval.is_empty())
        }
    };
    let per = o.images.div_ceil(s.class_names().len().max(1));
    let opts = |method: Method, steps: usize| SampleOptions { steps, cfg_scale: o.cfg_scale, shift: o.shift, seed: o.seed, method, cfg_interval: o.cfg_interval, cache_threshold: o.cache_threshold };
    let reference = s.generate(&[], per, &SampleOptions { cache_threshold: 0.0, ..opts(Method::Heun, o.reference_steps) })?.images;
    let mut rows = Vec::new();
    for &sampler in &o.samplers {
        for &steps in &o.steps {
            let opts = opts(sampler, steps);
            let start = Instant::now();
            let out = s.generate(&[], per, &opts)?;
            let seconds = start.elapsed().as_secs_f64();
            let (images, skipped) = (out.images, out.cache_skipped);
            let error = (sampler != Method::Sde).then(|| relative_change(&images, &reference));
            let row = StudyRow { sampler, steps, evaluations: opts.evaluations(), error, score: scorer.as_ref().map(|sc| sc.score(&images)), seconds, skipped };
            report(&row);
            rows.push(row);
        }
    }
    Ok((rows, scorer))
}

/// `error.png` (error against evaluations, log–log) and, with scores, `quality.png` (`vs_real`
/// against evaluations) in `dir`.
pub fn plot(rows: &[StudyRow], dir: &Path, title: &str) -> Result<()> {
    use crate::plot::{save_loss_curve_with, PlotOptions};
    let series = |value: &dyn Fn(&StudyRow) -> Option<f64>| -> Vec<(String, Vec<(f64, f64)>)> {
        let mut names: Vec<Method> = rows.iter().map(|r| r.sampler).collect();
        names.dedup();
        names.iter().map(|m| (m.name().to_string(), rows.iter().filter(|r| r.sampler == *m).filter_map(|r| Some((r.evaluations as f64, value(r)?))).collect())).filter(|(_, p): &(String, Vec<_>)| !p.is_empty()).collect()
    };
    let err = |e: crate::plot::PlotError| Error::new(e.to_string());
    let base = PlotOptions { width: 900, height: 520, log_x: true, x_label: "model evaluations per image".into(), ..PlotOptions::default() };
    let errors = series(&|r| r.error);
    if !errors.is_empty() {
        let o = PlotOptions { log_y: true, title: format!("{title}: distance from the Heun reference"), y_label: "relative RMS error".into(), ..base.clone() };
        save_loss_curve_with(dir.join("error.png"), &errors, &o).map_err(err)?;
    }
    let scores = series(&|r| r.score.map(|s| s.vs_real));
    if !scores.is_empty() {
        let o = PlotOptions { log_y: true, title: format!("{title}: quality score over the real floor"), y_label: "vs_real (1 = as good as real images)".into(), ..base };
        save_loss_curve_with(dir.join("quality.png"), &scores, &o).map_err(err)?;
    }
    Ok(())
}
