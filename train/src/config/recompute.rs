//! Block recompute: which activations a training step keeps for backward. One rule for
//! `mvdit train` and `mvdit bench`, so the benchmark times the trainer's step.

use mvdit_core::{parse_choice, Dims};
use mvdit_model::{block_activation_elems, Keep};
use serde::{Deserialize, Deserializer, Serialize};

/// The activation budget where the memory available is unknown: 224 MiB keeps 176 of
/// deep1000's 1000 blocks at batch 16 and every block of the small presets.
pub const DEFAULT_ACTIVATION_BUDGET_MB: usize = 224;

/// Copies of the parameters a training process holds besides its activations: weights,
/// gradients, AdamW's two moments, EMA, and the gradient buffers the buffer pool keeps from
/// the previous step.
pub const STATE_COPIES: usize = 6;

/// `activation_budget_mb` in a training config (and `mvdit bench --activation-budget-mb`):
/// the MiB of block activations a step with [`Recompute::Auto`] may keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ActivationBudget {
    /// Half of the memory available to this process once its training state is counted
    /// ([`ActivationBudget::mib`]).
    #[default]
    Auto,
    /// This many MiB.
    Mib(usize),
}

impl ActivationBudget {
    /// The MiB a step may keep. Auto: half of `available` bytes (the device's own memory, or
    /// the host's available memory divided among the processes sharing it) after
    /// [`STATE_COPIES`] f32 copies of `params` parameters; the other half is headroom for the
    /// step's transient buffers (one rebuilt block, attention scores, the allocator's slack).
    /// [`DEFAULT_ACTIVATION_BUDGET_MB`] where `available` is unknown.
    pub fn mib(self, available: Option<usize>, params: usize) -> usize {
        match (self, available) {
            (ActivationBudget::Mib(n), _) => n,
            (ActivationBudget::Auto, None) => DEFAULT_ACTIVATION_BUDGET_MB,
            (ActivationBudget::Auto, Some(bytes)) => (bytes.saturating_sub(STATE_COPIES * 4 * params) / 2) >> 20,
        }
    }
}

impl Serialize for ActivationBudget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ActivationBudget::Auto => s.serialize_str("auto"),
            ActivationBudget::Mib(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for ActivationBudget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Mib(usize),
            Name(String),
        }
        match Either::deserialize(d).map_err(|_| serde::de::Error::custom("expected \"auto\" or a number of MiB"))? {
            Either::Mib(n) => Ok(ActivationBudget::Mib(n)),
            Either::Name(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl std::str::FromStr for ActivationBudget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(ActivationBudget::Auto),
            n => n.parse().map(ActivationBudget::Mib).map_err(|_| format!("expected \"auto\" or a number of MiB, got `{s}`")),
        }
    }
}

impl std::fmt::Display for ActivationBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ActivationBudget::Auto => f.write_str("auto"),
            ActivationBudget::Mib(n) => write!(f, "{n} MiB"),
        }
    }
}

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
    fn the_auto_budget_is_half_of_what_the_training_state_leaves() {
        let gib = 1usize << 30;
        assert_eq!(ActivationBudget::Mib(100).mib(Some(gib), 0), 100, "a given figure wins");
        assert_eq!(ActivationBudget::Auto.mib(None, 0), DEFAULT_ACTIVATION_BUDGET_MB);
        assert_eq!(ActivationBudget::Auto.mib(Some(2 * gib), 0), 1024);
        // 24 B per parameter of state: 1 GiB of parameters' state leaves half of the other GiB.
        assert_eq!(ActivationBudget::Auto.mib(Some(2 * gib), gib / 24), 512);
        assert_eq!(ActivationBudget::Auto.mib(Some(gib), gib), 0, "no room: recompute everything");
        let read = |s: &str| serde_json::from_str::<ActivationBudget>(s);
        assert_eq!((read("\"auto\"").unwrap(), read("224").unwrap()), (ActivationBudget::Auto, ActivationBudget::Mib(224)));
        assert!(read("\"lots\"").unwrap_err().to_string().contains("expected \"auto\" or a number of MiB, got `lots`"));
        assert!(read("-1").unwrap_err().to_string().contains("expected \"auto\" or a number of MiB"));
        assert_eq!(serde_json::to_string(&ActivationBudget::Auto).unwrap(), "\"auto\"");
        assert_eq!(serde_json::to_string(&ActivationBudget::Mib(7)).unwrap(), "7");
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
