//! The gradient-spike autopsy (the official gradient_diagnosis.py's spike diagnosis): when a
//! step's global gradient norm spikes ([`SpikeWatch`]), the top (block, family) groups by
//! gradient norm with their share of the total and the official heuristics' hypothesis,
//! written as a `spike` event (docs/diagnostics.md, "Spike autopsy").
//!
//! Ordinary steps pay one comparison: the global norm is the one the update computes anyway;
//! the per-tensor norms are computed only at a spike.

use super::grad_groups::{families, Place};
use crate::config::SpikeConfig;
use mvdit_core::mms;
use mvdit_core::params::Layout;
use mvdit_core::Backend;
use mvdit_model::Result;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};

/// Groups listed in a spike event (the official autopsy's table length).
pub const TOP: usize = 15;

/// The spike rule over the run's global gradient norms ([`SpikeConfig`]).
#[derive(Clone, Debug)]
pub struct SpikeWatch {
    cfg: SpikeConfig,
    /// The last `window` finite norms.
    history: VecDeque<f64>,
    /// Whether the last step was above the relative threshold (an excursion in progress).
    above: bool,
    /// The last step's norm (for crossing `cross` from below).
    last: Option<f64>,
}

impl SpikeWatch {
    pub fn new(cfg: SpikeConfig) -> Self {
        SpikeWatch { cfg, history: VecDeque::new(), above: false, last: None }
    }

    /// `factor` × the median of the window, once `min_history` norms are known.
    fn relative(&self) -> Option<f64> {
        (self.history.len() >= self.cfg.min_history).then(|| self.cfg.factor * self.baseline())
    }

    /// The median of the window the coming step is compared with (NaN before any norm).
    pub fn baseline(&self) -> f64 {
        mms::upper_median(self.history.iter().copied().collect())
    }

    /// The gradient norm above which the coming step is a spike; None when it cannot be one
    /// (too little history, or an excursion above the relative threshold still going on).
    pub fn threshold(&self) -> Option<f64> {
        let relative = self.relative().filter(|_| !self.above);
        let cross = (self.cfg.cross > 0.0 && self.last.is_some_and(|l| l <= self.cfg.cross)).then_some(self.cfg.cross);
        match (relative, cross) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes a step's global gradient norm (non-finite norms are left out).
    pub fn push(&mut self, norm: f64) {
        if !norm.is_finite() {
            return;
        }
        self.above = self.relative().is_some_and(|t| norm > t);
        self.last = Some(norm);
        self.history.push_back(norm);
        while self.history.len() > self.cfg.window {
            self.history.pop_front();
        }
    }
}

/// Whether a step with global norm `norm` is a spike under `threshold` ([`SpikeWatch::threshold`]).
pub fn is_spike(norm: f64, threshold: Option<f64>) -> bool {
    norm.is_finite() && threshold.is_some_and(|t| norm > t)
}

/// One (block, family) group of a spike: its gradient norm and share of the squared total.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupNorm {
    pub block: Option<usize>,
    pub family: &'static str,
    pub norm: f64,
    /// ‖g_group‖² / Σ‖g‖² over every parameter (the shares of all groups sum to 1).
    pub share: f64,
}

/// The groups of per-parameter squared norms, largest norm first: every (block, family) once.
pub fn groups(squares: &[(Place, f64)]) -> Vec<GroupNorm> {
    let mut by: BTreeMap<Place, f64> = BTreeMap::new();
    for &(place, sq) in squares {
        *by.entry(place).or_default() += sq;
    }
    let total: f64 = by.values().sum();
    let mut out: Vec<GroupNorm> =
        by.into_iter().map(|((block, family), sq)| GroupNorm { block, family, norm: sq.sqrt(), share: if total > 0.0 { sq / total } else { 0.0 } }).collect();
    out.sort_by(|a, b| b.norm.total_cmp(&a.norm));
    out
}

