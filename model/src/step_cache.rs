//! Step caching for deep DiTs: between adjacent sampling steps most blocks see almost the same
//! input, so the residual update (output minus input) of a unit of blocks computed at one step
//! is reused at the next while the unit's input has moved less than `threshold` (relative RMS)
//! from the input it was computed at; every `refresh`-th model call computes every unit.
//! Threshold 0 reuses nothing (and the cached passes then equal the plain ones bit for bit).
//!
//! A unit is one block of a model held whole, and one stage of a streamed or 16-bit model: a
//! reused stage is neither read from the file nor unpacked.

use crate::dit::{Dit, StageIn, StageOut};
use crate::error::{Error, Result};
use crate::tape::Keep;
use mvdit_core::ops::rope_tables;
use mvdit_core::{Backend, Dims, ModelConfig, Part};
use std::ops::Range;

/// One unit's last computed input (host), its update (device) and the model call it was
/// computed in.
struct Entry<T> {
    input: Vec<f32>,
    update: T,
    call: usize,
}

/// What a sampler carries from one model call to the next.
pub struct StepCache<T> {
    threshold: f64,
    refresh: usize,
    calls: usize,
    /// Whether this call computes every unit.
    fresh: bool,
    /// The trunk shape the entries hold ([B, L, D]); a call of another shape starts afresh.
    shape: Vec<usize>,
    entries: Vec<Option<Entry<T>>>,
    /// Block evaluations skipped, and all.
    pub skipped: usize,
    pub total: usize,
}

/// The relative RMS distance of `x` from `reference` (also `mvdit samplers`' distance from
/// its reference).
pub fn relative_change(x: &[f32], reference: &[f32]) -> f64 {
    let d: f64 = x.iter().zip(reference).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let r: f64 = reference.iter().map(|b| (*b as f64).powi(2)).sum();
    (d / r.max(1e-30)).sqrt()
}

impl<T> StepCache<T> {
    /// Reuse below `threshold`; every `refresh`-th call (from the first) computes everything
    /// (0: only the first).
    pub fn new(threshold: f64, refresh: usize) -> Self {
        StepCache { threshold, refresh, calls: 0, fresh: true, shape: Vec::new(), entries: Vec::new(), skipped: 0, total: 0 }
    }

    /// The fraction of block evaluations skipped so far.
    pub fn skipped_fraction(&self) -> f64 {
        self.skipped as f64 / self.total.max(1) as f64
    }

    /// Starts a model call whose trunk has `shape`, cut into `units` units.
    fn begin(&mut self, shape: &[usize], units: usize) {
        if self.shape != shape || self.entries.len() != units {
            self.entries.clear();
            self.shape = shape.to_vec();
        }
        self.entries.resize_with(units, || None);
        self.fresh = self.calls == 0 || (self.refresh > 0 && self.calls % self.refresh == 0);
        self.calls += 1;
    }

    /// The update to add for unit `k` (`blocks` blocks) at the trunk whose host copy is
    /// `input`, when it may be reused; counts the unit's blocks either way.
    fn reuse(&mut self, k: usize, blocks: usize, input: &[f32]) -> Option<&T> {
        self.total += blocks;
        let e = self.entries[k].as_ref().filter(|e| !self.fresh && relative_change(input, &e.input) < self.threshold)?;
        self.skipped += blocks;
        Some(&e.update)
    }

    fn store(&mut self, k: usize, input: Vec<f32>, update: T) {
        self.entries[k] = Some(Entry { input, update, call: self.calls });
    }

    /// The first unit from `k` on this call is expected to compute: on a fresh call `k`, else
    /// the first one with no entry or computed in the previous call (a guess: where the
    /// streamed model starts reading ahead).
    fn expected_from(&self, k: usize) -> Option<usize> {
        (k..self.entries.len()).find(|&j| self.fresh || self.entries[j].as_ref().is_none_or(|e| e.call + 1 == self.calls))
    }

    /// Unit `k` (`blocks` blocks) applied to the trunk `t`: its update reused, or `run(t)`
    /// computed (given `expected`, the unit expected next) and its update remembered.
    fn unit<B: Backend<Tensor = T>>(
        &mut self,
        be: &B,
        k: usize,
        blocks: usize,
        t: T,
        run: impl FnOnce(T, Option<usize>) -> Result<T>,
    ) -> Result<T> {
        let host = be.download(&t)?;
        if let Some(update) = self.reuse(k, blocks, &host) {
            return Ok(be.axpby(1.0, &t, 1.0, update)?);
        }
        let input = be.upload(&host, &self.shape)?;
        let out = run(t, self.expected_from(k + 1))?;
        let update = be.axpby(1.0, &out, -1.0, &input)?;
        self.store(k, host, update);
        Ok(out)
    }
}

