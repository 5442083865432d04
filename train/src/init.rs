//! Initialisation as the paper: residual writers (attention W_O, FFN W2) zero, MV-Split alpha 0,
//! beta configurable; other matrices N(0, σ²); biases zero; input-norm gains one.

use crate::rng::Rng;
use mvdit_core::{Layout, ModelConfig};

/// Host parameters in [`Layout`] order.
pub fn init_params(cfg: &ModelConfig, weight_std: f64, beta: f64, rng: &mut Rng) -> Vec<Vec<f32>> {
    let layout = Layout::new(cfg);
    layout
        .specs
        .iter()
        .map(|s| {
            let n = s.numel();
            let name = s.name.as_str();
            if name.ends_with("operator.proj.weight") || name.ends_with("ffn.w2.weight") || name.ends_with(".alpha") {
                vec![0.0; n]
            } else if name.ends_with(".beta") {
                vec![beta as f32; n]
            } else if name.starts_with("norm_") {
                vec![1.0; n]
            } else if s.decays() {
                rng.normals(n).into_iter().map(|v| v * weight_std as f32).collect()
            } else {
                vec![0.0; n]
            }
        })
        .collect()
}

/// The paper's σ = 0.02 at width 1024, scaled as 0.02·sqrt(1024/D) so branch/trunk ratios match
/// at small widths (see ../shared/notes/mms-at-small-scale.md).
pub fn default_weight_std(hidden: usize) -> f64 {
    0.02 * (1024.0 / hidden as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(p[b.alpha1].iter().all(|&v| v == 0.0) && p[b.beta2].iter().all(|&v| v == 0.25));
        assert!(p[b.wq].iter().any(|&v| v != 0.0));
        assert!((default_weight_std(1024) - 0.02).abs() < 1e-12);
    }
}
