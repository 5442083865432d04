//! Step caching for deep DiTs: between adjacent sampling steps most blocks see almost the same
//! input, so a block's residual update (its output minus its input) computed at one step is
//! reused at the next while the block's input has moved less than `threshold` (relative RMS)
//! from the input it was computed at; every `refresh`-th model call computes every block.
//! Threshold 0 reuses nothing (and [`Dit::velocity_cached`] then equals [`Dit::forward`]).

use crate::dit::Dit;
use crate::error::{Error, Result};
use mvdit_core::ops::rope_tables;
use mvdit_core::Backend;

/// One block's last computed input (host) and its update (device).
struct Entry<T> {
    input: Vec<f32>,
    update: T,
}

/// What a sampler carries from one model call to the next.
pub struct StepCache<T> {
    threshold: f64,
    refresh: usize,
    calls: usize,
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
        StepCache { threshold, refresh, calls: 0, shape: Vec::new(), entries: Vec::new(), skipped: 0, total: 0 }
    }

    /// The fraction of block evaluations skipped so far.
    pub fn skipped_fraction(&self) -> f64 {
        self.skipped as f64 / self.total.max(1) as f64
    }
}

impl<B: Backend> Dit<B> {
    /// The velocity as [`Dit::forward`] gives it, each block's update reused from `cache` while
    /// the block's input stays within the cache's threshold of the input it was computed at.
    pub fn velocity_cached(&self, be: &B, x: &B::Tensor, context: B::Tensor, cache: &mut StepCache<B::Tensor>) -> Result<B::Tensor> {
        if !(self.has_stem() && self.has_head()) {
            return Err(Error::new("step caching needs the whole model"));
        }
        let l = &self.layout;
        let dims = self.dims_of(be, x, &context)?;
        let (mut t, _) = self.stem_forward(be, x, context, &dims)?;
        let (cos, sin) = rope_tables::<f32>(dims.dh, dims.gh, dims.gw, self.cfg.rope_base);
        let (cos, sin) = (be.upload(&cos, &[dims.li, dims.dh / 2])?, be.upload(&sin, &[dims.li, dims.dh / 2])?);
        let shape = be.shape(&t).to_vec();
        if cache.shape != shape {
            cache.entries.clear();
            cache.shape = shape.clone();
        }
        let fresh = cache.calls == 0 || (cache.refresh > 0 && cache.calls % cache.refresh == 0);
        cache.calls += 1;
        cache.entries.resize_with(self.cfg.depth, || None);
        for i in self.blocks() {
            cache.total += 1;
            let host = be.download(&t)?;
            if let Some(e) = cache.entries[i].as_ref().filter(|e| !fresh && relative_change(&host, &e.input) < cache.threshold) {
                t = be.axpby(1.0, &t, 1.0, &e.update)?;
                cache.skipped += 1;
                continue;
            }
            let input = be.upload(&host, &shape)?;
            t = self.block_forward(be, t, &l.blocks[i], &cos, &sin, &dims)?.1;
            let update = be.axpby(1.0, &t, -1.0, &input)?;
            cache.entries[i] = Some(Entry { input: host, update });
        }
        let (out_img, _) = be.split_tokens(&t, dims.li)?;
        let out_rows = be.linear(&out_img, self.p(l.final_w), Some(self.p(l.final_b)))?;
        Ok(be.unpatchify(&out_rows, [dims.b, dims.c, dims.h, dims.w], dims.p)?)
    }
}
