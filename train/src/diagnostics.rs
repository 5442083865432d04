//! Per-layer diagnostics of the paper's Appendix A at anchor blocks every K steps
//! (`diagnostics.jsonl` in the run directory), the Mean-Mode-Screaming detector and the
//! gradient-spike autopsy. Every metric is defined in docs/diagnostics.md; the math is
//! `mvdit_core::mms`.
//!
//! A diagnostics step is an ordinary training step (the same numbers) run with a probe that
//! downloads the anchors' block tensors; other steps pay one comparison of the global gradient
//! norm with the spike threshold.

pub mod autopsy;
pub mod grad_groups;

use crate::config::{deep_anchors, DetectorConfig, DiagConfig, TrainConfig};
use crate::observe::{Progress, StepObserver};
use crate::step::StepOutcome;
use crate::trainer::TrainState;
use autopsy::{GroupNorm, SpikeWatch};
use mvdit_core::mms;
use mvdit_core::params::MergeSlots;
use mvdit_core::Backend;
use mvdit_model::{Dit, Error, Probe, Recorder, Result, Tap};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the diagnostics log in a run directory.
pub const DIAG_FILE: &str = "diagnostics.jsonl";

// ------------------------------------------------------------------------------------------
// One step's measurements

/// The step observer of every step of a run with diagnostics. On a diagnostics step it records
/// the anchors' block tensors, their Q/K weight-gradient RMS and W_O/W_Q gradient norms and
/// the record-level W_O/W_Q ratios; on any step whose global gradient norm rises above
/// `spike_above`, every group's gradient norm (the autopsy).
pub struct DiagObserver {
    rec: Option<Recorder>,
    qk: BTreeMap<usize, (f64, f64)>,
    /// Per anchor: ‖∇W_O‖ / ‖∇W_Q‖.
    wo_q: BTreeMap<usize, f64>,
    /// Record-level ratios ([`grad_groups::wo_q_ratios`]).
    ratios: Map<String, Value>,
    spike_above: Option<f64>,
    autopsy: Option<Vec<GroupNorm>>,
    /// The loss scale the step's gradients carry (1: none), divided out of every gradient
    /// magnitude recorded (ratios, cosines and shares do not depend on it).
    grad_scale: f64,
}

impl DiagObserver {
    /// A diagnostics step's observer at blocks `anchors` (no spike autopsy).
    pub fn new(anchors: &[usize]) -> Self {
        let taps = Tap::FORWARD.iter().chain(&Tap::BACKWARD).copied().collect();
        DiagObserver { rec: Some(Recorder::new(anchors.to_vec(), taps)), ..Self::idle(None) }
    }

    /// An ordinary step's observer: no probe; an autopsy when the global gradient norm rises
    /// above `spike_above`.
    pub fn idle(spike_above: Option<f64>) -> Self {
        DiagObserver { rec: None, qk: BTreeMap::new(), wo_q: BTreeMap::new(), ratios: Map::new(), spike_above, autopsy: None, grad_scale: 1.0 }
    }
}

impl<B: Backend> StepObserver<B> for DiagObserver {
    fn probe(&mut self) -> Option<&mut dyn Probe> {
        self.rec.as_mut().map(|r| r as &mut dyn Probe)
    }

    fn grads(&mut self, be: &B, model: &Dit<B>, grads: &[B::Tensor]) -> Result<()> {
        let Some(rec) = &self.rec else { return Ok(()) };
        let layout = &model.layout;
        for &i in &rec.blocks {
            let s = &layout.blocks[i];
            let q = mms::rms(&wide(&be.download(&grads[s.wq])?)) / self.grad_scale;
            let k = mms::rms(&wide(&be.download(&grads[s.wk])?)) / self.grad_scale;
            self.qk.insert(i, (q, k));
            let (wo, wq) = grad_groups::wo_q_squares(be, layout, grads, &[i])?;
            if let Some(r) = mms::norm_ratio(wo, wq) {
                self.wo_q.insert(i, r);
            }
        }
        self.ratios = grad_groups::wo_q_ratios(be, layout, grads)?;
        Ok(())
    }

