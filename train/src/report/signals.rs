//! What the report's live panel and event log read: the ok/warn/crit thresholds of the watched
//! values (one table, embedded in the page, overridable with `--threshold KEY=WARN,CRIT`), the
//! deep-anchor means those values need, and the event log seeded from a run's records
//! (threshold crossings from below) and the detector's events (docs/diagnostics.md, "The report").

use crate::diagnostics::parse_layers;
use mvdit_model::{Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Colours of a watched value: ok below `warn`, warn at or above `warn`, crit at or above `crit`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// The series key (a record field, or a deep mean of [`LIVE`]).
    pub key: &'static str,
    pub label: &'static str,
    pub warn: f64,
    pub crit: f64,
}

/// The defaults (as the paper's viewer colours them).
pub const THRESHOLDS: [Threshold; 5] = [
    Threshold { key: "loss", label: "loss", warn: 1.5, crit: 2.5 },
    Threshold { key: "grad_norm", label: "grad norm", warn: 1.0, crit: 2.0 },
    Threshold { key: "deep_ratio", label: "deep G_mean/G_ctr", warn: 2.0, crit: 3.5 },
    Threshold { key: "deep_rho", label: "deep ρ", warn: 4.0, crit: 6.0 },
    Threshold { key: "deep_mu_eff", label: "deep μ_eff", warn: 2.0, crit: 3.0 },
];

/// The live panel's values: series key, label. `deep_rho`, `deep_mu_eff` are [`deep_mean`]s;
/// the others are record fields.
pub const LIVE: [(&str, &str); 6] = [
    ("loss", "loss"),
    ("grad_norm", "grad norm"),
    ("deep_ratio", "deep G_mean/G_ctr"),
    ("deep_rho", "deep ρ"),
    ("deep_mu_eff", "deep μ_eff"),
    ("deep_tcs", "deep TCS"),
];

/// Per-layer metrics averaged over the deep anchors into a live series: (series key, metric).
pub const DEEP_MEANS: [(&str, &str); 2] = [("deep_rho", "rho"), ("deep_mu_eff", "mu_eff")];

/// Series whose crossing of the warn level from below is an event: key, event kind, wording.
const CROSSINGS: [(&str, &str, &str); 3] =
    [("grad_norm", "grad_spike", "gradient-norm spike"), ("deep_ratio", "ratio_cross", "deep G_mean/G_ctr crossed"), ("deep_rho", "rho_cross", "deep ρ crossed")];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Crit,
}

impl Level {
    /// None for a missing (non-finite) value.
    pub fn of(v: f64, t: &Threshold) -> Option<Level> {
        if !v.is_finite() {
            None
        } else if v >= t.crit {
            Some(Level::Crit)
        } else if v >= t.warn {
            Some(Level::Warn)
        } else {
            Some(Level::Ok)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Crit => "crit",
        }
    }
}

/// The thresholds of one report.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds(THRESHOLDS.to_vec())
    }
}

impl Thresholds {
    pub fn get(&self, key: &str) -> Option<&Threshold> {
        self.0.iter().find(|t| t.key == key)
    }

    /// The defaults with `--threshold KEY=WARN,CRIT` overrides applied in order.
    pub fn with_overrides(specs: &[String]) -> Result<Self> {
        let mut th = Thresholds::default();
        for spec in specs {
            let (key, warn, crit) = parse_override(spec).map_err(|e| Error::new(format!("--threshold {spec}: {e}")))?;
            if let Some(t) = th.0.iter_mut().find(|t| t.key == key) {
                (t.warn, t.crit) = (warn, crit);
            }
        }
        Ok(th)
    }

    pub fn to_json(&self) -> Value {
        Value::Array(self.0.iter().map(|t| json!({"key": t.key, "label": t.label, "warn": t.warn, "crit": t.crit})).collect())
    }
}

