//! The MV-Split DiT over any mvdit backend, and its safetensors checkpoints.

pub mod checkpoint;
pub mod dit;
pub mod error;
pub mod suggest;
pub mod probe;
pub mod tensorfile;

pub use checkpoint::{load_checkpoint, save_checkpoint, Checkpoint};
pub use dit::{block_activation_elems, compute_shape, tape_elems, Dit, GradHook, Grads, Keep, StageGrads, StageIn, StageOut, Tape};
pub use error::{Error, Result};
pub use probe::{Probe, Recorder, Tap};
pub use tensorfile::{HostTensor, TensorFile};
