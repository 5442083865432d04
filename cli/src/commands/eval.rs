//! `mvdit eval`: a checkpoint's velocity on inputs (with `--grad` the loss and every gradient).

use crate::backend_args::{BackendArgs, WeightsArg};
use mvdit_model::Result;
use mvdit_train::backends::Weights;
use mvdit_train::with_backend;
use std::path::{Path, PathBuf};

pub fn eval_command(checkpoint: &Path, inputs: &Path, out: &Path, config: Option<PathBuf>, grad: bool, weights: WeightsArg, backend: &BackendArgs) -> Result<()> {
    let cfg = config.as_deref().map(mvdit_train::config::read_model_config).transpose()?;
    let weights = Weights::from(weights).dtype();
    with_backend!(backend.spec()?, |be| mvdit_train::eval::run(&be, checkpoint, inputs, out, cfg.as_ref(), grad, weights))
}
