//! `mvdit report RUN_DIR... --out report.html`: one self-contained interactive HTML file (data,
//! script and style inline; no network) with loss curves, the diagnostics over steps, layer×step
//! heat maps of every run side by side, MMS events, a metric selector, a step scrubber and hover
//! read-outs, playback over steps, a live panel of thresholded values with sparklines and an event
//! log (see [`signals`]); plus PNG figures for the README.

pub mod signals;

use crate::config::{deep_anchors, DetectorConfig, TrainConfig};
use crate::diagnostics::{parse_layers, read_diagnostics};
use crate::plot::{ensure_font, format_number, save_loss_curve_with, PlotOptions};
use crate::run::read_metrics;
use mvdit_model::{Error, Result};
use plotters::prelude::*;
use serde_json::{json, Map, Value};
use signals::{Thresholds, DEEP_MEANS, LIVE};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The page's script: charts, then controls and the live panel, then the self test and start.
const REPORT_JS: [&str; 3] = [include_str!("../assets/report.js"), include_str!("../assets/report_live.js"), include_str!("../assets/report_selftest.js")];
const REPORT_CSS: &str = include_str!("../assets/report.css");

/// Every per-layer metric: key, label, log scale, definition (see docs/diagnostics.md).
pub const METRICS: &[(&str, &str, bool, &str)] = &[
    ("tcs", "token cosine similarity (TCS)", false, "mean off-diagonal cosine between the image tokens after the block; 1 = all tokens point the same way"),
    ("rho", "trunk mean/centered energy ratio ρ", true, "‖token mean‖ / ‖centered part‖ of the image tokens after the block"),
    ("wo_ratio", "W_O G_mean/G_ctr", true, "attention writer: ‖T·δ̄ȳᵀ‖ / ‖Σ δ̃ỹᵀ‖ (batch-summed)"),
    ("wo_g_mean", "W_O G_mean", true, "‖T·δ̄ȳᵀ‖ of the attention writer's weight gradient"),
    ("wo_g_ctr", "W_O G_ctr", true, "‖Σ δ̃ỹᵀ‖ of the attention writer's weight gradient"),
    ("w2_ratio", "W2 G_mean/G_ctr", true, "FFN writer: ‖T·δ̄ȳᵀ‖ / ‖Σ δ̃ỹᵀ‖"),
    ("w2_g_mean", "W2 G_mean", true, "‖T·δ̄ȳᵀ‖ of the FFN writer's weight gradient"),
    ("w2_g_ctr", "W2 G_ctr", true, "‖Σ δ̃ỹᵀ‖ of the FFN writer's weight gradient"),
    ("wo_amp", "W_O amplification A", true, "‖Σ δyᵀ‖² / Σ‖δ‖²‖y‖² (sample 0, image tokens)"),
    ("wo_coh", "W_O envelope (T−1)κ", true, "(T−1)·mean |cos y|·|cos δ| over token pairs (sample 0, image tokens)"),
    ("w2_amp", "W2 amplification A", true, "as W_O, for the FFN writer"),
    ("w2_coh", "W2 envelope (T−1)κ", true, "as W_O, for the FFN writer"),
    ("attn_rho_t", "attention branch ρ_T", true, "mean/centered energy ratio of the attention branch output (image tokens)"),
    ("ffn_rho_t", "FFN branch ρ_T", true, "mean/centered energy ratio of the FFN branch output (image tokens)"),
    ("attn_tr", "attention TR ratio", true, "RMS of the attention branch output / RMS of the trunk it is merged into"),
    ("ffn_tr", "FFN TR ratio", true, "RMS of the FFN branch output / RMS of the trunk it is merged into"),
    ("attn_vargain", "attention VarGain", true, "centered energy of the attention branch output / centered energy of the trunk (image tokens)"),
    ("ffn_vargain", "FFN VarGain", true, "centered energy of the FFN branch output / centered energy of the trunk (image tokens)"),
    ("mu_eff", "effective attention contraction μ_eff", false, "‖A(I − 11ᵀ/L)‖₂ of the attention map A, mean over samples and heads"),
    ("q_grad_rms", "Q weight-gradient RMS", true, "RMS of d loss / d W_q"),
    ("k_grad_rms", "K weight-gradient RMS", true, "RMS of d loss / d W_k"),
    ("attn_alpha_mean", "attention merge mean |α|", false, "MV-Split α of the attention merge"),
    ("attn_alpha_max", "attention merge max |α|", false, "MV-Split α of the attention merge"),
    ("attn_beta_mean", "attention merge mean |β|", false, "MV-Split β of the attention merge"),
    ("ffn_alpha_mean", "FFN merge mean |α|", false, "MV-Split α of the FFN merge"),
    ("ffn_alpha_max", "FFN merge max |α|", false, "MV-Split α of the FFN merge"),
    ("ffn_beta_mean", "FFN merge mean |β|", false, "MV-Split β of the FFN merge"),
    ("attn_lambda_mean", "attention LayerScale mean |λ|", true, "LayerScale λ of the attention merge"),
    ("attn_lambda_max", "attention LayerScale max |λ|", true, "LayerScale λ of the attention merge"),
    ("ffn_lambda_mean", "FFN LayerScale mean |λ|", true, "LayerScale λ of the FFN merge"),
    ("ffn_lambda_max", "FFN LayerScale max |λ|", true, "LayerScale λ of the FFN merge"),
    ("mu_eff_pap", "μ_eff of the paper ‖PAP‖₂", false, "‖(I − J)A(I − J)‖₂ of the attention map A (J = 11ᵀ/L), mean over samples and heads; ≤ μ_eff = ‖AP‖₂"),
    ("attn_rowdiv", "attention RowDiv", false, "‖A − JA‖_F / ‖A‖_F: how far the attention rows are from all being the mean row (0 = every query attends alike)"),
    ("attn_retention", "attention centered retention Ret(c←c)", false, "‖P·A·PV‖_F / ‖PV‖_F: the centered part of the values that A keeps centered (V = values, P = I − J)"),
    ("attn_leakage", "attention mean leakage", false, "‖J·A·PV‖_F / ‖PV‖_F: the centered part of the values that A turns into a token mean"),
    ("rho_text", "trunk ρ, text tokens", true, "‖token mean‖ / ‖centered part‖ of the text/context tokens after the block (needs ≥ 2 of them)"),
    ("rho_all", "trunk ρ, all tokens", true, "‖token mean‖ / ‖centered part‖ of all tokens after the block, as one segment"),
    ("wo_q_grad_ratio", "‖∇W_O‖ / ‖∇W_Q‖", true, "Frobenius norm of the attention writer's weight gradient over the query projection's"),
];

