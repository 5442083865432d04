//! The parameter list: released tensor names, shapes, and where each one sits in a flat
//! `Vec` of tensors. The one source of truth for names, order and weight-decay groups.

use crate::config::{ModelConfig, Residual};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// AdamW decays tensors of 2 or more dimensions only (weights, the patch convolution).
    pub fn decays(&self) -> bool {
        self.shape.len() >= 2
    }
}

/// The parameters of one residual merge, by [`Residual`] kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeSlots {
    /// `blocks.i.fused_mvsplit_norm{1,2}.{alpha,beta}` [D].
    Mvsplit { alpha: usize, beta: usize },
    /// `blocks.i.layerscale{1,2}.lambda` [D].
    Layerscale { lambda: usize },
    /// No parameters.
    Postnorm,
}

impl MergeSlots {
    /// The merge's parameter indices (alpha then beta, or lambda).
    pub fn params(&self) -> impl Iterator<Item = usize> {
        let (a, b) = match *self {
            MergeSlots::Mvsplit { alpha, beta } => (Some(alpha), Some(beta)),
            MergeSlots::Layerscale { lambda } => (Some(lambda), None),
            MergeSlots::Postnorm => (None, None),
        };
        a.into_iter().chain(b)
    }
}

/// Indices of one block's tensors in the flat list. Biases exist only when `qkv_bias`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSlots {
    pub wq: usize,
    pub wk: usize,
    pub wv: usize,
    pub bq: Option<usize>,
    pub bk: Option<usize>,
    pub bv: Option<usize>,
    pub wo: usize,
    pub w13: usize,
    pub b13: Option<usize>,
    pub w2: usize,
    pub b2: Option<usize>,
    /// The merge after attention, then the one after the FFN.
    pub merge1: MergeSlots,
    pub merge2: MergeSlots,
}

/// Every parameter of a [`ModelConfig`] in a fixed order, plus named indices into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub specs: Vec<ParamSpec>,
    pub patch_w: usize,
    pub patch_b: usize,
    pub norm_img: Option<usize>,
    pub norm_text: Option<usize>,
    pub context_proj: Option<usize>,
    pub blocks: Vec<BlockSlots>,
    pub final_w: usize,
    pub final_b: usize,
}

/// A contiguous piece of a model: blocks `blocks`, with the stem before them (patch embedding,
/// input norms, context projection; only when they start at block 0) and `final_proj` after
/// them (only when they end at the last block) when asked. A depth stage is a part; so is the
/// stem alone (`0..0` with `stem`) and the head alone (`depth..depth` with `head`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub blocks: core::ops::Range<usize>,
    pub stem: bool,
    pub head: bool,
}

impl Part {
    /// Blocks alone.
    pub fn blocks(blocks: core::ops::Range<usize>) -> Self {
        Part { blocks, stem: false, head: false }
    }

    /// The depth stage of blocks `blocks` in a model of depth `depth`: with the stem when it
    /// starts at block 0, with the head when it ends at the last block.
    pub fn stage(blocks: core::ops::Range<usize>, depth: usize) -> Self {
        Part { stem: blocks.start == 0, head: blocks.end == depth, blocks }
    }

    /// Whether this part fits a model of depth `depth`: blocks within it, the stem only before
    /// block 0, the head only after the last block, and something in it.
    pub fn fits(&self, depth: usize) -> bool {
        let b = &self.blocks;
        b.start <= b.end && b.end <= depth && (!self.stem || b.start == 0) && (!self.head || b.end == depth) && (b.start < b.end || self.stem || self.head)
    }
}