    fn updated(&mut self, be: &B, model: &Dit<B>, grads: &[B::Tensor], table_grad: Option<&B::Tensor>, outcome: StepOutcome) -> Result<()> {
        let norm = match outcome {
            StepOutcome::Updated { grad_norm, .. } | StepOutcome::Skipped { grad_norm, .. } => grad_norm,
            // Gradients overflowed at the loss scale: nothing of the model's to measure.
            StepOutcome::Overflow { .. } => return Ok(()),
        };
        if autopsy::is_spike(norm, self.spike_above) {
            let mut groups = autopsy::measure(be, &model.layout, grads, table_grad)?;
            groups.iter_mut().for_each(|g| g.norm /= self.grad_scale);
            self.autopsy = Some(groups);
        }
        Ok(())
    }
}

pub fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The first `li` tokens of each sample of [B, L, D].
pub fn image_tokens(x: &[f64], b: usize, l: usize, d: usize, li: usize) -> Vec<f64> {
    mms::segment(x, b, l, d, 0..li)
}

/// Every per-layer metric of one anchor (names as in docs/diagnostics.md).
pub fn layer_metrics(rec: &Recorder, block: usize, li: usize, nh: usize) -> Result<Map<String, Value>> {
    let get = |tap: Tap| -> Result<(Vec<usize>, Vec<f64>)> {
        let (shape, v) = rec.get(block, tap).ok_or_else(|| Error::new(format!("diagnostics: block {block} has no {tap:?} tensor")))?;
        Ok((shape.clone(), wide(v)))
    };
    let (shape, x) = get(Tap::BlockIn)?;
    let [b, l, d] = <[usize; 3]>::try_from(shape.as_slice()).map_err(|_| Error::new(format!("diagnostics: block input {shape:?}")))?;
    let (_, x1) = get(Tap::Mid)?;
    let (_, out) = get(Tap::BlockOut)?;
    let (_, fa) = get(Tap::AttnBranch)?;
    let (_, ff) = get(Tap::FfnBranch)?;
    let (_, o) = get(Tap::AttnOut)?;
    let (hs, h) = get(Tap::FfnHidden)?;
    let m = *hs.last().unwrap_or(&0);
    let (_, da) = get(Tap::GradAttnBranch)?;
    let (_, df) = get(Tap::GradFfnBranch)?;
    let (_, qn) = get(Tap::QNorm)?;
    let (_, kn) = get(Tap::KNorm)?;
    let (_, vals) = get(Tap::Value)?;
    let img = |t: &[f64], w: usize| image_tokens(t, b, l, w, li);
    let first = |t: &[f64], w: usize| t[..li * w].to_vec();

    let mut out_m = Map::new();
    let mut put = |k: &str, v: f64| {
        out_m.insert(k.to_string(), json!(v));
    };
    for (name, y, delta, din) in [("wo", &o, &da, d), ("w2", &h, &df, m)] {
        let (gm, gc) = mms::writer_gradient_norms(y, delta, b, l, din, d);
        let (amp, coh) = mms::writer_amplification(&first(y, din), &first(delta, d), li, din, d);
        put(&format!("{name}_g_mean"), gm);
        put(&format!("{name}_g_ctr"), gc);
        put(&format!("{name}_ratio"), gm / (gc + 1e-30));
        put(&format!("{name}_amp"), amp);
        put(&format!("{name}_coh"), coh);
    }
    let out_i = img(&out, d);
    put("tcs", mms::token_cosine_similarity(&out_i, b, li, d));
    put("rho", mms::energy_ratio(&out_i, b, li, d));
    if let Some(r) = mms::segment_energy_ratio(&out, b, l, d, li..l) {
        put("rho_text", r);
    }
    put("rho_all", mms::energy_ratio(&out, b, l, d));
    for (name, f, trunk) in [("attn", &fa, &x), ("ffn", &ff, &x1)] {
        let (fi, ti) = (img(f, d), img(trunk, d));
        put(&format!("{name}_rho_t"), mms::energy_ratio(&fi, b, li, d));
        put(&format!("{name}_tr"), mms::rms(f) / (mms::rms(trunk) + 1e-30));
        put(&format!("{name}_vargain"), mms::centered_energy(&fi, b, li, d) / (mms::centered_energy(&ti, b, li, d) + 1e-30));
    }
    let p = mms::attention_probs(&qn, &kn, b, l, nh, d / nh);
    let a = mms::attention_metrics(&p, &vals, b, nh, l, d / nh);
    put("mu_eff", a.mu_eff);
    put("mu_eff_pap", a.mu_eff_pap);
    put("attn_rowdiv", a.row_div);
    put("attn_retention", a.retention);
    put("attn_leakage", a.leakage);
    Ok(out_m)
}

