//! `mvdit vae encode|decode`: arguments and dispatch.

use crate::backend_args::BackendArgs;
use clap::Subcommand;
use mvdit_model::{Error, Result};
use mvdit_train::with_backend;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum VaeCommand {
    /// `image` [B, 3, H, W] in [-1, 1] (or PNG/JPEG files) → `latent` [B, 4z, H/f, W/f].
    Encode {
        /// The autoencoder's weights (safetensors, the official tensor names).
        #[arg(long)]
        vae: PathBuf,
        /// safetensors with tensor `image`.
        #[arg(long, conflicts_with = "images", required_unless_present = "images")]
        inputs: Option<PathBuf>,
        /// A folder of PNG/JPEG files, each centre-cropped and resized to --size.
        #[arg(long)]
        images: Option<PathBuf>,
        /// Side of the square the --images are brought to (a multiple of the factor f).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// safetensors to write (`latent`).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// `latent` [B, 4z, h, w] → `image` [B, 3, h·f, w·f] (not clamped), or PNG files.
    Decode {
        #[arg(long)]
        vae: PathBuf,
        /// safetensors with tensor `latent`.
        #[arg(long)]
        inputs: PathBuf,
        /// safetensors to write (`image`).
        #[arg(long, conflicts_with = "png", required_unless_present = "png")]
        out: Option<PathBuf>,
        /// A folder to write one PNG per image into (clamped to [-1, 1]).
        #[arg(long)]
        png: Option<PathBuf>,
        #[command(flatten)]
        backend: BackendArgs,
    },
}

/// `mvdit vae encode|decode`.
pub fn vae_command(which: VaeCommand) -> Result<()> {
    use mvdit_train::frozen::{vae_decode, vae_encode, VaeInput, VaeOutput};
    match which {
        VaeCommand::Encode { vae, inputs, images, size, out, backend } => {
            let input = match (inputs, images) {
                (Some(f), _) => VaeInput::Tensors(f),
                (None, Some(dir)) => VaeInput::Images { dir, size },
                (None, None) => return Err(Error::new("give --inputs FILE or --images DIR")),
            };
            with_backend!(backend.spec()?, |be| vae_encode(&be, &vae, &input, &out))
        }
        VaeCommand::Decode { vae, inputs, out, png, backend } => {
            let output = match (out, png) {
                (Some(f), _) => VaeOutput::Tensors(f),
                (None, Some(dir)) => VaeOutput::Png(dir),
                (None, None) => return Err(Error::new("give --out FILE or --png DIR")),
            };
            with_backend!(backend.spec()?, |be| vae_decode(&be, &vae, &inputs, &output))
        }
    }
}

