//! Gradient norms by parameter group: the (block, family) of every parameter (the spike
//! autopsy's groups, after the official code's classification of parameter names) and the
//! ‖∇W_O‖ / ‖∇W_Q‖ ratios over depth stages, the deep blocks and all blocks
//! (docs/diagnostics.md, "Per-record metrics").

use mvdit_core::params::{Layout, MergeSlots};
use mvdit_core::{mms, Backend};
use mvdit_model::Result;
use serde_json::{json, Map, Value};

/// Depth stages of the W_O/W_Q ratios (the official code's `num_stages`).
pub const STAGES: usize = 4;

/// Where a parameter sits: its block (None: stem, head or class table) and family.
pub type Place = (Option<usize>, &'static str);

/// The (block, family) of every parameter of `layout`, in layout order. Families: `q_proj`,
/// `k_proj`, `v_proj` (weights and biases), `attn_wo`, `ffn_w13`, `ffn_w2`, `mvsplit_norm`
/// (MV-Split α, β: the official fused MV-Split+RMSNorm module, a "Norm" there), `layerscale`,
/// and outside the blocks `patch_embed`, `input_norm`, `context_proj`, `final_proj`.
pub fn families(layout: &Layout) -> Vec<Place> {
    let mut out: Vec<Place> = vec![(None, "other"); layout.specs.len()];
    let mut set = |i: Option<usize>, place: Place| {
        if let Some(i) = i {
            out[i] = place;
        }
    };
    set(Some(layout.patch_w), (None, "patch_embed"));
    set(Some(layout.patch_b), (None, "patch_embed"));
    set(layout.norm_img, (None, "input_norm"));
    set(layout.norm_text, (None, "input_norm"));
    set(layout.context_proj, (None, "context_proj"));
    set(Some(layout.final_w), (None, "final_proj"));
    set(Some(layout.final_b), (None, "final_proj"));
    for (b, s) in layout.blocks.iter().enumerate() {
        let at = Some(b);
        for (w, bias, family) in [(s.wq, s.bq, "q_proj"), (s.wk, s.bk, "k_proj"), (s.wv, s.bv, "v_proj"), (s.w13, s.b13, "ffn_w13"), (s.w2, s.b2, "ffn_w2")] {
            set(Some(w), (at, family));
            set(bias, (at, family));
        }
        set(Some(s.wo), (at, "attn_wo"));
        for m in [s.merge1, s.merge2] {
            let family = if matches!(m, MergeSlots::Mvsplit { .. }) { "mvsplit_norm" } else { "layerscale" };
            for i in m.params() {
                set(Some(i), (at, family));
            }
        }
    }
    out
}

/// The block groups of the record-level ratios: (key, blocks) for every depth stage that holds
/// blocks (`wo_q_ratio_s0` …, [`mms::depth_stage`]) and the deep blocks (`wo_q_ratio_deep`,
/// [`mms::is_deep_layer`]). The stages together hold every block once.
pub fn ratio_groups(depth: usize) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = (0..STAGES).map(|k| (format!("wo_q_ratio_s{k}"), vec![])).collect();
    for i in 0..depth {
        groups[mms::depth_stage(i, depth, STAGES)].1.push(i);
    }
    groups.retain(|g| !g.1.is_empty());
    groups.push(("wo_q_ratio_deep".into(), (0..depth).filter(|&i| mms::is_deep_layer(i, depth)).collect()));
    groups
}

/// (‖∇W_O‖², ‖∇W_Q‖²) of blocks `blocks` (W_Q with its bias where the model has one).
pub fn wo_q_squares<B: Backend>(be: &B, layout: &Layout, grads: &[B::Tensor], blocks: &[usize]) -> Result<(f64, f64)> {
    let wo: Vec<&B::Tensor> = blocks.iter().map(|&i| &grads[layout.blocks[i].wo]).collect();
    let q: Vec<&B::Tensor> = blocks.iter().flat_map(|&i| [Some(layout.blocks[i].wq), layout.blocks[i].bq]).flatten().map(|j| &grads[j]).collect();
    Ok((be.sum_squares(&wo)?, be.sum_squares(&q)?))
}