/// `KEY=WARN,CRIT` → (key, warn, crit); the error says what is wrong, without the flag.
pub fn parse_override(spec: &str) -> std::result::Result<(&'static str, f64, f64), String> {
    let keys = || THRESHOLDS.iter().map(|t| t.key).collect::<Vec<_>>().join(", ");
    let (key, levels) = spec.split_once('=').ok_or_else(|| format!("expected KEY=WARN,CRIT with KEY one of {}", keys()))?;
    let t = THRESHOLDS.iter().find(|t| t.key == key.trim()).ok_or_else(|| format!("unknown key `{}` (one of {})", key.trim(), keys()))?;
    let nums: Vec<&str> = levels.split(',').map(str::trim).collect();
    let [w, c] = nums[..] else { return Err(format!("{}: expected two numbers WARN,CRIT, got `{levels}`", t.key)) };
    let num = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| format!("{}: `{s}` is not a finite number", t.key));
    let (warn, crit) = (num(w)?, num(c)?);
    if warn > crit {
        return Err(format!("{}: WARN {warn} is above CRIT {crit}", t.key));
    }
    Ok((t.key, warn, crit))
}

/// Indices where `values` reaches `level` from below: the previous finite value is under it and
/// this one at or above it (the first value never counts; non-finite values are skipped).
pub fn crossings(values: &[f64], level: f64) -> Vec<usize> {
    let mut out = vec![];
    let mut prev: Option<f64> = None;
    for (i, &v) in values.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        if prev.is_some_and(|p| p < level) && v >= level {
            out.push(i);
        }
        prev = Some(v);
    }
    out
}

/// Mean of a per-layer metric over the `deep` anchors of each record (NaN where none has it).
pub fn deep_mean(records: &[Value], deep: &[usize], metric: &str) -> Vec<f64> {
    records
        .iter()
        .map(|r| {
            let layers = parse_layers(r);
            let v: Vec<f64> = deep.iter().filter_map(|a| layers.get(a)?.get(metric)?.as_f64()).filter(|v| v.is_finite()).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        })
        .collect()
}

