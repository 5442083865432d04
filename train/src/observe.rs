//! How a training run is watched: [`StepObserver`] looks inside one step (diagnostics), and
//! [`Progress`] hears of the run's progress (a progress bar in the CLI, nothing in tests).

use crate::step::StepOutcome;
use mvdit_core::Backend;
use mvdit_model::{Dit, Probe, Result};

/// Looks inside one training step (diagnostics): the model probe, then every gradient before
/// and after the update.
pub trait StepObserver<B: Backend> {
    /// The probe the step's forward and backward hand block tensors to; None: no tensor wanted
    /// (the step runs as without an observer).
    fn probe(&mut self) -> Option<&mut dyn Probe>;
    /// Every parameter gradient (layout order, compute shapes), before clipping and the update.
    fn grads(&mut self, be: &B, model: &Dit<B>, grads: &[B::Tensor]) -> Result<()>;
    /// The same gradients and the class table's (none for caption-conditioned runs) after the
    /// update (or its skip), with the step's outcome (its global gradient norm): where a
    /// gradient-norm spike is taken apart.
    fn updated(&mut self, _be: &B, _model: &Dit<B>, _grads: &[B::Tensor], _table_grad: Option<&B::Tensor>, _outcome: StepOutcome) -> Result<()> {
        Ok(())
    }
}

/// Progress reporting hooks (a progress bar in the CLI, a callback in the bindings, nothing in
/// tests). A training run calls `start(from, to)`, then per step `step` and `record` (each line
/// it logs to metrics.jsonl); `prepare` calls `start(0, images)` and `advance(images done)`.
pub trait Progress {
    fn start(&mut self, _from: u64, _to: u64) {}
    fn step(&mut self, _step: u64, _loss: f64, _steps_per_s: f64) {}
    /// A record the run logs (a metrics.jsonl line: `kind` train, eval, skip, ...).
    fn record(&mut self, _record: &serde_json::Value) {}
    /// Items done so far (images for `prepare`).
    fn advance(&mut self, _done: u64) {}
    fn message(&mut self, msg: &str) {
        eprintln!("{msg}");
    }
    fn finish(&mut self) {}
}

/// No bar; messages to stderr.
pub struct Quiet;
impl Progress for Quiet {}
