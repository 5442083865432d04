//! The diagnostics section of a training config: how often, at which anchor blocks, the MMS
//! detector's thresholds and the gradient-spike rule (docs/diagnostics.md).

use serde::{Deserialize, Serialize};

/// `diagnostics = { every = K, anchors = [...], detector = {...} }` in a training config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagConfig {
    /// Record at step 1 and every K steps.
    #[serde(default = "default_every")]
    pub every: u64,
    /// Anchor blocks; empty = [`default_anchors`].
    #[serde(default)]
    pub anchors: Vec<usize>,
    #[serde(default)]
    pub detector: DetectorConfig,
    #[serde(default)]
    pub spike: SpikeConfig,
    /// Ends the run (a normal finish: final checkpoint, samples) this many steps after the
    /// detector fires; `None` trains on to `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after_mms: Option<u64>,
}

/// When a step is a gradient-norm spike that gets an autopsy (docs/diagnostics.md, "Spike
/// autopsy"): its global gradient norm (before clipping) rises above `factor` × the median of
/// the previous `window` steps' norms (once `min_history` are known), or above `cross` from
/// below (the official viewer's rule with 1.0; 0 = off). One spike per excursion: while the
/// norm stays above the relative threshold no further spike is raised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikeConfig {
    pub factor: f64,
    pub window: usize,
    pub min_history: usize,
    pub cross: f64,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig { factor: 5.0, window: 100, min_history: 20, cross: 0.0 }
    }
}

/// Cadence of the diagnostics a run gets when its config does not mention them.
pub const DEFAULT_EVERY: u64 = 100;

fn default_every() -> u64 {
    DEFAULT_EVERY
}

/// The most host work (multiply-adds of the writer-gradient split over all anchors) a
/// diagnostics step may cost for them to be on by default: about half a second on 2 cores.
pub const DEFAULT_MAX_WORK: f64 = 5e8;

/// The `diagnostics` field of a training config. Absent: [`DiagSetting::Default`], on every
/// [`DEFAULT_EVERY`] steps wherever a step runs the whole model in one pass on one device (off,
/// silently, for `--devices` / `--micro-batches` runs); `false` (or `null`): off; `true`: on with
/// the default settings; a table: these settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum DiagSetting {
    #[default]
    Default,
    Off,
    On(DiagConfig),
}

impl DiagSetting {
    pub fn is_default(&self) -> bool {
        *self == DiagSetting::Default
    }

    /// The settings a config spells out (`On`).
    pub fn explicit(&self) -> Option<&DiagConfig> {
        match self {
            DiagSetting::On(c) => Some(c),
            _ => None,
        }
    }

    /// The diagnostics of a run whose steps do (`one_pass`) or do not run the whole model in
    /// one pass on one device, and whose diagnostics step would cost `work` host multiply-adds
    /// (the default is off above [`DEFAULT_MAX_WORK`]); asked-for diagnostics without one pass
    /// are an error.
    pub fn resolve(&self, one_pass: bool, work: f64) -> Result<Option<DiagConfig>, String> {
        match self {
            DiagSetting::Off => Ok(None),
            DiagSetting::Default => Ok((one_pass && work <= DEFAULT_MAX_WORK).then(|| DiagConfig::new(DEFAULT_EVERY))),
            DiagSetting::On(c) if one_pass => Ok(Some(c.clone())),
            DiagSetting::On(_) => Err("needs the whole model in one pass on one device: drop --devices and --micro-batches, or the diagnostics".into()),
        }
    }
}