impl<B: Backend> Dit<B> {
    /// The velocity as [`Dit::forward`] gives it, each block's update reused from `cache` while
    /// the block's input stays within the cache's threshold of the input it was computed at.
    pub fn velocity_cached(&self, be: &B, x: &B::Tensor, context: B::Tensor, cache: &mut StepCache<B::Tensor>) -> Result<B::Tensor> {
        if !(self.has_stem() && self.has_head()) {
            return Err(Error::new("step caching needs the whole model"));
        }
        let dims = self.dims_of(be, x, &context)?;
        let (mut t, _) = self.stem_forward(be, x, context, &dims)?;
        let (cos, sin) = rope_tables::<f32>(dims.dh, dims.gh, dims.gw, self.cfg.rope_base);
        let (cos, sin) = (be.upload(&cos, &[dims.li, dims.dh / 2])?, be.upload(&sin, &[dims.li, dims.dh / 2])?);
        cache.begin(be.shape(&t), self.cfg.depth);
        for i in self.blocks() {
            t = cache.unit(be, i, 1, t, |t, _| Ok(self.block_forward(be, t, &self.layout.blocks[i], &cos, &sin, &dims)?.1))?;
        }
        Ok(self.head_forward(be, &t, &dims)?.0)
    }
}

/// A part of a model held in stages, as a cached pass asks for it.
pub enum Piece {
    /// The stem alone.
    Stem,
    /// Stage `k`'s blocks alone.
    Stage(usize),
    /// The head alone.
    Head,
}

impl Piece {
    /// The [`Part`] this piece is of a model of `cfg` in `stages`.
    pub fn part(&self, cfg: &ModelConfig, stages: &[Range<usize>]) -> Part {
        match self {
            Piece::Stem => Part { blocks: 0..0, stem: true, head: false },
            Piece::Stage(k) => Part::blocks(stages[*k].clone()),
            Piece::Head => Part { blocks: cfg.depth..cfg.depth, stem: false, head: true },
        }
    }
}

/// The velocity of a model held in `stages` of blocks, each stage's update reused from
/// `cache` as [`Dit::velocity_cached`] reuses a block's: the stem and the head are computed
/// on every call, a stage only when it is not reused. `load(piece, next)` gives a piece's
/// parameters on the device; `next` is the stage this call is expected to ask for after it
/// (a hint for reading ahead).
pub fn velocity_in_stages<B: Backend>(
    be: &B,
    cfg: &ModelConfig,
    stages: &[Range<usize>],
    x: &B::Tensor,
    context: B::Tensor,
    cache: &mut StepCache<B::Tensor>,
    mut load: impl FnMut(Piece, Option<usize>) -> Result<Dit<B>>,
) -> Result<B::Tensor> {
    let xs = be.shape(x).to_vec();
    let lt = be.shape(&context).get(1).copied().unwrap_or(0);
    let tokens = |out| match out {
        StageOut::Tokens(t) => Ok(t),
        StageOut::Velocity(_) => Err(Error::new("internal: a part without the head handed on a velocity")),
    };
    let stem = load(Piece::Stem, None)?;
    let mut t = tokens(stem.stage_forward(be, StageIn::Inputs { x, context }, Keep::Nothing, None)?.0)?;
    let dims = Dims::new(cfg, xs[0], xs[2], xs[3], lt)?;
    cache.begin(be.shape(&t), stages.len());
    for (k, r) in stages.iter().enumerate() {
        t = cache.unit(be, k, r.len(), t, |t, next| {
            let stage = load(Piece::Stage(k), next)?;
            tokens(stage.stage_forward(be, StageIn::Tokens { t, dims }, Keep::Nothing, None)?.0)
        })?;
    }
    match load(Piece::Head, None)?.stage_forward(be, StageIn::Tokens { t, dims }, Keep::Nothing, None)?.0 {
        StageOut::Velocity(v) => Ok(v),
        StageOut::Tokens(_) => Err(Error::new("internal: the head handed on tokens")),
    }
}
