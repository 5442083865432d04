//! Dynamic loss scaling for 16-bit gradient products (`torch.amp.GradScaler` semantics).
//!
//! Where a backend rounds matmul operands to 16 bits ([`mvdit_core::Backend::half_products`]),
//! small gradients fall below f16's range. The step multiplies the loss gradient by a scale S
//! before backward and divides it out of the update (folded into AdamW's clip factor, no extra
//! pass). A step whose loss is finite but whose gradients are not (an overflow at S) changes
//! nothing and halves S; after `growth_interval` updates in a row S doubles. S is always a
//! power of two and never below 1, so on f32 products a scaled step is bit-identical to an
//! unscaled one; at S = 1 an overflow is an ordinary non-finite step (it counts towards
//! `max_bad_steps`). S and the count of good steps are part of a checkpoint.

use crate::step::StepOutcome;
use serde::{Deserialize, Serialize};

/// `loss_scale.mode` in a training config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossScaleMode {
    /// Dynamic where the backend's products are 16-bit, off where they are f32.
    #[default]
    Auto,
    Off,
    Dynamic,
}

/// `loss_scale` in a training config: `{"mode": "auto", "init": 65536, "growth_interval": 2000}`
/// (PyTorch's defaults; the factors are fixed at 2 and 1/2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossScaleConfig {
    #[serde(default)]
    pub mode: LossScaleMode,
    /// The first scale: a power of two ≥ 1.
    #[serde(default = "default_init")]
    pub init: f64,
    /// Updates in a row after which the scale doubles (≥ 1).
    #[serde(default = "default_growth_interval")]
    pub growth_interval: u64,
}

fn default_init() -> f64 {
    65536.0
}
fn default_growth_interval() -> u64 {
    2000
}

impl Default for LossScaleConfig {
    fn default() -> Self {
        LossScaleConfig { mode: LossScaleMode::Auto, init: default_init(), growth_interval: default_growth_interval() }
    }
}

