//! Model configuration (field names as the released model's config) and its validation.

use alloc::format;
use alloc::string::String;
use core::fmt;
use serde::{Deserialize, Serialize};

/// How each block merges a branch output F into the trunk X.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Residual {
    /// X+ = RMSNorm(X + beta*(F - M(F)) + alpha*(M(F) - M(X))), segment-wise token means.
    #[default]
    Mvsplit,
    /// X+ = RMSNorm(X + F): the un-stabilised post-norm baseline (no merge parameters).
    Postnorm,
    /// X+ = RMSNorm(X + lambda*F) with a trainable per-channel lambda [D] (LayerScale).
    Layerscale,
}

impl Residual {
    pub const ALL: [Residual; 3] = [Residual::Mvsplit, Residual::Postnorm, Residual::Layerscale];

    /// The config spelling (`mvsplit`, `postnorm`, `layerscale`).
    pub fn name(self) -> &'static str {
        match self {
            Residual::Mvsplit => "mvsplit",
            Residual::Postnorm => "postnorm",
            Residual::Layerscale => "layerscale",
        }
    }
}

impl fmt::Display for Residual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Residual {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Residual::ALL.into_iter().find(|r| r.name() == s).ok_or_else(|| ConfigError {
            field: "residual",
            message: format!("unknown residual kind `{s}` (known: mvsplit, postnorm, layerscale)"),
        })
    }
}

fn default_rope_base() -> f64 {
    10000.0
}

/// The DiT's hyper-parameters. Dimension letters used across the crates:
/// B batch, C in_channels, H/W image height/width, P patch_size, Li = (H/P)(W/P) image tokens,
/// Lt context tokens, L = Li + Lt, D hidden_size, Nh num_heads, Dh = D/Nh, M mlp_hidden_dim,
/// Dc context_dim, N = B*L rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub in_channels: usize,
    pub patch_size: usize,
    pub hidden_size: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_hidden_dim: usize,
    #[serde(default)]
    pub qkv_bias: bool,
    pub context_dim: usize,
    #[serde(default = "default_rope_base")]
    pub rope_base: f64,
    #[serde(default)]
    pub residual: Residual,
}

/// A config value that cannot work, naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config field `{}`: {}", self.field, self.message)
    }
}

fn positive(field: &'static str, v: usize) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(ConfigError { field, message: "must be at least 1".into() });
    }
    Ok(())
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Values per patch: C * P * P.
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.patch_size * self.patch_size
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("in_channels", self.in_channels)?;
        positive("patch_size", self.patch_size)?;
        positive("hidden_size", self.hidden_size)?;
        positive("depth", self.depth)?;
        positive("num_heads", self.num_heads)?;
        positive("mlp_hidden_dim", self.mlp_hidden_dim)?;
        positive("context_dim", self.context_dim)?;
        if self.hidden_size % self.num_heads != 0 {
            return Err(ConfigError {
                field: "num_heads",
                message: format!("hidden_size {} is not divisible by num_heads {}", self.hidden_size, self.num_heads),
            });
        }
        if self.head_dim() % 4 != 0 {
            return Err(ConfigError {
                field: "num_heads",
                message: format!(
                    "head_dim = hidden_size/num_heads = {} must be divisible by 4 for the 2-D rotary embedding",
                    self.head_dim()
                ),
            });
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return Err(ConfigError { field: "rope_base", message: format!("must be a finite number > 1, got {}", self.rope_base) });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn cfg() -> ModelConfig {
        serde_json::from_str(
            r#"{"in_channels":1,"patch_size":2,"hidden_size":64,"depth":2,"num_heads":2,
                "mlp_hidden_dim":128,"qkv_bias":false,"context_dim":32,"rope_base":10000}"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_released_field_names_with_mvsplit_default() {
        let c = cfg();
        assert_eq!(c.residual, Residual::Mvsplit);
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.patch_dim(), 4);
        c.validate().unwrap();
    }

    #[test]
    fn rejects_indivisible_heads_and_odd_head_dim() {
        let mut c = cfg();
        c.num_heads = 3;
        assert_eq!(c.validate().unwrap_err().field, "num_heads");
        c.num_heads = 8; // head_dim 8: fine
        c.validate().unwrap();
        c.hidden_size = 48;
        c.num_heads = 8; // head_dim 6: not divisible by 4
        assert!(c.validate().unwrap_err().message.contains("divisible by 4"));
    }

    #[test]
    fn residual_kinds_parse_lowercase() {
        for (text, kind) in [("mvsplit", Residual::Mvsplit), ("postnorm", Residual::Postnorm), ("layerscale", Residual::Layerscale)] {
            let mut v: serde_json::Value = serde_json::to_value(cfg()).unwrap();
            v["residual"] = text.into();
            let c: ModelConfig = serde_json::from_value(v).unwrap();
            assert_eq!(c.residual, kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), text);
            assert_eq!(text.parse::<Residual>().unwrap(), kind);
            assert_eq!(kind.to_string(), text);
        }
        assert_eq!("PostNorm".parse::<Residual>().unwrap_err().field, "residual");
        let mut v: serde_json::Value = serde_json::to_value(cfg()).unwrap();
        v["residual"] = "prenorm".into();
        assert!(serde_json::from_value::<ModelConfig>(v).is_err());
    }

    #[test]
    fn rejects_zero_depth_and_unknown_fields() {
        let mut c = cfg();
        c.depth = 0;
        assert_eq!(c.validate().unwrap_err().field, "depth");
        let bad = r#"{"in_channels":1,"patch_size":2,"hidden_size":64,"depth":2,"num_heads":2,
                "mlp_hidden_dim":128,"context_dim":32,"hiden_size":3}"#;
        assert!(serde_json::from_str::<ModelConfig>(bad).is_err());
    }
}
