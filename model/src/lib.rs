//! The MV-Split DiT over any mvdit backend, its safetensors checkpoints, and the frozen
//! networks of the released pipeline (autoencoder, text encoder).

pub mod autoencoder;
pub mod checkpoint;
pub mod checksum;
pub mod convert;
pub mod dit;
pub mod error;
mod mapped;
pub mod step_cache;
pub mod streamed;
pub mod stream_write;
pub mod suggest;
pub mod tape;
pub mod packed;
pub mod probe;
pub mod prompts;
pub mod pt;
pub mod tensorfile;
pub mod text_encoder;
pub mod weights;

pub use autoencoder::{Autoencoder, AutoencoderConfig};
pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
pub use dit::{compute_shape, Dit, GradHook, StageIn, StageOut};
pub use tape::{block_activation_elems, tape_elems, Grads, Keep, StageGrads, Tape};
pub use error::{Error, Result};
pub use packed::PackedDit;
pub use probe::{Probe, Recorder, Tap};
pub use prompts::{PromptTokenizer, TokenBatch, MAX_TOKENS};
pub use pt::PtFile;
pub use streamed::{Residency, WeightedDit};
pub use tensorfile::{HostTensor, TensorFile};
pub use text_encoder::{Encoded, TextEncoder, TextEncoderConfig};
pub use weights::WeightFile;