/// The record-level ratios ‖∇W_O‖ / ‖∇W_Q‖: `wo_q_ratio` over all blocks and one per
/// [`ratio_groups`] group (a ratio with ‖∇W_Q‖ = 0 is left out).
pub fn wo_q_ratios<B: Backend>(be: &B, layout: &Layout, grads: &[B::Tensor]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    let (mut wo_all, mut q_all) = (0.0, 0.0);
    for (key, blocks) in ratio_groups(layout.blocks.len()) {
        let (wo, q) = wo_q_squares(be, layout, grads, &blocks)?;
        if key.starts_with("wo_q_ratio_s") {
            (wo_all, q_all) = (wo_all + wo, q_all + q);
        }
        if let Some(r) = mms::norm_ratio(wo, q) {
            out.insert(key, json!(r));
        }
    }
    if let Some(r) = mms::norm_ratio(wo_all, q_all) {
        out.insert("wo_q_ratio".into(), json!(r));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvdit_core::{ModelConfig, Residual};

    fn layout(residual: Residual, qkv_bias: bool, context_dim: usize) -> Layout {
        let cfg = ModelConfig {
            in_channels: 1,
            patch_size: 2,
            hidden_size: 8,
            depth: 3,
            num_heads: 2,
            mlp_hidden_dim: 16,
            qkv_bias,
            context_dim,
            rope_base: 10000.0,
            residual,
        };
        Layout::new(&cfg)
    }

    #[test]
    fn every_parameter_has_its_block_and_family() {
        for (residual, bias, dc) in [(Residual::Mvsplit, true, 4), (Residual::Layerscale, false, 8), (Residual::Postnorm, false, 8)] {
            let l = layout(residual, bias, dc);
            let f = families(&l);
            assert_eq!(f.len(), l.specs.len());
            for (spec, (block, family)) in l.specs.iter().zip(&f) {
                assert_ne!(*family, "other", "{}", spec.name);
                // The official code's name patterns agree with the slot-based families.
                let want = match spec.name.as_str() {
                    n if n.contains("operator.q_proj") => "q_proj",
                    n if n.contains("operator.k_proj") => "k_proj",
                    n if n.contains("operator.v_proj") => "v_proj",
                    n if n.contains("operator.proj.") => "attn_wo",
                    n if n.contains("ffn.w13") => "ffn_w13",
                    n if n.contains("ffn.w2") => "ffn_w2",
                    n if n.contains("fused_mvsplit_norm") => "mvsplit_norm",
                    n if n.contains("layerscale") => "layerscale",
                    n if n.contains("patch_embed") => "patch_embed",
                    n if n.contains("norm_") => "input_norm",
                    n if n.contains("context_proj") => "context_proj",
                    n if n.contains("final_proj") => "final_proj",
                    n => panic!("unexpected parameter {n}"),
                };
                assert_eq!(*family, want, "{}", spec.name);
                let named_block = spec.name.strip_prefix("blocks.").and_then(|r| r.split('.').next()).and_then(|i| i.parse().ok());
                assert_eq!(*block, named_block, "{}", spec.name);
            }
        }
    }

    #[test]
    fn stages_cover_the_depth_once_and_deep_is_the_last_quarter() {
        let g = ratio_groups(200);
        let keys: Vec<&str> = g.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["wo_q_ratio_s0", "wo_q_ratio_s1", "wo_q_ratio_s2", "wo_q_ratio_s3", "wo_q_ratio_deep"]);
        let stages: Vec<usize> = g[..4].iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(stages, (0..200).collect::<Vec<_>>());
        assert_eq!(g[0].1.len(), 50);
        assert_eq!(g[4].1, (149..200).collect::<Vec<_>>());
        // Fewer blocks than stages: only the stages that hold blocks.
        let g = ratio_groups(2);
        assert_eq!(g.iter().map(|(k, b)| (k.as_str(), b.clone())).collect::<Vec<_>>(), vec![("wo_q_ratio_s0", vec![0]), ("wo_q_ratio_s1", vec![1]), ("wo_q_ratio_deep", vec![0, 1])]);
    }
}