impl Layout {
    pub fn new(cfg: &ModelConfig) -> Self {
        let (d, c, p, m, dc) = (cfg.hidden_size, cfg.in_channels, cfg.patch_size, cfg.mlp_hidden_dim, cfg.context_dim);
        let mut specs = Vec::new();
        let mut add = |name: String, shape: Vec<usize>| {
            specs.push(ParamSpec { name, shape });
            specs.len() - 1
        };
        let patch_w = add("patch_embed.patch_proj.weight".into(), vec![d, c, p, p]);
        let patch_b = add("patch_embed.patch_proj.bias".into(), vec![d]);
        let bias = cfg.qkv_bias;
        let norm_img = bias.then(|| add("norm_img_input.weight".into(), vec![d]));
        let norm_text = bias.then(|| add("norm_text_input.weight".into(), vec![d]));
        let context_proj = (dc != d).then(|| add("context_proj.weight".into(), vec![d, dc]));
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let pre = format!("blocks.{i}.");
            let mut lin = |n: &str, rows: usize, cols: usize, with_bias: bool| {
                let w = add(format!("{pre}{n}.weight"), vec![rows, cols]);
                let b = with_bias.then(|| add(format!("{pre}{n}.bias"), vec![rows]));
                (w, b)
            };
            let (wq, bq) = lin("operator.q_proj", d, d, bias);
            let (wk, bk) = lin("operator.k_proj", d, d, bias);
            let (wv, bv) = lin("operator.v_proj", d, d, bias);
            let (wo, _) = lin("operator.proj", d, d, false);
            let (w13, b13) = lin("ffn.w13", 2 * m, d, bias);
            let (w2, b2) = lin("ffn.w2", d, m, bias);
            let mut merge = |which: usize| match cfg.residual {
                Residual::Mvsplit => {
                    let alpha = add(format!("{pre}fused_mvsplit_norm{which}.alpha"), vec![d]);
                    let beta = add(format!("{pre}fused_mvsplit_norm{which}.beta"), vec![d]);
                    MergeSlots::Mvsplit { alpha, beta }
                }
                Residual::Layerscale => MergeSlots::Layerscale { lambda: add(format!("{pre}layerscale{which}.lambda"), vec![d]) },
                Residual::Postnorm => MergeSlots::Postnorm,
            };
            let (merge1, merge2) = (merge(1), merge(2));
            blocks.push(BlockSlots { wq, wk, wv, bq, bk, bv, wo, w13, b13, w2, b2, merge1, merge2 });
        }
        let final_w = add("final_proj.weight".into(), vec![p * p * c, d]);
        let final_b = add("final_proj.bias".into(), vec![p * p * c]);
        Layout { specs, patch_w, patch_b, norm_img, norm_text, context_proj, blocks, final_w, final_b }
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }

    pub fn numel(&self) -> usize {
        self.specs.iter().map(ParamSpec::numel).sum()
    }

    /// The parameter indices of blocks `blocks` (a depth/pipeline stage), which are contiguous in
    /// this order: a stage that starts at block 0 also owns the stem (patch embedding, input
    /// norms, context projection), one that ends at the last block also owns `final_proj`.
    /// Empty for an empty or out-of-range block range.
    pub fn stage_params(&self, blocks: core::ops::Range<usize>) -> core::ops::Range<usize> {
        let depth = self.blocks.len();
        if blocks.start >= blocks.end || blocks.end > depth {
            return 0..0;
        }
        self.part_params(&Part::stage(blocks, depth))
    }

    /// The parameter indices of `part` (contiguous; see [`Part`]).
    pub fn part_params(&self, part: &Part) -> core::ops::Range<usize> {
        let start_of = |i: usize| if i < self.blocks.len() { self.blocks[i].wq } else { self.final_w };
        let lo = if part.stem { 0 } else { start_of(part.blocks.start) };
        let hi = if part.head { self.specs.len() } else { start_of(part.blocks.end) };
        lo..hi.max(lo)
    }

    /// The parameter indices of block `i` alone (contiguous).
    pub fn block_params(&self, i: usize) -> core::ops::Range<usize> {
        self.part_params(&Part::blocks(i..i + 1))
    }

    /// Values in parameter indices `range`.
    pub fn numel_of(&self, range: core::ops::Range<usize>) -> usize {
        self.specs[range].iter().map(ParamSpec::numel).sum()
    }
}