impl LossScaleConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// `Err((field, message))` for a value out of range.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let i = self.init;
        if !(i.is_finite() && i >= 1.0 && i.log2().fract() == 0.0) {
            return Err(("loss_scale.init", format!("must be a power of two, at least 1 (e.g. 65536), got {i}")));
        }
        if self.growth_interval == 0 {
            return Err(("loss_scale.growth_interval", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The scaler of a run whose products are 16-bit (`half`) or not; `None`: no scaling.
    pub fn scaler(&self, half: bool) -> Option<LossScaler> {
        let on = match self.mode {
            LossScaleMode::Auto => half,
            LossScaleMode::Off => false,
            LossScaleMode::Dynamic => true,
        };
        on.then_some(LossScaler { scale: self.init, good_steps: 0, growth_interval: self.growth_interval })
    }
}

/// The scale of a run and the updates since it last changed.
#[derive(Clone, Debug, PartialEq)]
pub struct LossScaler {
    /// S: the factor on the loss gradient (a power of two ≥ 1).
    pub scale: f64,
    /// Updates in a row at this scale.
    pub good_steps: u64,
    growth_interval: u64,
}

impl LossScaler {
    /// Moves the scale after a step's outcome and returns the outcome to report: an update
    /// counts towards growth; a finite loss with non-finite gradients above S = 1 halves S and
    /// becomes [`StepOutcome::Overflow`]; anything else non-finite restarts the count.
    pub fn after(&mut self, outcome: StepOutcome) -> StepOutcome {
        match outcome {
            StepOutcome::Updated { .. } => {
                self.good_steps += 1;
                if self.good_steps >= self.growth_interval {
                    self.scale *= 2.0;
                    self.good_steps = 0;
                }
                outcome
            }
            StepOutcome::Skipped { loss, .. } if loss.is_finite() && self.scale > 1.0 => {
                self.scale /= 2.0;
                self.good_steps = 0;
                StepOutcome::Overflow { loss, scale: self.scale }
            }
            other => {
                self.good_steps = 0;
                other
            }
        }
    }

    /// The checkpoint's text of this state: `"S,good_steps"`.
    pub fn to_state(&self) -> String {
        format!("{},{}", self.scale, self.good_steps)
    }

    /// This scaler with the state of [`Self::to_state`]; `None` if the text is malformed.
    pub fn with_state(mut self, s: &str) -> Option<Self> {
        let (scale, good) = s.split_once(',')?;
        let scale: f64 = scale.parse().ok()?;
        (scale >= 1.0 && scale.is_finite()).then_some(())?;
        self.scale = scale;
        self.good_steps = good.parse().ok()?;
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn updated() -> StepOutcome {
        StepOutcome::Updated { loss: 1.0, grad_norm: 1.0, lr: 1e-3 }
    }
    fn overflowed() -> StepOutcome {
        StepOutcome::Skipped { loss: 1.0, grad_norm: f64::INFINITY }
    }

    #[test]
    fn an_overflow_halves_the_scale_and_good_steps_double_it() {
        let cfg = LossScaleConfig { mode: LossScaleMode::Dynamic, init: 8.0, growth_interval: 3 };
        let mut s = cfg.scaler(false).unwrap();
        assert_eq!(s.after(overflowed()), StepOutcome::Overflow { loss: 1.0, scale: 4.0 });
        assert_eq!(s.after(updated()), updated());
        assert_eq!(s.after(updated()), updated());
        assert_eq!((s.scale, s.good_steps), (4.0, 2));
        s.after(updated());
        assert_eq!((s.scale, s.good_steps), (8.0, 0), "the third update in a row doubles");
        s.after(updated());
        s.after(overflowed());
        assert_eq!((s.scale, s.good_steps), (4.0, 0), "an overflow restarts the count");
    }

    #[test]
    fn at_scale_one_and_for_a_non_finite_loss_a_skip_stays_a_skip() {
        let cfg = LossScaleConfig { mode: LossScaleMode::Dynamic, init: 1.0, growth_interval: 2 };
        let mut s = cfg.scaler(false).unwrap();
        assert_eq!(s.after(overflowed()), overflowed(), "the floor: counted as a bad step");
        assert_eq!(s.scale, 1.0);
        let mut s = LossScaleConfig { init: 4.0, ..cfg }.scaler(false).unwrap();
        let nan = StepOutcome::Skipped { loss: f64::NAN, grad_norm: f64::NAN };
        assert!(matches!(s.after(nan), StepOutcome::Skipped { .. }));
        assert_eq!(s.scale, 4.0, "a non-finite loss is the data's or the model's, not the scale's");
    }

    #[test]
    fn auto_scales_only_16_bit_products_and_off_never() {
        let auto = LossScaleConfig::default();
        assert_eq!(auto.scaler(true).map(|s| s.scale), Some(65536.0));
        assert!(auto.scaler(false).is_none());
        assert!(LossScaleConfig { mode: LossScaleMode::Off, ..auto.clone() }.scaler(true).is_none());
        assert!(LossScaleConfig { mode: LossScaleMode::Dynamic, ..auto }.scaler(false).is_some());
    }

    #[test]
    fn the_state_round_trips_and_bad_text_is_refused() {
        let cfg = LossScaleConfig { mode: LossScaleMode::Dynamic, init: 1024.0, growth_interval: 5 };
        let mut s = cfg.scaler(false).unwrap();
        s.after(updated());
        s.after(overflowed());
        s.after(updated());
        let back = cfg.scaler(false).unwrap().with_state(&s.to_state()).unwrap();
        assert_eq!(back, s);
        for bad in ["", "512", "x,1", "0.5,1", "inf,0", "512,-1"] {
            assert!(cfg.scaler(false).unwrap().with_state(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn init_must_be_a_power_of_two_and_the_interval_positive() {
        let ok = LossScaleConfig::default();
        assert!(ok.check().is_ok());
        for init in [0.0, 0.5, 3.0, 65535.0, f64::INFINITY, f64::NAN] {
            assert_eq!(LossScaleConfig { init, ..ok.clone() }.check().unwrap_err().0, "loss_scale.init", "{init}");
        }
        assert_eq!(LossScaleConfig { growth_interval: 0, ..ok }.check().unwrap_err().0, "loss_scale.growth_interval");
    }
}
