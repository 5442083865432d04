//! `mvdit encode-text`: the last hidden states of prompts from a Qwen3 text encoder.

use crate::backend_args::BackendArgs;
use mvdit_model::Result;
use mvdit_train::with_backend;
use std::path::Path;

pub fn encode_text_command(encoder: &Path, prompts: &[String], prompts_file: Option<&Path>, out: &Path, backend: &BackendArgs) -> Result<()> {
    let prompts = mvdit_train::frozen::gather_prompts(prompts, prompts_file)?;
    with_backend!(backend.spec()?, |be| mvdit_train::frozen::encode_text(&be, encoder, &prompts, out))
}