/// Global (per-record) series.
const GLOBAL: [&str; 12] = [
    "loss", "loss_step", "grad_norm", "lr", "deep_tcs", "deep_ratio",
    "wo_q_ratio", "wo_q_ratio_s0", "wo_q_ratio_s1", "wo_q_ratio_s2", "wo_q_ratio_s3", "wo_q_ratio_deep",
];

/// What one run directory holds.
#[derive(Clone, Debug)]
pub struct RunData {
    pub name: String,
    pub dir: PathBuf,
    pub config: Option<TrainConfig>,
    pub train: Vec<(f64, f64)>,
    pub eval: Vec<(f64, f64)>,
    pub records: Vec<Value>,
    pub events: Vec<Value>,
}

/// The numbers of the comparison table.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub steps: u64,
    pub eval_loss: Option<f64>,
    /// Mean training loss of the last 20 logged steps.
    pub final_train_loss: Option<f64>,
    /// Onset step of the first MMS event.
    pub mms_onset: Option<u64>,
    /// Largest G_mean/G_ctr over all records, anchors and both writers, with its step and layer.
    pub peak_ratio: Option<(f64, u64, usize)>,
    /// Mean deep-anchor TCS of the last record.
    pub deep_tcs_end: Option<f64>,
}


impl RunData {
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::new(format!("{}: not a run directory", dir.display())));
        }
        let (train, eval) = read_metrics(dir);
        let (records, events) = read_diagnostics(dir);
        if train.is_empty() && records.is_empty() {
            return Err(Error::new(format!("{}: no metrics.jsonl or diagnostics.jsonl records (is this a run directory?)", dir.display())));
        }
        let config = std::fs::read_to_string(dir.join("config.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| dir.display().to_string());
        Ok(RunData { name, dir: dir.to_path_buf(), config, train, eval, records, events })
    }

    pub fn summary(&self) -> RunSummary {
        let steps = self.train.last().map(|p| p.0 as u64).max(self.records.last().and_then(|r| r["step"].as_u64())).unwrap_or(0);
        let tail: Vec<f64> = self.train.iter().rev().take(20).map(|p| p.1).filter(|v| v.is_finite()).collect();
        let mut peak: Option<(f64, u64, usize)> = None;
        for r in &self.records {
            let step = r["step"].as_u64().unwrap_or(0);
            for (layer, m) in parse_layers(r) {
                for k in ["wo_ratio", "w2_ratio"] {
                    if let Some(v) = m.get(k).and_then(Value::as_f64).filter(|v| v.is_finite()) {
                        if peak.is_none_or(|p| v > p.0) {
                            peak = Some((v, step, layer));
                        }
                    }
                }
            }
        }
        RunSummary {
            steps,
            eval_loss: self.eval.last().map(|p| p.1),
            final_train_loss: (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64),
            mms_onset: self.events.iter().find(|e| e["event"] == "mms").and_then(|e| e["onset_step"].as_u64()),
            peak_ratio: peak,
            deep_tcs_end: self.records.last().and_then(|r| r["deep_tcs"].as_f64()),
        }
    }

    fn residual(&self) -> String {
        self.config.as_ref().map(|c| c.model.residual.name().to_string()).or_else(|| self.records.first().and_then(|r| r["residual"].as_str().map(str::to_string))).unwrap_or_default()
    }

    fn depth(&self) -> Option<usize> {
        self.config.as_ref().map(|c| c.model.depth).or_else(|| self.records.first().and_then(|r| r["depth"].as_u64()).map(|d| d as usize))
    }

    /// Anchors of the records (the first record's; every record of a run has the same).
    pub fn anchors(&self) -> Vec<usize> {
        self.records.first().map(|r| parse_layers(r).into_keys().collect()).unwrap_or_default()
    }

    /// The anchors the detector calls deep (its `deep_from` of the run's config, or the default).
    pub fn deep(&self) -> Vec<usize> {
        let anchors = self.anchors();
        let depth = self.depth().unwrap_or_else(|| anchors.last().map_or(0, |a| a + 1));
        let from = self.config.as_ref().and_then(|c| c.diagnostics.explicit()).map_or(DetectorConfig::default().deep_from, |d| d.detector.deep_from);
        deep_anchors(&anchors, depth, from)
    }

    /// The live panel's series (record fields and deep means), one value per record.
    pub fn live_series(&self) -> BTreeMap<String, Vec<f64>> {
        let deep = self.deep();
        LIVE.iter()
            .map(|(key, _)| {
                let v = match DEEP_MEANS.iter().find(|d| d.0 == *key) {
                    Some((_, metric)) => signals::deep_mean(&self.records, &deep, metric),
                    None => self.global_series(key).iter().map(|p| p.1).collect(),
                };
                (key.to_string(), v)
            })
            .collect()
    }

    /// The run's event log (threshold crossings and detector events), by step.
    pub fn event_log(&self, th: &Thresholds) -> Vec<Value> {
        let steps: Vec<u64> = self.records.iter().map(|r| r["step"].as_u64().unwrap_or(0)).collect();
        signals::event_log(&steps, &self.live_series(), &self.events, th)
    }

    /// One per-layer metric as (steps, anchors, values[step][anchor]).
    pub fn layer_series(&self, key: &str) -> (Vec<u64>, Vec<usize>, Vec<Vec<f64>>) {
        let anchors = self.anchors();
        let mut steps = vec![];
        let mut rows = vec![];
        for r in &self.records {
            let layers = parse_layers(r);
            steps.push(r["step"].as_u64().unwrap_or(0));
            rows.push(anchors.iter().map(|a| layers.get(a).and_then(|m| m.get(key)).and_then(Value::as_f64).unwrap_or(f64::NAN)).collect());
        }
        (steps, anchors, rows)
    }

    /// A per-record value as (step, value) points.
    pub fn global_series(&self, key: &str) -> Vec<(f64, f64)> {
        self.records.iter().map(|r| (r["step"].as_f64().unwrap_or(0.0), r[key].as_f64().unwrap_or(f64::NAN))).collect()
    }
}

