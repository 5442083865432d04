//! AdamW over backend tensors with global gradient-norm clipping and decay groups
//! (torch.optim.AdamW + clip_grad_norm_ semantics; reference: `mvdit_core::ops::adamw_step`).

use mvdit_core::ops::{clip_scale, AdamW};
use mvdit_core::{BResult, Backend, Layout};
use serde::{Deserialize, Serialize};

/// Optimiser settings (the golden `train` metadata uses these field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables clipping.
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    /// Linear warm-up steps before the constant learning rate.
    #[serde(default)]
    pub warmup_steps: u64,
}

fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_wd() -> f64 {
    0.1
}
fn default_clip() -> f64 {
    1.0
}

impl OptimConfig {
    /// Learning rate of 1-based step `step`: linear warm-up, then constant.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup_steps == 0 || step >= self.warmup_steps {
            self.lr
        } else {
            self.lr * step as f64 / self.warmup_steps as f64
        }
    }
}

/// Moment buffers for every parameter, plus the step counter.
pub struct Optimizer<B: Backend> {
    pub cfg: OptimConfig,
    pub m: Vec<B::Tensor>,
    pub v: Vec<B::Tensor>,
    /// Updates applied so far.
    pub step: u64,
    decays: Vec<bool>,
}

impl<B: Backend> Optimizer<B> {
    /// Zero moments for tensors of the given shapes; `decays[i]` puts tensor i in the decay group.
    pub fn new(be: &B, cfg: OptimConfig, shapes: &[Vec<usize>], decays: Vec<bool>) -> BResult<Self> {
        let m = shapes.iter().map(|s| be.zeros(s)).collect::<BResult<Vec<_>>>()?;
        let v = shapes.iter().map(|s| be.zeros(s)).collect::<BResult<Vec<_>>>()?;
        Ok(Optimizer { cfg, m, v, step: 0, decays })
    }

    /// Decay groups of a model layout (2-D and larger tensors decay).
    pub fn decays_of(layout: &Layout) -> Vec<bool> {
        layout.specs.iter().map(|s| s.decays()).collect()
    }

    /// One update given the global gradient norm `norm` (over every group of the step, without
    /// the loss scale): clip, then AdamW on every tensor. `grads` carry the factor `grad_scale`
    /// (1 = none), divided out with the clip factor. Returns the lr used.
    /// `params` and `grads` in the order the optimiser was created with.
    pub fn apply(&mut self, be: &B, params: Vec<&mut B::Tensor>, grads: &[&B::Tensor], norm: f64, grad_scale: f64) -> BResult<f64> {
        assert_eq!(params.len(), self.m.len(), "optimizer built for another parameter list");
        let clip = if self.cfg.max_grad_norm > 0.0 { clip_scale(norm, self.cfg.max_grad_norm) } else { 1.0 };
        let scale = clip / grad_scale;
        self.step += 1;
        let lr = self.cfg.lr_at(self.step);
        for (i, p) in params.into_iter().enumerate() {
            let opt = AdamW {
                lr,
                beta1: self.cfg.betas[0],
                beta2: self.cfg.betas[1],
                eps: self.cfg.eps,
                weight_decay: if self.decays[i] { self.cfg.weight_decay } else { 0.0 },
            };
            be.adamw(&opt, self.step, scale, p, grads[i], &mut self.m[i], &mut self.v[i])?;
        }
        Ok(lr)
    }
}
