//! What a training forward keeps for backward ([`Keep`], [`Tape`]), how much that is
//! ([`block_activation_elems`], [`tape_elems`]: `mvdit plan` and the recompute rule count with
//! them), and what backward returns ([`Grads`], [`StageGrads`]).

use mvdit_core::{Backend, Dims, ModelConfig};
use std::ops::Range;

/// What a training forward keeps for backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Nothing: inference.
    Nothing,
    /// Every block activation.
    All,
    /// Only each block's input; backward recomputes the rest block by block.
    BlockInputs,
    /// Block recompute for all but the last n blocks, which keep every activation (n = depth
    /// is [`Keep::All`], 0 is [`Keep::BlockInputs`]). Backward runs the last blocks first and
    /// frees their activations while the gradients grow, so a few hundred kept blocks need not
    /// raise the peak memory; each saves a forward recompute. See
    /// [`block_activation_elems`] to size n from a memory budget.
    Tail(usize),
}

impl Keep {
    /// How many of a `depth`-block model's blocks keep every activation (none for inference).
    pub fn kept_blocks(self, depth: usize) -> usize {
        match self {
            Keep::Nothing | Keep::BlockInputs => 0,
            Keep::All => depth,
            Keep::Tail(n) => n.min(depth),
        }
    }
}

/// Activations of one block (shapes: [B, L, D] unless noted). Keep [`block_activation_elems`]
/// in step with this list: `mvdit plan` counts memory with it.
pub(crate) struct BlockActs<T> {
    pub(crate) x: T,
    pub(crate) q: T,
    pub(crate) k: T,
    pub(crate) qn: T,
    pub(crate) kn: T,
    /// [B*L*Nh]
    pub(crate) rq: T,
    pub(crate) rk: T,
    pub(crate) v: T,
    pub(crate) o: T,
    /// [B, Nh, L]
    pub(crate) lse: T,
    pub(crate) a: T,
    /// [B*L]
    pub(crate) r1: T,
    pub(crate) x1: T,
    /// [B, L, 2M]
    pub(crate) gv: T,
    /// [B, L, M]
    pub(crate) h: T,
    pub(crate) f: T,
    pub(crate) r2: T,
}

/// Values one block keeps for backward with [`Keep::All`]: ten [B, L, D] tensors (x, q, k, the
/// normed q and k, v, attention output o, attention branch a, the mid trunk x1, FFN branch f),
/// the SwiGLU input [B, L, 2M] and output [B, L, M], two QK-norm rstd [B*L*Nh], the log-sum-exp
/// [B, Nh, L] and two merge rstd [B*L].
pub fn block_activation_elems(d: &Dims) -> usize {
    let n = d.n();
    n * (10 * d.d + 3 * d.m + 3 * d.nh + 2)
}

/// Values a training forward's [`Tape`] holds for blocks `blocks` of a model (with the stem when
/// the range starts at 0, the head when it ends at the last block): block activations
/// ([`block_activation_elems`] each) or, with [`Keep::BlockInputs`], one [B, L, D] per block
/// ([`Keep::Tail`]: the first, then the second for its last n blocks).
/// Backward with block recompute needs one block's activations on top of this.
pub fn tape_elems(cfg: &ModelConfig, d: &Dims, blocks: Range<usize>, keep: Keep) -> usize {
    let (acts, input) = (block_activation_elems(d), d.n() * d.d);
    let blocks_total: usize = match keep {
        Keep::Nothing => return 0,
        Keep::All => blocks.len() * acts,
        Keep::BlockInputs => blocks.len() * input,
        Keep::Tail(n) => blocks.clone().map(|i| if i + n < cfg.depth { input } else { acts }).sum(),
    };
    let rope = 2 * d.li * (d.dh / 2);
    let mut total = rope + blocks_total;
    if blocks.start == 0 {
        // patch rows, embedded image + its rstd, projected context + its rstd (+ the raw context
        // when projected)
        let (img, ctx) = (d.b * d.li, d.b * d.lt);
        total += img * d.c * d.p * d.p + img * (d.d + 1) + ctx * (d.d + 1);
        if cfg.context_dim != cfg.hidden_size {
            total += ctx * d.dc;
        }
    }
    if blocks.end == cfg.depth {
        total += d.b * d.li * d.d; // the image tokens final_proj reads
    }
    total
}

/// Saved state of one block.
pub(crate) enum Saved<T> {
    Acts(Box<BlockActs<T>>),
    Input(T),
}

/// Values of the stem (patch embedding, input norms, context projection) kept for backward.
pub(crate) struct StemTape<T> {
    pub(crate) rows: T,
    pub(crate) img: T,
    pub(crate) r_img: T,
    /// The context input, kept only when context_proj needs it for its weight gradient.
    pub(crate) ctx: Option<T>,
    pub(crate) ctx_p: T,
    pub(crate) r_ctx: T,
}

/// Saved state of a training forward (of a whole model or a stage), consumed by backward.
pub struct Tape<T> {
    pub(crate) dims: Dims,
    pub(crate) cos: T,
    pub(crate) sin: T,
    pub(crate) stem: Option<StemTape<T>>,
    pub(crate) blocks: Vec<Saved<T>>,
    pub(crate) out_img: Option<T>,
}

impl<T> Tape<T> {
    /// The sizes of the pass.
    pub fn dims(&self) -> Dims {
        self.dims
    }

    /// Values held (the measured counterpart of [`tape_elems`]).
    pub fn elems<B: Backend<Tensor = T>>(&self, be: &B) -> usize {
        let n = |t: &T| be.shape(t).iter().product::<usize>();
        let mut total = n(&self.cos) + n(&self.sin) + self.out_img.as_ref().map_or(0, n);
        if let Some(s) = &self.stem {
            total += n(&s.rows) + n(&s.img) + n(&s.r_img) + s.ctx.as_ref().map_or(0, n) + n(&s.ctx_p) + n(&s.r_ctx);
        }
        for b in &self.blocks {
            total += match b {
                Saved::Input(x) => n(x),
                Saved::Acts(a) => [&a.x, &a.q, &a.k, &a.qn, &a.kn, &a.rq, &a.rk, &a.v, &a.o, &a.lse, &a.a, &a.r1, &a.x1, &a.gv, &a.h, &a.f, &a.r2]
                    .into_iter()
                    .map(n)
                    .sum(),
            };
        }
        total
    }
}

/// Gradients of every parameter (in [`Layout`] order, compute shapes) and of the context input.
pub struct Grads<T> {
    pub params: Vec<T>,
    pub context: T,
}

/// Gradients of a stage: its parameters (in its `params` order) and its input — d context for a
/// stage with the stem, d tokens [B, L, D] for the others.
pub struct StageGrads<T> {
    pub params: Vec<T>,
    pub d_input: T,
}