/// Constant buffers of the released checkpoints that carry no parameter: accepted on load when
/// they hold only ones (`qk_norm` gains, the fused norms' gains, fixed input-norm gains).
pub fn is_constant_ones_buffer(name: &str, cfg: &ModelConfig) -> bool {
    let input_norm = name == "norm_img_input.weight" || name == "norm_text_input.weight";
    (input_norm && !cfg.qkv_bias)
        || (name.starts_with("blocks.")
            && (name.ends_with(".qk_norm.query_norm.weight")
                || name.ends_with(".qk_norm.key_norm.weight")
                || name.ends_with(".fused_mvsplit_norm1.weight")
                || name.ends_with(".fused_mvsplit_norm2.weight")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Residual;

    fn cfg(bias: bool, dc: usize) -> ModelConfig {
        ModelConfig {
            in_channels: 2,
            patch_size: 2,
            hidden_size: 16,
            depth: 3,
            num_heads: 2,
            mlp_hidden_dim: 24,
            qkv_bias: bias,
            context_dim: dc,
            rope_base: 10000.0,
            residual: Residual::Mvsplit,
        }
    }

    #[test]
    fn counts_match_the_released_layout() {
        let l = Layout::new(&cfg(false, 16));
        // patch w,b + per block (q,k,v,o,w13,w2 + 4 gates) + final w,b
        assert_eq!(l.specs.len(), 2 + 3 * 10 + 2);
        assert!(l.context_proj.is_none() && l.norm_img.is_none());
        assert_eq!(l.specs[l.blocks[2].w13].name, "blocks.2.ffn.w13.weight");
        assert_eq!(l.specs[l.blocks[2].w13].shape, vec![48, 16]);
        assert_eq!(l.specs[l.final_w].shape, vec![8, 16]);
        let lb = Layout::new(&cfg(true, 8));
        assert_eq!(lb.specs.len(), 2 + 2 + 1 + 3 * 15 + 2);
        assert_eq!(lb.specs[lb.context_proj.unwrap()].shape, vec![16, 8]);
        assert_eq!(lb.index_of("blocks.1.ffn.w2.bias"), lb.blocks[1].b2);
    }

    #[test]
    fn merge_parameters_follow_the_residual_kind() {
        let mut c = cfg(false, 16);
        let mv = Layout::new(&c);
        assert!(matches!(mv.blocks[1].merge2, MergeSlots::Mvsplit { .. }));
        assert_eq!(mv.blocks[1].merge2.params().map(|i| mv.specs[i].name.clone()).collect::<Vec<_>>(), [
            "blocks.1.fused_mvsplit_norm2.alpha",
            "blocks.1.fused_mvsplit_norm2.beta"
        ]);
        c.residual = Residual::Layerscale;
        let ls = Layout::new(&c);
        assert_eq!(ls.specs.len(), 2 + 3 * 8 + 2);
        let lam = ls.index_of("blocks.2.layerscale1.lambda").unwrap();
        assert_eq!(ls.blocks[2].merge1, MergeSlots::Layerscale { lambda: lam });
        assert_eq!(ls.specs[lam].shape, vec![16]);
        assert!(!ls.specs[lam].decays());
        assert!(ls.index_of("blocks.0.fused_mvsplit_norm1.alpha").is_none());
        c.residual = Residual::Postnorm;
        let pn = Layout::new(&c);
        assert_eq!(pn.specs.len(), 2 + 3 * 6 + 2);
        assert_eq!(pn.blocks[0].merge1, MergeSlots::Postnorm);
        assert_eq!(pn.blocks[0].merge1.params().count(), 0);
    }

    #[test]
    fn stages_own_contiguous_parameter_ranges() {
        for bias in [false, true] {
            let l = Layout::new(&cfg(bias, 8));
            let (a, b, c) = (l.stage_params(0..1), l.stage_params(1..2), l.stage_params(2..3));
            assert_eq!((a.start, a.end, b.end, c.end), (0, b.start, c.start, l.specs.len()));
            assert!(a.contains(&l.patch_w) && a.contains(&l.context_proj.unwrap()) && a.contains(&l.blocks[0].merge2.params().last().unwrap()));
            assert!(c.contains(&l.final_b) && c.contains(&l.blocks[2].wq) && !b.contains(&l.blocks[2].wq));
            assert_eq!(l.stage_params(0..3), 0..l.specs.len());
            assert_eq!(l.numel_of(a) + l.numel_of(b) + l.numel_of(c), l.numel());
            assert_eq!(l.stage_params(2..5), 0..0);
        }
    }

    #[test]
    fn the_stem_the_blocks_and_the_head_are_parts_that_tile_a_stage() {
        let l = Layout::new(&cfg(true, 8));
        let stem = l.part_params(&Part { blocks: 0..0, stem: true, head: false });
        let blocks = l.part_params(&Part::blocks(0..3));
        let head = l.part_params(&Part { blocks: 3..3, stem: false, head: true });
        assert_eq!((stem.start, stem.end, blocks.end, head.end), (0, blocks.start, head.start, l.specs.len()));
        assert_eq!((stem.end, head.start), (l.blocks[0].wq, l.final_w));
        assert_eq!(l.part_params(&Part { blocks: 0..2, stem: true, head: false }), l.stage_params(0..2));
        assert_eq!(l.part_params(&Part::blocks(1..2)), l.block_params(1));
        assert!(Part::blocks(1..2).fits(3) && Part { blocks: 3..3, stem: false, head: true }.fits(3));
        assert!(!Part::blocks(1..1).fits(3) && !Part { blocks: 1..2, stem: true, head: false }.fits(3) && !Part::blocks(2..4).fits(3));
    }

    #[test]
    fn decay_groups_and_constant_buffers() {
        let l = Layout::new(&cfg(false, 16));
        assert!(l.specs[l.patch_w].decays() && !l.specs[l.patch_b].decays());
        assert!(is_constant_ones_buffer("blocks.0.qk_norm.key_norm.weight", &cfg(false, 16)));
        assert!(is_constant_ones_buffer("norm_img_input.weight", &cfg(false, 16)));
        assert!(!is_constant_ones_buffer("norm_img_input.weight", &cfg(true, 16)));
        assert!(!is_constant_ones_buffer("blocks.0.ffn.w2.weight", &cfg(false, 16)));
    }
}
