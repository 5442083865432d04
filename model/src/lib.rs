//! The MV-Split DiT over any mvdit backend, and its safetensors checkpoints.

pub mod checkpoint;
pub mod dit;
pub mod error;
pub mod suggest;
pub mod tape;
pub mod probe;
pub mod tensorfile;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
pub use dit::{compute_shape, Dit, GradHook, StageIn, StageOut};
pub use tape::{block_activation_elems, tape_elems, Grads, Keep, StageGrads, Tape};
pub use error::{Error, Result};
pub use probe::{Probe, Recorder, Tap};
pub use tensorfile::{HostTensor, TensorFile};