/// 5 significant digits (keeps the embedded data small); non-finite → null.
fn num(v: f64) -> Value {
    if !v.is_finite() {
        return Value::Null;
    }
    let r: f64 = format!("{v:.4e}").parse().unwrap_or(v);
    json!(r)
}

fn points(p: &[(f64, f64)]) -> Value {
    Value::Array(p.iter().map(|&(x, y)| json!([x, num(y)])).collect())
}

/// The data the page renders.
pub fn report_data(runs: &[RunData], title: &str, th: &Thresholds) -> Value {
    let runs_json: Vec<Value> = runs
        .iter()
        .map(|r| {
            let s = r.summary();
            let (steps, anchors, _) = r.layer_series("tcs");
            let mut layer = Map::new();
            for (key, ..) in METRICS {
                let (_, _, rows) = r.layer_series(key);
                if rows.iter().flatten().any(|v| v.is_finite()) {
                    layer.insert(key.to_string(), Value::Array(rows.iter().map(|row| Value::Array(row.iter().map(|&v| num(v)).collect())).collect()));
                }
            }
            let mut global = Map::new();
            for key in GLOBAL {
                global.insert(key.into(), Value::Array(r.global_series(key).iter().map(|p| num(p.1)).collect()));
            }
            for (key, values) in r.live_series() {
                global.entry(key).or_insert_with(|| Value::Array(values.iter().map(|&v| num(v)).collect()));
            }
            json!({
                "name": r.name, "dir": r.dir.display().to_string(), "residual": r.residual(), "depth": r.depth(),
                "train": points(&r.train), "eval": points(&r.eval), "events": r.events, "log": r.event_log(th), "deep": r.deep(),
                "summary": {
                    "steps": s.steps, "eval_loss": s.eval_loss.map(num), "final_train_loss": s.final_train_loss.map(num),
                    "mms_onset": s.mms_onset, "peak_ratio": s.peak_ratio.map(|p| num(p.0)), "deep_tcs_end": s.deep_tcs_end.map(num),
                },
                "diag": {"steps": steps, "anchors": anchors, "layer": layer, "global": global},
            })
        })
        .collect();
    let metrics: Vec<Value> = METRICS.iter().map(|(k, l, log, doc)| json!({"key": k, "label": l, "log": log, "doc": doc})).collect();
    let live: Vec<Value> = LIVE.iter().map(|(k, l)| json!({"key": k, "label": l})).collect();
    json!({"title": title, "runs": runs_json, "metrics": metrics, "thresholds": th.to_json(), "live": live})
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The whole page, with the default thresholds.
pub fn render_html(runs: &[RunData], title: &str) -> String {
    render_html_with(runs, title, &Thresholds::default())
}

/// The whole page.
pub fn render_html_with(runs: &[RunData], title: &str, th: &Thresholds) -> String {
    // `</` would end the script element; JSON allows the escaped form.
    let data = report_data(runs, title, th).to_string().replace("</", "<\\/");
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1 id="title">{title}</h1>
<p class="muted">Generated by <code>mvdit report</code> from {n} run(s). Diagnostics are defined in docs/diagnostics.md of the mvdit repository. Hover any chart for values; click a heat-map cell, an event or the timeline to move the step scrubber there; play runs through the steps.</p>
<h2>Runs</h2>
<table id="summary"></table>
<div id="controls">
  <span class="transport"><button id="btn-back" title="100 steps back">−100</button> <button id="btn-play" title="play / pause">▶ play</button> <button id="btn-fwd" title="100 steps on">+100</button>
  <label for="speed">speed</label> <select id="speed"></select></span>
  <span><label for="scrub">step</label> <input id="scrub" type="range" min="0" max="0" value="0"> <b id="step-label"></b> / <span id="step-total"></span></span>
  <span><label for="metric">metric</label> <select id="metric"></select></span>
  <svg id="timeline" viewBox="0 0 1000 34" preserveAspectRatio="none"></svg>
</div>
<h2>Live values at the scrubber's step</h2>
<table id="live"></table>
<p class="muted">Coloured ok / <span class="val warn">warn</span> / <span class="val crit">crit</span> by the thresholds; sparklines: the last 60 records. Deep values: the detector's deep anchors (mean; G_mean/G_ctr the max).</p>
<div class="row">
  <div class="panel"><h3>Thresholds</h3><table id="thresholds"></table> <button id="th-reset">reset</button>
  <p class="muted narrow">Edit to recolour the live values and chart lines; the event log keeps the levels the page was made with (<code>mvdit report --threshold KEY=WARN,CRIT</code>).</p></div>
  <div class="panel events-panel"><h3>Event log (<span id="event-count"></span>): click an entry to go there</h3><div id="events"></div></div>
</div>
<h2>Loss</h2>
<div id="loss" class="row"></div>
<h2>Global diagnostics</h2>
<div id="global" class="row"></div>
<h2>Selected metric: layer × step</h2>
<p id="metric-doc" class="muted"></p>
<div id="heatmaps" class="row"></div>
<div id="lines" class="row"></div>
<h2>Every anchor layer at the scrubber's step</h2>
<div id="profile" class="row"></div>
<div class="row"><table id="step-table"></table></div>
<h3>All metrics of run <select id="run-pick"></select> at this step</h3>
<div style="overflow-x:auto"><table id="all-metrics"></table></div>
<h2>Definitions</h2>
<dl id="defs" class="defs"></dl>
<div id="tip"></div>
<script id="data" type="application/json">{data}</script>
<script>{js}</script>
</body>
</html>
"#,
        title = escape_html(title),
        css = REPORT_CSS,
        n = runs.len(),
        data = data,
        js = REPORT_JS.join("\n"),
    )
}

