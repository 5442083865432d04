//! A PyTorch `.pt` state dict (the released `model.pt`) → an mvdit checkpoint (safetensors,
//! the config in metadata key `config`), streamed tensor by tensor from the mapped file. The
//! layout is checked before anything is written; a bad file writes nothing.

use mvdit_core::dtype::Dtype;
use mvdit_model::convert::{convert_pt, Converted};
use mvdit_model::{PtFile, Result};
use std::path::Path;

/// Converts `input` (a torch.save'd state dict, itself or under `model` / `state_dict`) to the
/// safetensors file `out`, its layout checked against the model config JSON `config` (a
/// workload such as configs/released-1000.json also works); `dtype`: the written element type
/// (`None`: each tensor as stored).
pub fn convert(input: &Path, config: &Path, out: &Path, dtype: Option<Dtype>) -> Result<Converted> {
    let cfg = crate::config::read_model_config(config)?;
    convert_pt(&PtFile::open(input)?, &cfg, dtype, out)
}

/// One line saying what [`convert`] wrote.
pub fn describe(done: &Converted, out: &Path) -> String {
    let ones = if done.dropped_ones > 0 { format!(" ({} constant all-ones buffers checked and left out)", done.dropped_ones) } else { String::new() };
    format!("convert: {} tensors{ones}, {:.3} GB of weights → {}", done.tensors, done.bytes as f64 / 1e9, out.display())
}