impl Serialize for DiagSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Skipped in configs (`skip_serializing_if`); `true` would read back as on.
            DiagSetting::Default => s.serialize_bool(true),
            DiagSetting::Off => s.serialize_bool(false),
            DiagSetting::On(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for DiagSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DiagSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("false, true or a table of diagnostics settings")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<DiagSetting, E> {
                Ok(if on { DiagSetting::On(DiagConfig::new(DEFAULT_EVERY)) } else { DiagSetting::Off })
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<DiagSetting, E> {
                Ok(DiagSetting::Off)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<DiagSetting, E> {
                Ok(DiagSetting::Off)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<DiagSetting, A::Error> {
                DiagConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(DiagSetting::On)
            }
        }
        d.deserialize_any(V)
    }
}

/// Thresholds of the MMS detector (docs/diagnostics.md, "The detector").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Deep layers: anchors at or beyond this fraction of depth − 1.
    pub deep_from: f64,
    /// A writer shock: the deep max G_mean/G_ctr is above `ratio_min` ...
    pub ratio_min: f64,
    /// ... and `jump` times the median of the earlier records' values.
    pub jump: f64,
    /// Collapsed tokens: mean deep-anchor token cosine similarity above this.
    pub tcs: f64,
    /// Loss back near its initial value: window loss above best + loss_frac·(initial − best),
    /// after the best fell below 0.8·initial.
    pub loss_frac: f64,
    /// A shock counts as the onset of a collapse detected up to this many records later.
    pub lookback: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig { deep_from: 0.5, ratio_min: 10.0, jump: 5.0, tcs: 0.99, loss_frac: 0.5, lookback: 10 }
    }
}

impl DiagConfig {
    pub fn new(every: u64) -> Self {
        DiagConfig { every, anchors: vec![], detector: DetectorConfig::default(), spike: SpikeConfig::default(), stop_after_mms: None }
    }

    pub fn validate(&self, depth: usize) -> std::result::Result<(), String> {
        if self.every == 0 {
            return Err("every must be at least 1".into());
        }
        if let Some(&a) = self.anchors.iter().find(|&&a| a >= depth) {
            return Err(format!("anchor {a} is not a block of a depth-{depth} model"));
        }
        let d = &self.detector;
        if !(0.0..=1.0).contains(&d.deep_from) || !(0.0..=1.0).contains(&d.loss_frac) || d.jump < 1.0 || d.ratio_min <= 0.0 {
            return Err("detector: deep_from and loss_frac in [0, 1], jump >= 1, ratio_min > 0".into());
        }
        let p = &self.spike;
        let spike_ok = p.factor > 0.0 && p.cross >= 0.0 && (1..=p.window).contains(&p.min_history);
        if !spike_ok {
            return Err("spike: factor > 0, 1 <= min_history <= window, cross >= 0".into());
        }
        Ok(())
    }

    /// The anchors in use, sorted.
    pub fn anchors_for(&self, depth: usize) -> Vec<usize> {
        if self.anchors.is_empty() {
            default_anchors(depth)
        } else {
            let mut a = self.anchors.clone();
            a.sort_unstable();
            a.dedup();
            a
        }
    }
}

/// Blocks 0, 1, 2, 4, 8, … and every sixteenth of the depth, and the last block.
pub fn default_anchors(depth: usize) -> Vec<usize> {
    let mut a: Vec<usize> = std::iter::successors(Some(1usize), |&p| Some(p * 2)).take_while(|&p| p < depth).collect();
    a.push(0);
    a.extend((0..=16).map(|k| (k * (depth - 1) + 8) / 16));
    a.sort_unstable();
    a.dedup();
    a
}

