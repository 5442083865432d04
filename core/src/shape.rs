//! `Dims`: every size of one forward pass, derived once from the config and the input.

use crate::config::{ConfigError, ModelConfig};
use alloc::format;

/// Sizes of one pass (letters as in [`ModelConfig`]); `gh`/`gw` = patch grid rows/columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub p: usize,
    pub gh: usize,
    pub gw: usize,
    pub li: usize,
    pub lt: usize,
    pub l: usize,
    pub d: usize,
    pub nh: usize,
    pub dh: usize,
    pub m: usize,
    pub dc: usize,
}

impl Dims {
    /// Sizes for `b` images of `h`×`w` pixels with `lt` context tokens.
    pub fn new(cfg: &ModelConfig, b: usize, h: usize, w: usize, lt: usize) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let p = cfg.patch_size;
        if b == 0 {
            return Err(ConfigError { field: "batch", message: "must be at least 1".into() });
        }
        if h == 0 || w == 0 || h % p != 0 || w % p != 0 {
            return Err(ConfigError {
                field: "image_size",
                message: format!("image {h}x{w} is not a positive multiple of patch_size {p}"),
            });
        }
        let (gh, gw) = (h / p, w / p);
        Ok(Dims {
            b,
            c: cfg.in_channels,
            h,
            w,
            p,
            gh,
            gw,
            li: gh * gw,
            lt,
            l: gh * gw + lt,
            d: cfg.hidden_size,
            nh: cfg.num_heads,
            dh: cfg.head_dim(),
            m: cfg.mlp_hidden_dim,
            dc: cfg.context_dim,
        })
    }

    /// Rows of the token matrix: B * L.
    pub fn n(&self) -> usize {
        self.b * self.l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Residual;

    #[test]
    fn derives_token_counts_and_rejects_bad_image_sizes() {
        let cfg = ModelConfig {
            in_channels: 1,
            patch_size: 2,
            hidden_size: 32,
            depth: 1,
            num_heads: 2,
            mlp_hidden_dim: 64,
            qkv_bias: false,
            context_dim: 16,
            rope_base: 10000.0,
            residual: Residual::Mvsplit,
        };
        let d = Dims::new(&cfg, 3, 8, 6, 2).unwrap();
        assert_eq!((d.gh, d.gw, d.li, d.l, d.dh, d.n()), (4, 3, 12, 14, 16, 42));
        assert_eq!(Dims::new(&cfg, 1, 7, 8, 1).unwrap_err().field, "image_size");
        assert_eq!(Dims::new(&cfg, 0, 8, 8, 1).unwrap_err().field, "batch");
    }
}
