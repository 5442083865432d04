//! The operator catalog: scalar reference forward and backward passes. They define correctness;
//! every backend is tested against them, and each backward against finite differences.

pub mod adamw;
pub mod attention;
pub mod conv;
pub mod groupnorm;
pub mod linear;
pub mod loss;
pub mod mvsplit;
pub mod patch;
pub mod resample;
pub mod residual;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;

pub use adamw::{adamw_step, clip_scale, AdamW};
pub use attention::{attention_backward, attention_forward, attention_masked, AttnMask, Heads};
pub use conv::{conv2d, Conv2d};
pub use groupnorm::group_norm;
pub use linear::{linear_backward, linear_forward};
pub use loss::{mse_backward, mse_forward};
pub use mvsplit::{mvsplit_backward, mvsplit_forward, mvsplit_sum, segment_mean, segments};
pub use patch::{patchify, patchify_backward, unpatchify, unpatchify_backward};
pub use resample::{pixel_shuffle, pixel_unshuffle, upsample_nearest};
pub use residual::{scaled_residual_rmsnorm_backward, scaled_residual_rmsnorm_forward};
pub use rmsnorm::{rmsnorm_backward, rmsnorm_forward};
pub use rope::{rope_apply, rope_tables, rope_tables_1d};
pub use swiglu::{silu, swiglu_backward, swiglu_forward};

/// RMSNorm epsilon of the input norms and the MV-Split merges.
pub const NORM_EPS: f64 = 1e-5;
/// GroupNorm epsilon of the autoencoder.
pub const GROUP_NORM_EPS: f64 = 1e-6;
/// RMSNorm epsilon of QK-norm.
pub const QK_NORM_EPS: f64 = 1e-6;
