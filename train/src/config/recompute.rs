//! Block recompute: which activations a training step keeps for backward. One rule for
//! `mvdit train` and `mvdit bench`, so the benchmark times the trainer's step.

use mvdit_core::{parse_choice, Dims};
use mvdit_model::{block_activation_elems, Keep};
use serde::{Deserialize, Deserializer, Serialize};

/// Default activation budget of [`Recompute::Auto`]: 224 MiB keeps 176 of deep1000's 1000
/// blocks at batch 16 (the buffer pool keeps the previous step's gradient buffers, so the kept
/// activations add to the peak one for one: 899 MB with none kept, 1216 MB with 320 MiB) and
/// every block of the small presets.
pub const DEFAULT_ACTIVATION_BUDGET_MB: usize = 224;

/// `recompute = "auto" | "all" | "none"` in a training config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recompute {
    /// Keep every block's activations while they fit the activation budget; otherwise
    /// recompute the first blocks in backward and keep the last ones' activations.
    #[default]
    Auto,
    /// Keep only block inputs and recompute every block in backward.
    All,
    /// Keep every activation.
    None,
}

impl Recompute {
    /// What a step over `dims` (B = the samples whose tapes one device holds at once) of a
    /// `depth`-block model keeps, given `budget_mb` megabytes for block activations.
    pub fn keep(self, depth: usize, dims: &Dims, budget_mb: usize) -> Keep {
        match self {
            Recompute::None => Keep::All,
            Recompute::All => Keep::BlockInputs,
            Recompute::Auto => match kept_blocks(dims, budget_mb) {
                n if n >= depth => Keep::All,
                n => Keep::Tail(n),
            },
        }
    }
}

/// How many blocks' f32 activations over `dims` fit in `budget_mb` megabytes (MiB).
pub fn kept_blocks(dims: &Dims, budget_mb: usize) -> usize {
    let per_block = 4 * block_activation_elems(dims);
    budget_mb.saturating_mul(1 << 20) / per_block.max(1)
}

/// Also reads the boolean of configs and checkpoints written before the budget existed:
/// `true` (block inputs only) is "all", `false` is "none".
impl<'de> Deserialize<'de> for Recompute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Bool(bool),
            Name(String),
        }
        match Either::deserialize(d)? {
            Either::Bool(true) => Ok(Recompute::All),
            Either::Bool(false) => Ok(Recompute::None),
            Either::Name(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl std::str::FromStr for Recompute {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_choice(s, &[("auto", Recompute::Auto), ("all", Recompute::All), ("none", Recompute::None)], "recompute choice")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvdit_core::ModelConfig;

    fn dims(depth: usize, batch: usize) -> (ModelConfig, Dims) {
        let cfg = ModelConfig {
            in_channels: 1,
            patch_size: 2,
            hidden_size: 64,
            depth,
            num_heads: 1,
            mlp_hidden_dim: 192,
            qkv_bias: false,
            context_dim: 64,
            rope_base: 10000.0,
            residual: Default::default(),
        };
        let d = Dims::new(&cfg, batch, 8, 8, 1).unwrap();
        (cfg, d)
    }

    #[test]
    fn auto_keeps_what_fits_the_budget() {
        // deep1000 at batch 16: 176 blocks' activations in 224 MiB (the figure bench used).
        let (cfg, d) = dims(1000, 16);
        assert_eq!(Recompute::Auto.keep(cfg.depth, &d, DEFAULT_ACTIVATION_BUDGET_MB), Keep::Tail(176));
        assert_eq!(Recompute::Auto.keep(cfg.depth, &d, 0), Keep::Tail(0));
        assert_eq!(Recompute::Auto.keep(cfg.depth, &d, DEFAULT_ACTIVATION_BUDGET_MB).kept_blocks(cfg.depth), 176);
        assert_eq!((Keep::All.kept_blocks(1000), Keep::BlockInputs.kept_blocks(1000), Keep::Nothing.kept_blocks(1000)), (1000, 0, 0));
        // A shallow model fits whole: nothing is recomputed.
        let (cfg, d) = dims(8, 64);
        assert_eq!(Recompute::Auto.keep(cfg.depth, &d, DEFAULT_ACTIVATION_BUDGET_MB), Keep::All);
        assert_eq!(Recompute::All.keep(cfg.depth, &d, DEFAULT_ACTIVATION_BUDGET_MB), Keep::BlockInputs);
        assert_eq!(Recompute::None.keep(cfg.depth, &d, 0), Keep::All);
    }

    #[test]
    fn reads_names_and_the_old_booleans() {
        let read = |s: &str| serde_json::from_str::<Recompute>(s);
        assert_eq!(read("\"auto\"").unwrap(), Recompute::Auto);
        assert_eq!(read("\"none\"").unwrap(), Recompute::None);
        assert_eq!(read("true").unwrap(), Recompute::All);
        assert_eq!(read("false").unwrap(), Recompute::None);
        assert!(read("\"some\"").unwrap_err().to_string().contains("unknown recompute choice `some` (expected auto, all or none)"));
        assert_eq!("all".parse::<Recompute>().unwrap(), Recompute::All);
        assert_eq!("None".parse::<Recompute>().unwrap(), Recompute::None);
        assert_eq!(serde_json::to_string(&Recompute::Auto).unwrap(), "\"auto\"");
    }
}