/// Loads the runs, names duplicates apart, writes the HTML page (and PNG figures when asked).
pub fn write_report(dirs: &[PathBuf], out: &Path, title: &str, th: &Thresholds, figures: Option<&Path>) -> Result<Vec<RunData>> {
    if dirs.is_empty() {
        return Err(Error::new("give at least one run directory"));
    }
    let mut runs = dirs.iter().map(|d| RunData::load(d)).collect::<Result<Vec<_>>>()?;
    // Runs whose folders share a name are told apart by their parent folder, then by position.
    let names: Vec<String> = runs.iter().map(|r| r.name.clone()).collect();
    for (i, r) in runs.iter_mut().enumerate() {
        if names.iter().filter(|n| **n == r.name).count() > 1 {
            let parent = r.dir.parent().and_then(Path::file_name).map(|p| p.to_string_lossy().to_string());
            r.name = match parent {
                Some(p) if !p.is_empty() => format!("{p}/{}", r.name),
                _ => format!("{} ({})", r.name, i + 1),
            };
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "create", e))?;
    }
    std::fs::write(out, render_html_with(&runs, title, th)).map_err(|e| Error::io(out, "write", e))?;
    if let Some(dir) = figures {
        write_figures(&runs, dir)?;
    }
    Ok(runs)
}