/// Each family's share of the squared total summed over its blocks, largest first.
pub fn family_shares(groups: &[GroupNorm]) -> Vec<(&'static str, f64)> {
    let mut by: BTreeMap<&'static str, f64> = BTreeMap::new();
    for g in groups {
        *by.entry(g.family).or_default() += g.share;
    }
    let mut out: Vec<(&'static str, f64)> = by.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// The official autopsy's hypothesis for the largest group's family: (key, text).
pub fn hypothesis(family: &str) -> Option<(&'static str, &'static str)> {
    match family {
        "input_norm" | "mvsplit_norm" => Some(("postnorm_jacobian", "post-norm Jacobian explosion")),
        "q_proj" | "k_proj" => Some(("logits_temperature", "basis / logits temperature spike")),
        "attn_wo" | "ffn_w2" => Some(("writer_update", "writer/output projection sudden update")),
        _ => None,
    }
}

/// Every group's norm at a spike: one squared norm per parameter gradient (layout order) and
/// the class table's (when the run has one).
pub fn measure<B: Backend>(be: &B, layout: &Layout, grads: &[B::Tensor], table_grad: Option<&B::Tensor>) -> Result<Vec<GroupNorm>> {
    let mut squares = Vec::with_capacity(grads.len() + 1);
    for (place, g) in families(layout).into_iter().zip(grads) {
        squares.push((place, be.sum_squares(&[g])?));
    }
    if let Some(g) = table_grad {
        squares.push(((None, "class_table"), be.sum_squares(&[g])?));
    }
    Ok(groups(&squares))
}

/// The `spike` event of step `step` (global norm `norm`, window median `baseline`, step loss
/// `loss`) from its groups (largest first): the top [`TOP`], every family's share and the
/// hypothesis of the first group.
pub fn spike_event(step: u64, norm: f64, baseline: f64, loss: f64, groups: &[GroupNorm]) -> Value {
    let num = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
    let top: Vec<Value> = groups.iter().take(TOP).map(|g| json!({"layer": g.block, "family": g.family, "norm": num(g.norm), "share": num(g.share)})).collect();
    let families: Vec<Value> = family_shares(groups).into_iter().map(|(f, s)| json!({"family": f, "share": num(s)})).collect();
    let hyp = groups.first().and_then(|g| hypothesis(g.family));
    json!({
        "kind": "event", "event": "spike", "step": step, "grad_norm": num(norm), "baseline": num(baseline),
        "factor": num(norm / baseline), "loss": num(loss), "top": top, "families": families,
        "hypothesis": hyp.map(|h| h.0), "hypothesis_text": hyp.map(|h| h.1),
    })
}

/// The console line of a spike event.
pub fn spike_message(e: &Value) -> String {
    let share = |g: &Value| 100.0 * g["share"].as_f64().unwrap_or(f64::NAN);
    let first3 = |key: &str| e[key].as_array().into_iter().flatten().take(3);
    let groups: Vec<String> = first3("top")
        .map(|g| format!("{} {} {:.0}%", g["layer"].as_u64().map_or("-".to_string(), |l| l.to_string()), g["family"].as_str().unwrap_or("?"), share(g)))
        .collect();
    let families: Vec<String> = first3("families").map(|g| format!("{} {:.0}%", g["family"].as_str().unwrap_or("?"), share(g))).collect();
    format!(
        "warning: gradient-norm spike at step {}: {:.3e} ({:.1}x the median {:.3e}); largest groups (block family share): {}; by family: {}; hypothesis: {}",
        e["step"],
        e["grad_norm"].as_f64().unwrap_or(f64::NAN),
        e["factor"].as_f64().unwrap_or(f64::NAN),
        e["baseline"].as_f64().unwrap_or(f64::NAN),
        groups.join(", "),
        families.join(", "),
        e["hypothesis_text"].as_str().unwrap_or("none of the official ones"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(factor: f64, window: usize, min_history: usize, cross: f64) -> SpikeWatch {
        SpikeWatch::new(SpikeConfig { factor, window, min_history, cross })
    }

    #[test]
    fn a_spike_is_a_jump_over_the_window_median_once_per_excursion() {
        let mut w = watch(5.0, 4, 3, 0.0);
        for n in [1.0, 2.0] {
            assert_eq!(w.threshold(), None, "too little history");
            w.push(n);
        }
        w.push(f64::NAN);
        assert_eq!(w.threshold(), None, "non-finite norms do not count");
        w.push(1.5);
        // Median of [1, 2, 1.5] is 1.5.
        assert_eq!(w.threshold(), Some(7.5));
        assert!(!is_spike(7.5, w.threshold()) && is_spike(7.6, w.threshold()) && !is_spike(f64::INFINITY, w.threshold()));
        w.push(20.0);
        assert_eq!(w.threshold(), None, "the excursion goes on");
        w.push(30.0);
        // Window [1.5, 20, 30] after dropping 1 and 2 (window 4 holds [2, 1.5, 20, 30]): median 20.
        assert_eq!(w.baseline(), 20.0);
        assert_eq!(w.threshold(), None, "30 > 5·median(1, 2, 1.5, 20) = 10: still above");
        w.push(1.0);
        assert_eq!(w.threshold(), Some(5.0 * 20.0), "back below: the next jump is a new spike");
    }

    #[test]
    fn crossing_an_absolute_value_from_below_is_a_spike_too() {
        let mut w = watch(5.0, 100, 50, 1.0);
        assert_eq!(w.threshold(), None, "no previous step");
        w.push(0.5);
        assert_eq!(w.threshold(), Some(1.0));
        w.push(1.2);
        assert_eq!(w.threshold(), None, "already above");
        w.push(0.9);
        assert_eq!(w.threshold(), Some(1.0));
    }

    #[test]
    fn groups_sum_by_block_and_family_and_share_the_squared_total() {
        let squares = [
            ((Some(3), "attn_wo"), 9.0),
            ((Some(3), "q_proj"), 1.0),
            ((Some(3), "q_proj"), 3.0),
            ((Some(1), "attn_wo"), 16.0),
            ((None, "final_proj"), 0.0),
            ((None, "class_table"), 7.0),
        ];
        let g = groups(&squares);
        let got: Vec<(Option<usize>, &str, f64, f64)> = g.iter().map(|g| (g.block, g.family, g.norm, g.share)).collect();
        assert_eq!(
            got,
            vec![
                (Some(1), "attn_wo", 4.0, 16.0 / 36.0),
                (Some(3), "attn_wo", 3.0, 9.0 / 36.0),
                (None, "class_table", 7.0f64.sqrt(), 7.0 / 36.0),
                (Some(3), "q_proj", 2.0, 4.0 / 36.0),
                (None, "final_proj", 0.0, 0.0),
            ]
        );
        assert!((g.iter().map(|g| g.share).sum::<f64>() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn the_event_lists_the_top_groups_with_the_official_hypothesis() {
        let squares: Vec<(Place, f64)> = (0..20).map(|i| ((Some(i), if i == 19 { "k_proj" } else { "ffn_w13" }), (i + 1) as f64)).collect();
        let e = spike_event(42, 10.0, 0.5, 1.7, &groups(&squares));
        assert_eq!((e["kind"].as_str(), e["event"].as_str(), e["step"].as_u64()), (Some("event"), Some("spike"), Some(42)));
        assert_eq!(e["factor"], 20.0);
        let top = e["top"].as_array().unwrap();
        assert_eq!(top.len(), TOP);
        assert_eq!((top[0]["layer"].as_u64(), top[0]["family"].as_str()), (Some(19), Some("k_proj")));
        assert_eq!(e["hypothesis"], "logits_temperature");
        // ffn_w13 holds 1 + … + 19 = 190 of 210, k_proj 20.
        let fam = e["families"].as_array().unwrap();
        assert_eq!((fam[0]["family"].as_str(), fam[1]["family"].as_str(), fam.len()), (Some("ffn_w13"), Some("k_proj"), 2));
        assert!((fam[0]["share"].as_f64().unwrap() - 190.0 / 210.0).abs() < 1e-12);
        let msg = spike_message(&e);
        assert!(msg.contains("step 42") && msg.contains("19 k_proj 10%") && msg.contains("by family: ffn_w13 90%, k_proj 10%"), "{msg}");
        assert!(msg.contains("logits temperature"), "{msg}");
        assert_eq!(hypothesis("attn_wo").unwrap().0, "writer_update");
        assert_eq!(hypothesis("ffn_w2").unwrap().0, "writer_update");
        assert_eq!(hypothesis("mvsplit_norm").unwrap().0, "postnorm_jacobian");
        assert_eq!(hypothesis("v_proj"), None);
        let none = spike_event(1, 1.0, 1.0, 1.0, &groups(&[((None, "patch_embed"), 1.0)]));
        assert!(none["hypothesis"].is_null() && spike_message(&none).contains("none of the official"));
    }
}
