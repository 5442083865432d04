//! One training step on a prepared batch: forward, MSE, backward, clip and AdamW.

use crate::optim::Optimizer;
use mvdit_core::Backend;
use mvdit_model::{Dit, GradHook, Keep, Probe, Result};

/// What a step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
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
/// context: [B, Lt, Dc], target: [B, C, H, W] → (loss, parameter grads, d context).
pub fn loss_and_grads<B: Backend>(
    be: &B,
    model: &Dit<B>,
    x_t: &B::Tensor,
    context: B::Tensor,
    target: &B::Tensor,
    keep: Keep,
    watch: Watchers<'_, '_, B::Tensor>,
) -> Result<(f64, Vec<B::Tensor>, B::Tensor)> {
    let Watchers { mut probe, hook } = watch;
    let keep = if keep == Keep::Nothing { Keep::All } else { keep };
    let (v, tape) = model.forward_probed(be, x_t, context, keep, mvdit_model::probe::reborrow(&mut probe))?;
    let (loss, dv) = be.mse(&v, target)?;
    let loss = be.download(&loss)?[0] as f64;
    let grads = model.backward_hooked(be, tape.expect("training forward keeps a tape"), &dv, probe, hook)?;
    Ok((loss, grads.params, grads.context))
}

/// Model-only step (the context is an input, not trained): used by the golden replay.
pub fn train_step<B: Backend>(
    be: &B,
    model: &mut Dit<B>,
    opt: &mut Optimizer<B>,
    x_t: &B::Tensor,
    context: B::Tensor,
    target: &B::Tensor,
    keep: Keep,
) -> Result<StepStats> {
    let (loss, grads, _) = loss_and_grads(be, model, x_t, context, target, keep, Watchers::default())?;
    let refs: Vec<&B::Tensor> = grads.iter().collect();
    let grad_norm = opt.update(be, model.params.iter_mut().collect(), &refs)?;
    Ok(StepStats { loss, grad_norm })
}