// ------------------------------------------------------------------------------------------
// PNG figures

fn plot_err<E: std::fmt::Display>(e: E) -> Error {
    Error::new(format!("figure: {e}"))
}

/// Mean over a trailing window of `k` points.
fn smooth(p: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    (0..p.len())
        .map(|i| {
            let w: Vec<f64> = p[i.saturating_sub(k - 1)..=i].iter().map(|q| q.1).filter(|v| v.is_finite()).collect();
            (p[i].0, if w.is_empty() { f64::NAN } else { w.iter().sum::<f64>() / w.len() as f64 })
        })
        .collect()
}

/// loss.png, deep_ratio.png, deep_tcs.png, tcs_heatmap.png, ratio_heatmap.png in `dir`.
pub fn write_figures(runs: &[RunData], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    let mut out = vec![];
    let opts = |title: &str, y: &str, log: bool| PlotOptions { width: 900, height: 480, log_y: log, log_x: false, title: title.into(), x_label: "step".into(), y_label: y.into() };
    let loss: Vec<(String, Vec<(f64, f64)>)> = runs.iter().map(|r| (r.name.clone(), smooth(&r.train, 10))).collect();
    let p = dir.join("loss.png");
    save_loss_curve_with(&p, &loss, &opts("training loss (mean of 10 steps)", "loss", false)).map_err(plot_err)?;
    out.push(p);
    for (key, title, log) in [("deep_ratio", "deep max G_mean/G_ctr (W_O, W2)", true), ("deep_tcs", "deep token cosine similarity", false)] {
        let series: Vec<(String, Vec<(f64, f64)>)> = runs.iter().map(|r| (r.name.clone(), r.global_series(key))).collect();
        if series.iter().all(|s| s.1.is_empty()) {
            continue;
        }
        let p = dir.join(format!("{key}.png"));
        save_loss_curve_with(&p, &series, &opts(title, key, log)).map_err(plot_err)?;
        out.push(p);
    }
    for (key, file, log) in [("tcs", "tcs_heatmap.png", false), ("wo_ratio", "ratio_heatmap.png", true)] {
        if runs.iter().any(|r| !r.records.is_empty()) {
            let p = dir.join(file);
            save_heatmaps(&p, runs, key, log)?;
            out.push(p);
        }
    }
    Ok(out)
}