/// mean |v|, max |v|.
fn abs_stats(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    (v.iter().map(|x| x.abs() as f64).sum::<f64>() / n, v.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64)))
}

/// The merge parameters' statistics of block `i`: `{attn,ffn}_{alpha,beta,lambda}_{mean,max}`.
fn merge_metrics<B: Backend>(be: &B, model: &Dit<B>, i: usize, out: &mut Map<String, Value>) -> Result<()> {
    let s = &model.layout.blocks[i];
    for (name, m) in [("attn", s.merge1), ("ffn", s.merge2)] {
        let params: Vec<(&str, usize)> = match m {
            MergeSlots::Mvsplit { alpha, beta } => vec![("alpha", alpha), ("beta", beta)],
            MergeSlots::Layerscale { lambda } => vec![("lambda", lambda)],
            MergeSlots::Postnorm => vec![],
        };
        for (p, idx) in params {
            let (mean, max) = abs_stats(&be.download(&model.params[idx])?);
            out.insert(format!("{name}_{p}_mean"), json!(mean));
            out.insert(format!("{name}_{p}_max"), json!(max));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The detector

/// What the detector reads from one record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub step: u64,
    /// Mean training loss since the previous record.
    pub loss: f64,
    /// Largest G_mean/G_ctr over deep anchors and both writers, with its G_mean and G_ctr.
    pub ratio: f64,
    pub g_mean: f64,
    pub g_ctr: f64,
    /// Mean token cosine similarity of the deep anchors.
    pub tcs: f64,
}

impl Summary {
    /// From a record's per-layer metrics.
    pub fn of(step: u64, loss: f64, layers: &BTreeMap<usize, Map<String, Value>>, deep: &[usize]) -> Self {
        let num = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let mut s = Summary { step, loss, ratio: 0.0, g_mean: 0.0, g_ctr: 0.0, tcs: 0.0 };
        let mut n = 0;
        for i in deep {
            let Some(m) = layers.get(i) else { continue };
            for w in ["wo", "w2"] {
                let r = num(m, &format!("{w}_ratio"));
                if r > s.ratio {
                    (s.ratio, s.g_mean, s.g_ctr) = (r, num(m, &format!("{w}_g_mean")), num(m, &format!("{w}_g_ctr")));
                }
            }
            s.tcs += num(m, "tcs");
            n += 1;
        }
        s.tcs /= n.max(1) as f64;
        s
    }
}

/// Watches the records for the MMS signature (docs/diagnostics.md, "The detector").
#[derive(Clone, Debug)]
pub struct Detector {
    cfg: DetectorConfig,
    /// The loss of predicting zero: E‖x0 − ε‖² per element.
    initial: f64,
    best: f64,
    history: Vec<Summary>,
    /// The first record of the latest run of shocked records (record index, summary).
    shock: Option<(usize, Summary)>,
    /// Whether the previous record was shocked.
    in_shock: bool,
    /// The onset step of the collapse, once the detector has fired.
    pub fired: Option<u64>,
    /// The step of the record that fired it.
    pub fired_at: Option<u64>,
}

impl Detector {
    pub fn new(cfg: DetectorConfig, initial: f64) -> Self {
        Detector { cfg, initial, best: f64::INFINITY, history: vec![], shock: None, in_shock: false, fired: None, fired_at: None }
    }

    /// Takes one record; returns the events it raises (JSON objects with `event` and `step`).
    pub fn update(&mut self, s: Summary) -> Vec<Value> {
        let c = &self.cfg;
        let mut events = vec![];
        let prev = &self.history;
        let mut shocked = false;
        if prev.len() >= 3 {
            let base = mms::upper_median(prev.iter().map(|p| p.ratio).collect());
            shocked = s.ratio > c.ratio_min && s.ratio > c.jump * base;
            // One event per run of shocked records, at its first record.
            if shocked && !self.in_shock {
                let base_mean = mms::upper_median(prev.iter().map(|p| p.g_mean).collect());
                let base_ctr = mms::upper_median(prev.iter().map(|p| p.g_ctr).collect());
                events.push(json!({
                    "event": "writer_shock", "step": s.step, "ratio": s.ratio, "baseline_ratio": base,
                    "g_mean_growth": s.g_mean / base_mean, "g_ctr_growth": s.g_ctr / base_ctr,
                }));
                self.shock = Some((self.history.len(), s));
            }
        }
        self.in_shock = shocked;
        // The first record (step 1) is before any update: it does not set the best loss.
        if !self.history.is_empty() && s.loss.is_finite() {
            self.best = self.best.min(s.loss);
        }
        let loss_back = self.best < 0.8 * self.initial && s.loss > self.best + c.loss_frac * (self.initial - self.best);
        let recent_shock = self.shock.filter(|(at, _)| self.history.len() - at <= c.lookback);
        let collapsed = s.tcs > c.tcs;
        if self.fired.is_none() && collapsed && (loss_back || recent_shock.is_some()) {
            let onset = recent_shock.map_or(s.step, |(_, sh)| sh.step);
            self.fired = Some(onset);
            self.fired_at = Some(s.step);
            events.push(json!({
                "event": "mms", "step": s.step, "onset_step": onset, "deep_tcs": s.tcs, "loss": s.loss,
                "initial_loss": self.initial, "best_loss": self.best, "loss_back": loss_back,
                "shock_ratio": recent_shock.map(|(_, sh)| sh.ratio), "ratio": s.ratio,
            }));
        }
        self.history.push(s);
        events
    }
}

// ------------------------------------------------------------------------------------------
// The log

/// diagnostics.jsonl of a run, with the detector state.
pub struct Diagnostics {
    pub cfg: DiagConfig,
    pub anchors: Vec<usize>,
    deep: Vec<usize>,
    depth: usize,
    nh: usize,
    file: std::fs::File,
    path: PathBuf,
    window: Vec<f64>,
    pub detector: Detector,
    spikes: SpikeWatch,
    start: std::time::Instant,
}

impl Diagnostics {
    /// Opens `run/diagnostics.jsonl` when the run has diagnostics (`diag`, the config's resolved for its placement), keeping the records
    /// up to `keep_until` (a resumed run) and replaying them through the detector.
    /// `initial_loss`: the loss of predicting zero on the training data.
    pub fn open(run: &Path, cfg: &TrainConfig, diag: Option<DiagConfig>, keep_until: u64, initial_loss: f64) -> Result<Option<Self>> {
        let Some(dc) = diag else {
            return Ok(None);
        };
        let depth = cfg.model.depth;
        let anchors = dc.anchors_for(depth);
        let deep = deep_anchors(&anchors, depth, dc.detector.deep_from);
        let path = run.join(DIAG_FILE);
        let io = |what: &str, e: std::io::Error| Error::new(format!("{}: cannot {what}: {e}", path.display()));
        let kept: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= keep_until))
            .map(str::to_string)
            .collect();
        let mut detector = Detector::new(dc.detector.clone(), initial_loss);
        for v in kept.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["kind"] == "diag") {
            let layers = parse_layers(&v);
            detector.update(Summary::of(v["step"].as_u64().unwrap_or(0), v["loss"].as_f64().unwrap_or(f64::NAN), &layers, &deep));
        }
        std::fs::write(&path, kept.iter().map(|l| format!("{l}\n")).collect::<String>()).map_err(|e| io("write", e))?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| io("open", e))?;
        let nh = cfg.model.num_heads;
        let spikes = SpikeWatch::new(dc.spike.clone());
        Ok(Some(Diagnostics { cfg: dc, anchors, deep, depth, nh, file, path, window: vec![], detector, spikes, start: std::time::Instant::now() }))
    }

    /// Whether the config's `stop_after_mms` ends the run after step `step`.
    pub fn stop_due(&self, step: u64) -> bool {
        matches!((self.cfg.stop_after_mms, self.detector.fired_at), (Some(k), Some(at)) if step >= at + k)
    }

    /// Whether 1-based step `step` is a diagnostics step.
    pub fn due(&self, step: u64) -> bool {
        step == 1 || step.is_multiple_of(self.cfg.every)
    }

    /// The observer of 1-based step `step`: the probe when it is a diagnostics step, the spike
    /// threshold, and the loss scale `grad_scale` the step's gradients carry.
    pub fn observer(&self, step: u64, grad_scale: f64) -> DiagObserver {
        let mut o = if self.due(step) { DiagObserver::new(&self.anchors) } else { DiagObserver::idle(None) };
        o.spike_above = self.spikes.threshold();
        o.grad_scale = grad_scale;
        o
    }

    fn write(&mut self, v: &Value) -> Result<()> {
        writeln!(self.file, "{v}").map_err(|e| Error::new(format!("{}: cannot append: {e}", self.path.display())))
    }

    /// Every step's outcome with its observer ([`Self::observer`]): the window-mean loss and the
    /// spike rule's history; on a diagnostics step the record and any detector events, at a
    /// spike its `spike` event (events also go to `progress` as warnings).
    pub fn after_step<B: Backend>(&mut self, state: &TrainState<B>, outcome: StepOutcome, obs: DiagObserver, progress: &mut dyn Progress) -> Result<()> {
        let (loss, grad_norm, lr) = match outcome {
            StepOutcome::Updated { loss, grad_norm, lr } => (loss, grad_norm, Some(lr)),
            StepOutcome::Skipped { loss, grad_norm } => (loss, grad_norm, None),
            // The loss scale's event, not the model's: no record, no spike history.
            StepOutcome::Overflow { .. } => return Ok(()),
        };
        if loss.is_finite() {
            self.window.push(loss);
        }
        let step = state.step;
        let baseline = self.spikes.baseline();
        self.spikes.push(grad_norm);
        if obs.rec.is_some() {
            self.record(state, &obs, loss, grad_norm, lr, progress)?;
        }
        if let Some(groups) = &obs.autopsy {
            let e = autopsy::spike_event(step, grad_norm, baseline, loss, groups);
            progress.message(&autopsy::spike_message(&e));
            self.write(&e)?;
        }
        Ok(())
    }

    /// The record of a diagnostics step and the detector's events.
    fn record<B: Backend>(&mut self, state: &TrainState<B>, obs: &DiagObserver, loss: f64, grad_norm: f64, lr: Option<f64>, progress: &mut dyn Progress) -> Result<()> {
        let Some(rec) = &obs.rec else { return Ok(()) };
        let step = state.step;
        let li = {
            let d = &state.cfg.data;
            (d.image_size / state.cfg.model.patch_size).pow(2)
        };
        let mut layers = BTreeMap::new();
        for &i in &self.anchors {
            let mut m = layer_metrics(rec, i, li, self.nh)?;
            // The writer gradients of the taps carry the loss scale.
            for (_, v) in m.iter_mut().filter(|(k, _)| k.ends_with("_g_mean") || k.ends_with("_g_ctr")) {
                *v = json!(v.as_f64().unwrap_or(f64::NAN) / obs.grad_scale);
            }
            if let Some((q, k)) = obs.qk.get(&i) {
                m.insert("q_grad_rms".into(), json!(q));
                m.insert("k_grad_rms".into(), json!(k));
            }
            if let Some(r) = obs.wo_q.get(&i) {
                m.insert("wo_q_grad_ratio".into(), json!(r));
            }
            merge_metrics(state.home(), state.unsplit()?, i, &mut m)?;
            layers.insert(i, m);
        }
        let window = if self.window.is_empty() { loss } else { self.window.iter().sum::<f64>() / self.window.len() as f64 };
        self.window.clear();
        let s = Summary::of(step, window, &layers, &self.deep);
        let layer_list: Vec<Value> = layers
            .into_iter()
            .map(|(i, mut m)| {
                m.insert("layer".into(), json!(i));
                Value::Object(m)
            })
            .collect();
        let mut record = json!({
            "kind": "diag", "step": step, "loss": window, "loss_step": loss, "grad_norm": grad_norm, "lr": lr,
            "deep_ratio": s.ratio, "deep_tcs": s.tcs, "seconds": self.start.elapsed().as_secs_f64(),
            "depth": self.depth, "residual": state.cfg.model.residual.name(), "layers": layer_list,
        });
        if let Some(r) = record.as_object_mut() {
            r.extend(obs.ratios.clone());
        }
        self.write(&record)?;
        for mut e in self.detector.update(s) {
            let msg = match e["event"].as_str() {
                Some("mms") => format!(
                    "warning: Mean Mode Screaming at step {} (onset step {}): deep token cosine similarity {:.3}, window loss {:.4} (initial {:.4}, best {:.4})",
                    step, e["onset_step"], s.tcs, s.loss, self.detector.initial, self.detector.best
                ),
                _ => format!(
                    "warning: writer-gradient shock at step {step}: deep G_mean/G_ctr {:.3e} ({:.1}x the earlier median)",
                    s.ratio,
                    s.ratio / e["baseline_ratio"].as_f64().unwrap_or(f64::NAN)
                ),
            };
            progress.message(&msg);
            e["kind"] = json!("event");
            self.write(&e)?;
        }
        Ok(())
    }
}