/// 4 significant digits, trailing zeros dropped; scientific outside [1e-3, 1e5).
fn short(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = if a == 0.0 { 0 } else { (3 - a.log10().floor() as i32).max(0) as usize };
    let s = format!("{v:.decimals$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

/// The event log of one run, by step: the warn-level crossings of [`CROSSINGS`] (level warn or
/// crit by the crossing value) and the detector's `mms` (at its onset step, crit) and
/// `writer_shock` (warn) events, and the spike autopsies (warn). Each entry: step, kind, level, key (for crossings), value, text.
pub fn event_log(steps: &[u64], series: &BTreeMap<String, Vec<f64>>, detector: &[Value], th: &Thresholds) -> Vec<Value> {
    let mut out = vec![];
    for (key, kind, words) in CROSSINGS {
        let (Some(t), Some(values)) = (th.get(key), series.get(key)) else { continue };
        for i in crossings(values, t.warn) {
            let (Some(&step), v) = (steps.get(i), values[i]) else { continue };
            let level = Level::of(v, t).unwrap_or(Level::Warn);
            let text = if kind == "grad_spike" { format!("{words}: {} ≥ {}", short(v), short(t.warn)) } else { format!("{words} {} (→ {})", short(t.warn), short(v)) };
            out.push(json!({"step": step, "kind": kind, "level": level.name(), "key": key, "value": v, "text": text}));
        }
    }
    for e in detector {
        let step = e["step"].as_u64();
        let num = |k: &str| e[k].as_f64().map_or("–".to_string(), short);
        match e["event"].as_str() {
            Some("mms") => {
                let onset = e["onset_step"].as_u64().or(step).unwrap_or(0);
                let text = format!("MMS onset (detected at step {}, deep TCS {}, loss {})", step.unwrap_or(onset), num("deep_tcs"), num("loss"));
                out.push(json!({"step": onset, "kind": "mms", "level": "crit", "text": text}));
            }
            Some("writer_shock") => {
                let growth = match (e["ratio"].as_f64(), e["baseline_ratio"].as_f64()) {
                    (Some(r), Some(b)) if b > 0.0 => format!(", {:.1}× the earlier median", r / b),
                    _ => String::new(),
                };
                let text = format!("writer-gradient shock: deep G_mean/G_ctr {}{growth}", num("ratio"));
                out.push(json!({"step": step.unwrap_or(0), "kind": "writer_shock", "level": "warn", "text": text}));
            }
            Some("spike") => {
                let top = &e["top"][0];
                let group = match (top["family"].as_str(), top["layer"].as_u64()) {
                    (Some(f), Some(l)) => format!("; largest: {f} of block {l}, {:.0}%", 100.0 * top["share"].as_f64().unwrap_or(0.0)),
                    (Some(f), None) => format!("; largest: {f}, {:.0}%", 100.0 * top["share"].as_f64().unwrap_or(0.0)),
                    _ => String::new(),
                };
                let why = e["hypothesis_text"].as_str().or(e["hypothesis"].as_str()).map_or(String::new(), |h| format!(" → {h}"));
                let text = format!("spike autopsy: grad norm {} ({}× the median){group}{why}", num("grad_norm"), num("factor"));
                out.push(json!({"step": step.unwrap_or(0), "kind": "autopsy", "level": "warn", "text": text}));
            }
            _ => {}
        }
    }
    out.sort_by_key(|e| e["step"].as_u64().unwrap_or(0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(key: &str) -> Threshold {
        *Thresholds::default().get(key).unwrap()
    }

    #[test]
    fn levels_are_at_or_above() {
        let g = t("grad_norm");
        assert_eq!([0.5, 1.0, 1.9, 2.0, 7.0].map(|v| Level::of(v, &g)), [Some(Level::Ok), Some(Level::Warn), Some(Level::Warn), Some(Level::Crit), Some(Level::Crit)]);
        assert_eq!(Level::of(f64::NAN, &g), None);
        let want = [("loss", 1.5, 2.5), ("grad_norm", 1.0, 2.0), ("deep_ratio", 2.0, 3.5), ("deep_rho", 4.0, 6.0), ("deep_mu_eff", 2.0, 3.0)];
        for (k, w, c) in want {
            assert_eq!((t(k).warn, t(k).crit), (w, c), "{k}");
        }
    }

    #[test]
    fn overrides_parse_or_say_what_is_wrong() {
        assert_eq!(parse_override("grad_norm=1.5,3"), Ok(("grad_norm", 1.5, 3.0)));
        assert_eq!(parse_override(" deep_rho = 4 , 6 "), Ok(("deep_rho", 4.0, 6.0)));
        for (bad, says) in [
            ("grad_norm", "KEY=WARN,CRIT"),
            ("nope=1,2", "unknown key `nope`"),
            ("grad_norm=1", "two numbers"),
            ("grad_norm=1,2,3", "two numbers"),
            ("grad_norm=a,2", "`a` is not a finite number"),
            ("grad_norm=1,inf", "`inf` is not a finite number"),
            ("grad_norm=3,2", "WARN 3 is above CRIT 2"),
        ] {
            let e = parse_override(bad).unwrap_err();
            assert!(e.contains(says) && !e.contains('\n'), "{bad}: {e}");
        }
        let th = Thresholds::with_overrides(&["loss=1,2".into(), "loss=1.2,3".into()]).unwrap();
        assert_eq!((th.get("loss").unwrap().warn, th.get("loss").unwrap().crit), (1.2, 3.0));
        assert_eq!(th.get("grad_norm"), Some(&THRESHOLDS[1]));
        let e = Thresholds::with_overrides(&["loss=2,1".into()]).unwrap_err().to_string();
        assert!(e.starts_with("--threshold loss=2,1: loss: WARN 2"), "{e}");
    }

    #[test]
    fn short_numbers_keep_four_digits() {
        let got = [1.5, 2.0, 2.16149, 55514.327, 0.012345, 3.4e5, 1e-4, 0.0, -1.25].map(short);
        assert_eq!(got, ["1.5", "2", "2.161", "55514", "0.01235", "3.400e5", "1.000e-4", "0", "-1.25"]);
    }

    #[test]
    fn crossings_are_from_below_only() {
        assert_eq!(crossings(&[0.5, 1.5, 0.8, 2.5, 3.0, 0.1, 1.0], 1.0), vec![1, 3, 6]);
        assert_eq!(crossings(&[1.5, 0.5], 1.0), Vec::<usize>::new(), "the first value never counts");
        assert_eq!(crossings(&[0.5, f64::NAN, 1.5], 1.0), vec![2], "gaps are skipped");
        assert_eq!(crossings(&[], 1.0), Vec::<usize>::new());
    }

    #[test]
    fn deep_mean_averages_the_deep_anchors() {
        let r = json!({"layers": [{"layer": 0, "rho": 100.0}, {"layer": 2, "rho": 1.0}, {"layer": 3, "rho": 3.0}]});
        let bare = json!({"layers": [{"layer": 0, "rho": 1.0}]});
        let m = deep_mean(&[r, bare], &[2, 3], "rho");
        assert_eq!(m[0], 2.0);
        assert!(m[1].is_nan());
    }

    #[test]
    fn the_event_log_has_crossings_and_detector_events_by_step() {
        let steps = [1, 2, 4, 6];
        let series: BTreeMap<String, Vec<f64>> = [
            ("grad_norm".to_string(), vec![0.5, 1.5, 0.8, 2.5]),
            ("deep_ratio".to_string(), vec![1.0, 1.0, 3.0, 4.0]),
            ("deep_rho".to_string(), vec![1.0, 1.0, 1.0, 7.0]),
        ]
        .into();
        let det = [
            json!({"event": "mms", "step": 6, "onset_step": 4, "deep_tcs": 0.999, "loss": 1.6}),
            json!({"event": "writer_shock", "step": 4, "ratio": 30.0, "baseline_ratio": 3.0}),
            json!({"event": "spike", "step": 6, "grad_norm": 2.5, "factor": 8.0, "hypothesis": "writer_update",
                   "top": [{"layer": 3, "family": "attn_wo", "norm": 2.0, "share": 0.64}]}),
        ];
        let log = event_log(&steps, &series, &det, &Thresholds::default());
        let got: Vec<(u64, &str, &str)> = log.iter().map(|e| (e["step"].as_u64().unwrap(), e["kind"].as_str().unwrap(), e["level"].as_str().unwrap())).collect();
        assert_eq!(
            got,
            vec![
                (2, "grad_spike", "warn"),
                (4, "ratio_cross", "warn"),
                (4, "mms", "crit"),
                (4, "writer_shock", "warn"),
                (6, "grad_spike", "crit"),
                (6, "rho_cross", "crit"),
                (6, "autopsy", "warn")
            ]
        );
        assert_eq!(log[6]["text"], "spike autopsy: grad norm 2.5 (8× the median); largest: attn_wo of block 3, 64% → writer_update");
        assert_eq!(log[0]["text"], "gradient-norm spike: 1.5 ≥ 1");
        assert!(log[2]["text"].as_str().unwrap().contains("detected at step 6"));
        assert!(log[3]["text"].as_str().unwrap().contains("10.0× the earlier median"));
        // A higher warn level removes the grad-norm spike at 1.5.
        let th = Thresholds::with_overrides(&["grad_norm=2,3".into()]).unwrap();
        assert_eq!(event_log(&steps, &series, &[], &th).iter().filter(|e| e["kind"] == "grad_spike").count(), 1);
    }
}