fn ramp(t: f64) -> RGBColor {
    const R: [[f64; 3]; 5] = [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    if !t.is_finite() {
        return RGBColor(221, 221, 221);
    }
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let c = |k: usize| (R[i][k] + f * (R[i + 1][k] - R[i][k])).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// Layer × step heat maps of one metric, one panel per run, a shared colour scale and bar.
pub fn save_heatmaps(path: &Path, runs: &[RunData], key: &str, log: bool) -> Result<()> {
    ensure_font().map_err(plot_err)?;
    let label = METRICS.iter().find(|m| m.0 == key).map_or(key, |m| m.1);
    let series: Vec<_> = runs.iter().map(|r| r.layer_series(key)).collect();
    let tf = |v: f64| if log { if v > 0.0 { v.log10() } else { f64::NAN } } else { v };
    let vals: Vec<f64> = series.iter().flat_map(|s| s.2.iter().flatten().map(|&v| tf(v))).filter(|v| v.is_finite()).collect();
    let (lo, hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) } } else { (0.0, 1.0) };
    let n = runs.len().max(1) as u32;
    let (pw, ph, bar) = (420u32, 380u32, 110u32);
    let (w, h) = (pw * n + bar, ph + 40);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, body) = root.split_vertically(40);
        top.draw(&Text::new(format!("{label} by layer and step{}", if log { " (log10 colour)" } else { "" }), (10, 10), ("sans-serif", 22)))
            .map_err(plot_err)?;
        let (panels, barea) = body.split_horizontally(pw * n);
        for (area, (run, (steps, anchors, rows))) in panels.split_evenly((1, n as usize)).iter().zip(runs.iter().zip(&series)) {
            let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else { continue };
            if anchors.is_empty() {
                continue;
            }
            let (s0, s1) = (first as f64, last as f64 + 1.0);
            let mut chart = ChartBuilder::on(area)
                .caption(&run.name, ("sans-serif", 17))
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(48)
                .build_cartesian_2d(s0..s1, 0f64..anchors.len() as f64)
                .map_err(plot_err)?;
            let anchors_c = anchors.clone();
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("step")
                .y_desc("layer")
                .y_labels(8)
                .x_labels(6)
                .x_label_formatter(&|v| format_number(*v))
                .y_label_formatter(&move |v| anchors_c.get(*v as usize).map_or(String::new(), |a| a.to_string()))
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .draw()
                .map_err(plot_err)?;
            let mut cells = vec![];
            for (si, row) in rows.iter().enumerate() {
                let x0 = steps[si] as f64;
                let x1 = steps.get(si + 1).map_or(s1, |&s| s as f64);
                for (ai, &v) in row.iter().enumerate() {
                    let c = ramp((tf(v) - lo) / (hi - lo));
                    cells.push(Rectangle::new([(x0, ai as f64), (x1, ai as f64 + 1.0)], c.filled()));
                }
            }
            chart.draw_series(cells).map_err(plot_err)?;
            for e in run.events.iter().filter(|e| e["event"] == "mms") {
                if let Some(x) = e["onset_step"].as_f64() {
                    let red = RGBColor(255, 59, 48);
                    chart.draw_series(std::iter::once(PathElement::new([(x, 0.0), (x, anchors.len() as f64)], red.stroke_width(2)))).map_err(plot_err)?;
                }
            }
        }
        // Colour bar.
        let bar_area = barea.margin(40, 40, 10, 40);
        let (bw, bh) = bar_area.dim_in_pixel();
        let hh = bh.saturating_sub(20) as i32;
        for y in 0..hh {
            let c = ramp(1.0 - y as f64 / hh.max(1) as f64);
            bar_area.draw(&Rectangle::new([(0, y), (18.min(bw as i32), y + 1)], c.filled())).map_err(plot_err)?;
        }
        for k in 0..=4 {
            let t = k as f64 / 4.0;
            let v = lo + t * (hi - lo);
            let text = if log { format!("1e{v:.1}") } else { format_number((v * 1000.0).round() / 1000.0) };
            let y = ((1.0 - t) * hh as f64) as i32;
            bar_area.draw(&Text::new(text, (22, y - 6), ("sans-serif", 12))).map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    image::save_buffer_with_format(path, &buf, w, h, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)
        .map_err(|e| Error::new(format!("{}: cannot write PNG: {e}", path.display())))?;
    Ok(())
}
