//! `mvdit convert`: a PyTorch `.pt` state dict (the released `model.pt`) → an mvdit checkpoint,
//! through [`mvdit_train::convert::convert`].

use mvdit_core::dtype::Dtype;
use mvdit_model::Result;
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
    let done = mvdit_train::convert::convert(&a.input, &a.config, &a.out, a.dtype.map(Dtype::from))?;
    eprintln!("{}", mvdit_train::convert::describe(&done, &a.out));
    Ok(())
}
