//! Initialisation as the paper: residual writers (attention W_O, FFN W2) zero, MV-Split alpha 0,
//! beta configurable; other matrices N(0, σ²); biases zero; input-norm gains one.
//! LayerScale (the paper's comparison): writers N(0, σ²) too, λ = `layerscale` everywhere.

use crate::rng::Rng;
use mvdit_core::{Layout, ModelConfig};

/// Initial values of the parameters that differ between residual kinds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Init {
    /// σ of the weight matrices.
    pub weight_std: f64,
    /// MV-Split beta.
    pub beta: f64,
    /// LayerScale λ.
    pub layerscale: f64,
    /// Writers (W_O, W2) at zero; else N(0, σ²) drawn from the writer RNG.
    pub zero_writers: bool,
    /// σ of final_proj.weight and of the patch embedding (None = `weight_std`).
    pub output_std: Option<f64>,
    pub patch_std: Option<f64>,
}

fn is_writer(name: &str) -> bool {
    name.ends_with("operator.proj.weight") || name.ends_with("ffn.w2.weight")
}

/// Host parameters in [`Layout`] order, with zero writers (MV-Split, post-norm).
pub fn init_params(cfg: &ModelConfig, weight_std: f64, beta: f64, rng: &mut Rng) -> Vec<Vec<f32>> {
    let init = Init { weight_std, beta, layerscale: 1.0, zero_writers: true, output_std: None, patch_std: None };
    init_params_with(cfg, &init, rng, &mut Rng::new(0))
}

/// Host parameters in [`Layout`] order. Writers, when not zero, draw from `writer_rng`, so `rng`
/// advances the same way for every residual kind (same other weights, same data stream).
pub fn init_params_with(cfg: &ModelConfig, init: &Init, rng: &mut Rng, writer_rng: &mut Rng) -> Vec<Vec<f32>> {
    let layout = Layout::new(cfg);
    let weight_std = init.weight_std;
    layout
        .specs
        .iter()
        .map(|s| {
            let n = s.numel();
            let name = s.name.as_str();
            if is_writer(name) && !init.zero_writers {
                writer_rng.normals(n).into_iter().map(|v| v * weight_std as f32).collect()
            } else if is_writer(name) || name.ends_with(".alpha") {
                vec![0.0; n]
            } else if name.ends_with(".beta") {
                vec![init.beta as f32; n]
            } else if name.ends_with(".lambda") {
                vec![init.layerscale as f32; n]
            } else if name.starts_with("norm_") {
                vec![1.0; n]
            } else if s.decays() {
                let std = match name {
                    "final_proj.weight" => init.output_std.unwrap_or(weight_std),
                    "patch_embed.patch_proj.weight" => init.patch_std.unwrap_or(weight_std),
                    _ => weight_std,
                };
                rng.normals(n).into_iter().map(|v| v * std as f32).collect()
            } else {
                vec![0.0; n]
            }
        })
        .collect()
}

/// The paper's σ = 0.02 at width 1024, scaled as 0.02·sqrt(1024/D) so branch/trunk ratios match
/// at small widths (see docs/mms-reference.md).
pub fn default_weight_std(hidden: usize) -> f64 {
    0.02 * (1024.0 / hidden as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvdit_core::params::MergeSlots;

    #[test]
    fn writers_and_alpha_start_at_zero_beta_as_asked() {
        let cfg: ModelConfig = serde_json::from_str(
            r#"{"in_channels":1,"patch_size":2,"hidden_size":16,"depth":2,"num_heads":2,"mlp_hidden_dim":8,"context_dim":16}"#,
        )
        .unwrap();
        let p = init_params(&cfg, 0.1, 0.25, &mut Rng::new(0));
        let l = Layout::new(&cfg);
        let b = &l.blocks[1];
        assert!(p[b.wo].iter().all(|&v| v == 0.0) && p[b.w2].iter().all(|&v| v == 0.0));
        let (a1, b2) = match (b.merge1, b.merge2) {
            (MergeSlots::Mvsplit { alpha, .. }, MergeSlots::Mvsplit { beta, .. }) => (alpha, beta),
            other => panic!("{other:?}"),
        };
        assert!(p[a1].iter().all(|&v| v == 0.0) && p[b2].iter().all(|&v| v == 0.25));
        assert!(p[b.wq].iter().any(|&v| v != 0.0));
        assert!((default_weight_std(1024) - 0.02).abs() < 1e-12);
    }

    #[test]
    fn layerscale_draws_writers_without_moving_the_main_stream() {
        let mut cfg: ModelConfig = serde_json::from_str(
            r#"{"in_channels":1,"patch_size":2,"hidden_size":16,"depth":2,"num_heads":2,"mlp_hidden_dim":8,"context_dim":16}"#,
        )
        .unwrap();
        let mut r_mv = Rng::new(7);
        let mv = init_params(&cfg, 0.1, 1.0, &mut r_mv);
        cfg.residual = mvdit_core::Residual::Layerscale;
        let (mut r_ls, mut w) = (Rng::new(7), Rng::new(99));
        let init = Init { weight_std: 0.1, beta: 1.0, layerscale: 1e-3, zero_writers: false, output_std: None, patch_std: None };
        let ls = init_params_with(&cfg, &init, &mut r_ls, &mut w);
        assert_eq!(r_mv, r_ls, "the main stream is consumed identically");
        let (lm, ll) = (Layout::new(&mvdit_core::ModelConfig { residual: Default::default(), ..cfg.clone() }), Layout::new(&cfg));
        let (bm, bl) = (&lm.blocks[1], &ll.blocks[1]);
        assert_eq!(mv[bm.wq], ls[bl.wq]);
        assert_eq!(mv[bm.w13], ls[bl.w13]);
        let wo = &ls[bl.wo];
        let sd = (wo.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / wo.len() as f64).sqrt();
        assert!((sd - 0.1).abs() < 0.03, "writer std {sd}");
        let lam = ll.index_of("blocks.0.layerscale2.lambda").unwrap();
        assert!(ls[lam].iter().all(|&v| v == 1e-3));
    }
}
