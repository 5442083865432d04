//! The two halves of a training step: [`loss_and_grads`] (forward, MSE, backward of one pass
//! on one device; the depth split's GPipe schedule is the other way to get them) and
//! [`update`] (global gradient norm → clip → AdamW → EMA), the only update there is: the
//! trainer (one device or split), `mvdit bench` (through the trainer) and the golden replay
//! all call it.

use crate::optim::Optimizer;
use mvdit_core::Backend;
use mvdit_model::{Dit, GradHook, Keep, Probe, Result};

/// A step's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome {
    /// `grad_norm`: the global gradient norm before clipping; `lr`: the learning rate used.
    Updated { loss: f64, grad_norm: f64, lr: f64 },
    /// Non-finite loss or gradient: nothing was changed.
    Skipped { loss: f64, grad_norm: f64 },
    /// A finite loss whose gradients overflowed at the loss scale: nothing was changed and
    /// the scale was halved to `scale` ([`crate::loss_scale::LossScaler`]).
    Overflow { loss: f64, scale: f64 },
}

/// One group of parameters of an [`update`]: tensors on one device with their gradients (same
/// order), their AdamW state and, where the run keeps one, their EMA.
pub struct Group<'a, B: Backend> {
    pub be: &'a B,
    pub params: &'a mut [B::Tensor],
    pub grads: &'a [B::Tensor],
    pub opt: &'a mut Optimizer<B>,
    pub ema: Option<&'a mut [B::Tensor]>,
}

/// Who watches a step from inside: a probe handed the block tensors it asks for, and a hook
/// told about each group of gradients as backward finishes it (data-parallel gradient buckets
/// start travelling then). `Watchers::default()` is nobody.
pub struct Watchers<'p, 'h, T> {
    pub probe: Option<&'p mut dyn Probe>,
    pub hook: Option<&'h mut dyn GradHook<T>>,
}

impl<T> Default for Watchers<'_, '_, T> {
    fn default() -> Self {
        Watchers { probe: None, hook: None }
    }
}

/// Loss and gradients of a batch without updating anything. x_t: [B, C, H, W],
/// context: [B, Lt, Dc], target: [B, C, H, W] → (loss, parameter grads × `loss_scale`,
/// d context × `loss_scale`); the loss itself is unscaled.
#[allow(clippy::too_many_arguments)]
pub fn loss_and_grads<B: Backend>(
    be: &B,
    model: &Dit<B>,
    x_t: &B::Tensor,
    context: B::Tensor,
    target: &B::Tensor,
    keep: Keep,
    loss_scale: f32,
    watch: Watchers<'_, '_, B::Tensor>,
) -> Result<(f64, Vec<B::Tensor>, B::Tensor)> {
    let Watchers { mut probe, hook } = watch;
    let keep = if keep == Keep::Nothing { Keep::All } else { keep };
    let (v, tape) = model.forward_probed(be, x_t, context, keep, mvdit_model::probe::reborrow(&mut probe))?;
    let (loss, dv) = be.mse(&v, target)?;
    let dv = if loss_scale == 1.0 { dv } else { be.axpby(loss_scale, &dv, 0.0, &dv)? };
    let loss = be.download(&loss)?[0] as f64;
    let grads = model.backward_hooked(be, tape.expect("training forward keeps a tape"), &dv, probe, hook)?;
    Ok((loss, grads.params, grads.context))
}

/// The update of one step over every parameter group: the global gradient norm (before
/// clipping, over all groups), then, if it and `loss` are finite, AdamW with that norm's clip
/// scale on every group and the EMA `e ← d·e + (1 − d)·p` (`ema_decay` d; 0 = none). A
/// non-finite loss or norm changes nothing ([`StepOutcome::Skipped`]). The gradients carry the
/// factor `grad_scale` (the loss scale; 1 = none): the norm is reported without it and AdamW
/// divides it out with the clip factor.
pub fn update<B: Backend>(groups: Vec<Group<'_, B>>, loss: f64, ema_decay: f64, grad_scale: f64) -> Result<StepOutcome> {
    let mut sq = 0.0;
    for g in &groups {
        sq += g.be.sum_squares(&g.grads.iter().collect::<Vec<_>>())?;
    }
    let grad_norm = sq.sqrt() / grad_scale;
    if !(loss.is_finite() && grad_norm.is_finite()) {
        return Ok(StepOutcome::Skipped { loss, grad_norm });
    }
    let mut lr = 0.0;
    for g in groups {
        let grads: Vec<&B::Tensor> = g.grads.iter().collect();
        lr = g.opt.apply(g.be, g.params.iter_mut().collect(), &grads, grad_norm, grad_scale)?;
        if let (Some(ema), true) = (g.ema, ema_decay > 0.0) {
            let d = ema_decay as f32;
            for (e, p) in ema.iter_mut().zip(g.params.iter()) {
                *e = g.be.axpby(d, e, 1.0 - d, p)?;
            }
        }
    }
    Ok(StepOutcome::Updated { loss, grad_norm, lr })
}
