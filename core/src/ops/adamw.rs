//! AdamW with bias-corrected moments and decoupled decay (torch.optim.AdamW semantics).

use crate::Real;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Applied only to tensors whose spec `decays()`; pass 0 for the others.
    pub weight_decay: f64,
}

/// One update of p with gradient `grad_scale * g` at 1-based `step`; m, v: moment buffers.
/// p ← p(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
/// p ← p − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps).
pub fn adamw_step<T: Real>(opt: &AdamW, step: u64, grad_scale: f64, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    let bc1 = 1.0 - libm::pow(opt.beta1, step as f64);
    let bc2 = 1.0 - libm::pow(opt.beta2, step as f64);
    let (b1, b2) = (T::from_f64(opt.beta1), T::from_f64(opt.beta2));
    let decay = T::from_f64(1.0 - opt.lr * opt.weight_decay);
    let step_size = T::from_f64(opt.lr / bc1);
    let sqrt_bc2 = T::from_f64(libm::sqrt(bc2));
    let (eps, gs) = (T::from_f64(opt.eps), T::from_f64(grad_scale));
    for i in 0..p.len() {
        let gi = g[i] * gs;
        m[i] = b1 * m[i] + (T::ONE - b1) * gi;
        v[i] = b2 * v[i] + (T::ONE - b2) * gi * gi;
        p[i] = p[i] * decay - step_size * m[i] / (v[i].sqrt() / sqrt_bc2 + eps);
    }
}

/// The global clipping factor torch's clip_grad_norm_ applies: min(1, max_norm / (norm + 1e-6)).
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}