/// The `layers` array of a record as a map by layer index.
pub fn parse_layers(record: &Value) -> BTreeMap<usize, Map<String, Value>> {
    record["layers"].as_array().into_iter().flatten().filter_map(|l| Some((l["layer"].as_u64()? as usize, l.as_object()?.clone()))).collect()
}

/// Reads a run's diagnostics.jsonl: (records, events), in file order.
pub fn read_diagnostics(run: &Path) -> (Vec<Value>, Vec<Value>) {
    let text = std::fs::read_to_string(run.join(DIAG_FILE)).unwrap_or_default();
    let (mut recs, mut events) = (vec![], vec![]);
    for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        match v["kind"].as_str() {
            Some("diag") => recs.push(v),
            Some("event") => events.push(v),
            _ => {}
        }
    }
    (recs, events)
}

/// E‖x0 − ε‖² per element with ε ~ N(0, 1): the loss of predicting zero (mean x0² + 1).
pub fn zero_prediction_loss(data: &crate::data::Dataset) -> f64 {
    let (mut s, mut n) = (0.0f64, 0usize);
    for i in 0..data.len() {
        for &v in data.image(i) {
            s += (v as f64) * (v as f64);
            n += 1;
        }
    }
    s / n.max(1) as f64 + 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(step: u64, loss: f64, ratio: f64, tcs: f64) -> Summary {
        Summary { step, loss, ratio, g_mean: ratio, g_ctr: 1.0, tcs }
    }

    #[test]
    fn detector_flags_shock_then_collapse_once() {
        let mut d = Detector::new(DetectorConfig::default(), 1.7);
        assert!(d.update(sum(1, 1.9, 1.0, 0.3)).is_empty());
        for (i, l) in [1.5, 1.3, 1.2, 1.15].iter().enumerate() {
            assert!(d.update(sum(10 * (i as u64 + 1), *l, 1.5, 0.4)).is_empty());
        }
        let e = d.update(sum(50, 1.2, 300.0, 0.6));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0]["event"], "writer_shock");
        assert!(d.fired.is_none());
        let e = d.update(sum(60, 1.6, 40.0, 0.999));
        let mms = e.iter().find(|e| e["event"] == "mms").expect("mms event");
        assert_eq!(mms["onset_step"], 50);
        assert_eq!(mms["step"], 60);
        assert_eq!(d.fired, Some(50));
        assert_eq!(d.fired_at, Some(60));
        assert!(d.update(sum(70, 1.6, 40.0, 0.999)).iter().all(|e| e["event"] != "mms"), "fires once");
    }

    #[test]
    fn detector_ignores_a_healthy_run_and_needs_collapsed_tokens() {
        let mut d = Detector::new(DetectorConfig::default(), 1.7);
        for i in 0..50u64 {
            let loss = 1.8 - 1.2 * (i as f64 / 50.0);
            assert!(d.update(sum(i * 10 + 1, loss, 1.0 + 0.1 * (i % 3) as f64, 0.5)).is_empty());
        }
        // Loss back up without token collapse is not MMS.
        assert!(d.update(sum(600, 1.65, 1.2, 0.5)).is_empty());
        // Token collapse with the loss back: MMS even without a logged shock.
        let e = d.update(sum(610, 1.6, 1.2, 0.995));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["onset_step"], 610);
    }
}