/// Anchors at or beyond `deep_from`·(depth − 1) (at least the last anchor).
pub fn deep_anchors(anchors: &[usize], depth: usize, deep_from: f64) -> Vec<usize> {
    let cut = deep_from * depth.saturating_sub(1) as f64;
    let deep: Vec<usize> = anchors.iter().copied().filter(|&a| a as f64 >= cut).collect();
    if deep.is_empty() {
        anchors.last().copied().into_iter().collect()
    } else {
        deep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_reads_false_true_null_and_tables_and_resolves_by_placement() {
        #[derive(Debug, Deserialize, Serialize)]
        struct C {
            #[serde(default, skip_serializing_if = "DiagSetting::is_default")]
            diagnostics: DiagSetting,
        }
        let read = |j: &str| serde_json::from_str::<C>(j).unwrap().diagnostics;
        assert_eq!(read("{}"), DiagSetting::Default);
        assert_eq!(read(r#"{"diagnostics": false}"#), DiagSetting::Off);
        assert_eq!(read(r#"{"diagnostics": null}"#), DiagSetting::Off);
        assert_eq!(read(r#"{"diagnostics": true}"#), DiagSetting::On(DiagConfig::new(DEFAULT_EVERY)));
        assert_eq!(read(r#"{"diagnostics": {"every": 7}}"#), DiagSetting::On(DiagConfig::new(7)));
        assert!(serde_json::from_str::<C>(r#"{"diagnostics": {"evry": 7}}"#).unwrap_err().to_string().contains("evry"));
        let toml_off: C = toml::from_str("diagnostics = false").unwrap();
        assert_eq!(toml_off.diagnostics, DiagSetting::Off);
        let toml_on: C = toml::from_str("[diagnostics]\nevery = 3").unwrap();
        assert_eq!(toml_on.diagnostics, DiagSetting::On(DiagConfig::new(3)));
        for d in [DiagSetting::Default, DiagSetting::Off, DiagSetting::On(DiagConfig::new(9))] {
            let j = serde_json::to_string(&C { diagnostics: d.clone() }).unwrap();
            assert_eq!(read(&j), d, "{j}");
        }
        assert_eq!(DiagSetting::Default.resolve(true, 1e6).unwrap(), Some(DiagConfig::new(DEFAULT_EVERY)));
        assert_eq!(DiagSetting::Default.resolve(true, 1e12).unwrap(), None, "too costly by default");
        assert_eq!(DiagSetting::On(DiagConfig::new(5)).resolve(true, 1e12).unwrap(), Some(DiagConfig::new(5)));
        assert_eq!(DiagSetting::Default.resolve(false, 1e6).unwrap(), None);
        assert_eq!(DiagSetting::Off.resolve(true, 1e6).unwrap(), None);
        assert!(DiagSetting::On(DiagConfig::new(5)).resolve(false, 1e6).is_err());
        assert_eq!(read(r#"{"diagnostics": {"stop_after_mms": 5}}"#), DiagSetting::On(DiagConfig { stop_after_mms: Some(5), ..DiagConfig::new(DEFAULT_EVERY) }));
    }

    #[test]
    fn default_anchors_cover_the_depth() {
        let a = default_anchors(200);
        assert_eq!(a.first(), Some(&0));
        assert_eq!(a.last(), Some(&199));
        assert!(a.contains(&1) && a.contains(&64) && a.contains(&100));
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(default_anchors(1), vec![0]);
        assert_eq!(default_anchors(3), vec![0, 1, 2]);
        let deep = deep_anchors(&a, 200, 0.75);
        assert!(deep.len() >= 3 && deep.iter().all(|&i| i as f64 >= 0.75 * 199.0) && deep.contains(&199), "{deep:?}");
        assert_eq!(deep_anchors(&[0, 1], 200, 0.75), vec![1]);
    }

    #[test]
    fn the_spike_rule_is_checked() {
        let with = |spike: SpikeConfig| DiagConfig { spike, ..DiagConfig::new(5) }.validate(10);
        assert_eq!(with(SpikeConfig::default()), Ok(()));
        assert_eq!(with(SpikeConfig { cross: 1.0, min_history: 1, window: 1, ..SpikeConfig::default() }), Ok(()));
        for bad in [
            SpikeConfig { factor: 0.0, ..SpikeConfig::default() },
            SpikeConfig { factor: f64::NAN, ..SpikeConfig::default() },
            SpikeConfig { cross: -1.0, ..SpikeConfig::default() },
            SpikeConfig { min_history: 0, ..SpikeConfig::default() },
            SpikeConfig { min_history: 101, window: 100, ..SpikeConfig::default() },
        ] {
            assert!(with(bad.clone()).unwrap_err().contains("spike"), "{bad:?}");
        }
    }
}
