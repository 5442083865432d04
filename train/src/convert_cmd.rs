//! `mvdit convert`: a PyTorch `.pt` state dict (the released `model.pt`) → an mvdit checkpoint
//! (safetensors, the config in metadata key `config`), streamed tensor by tensor from the
//! mapped file. The layout is checked before anything is written; a bad file writes nothing.

use mvdit_core::dtype::Dtype;
use mvdit_model::checkpoint::parse_config;
use mvdit_model::convert::convert_pt;
use mvdit_model::{Error, PtFile, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The `.pt` checkpoint: a torch.save'd state dict, itself or under `model` / `state_dict`.
    pub input: PathBuf,
    /// Model config JSON (a workload such as configs/released-1000.json also works).
    #[arg(long)]
    pub config: PathBuf,
    /// The safetensors file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Element type of the written tensors (default: each as stored in the .pt).
    #[arg(long, value_enum)]
    pub dtype: Option<OutDtype>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutDtype {
    Bf16,
    F16,
    F32,
}

impl From<OutDtype> for Dtype {
    fn from(d: OutDtype) -> Dtype {
        match d {
            OutDtype::Bf16 => Dtype::Bf16,
            OutDtype::F16 => Dtype::F16,
            OutDtype::F32 => Dtype::F32,
        }
    }
}

pub fn run(a: ConvertArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.config).map_err(|e| Error::new(format!("{}: cannot read: {e}", a.config.display())))?;
    let cfg = parse_config(&text, &a.config.display().to_string())?;
    let pt = PtFile::open(&a.input)?;
    let done = convert_pt(&pt, &cfg, a.dtype.map(Dtype::from), &a.out)?;
    let ones = if done.dropped_ones > 0 { format!(" ({} constant all-ones buffers checked and left out)", done.dropped_ones) } else { String::new() };
    eprintln!("convert: {} tensors{ones}, {:.3} GB of weights → {}", done.tensors, done.bytes as f64 / 1e9, a.out.display());
    Ok(())
}
