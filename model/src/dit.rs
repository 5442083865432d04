//! The MV-Split DiT over any [`Backend`]: forward, hand-written backward, block recompute.
//! Math: tests/golden/README.md. Shapes use the letters of [`mvdit_core::ModelConfig`].

use crate::error::{Error, Result};
use crate::probe::{Probe, Tap};
use crate::tape::{BlockActs, Grads, Keep, Saved, StageGrads, StemTape, Tape};
use mvdit_core::ops::{rope_tables, NORM_EPS, QK_NORM_EPS};
use mvdit_core::params::{BlockSlots, MergeSlots};
use mvdit_core::{Backend, Dims, Layout, ModelConfig, Part};
use std::ops::Range;

/// Parameters on the device, in [`Layout`] order. The patch convolution [D, C, P, P] is kept as
/// the equivalent linear weight [D, C*P*P]; everything else has its released shape.
///
/// A `Dit` is either the whole model or one depth (pipeline) stage: blocks `blocks()` and the
/// parameters of [`Layout::stage_params`] for them, i.e. the stem when it starts at block 0 and
/// `final_proj` when it ends at the last block. `params[j]` is layout index `param_range().start + j`.
pub struct Dit<B: Backend> {
    pub cfg: ModelConfig,
    pub layout: Layout,
    pub params: Vec<B::Tensor>,
    blocks: Range<usize>,
    first: usize,
}

/// What a stage's forward receives.
pub enum StageIn<'a, T> {
    /// The model inputs (the stage with the stem): x [B, C, H, W], context [B, Lt, Dc].
    Inputs { x: &'a T, context: T },
    /// The trunk [B, L, D] the previous stage handed on, and the pass's sizes.
    Tokens { t: T, dims: Dims },
}

/// What a stage's forward hands on.
pub enum StageOut<T> {
    /// The velocity [B, C, H, W] (the stage with the head).
    Velocity(T),
    /// The trunk [B, L, D] for the next stage.
    Tokens(T),
}

/// Told as soon as a group of parameter gradients is final during backward (the head, then each
/// block from the last, then the stem), so gradient communication can start while backward goes
/// on. Every call order is the same on every process for the same model.
pub trait GradHook<T> {
    /// `grads`: (layout index, gradient) of the finished group.
    fn ready(&mut self, grads: &[(usize, &T)]) -> Result<()>;
}

/// The compute shape of a parameter: 4-D convolution weights become [out, in*kh*kw].
pub fn compute_shape(shape: &[usize]) -> Vec<usize> {
    if shape.len() == 4 {
        vec![shape[0], shape[1] * shape[2] * shape[3]]
    } else {
        shape.to_vec()
    }
}

/// The layout of `cfg` and the parameter range of `part`, after checking the config, that
/// `part` fits its depth and that `n` parameters are given.
fn part_layout(cfg: &ModelConfig, part: &Part, n: usize) -> Result<(Layout, Range<usize>)> {
    cfg.validate()?;
    if !part.fits(cfg.depth) {
        return Err(Error::new(format!("{part:?} is not a part of a model of depth {} (a stage is a non-empty range of blocks)", cfg.depth)));
    }
    let layout = Layout::new(cfg);
    let range = layout.part_params(part);
    if n != range.len() {
        return Err(Error::new(format!("expected {} parameter tensors, got {n}", range.len())));
    }
    Ok((layout, range))
}

/// The part a depth stage of blocks `blocks` is: with the stem when it starts at block 0, the
/// head when it ends at the last block ([`Layout::stage_params`]).
fn stage_part(cfg: &ModelConfig, blocks: Range<usize>) -> Result<Part> {
    if blocks.start >= blocks.end {
        return Err(Error::new(format!("stage blocks {blocks:?} are not a non-empty range within depth {}", cfg.depth)));
    }
    Ok(Part::stage(blocks, cfg.depth))
}

impl<B: Backend> Dit<B> {
    /// Uploads host parameters given in [`Layout`] order (flat values, any shape of right size).
    pub fn from_host(be: &B, cfg: ModelConfig, values: Vec<Vec<f32>>) -> Result<Self> {
        cfg.validate()?;
        let depth = cfg.depth;
        Self::stage_from_host(be, cfg, 0..depth, values)
    }

    /// One depth stage: blocks `blocks` and the parameters [`Layout::stage_params`] gives for
    /// them, `values` in that order.
    pub fn stage_from_host(be: &B, cfg: ModelConfig, blocks: Range<usize>, values: Vec<Vec<f32>>) -> Result<Self> {
        let part = stage_part(&cfg, blocks)?;
        Self::part_from_host(be, cfg, part, values)
    }

    /// One depth stage from parameters already on the device, in [`Layout::stage_params`]
    /// order, each of its [`compute_shape`].
    pub fn stage_from_tensors(be: &B, cfg: ModelConfig, blocks: Range<usize>, params: Vec<B::Tensor>) -> Result<Self> {
        let part = stage_part(&cfg, blocks)?;
        Self::part_from_tensors(be, cfg, part, params)
    }

    /// Any [`Part`] (the stem alone, blocks alone, ...): the parameters of
    /// [`Layout::part_params`], `values` in that order.
    pub fn part_from_host(be: &B, cfg: ModelConfig, part: Part, values: Vec<Vec<f32>>) -> Result<Self> {
        let (layout, range) = part_layout(&cfg, &part, values.len())?;
        let mut params = Vec::with_capacity(values.len());
        for (spec, v) in layout.specs[range].iter().zip(&values) {
            if v.len() != spec.numel() {
                return Err(Error::new(format!("parameter `{}`: {} values for shape {:?}", spec.name, v.len(), spec.shape)));
            }
            params.push(be.upload(v, &compute_shape(&spec.shape))?);
        }
        Self::part_from_tensors(be, cfg, part, params)
    }

    /// [`Self::part_from_host`] from parameters already on the device, each of its
    /// [`compute_shape`].
    pub fn part_from_tensors(be: &B, cfg: ModelConfig, part: Part, params: Vec<B::Tensor>) -> Result<Self> {
        let (layout, range) = part_layout(&cfg, &part, params.len())?;
        if let Some((spec, _)) = layout.specs[range.clone()].iter().zip(&params).find(|(spec, p)| be.shape(p) != compute_shape(&spec.shape).as_slice()) {
            return Err(Error::new(format!("parameter `{}`: a tensor of another shape than {:?}", spec.name, spec.shape)));
        }
        Ok(Dit { cfg, layout, params, blocks: part.blocks, first: range.start })
    }

    /// Downloads this model's parameters, in [`Layout`] order.
    pub fn to_host(&self, be: &B) -> Result<Vec<Vec<f32>>> {
        self.params.iter().map(|p| be.download(p).map_err(Error::from)).collect()
    }

    /// The blocks this model (or stage) holds.
    pub fn blocks(&self) -> Range<usize> {
        self.blocks.clone()
    }

    /// The layout indices of `params`.
    pub fn param_range(&self) -> Range<usize> {
        self.first..self.first + self.params.len()
    }

    pub(crate) fn has_stem(&self) -> bool {
        self.first == 0
    }

    pub(crate) fn has_head(&self) -> bool {
        self.first + self.params.len() == self.layout.specs.len()
    }

    pub(crate) fn p(&self, i: usize) -> &B::Tensor {
        &self.params[i - self.first]
    }

    fn opt(&self, i: Option<usize>) -> Option<&B::Tensor> {
        i.map(|i| self.p(i))
    }

    /// x: [B, C, H, W], context: [B, Lt, Dc] → (velocity [B, C, H, W], tape when `keep` ≠ Nothing).
    pub fn forward(&self, be: &B, x: &B::Tensor, context: B::Tensor, keep: Keep) -> Result<(B::Tensor, Option<Tape<B::Tensor>>)> {
        self.forward_probed(be, x, context, keep, None)
    }

    /// [`Self::forward`], handing the tensors a probe asks for to it.
    pub fn forward_probed(
        &self,
        be: &B,
        x: &B::Tensor,
        context: B::Tensor,
        keep: Keep,
        probe: Option<&mut dyn Probe>,
    ) -> Result<(B::Tensor, Option<Tape<B::Tensor>>)> {
        if !(self.has_stem() && self.has_head()) {
            return Err(Error::new(format!("forward needs the whole model; this is the stage of blocks {:?}", self.blocks)));
        }
        match self.stage_forward(be, StageIn::Inputs { x, context }, keep, probe)? {
            (StageOut::Velocity(v), tape) => Ok((v, tape)),
            (StageOut::Tokens(_), _) => Err(Error::new("internal: the whole model handed on tokens")),
        }
    }

    /// Forward through this stage's part: stem (if held), its blocks, head (if held).
    pub fn stage_forward(
        &self,
        be: &B,
        input: StageIn<'_, B::Tensor>,
        keep: Keep,
        mut probe: Option<&mut dyn Probe>,
    ) -> Result<(StageOut<B::Tensor>, Option<Tape<B::Tensor>>)> {
        let l = &self.layout;
        let (dims, mut t, stem) = match input {
            StageIn::Inputs { x, context } => {
                if !self.has_stem() {
                    return Err(Error::new(format!("the stage of blocks {:?} takes tokens, not images", self.blocks)));
                }
                let dims = self.dims_of(be, x, &context)?;
                let (t, stem) = self.stem_forward(be, x, context, &dims)?;
                (dims, t, Some(stem))
            }
            StageIn::Tokens { t, dims } => {
                if self.has_stem() {
                    return Err(Error::new("the first stage takes images and context, not tokens"));
                }
                let want = [dims.b, dims.l, dims.d];
                if be.shape(&t) != want {
                    return Err(Error::new(format!("stage input tokens {:?}, expected {want:?}", be.shape(&t))));
                }
                (dims, t, None)
            }
        };
        let (half, li) = (dims.dh / 2, dims.li);
        let (cos, sin) = rope_tables::<f32>(dims.dh, dims.gh, dims.gw, self.cfg.rope_base);
        let cos = be.upload(&cos, &[li, half])?;
        let sin = be.upload(&sin, &[li, half])?;

        let mut saved = Vec::with_capacity(if keep == Keep::Nothing { 0 } else { self.blocks.len() });
        for i in self.blocks.clone() {
            let (acts, out) = self.block_forward(be, t, &l.blocks[i], &cos, &sin, &dims)?;
            if let Some(p) = probe.as_deref_mut() {
                record_forward(be, p, i, &acts, &out)?;
            }
            t = out;
            match keep {
                Keep::Nothing => {}
                Keep::All => saved.push(Saved::Acts(Box::new(acts))),
                Keep::BlockInputs => saved.push(Saved::Input(acts.x)),
                Keep::Tail(n) if i + n < self.cfg.depth => saved.push(Saved::Input(acts.x)),
                Keep::Tail(_) => saved.push(Saved::Acts(Box::new(acts))),
            }
        }
        let (out, out_img) = if self.has_head() {
            let (velocity, out_img) = self.head_forward(be, &t, &dims)?;
            (StageOut::Velocity(velocity), Some(out_img))
        } else {
            (StageOut::Tokens(t), None)
        };
        let tape = (keep != Keep::Nothing).then(|| Tape { dims, cos, sin, stem, blocks: saved, out_img });
        Ok((out, tape))
    }

    /// The last block's output t [B, L, D] → (velocity [B, C, H, W], its image tokens [B, Li, D]).
    pub(crate) fn head_forward(&self, be: &B, t: &B::Tensor, dims: &Dims) -> Result<(B::Tensor, B::Tensor)> {
        let l = &self.layout;
        let (out_img, _) = be.split_tokens(t, dims.li)?;
        let out_rows = be.linear(&out_img, self.p(l.final_w), Some(self.p(l.final_b)))?;
        Ok((be.unpatchify(&out_rows, [dims.b, dims.c, dims.h, dims.w], dims.p)?, out_img))
    }

    /// Patch embedding, input norms and context projection → the first block's input [B, L, D].
    pub(crate) fn stem_forward(&self, be: &B, x: &B::Tensor, context: B::Tensor, dims: &Dims) -> Result<(B::Tensor, StemTape<B::Tensor>)> {
        let l = &self.layout;
        let rows = be.patchify(x, dims.p)?;
        let img = be.linear(&rows, self.p(l.patch_w), Some(self.p(l.patch_b)))?;
        let (img_n, r_img) = be.rmsnorm(&img, self.opt(l.norm_img), NORM_EPS)?;
        let (ctx, ctx_p) = match l.context_proj {
            Some(w) => {
                let p = be.linear(&context, self.p(w), None)?;
                (Some(context), p)
            }
            None => (None, context),
        };
        let (ctx_n, r_ctx) = be.rmsnorm(&ctx_p, self.opt(l.norm_text), NORM_EPS)?;
        let t = be.concat_tokens(&img_n, &ctx_n)?;
        Ok((t, StemTape { rows, img, r_img, ctx, ctx_p, r_ctx }))
    }

    pub(crate) fn dims_of(&self, be: &B, x: &B::Tensor, context: &B::Tensor) -> Result<Dims> {
        let (xs, cs) = (be.shape(x), be.shape(context));
        let [b, c, h, w] = <[usize; 4]>::try_from(xs).map_err(|_| Error::new(format!("input x must be [B, C, H, W], got {xs:?}")))?;
        let [cb, lt, dc] = <[usize; 3]>::try_from(cs).map_err(|_| Error::new(format!("context must be [B, Lt, context_dim], got {cs:?}")))?;
        if c != self.cfg.in_channels {
            return Err(Error::new(format!("input x has {c} channels, the model expects in_channels = {}", self.cfg.in_channels)));
        }
        if cb != b || dc != self.cfg.context_dim || lt == 0 {
            return Err(Error::new(format!(
                "context shape {cs:?} does not fit batch {b} and context_dim {} (need [{b}, Lt >= 1, {}])",
                self.cfg.context_dim, self.cfg.context_dim
            )));
        }
        Ok(Dims::new(&self.cfg, b, h, w, lt)?)
    }

    /// One block: returns its activations (x = its input) and its output.
    pub(crate) fn block_forward(&self, be: &B, x: B::Tensor, s: &BlockSlots, cos: &B::Tensor, sin: &B::Tensor, d: &Dims) -> Result<(BlockActs<B::Tensor>, B::Tensor)> {
        let qkv = be.linear_multi(&x, &[self.p(s.wq), self.p(s.wk), self.p(s.wv)], &[self.opt(s.bq), self.opt(s.bk), self.opt(s.bv)])?;
        let [q, k, v] = <[B::Tensor; 3]>::try_from(qkv).map_err(|_| Error::new("linear_multi returned the wrong number of outputs"))?;
        let (qn, rq) = be.rope_qknorm(&q, cos, sin, d.nh, d.li, QK_NORM_EPS)?;
        let (kn, rk) = be.rope_qknorm(&k, cos, sin, d.nh, d.li, QK_NORM_EPS)?;
        let (o, lse) = be.attention(&qn, &kn, &v, d.nh)?;
        let a = be.linear(&o, self.p(s.wo), None)?;
        let (x1, r1) = self.merge(be, &x, &a, &s.merge1, d)?;
        let gv = be.linear(&x1, self.p(s.w13), self.opt(s.b13))?;
        let h = be.swiglu(&gv)?;
        let f = be.linear(&h, self.p(s.w2), self.opt(s.b2))?;
        let (out, r2) = self.merge(be, &x1, &f, &s.merge2, d)?;
        Ok((BlockActs { x, q, k, qn, kn, rq, rk, v, o, lse, a, r1, x1, gv, h, f, r2 }, out))
    }

    /// The residual merge of branch output u into trunk x → (z, rstd).
    fn merge(&self, be: &B, x: &B::Tensor, u: &B::Tensor, m: &MergeSlots, d: &Dims) -> Result<(B::Tensor, B::Tensor)> {
        Ok(match *m {
            MergeSlots::Mvsplit { alpha, beta } => be.mvsplit(x, u, self.p(alpha), self.p(beta), NORM_EPS, d.li)?,
            MergeSlots::Layerscale { lambda } => be.residual_rmsnorm(x, u, Some(self.p(lambda)), NORM_EPS)?,
            MergeSlots::Postnorm => be.residual_rmsnorm(x, u, None, NORM_EPS)?,
        })
    }

    /// Backward of [`Self::merge`] → (dx, du); the merge's parameter gradients via `put`.
    #[allow(clippy::too_many_arguments)]
    fn merge_backward(
        &self,
        be: &B,
        x: &B::Tensor,
        u: &B::Tensor,
        m: &MergeSlots,
        rstd: &B::Tensor,
        dz: &B::Tensor,
        d: &Dims,
        put: &mut impl FnMut(usize, B::Tensor),
    ) -> Result<(B::Tensor, B::Tensor)> {
        match *m {
            MergeSlots::Mvsplit { alpha, beta } => {
                let g = be.mvsplit_backward(x, u, self.p(alpha), self.p(beta), rstd, dz, d.li)?;
                put(alpha, g.dalpha);
                put(beta, g.dbeta);
                Ok((g.dx, g.du))
            }
            MergeSlots::Layerscale { lambda } => {
                let g = be.residual_rmsnorm_backward(x, u, Some(self.p(lambda)), rstd, dz)?;
                put(lambda, g.dlambda.ok_or_else(|| Error::new("backend returned no lambda gradient"))?);
                Ok((g.dx, g.du))
            }
            MergeSlots::Postnorm => {
                let g = be.residual_rmsnorm_backward(x, u, None, rstd, dz)?;
                Ok((g.dx, g.du))
            }
        }
    }

    /// Backpropagates d velocity through the tape: every parameter gradient and d context.
    pub fn backward(&self, be: &B, tape: Tape<B::Tensor>, d_velocity: &B::Tensor) -> Result<Grads<B::Tensor>> {
        self.backward_probed(be, tape, d_velocity, None)
    }

    /// [`Self::backward`], handing the gradient taps a probe asks for to it.
    pub fn backward_probed(&self, be: &B, tape: Tape<B::Tensor>, d_velocity: &B::Tensor, probe: Option<&mut dyn Probe>) -> Result<Grads<B::Tensor>> {
        self.backward_hooked(be, tape, d_velocity, probe, None)
    }

    /// [`Self::backward_probed`], telling `hook` about each group of finished gradients.
    pub fn backward_hooked(
        &self,
        be: &B,
        tape: Tape<B::Tensor>,
        d_velocity: &B::Tensor,
        probe: Option<&mut dyn Probe>,
        hook: Option<&mut dyn GradHook<B::Tensor>>,
    ) -> Result<Grads<B::Tensor>> {
        if !(self.has_stem() && self.has_head()) {
            return Err(Error::new(format!("backward needs the whole model; this is the stage of blocks {:?}", self.blocks)));
        }
        let g = self.stage_backward(be, tape, d_velocity, probe, hook)?;
        Ok(Grads { params: g.params, context: g.d_input })
    }

    /// Backward through this stage's part. `d_out`: d velocity for the stage with the head,
    /// d tokens [B, L, D] of its output otherwise.
    pub fn stage_backward(
        &self,
        be: &B,
        tape: Tape<B::Tensor>,
        d_out: &B::Tensor,
        mut probe: Option<&mut dyn Probe>,
        mut hook: Option<&mut dyn GradHook<B::Tensor>>,
    ) -> Result<StageGrads<B::Tensor>> {
        let l = &self.layout;
        let d = tape.dims;
        let first = self.first;
        let mut grads: Vec<Option<B::Tensor>> = (0..self.params.len()).map(|_| None).collect();
        // Hands the finished layout indices `range` to the hook.
        fn tell<T>(hook: &mut Option<&mut dyn GradHook<T>>, grads: &[Option<T>], first: usize, range: Range<usize>) -> Result<()> {
            if let Some(h) = hook.as_deref_mut() {
                let items: Vec<(usize, &T)> = range.filter_map(|i| grads[i - first].as_ref().map(|g| (i, g))).collect();
                h.ready(&items)?;
            }
            Ok(())
        }

        let mut dt: Option<B::Tensor> = None;
        if let Some(out_img) = &tape.out_img {
            let d_rows = be.unpatchify_backward(d_out, d.p)?;
            let g = be.linear_backward(out_img, self.p(l.final_w), &d_rows, true, true)?;
            grads[l.final_w - first] = Some(g.dw);
            grads[l.final_b - first] = Some(g.db.expect("bias grad requested"));
            tell(&mut hook, &grads, first, l.final_w..l.specs.len())?;
            let zeros = be.zeros(&[d.b, d.lt, d.d])?;
            dt = Some(be.concat_tokens(&g.dx.expect("dx requested"), &zeros)?);
        }

        for (i, saved) in self.blocks.clone().zip(tape.blocks).rev() {
            let slots = &l.blocks[i];
            let acts = match saved {
                Saved::Acts(a) => *a,
                Saved::Input(x) => self.block_forward(be, x, slots, &tape.cos, &tape.sin, &d)?.0,
            };
            let taps = crate::probe::reborrow(&mut probe).map(|p| (p, i));
            let dz = dt.as_ref().unwrap_or(d_out);
            let mut put = |j: usize, g: B::Tensor| grads[j - first] = Some(g);
            let next = self.block_backward(be, &acts, slots, &tape.cos, &tape.sin, &d, dz, &mut put, taps)?;
            dt = Some(next);
            tell(&mut hook, &grads, first, l.block_params(i))?;
        }
        let dt = dt.ok_or_else(|| Error::new("internal: a stage without blocks"))?;

        let d_input = match &tape.stem {
            Some(stem) => {
                let d_context = self.stem_backward(be, stem, &d, &dt, &mut grads)?;
                tell(&mut hook, &grads, first, 0..l.blocks[0].wq)?;
                d_context
            }
            None => dt,
        };
        let params = grads
            .into_iter()
            .zip(&l.specs[self.param_range()])
            .map(|(g, s)| g.ok_or_else(|| Error::new(format!("internal: no gradient for `{}`", s.name))))
            .collect::<Result<Vec<_>>>()?;
        Ok(StageGrads { params, d_input })
    }

    /// Backward of [`Self::stem_forward`]: fills the stem's gradients, returns d context.
    fn stem_backward(&self, be: &B, tape: &StemTape<B::Tensor>, d: &Dims, dt: &B::Tensor, grads: &mut [Option<B::Tensor>]) -> Result<B::Tensor> {
        let l = &self.layout;
        let first = self.first;
        let mut put = |i: usize, g: B::Tensor| grads[i - first] = Some(g);
        let (d_img_n, d_ctx_n) = be.split_tokens(dt, d.li)?;
        let (d_ctx_p, dg_text) = be.rmsnorm_backward(&tape.ctx_p, self.opt(l.norm_text), &tape.r_ctx, &d_ctx_n)?;
        if let (Some(i), Some(g)) = (l.norm_text, dg_text) {
            put(i, g);
        }
        let d_context = match l.context_proj {
            Some(w) => {
                let ctx = tape.ctx.as_ref().expect("context kept when projected");
                let g = be.linear_backward(ctx, self.p(w), &d_ctx_p, true, false)?;
                put(w, g.dw);
                g.dx.expect("dx requested")
            }
            None => d_ctx_p,
        };
        let (d_img, dg_img) = be.rmsnorm_backward(&tape.img, self.opt(l.norm_img), &tape.r_img, &d_img_n)?;
        if let (Some(i), Some(g)) = (l.norm_img, dg_img) {
            put(i, g);
        }
        let g = be.linear_backward(&tape.rows, self.p(l.patch_w), &d_img, false, true)?;
        put(l.patch_w, g.dw);
        put(l.patch_b, g.db.expect("bias grad requested"));
        Ok(d_context)
    }

    /// One block's backward: dz = d(block output) → d(block input); parameter grads via `put`.
    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        be: &B,
        a: &BlockActs<B::Tensor>,
        s: &BlockSlots,
        cos: &B::Tensor,
        sin: &B::Tensor,
        d: &Dims,
        dz: &B::Tensor,
        put: &mut impl FnMut(usize, B::Tensor),
        mut probe: Option<(&mut dyn Probe, usize)>,
    ) -> Result<B::Tensor> {
        let (m2_dx, m2_du) = self.merge_backward(be, &a.x1, &a.f, &s.merge2, &a.r2, dz, d, put)?;
        if let Some((p, i)) = probe.as_mut() {
            record(be, &mut **p, *i, Tap::GradFfnBranch, &m2_du)?;
        }
        let g2 = be.linear_backward(&a.h, self.p(s.w2), &m2_du, true, s.b2.is_some())?;
        put(s.w2, g2.dw);
        if let (Some(i), Some(g)) = (s.b2, g2.db) {
            put(i, g);
        }
        let dgv = be.swiglu_backward(&a.gv, &g2.dx.expect("dx requested"))?;
        // dx1 = m2_dx + dgv·W13, accumulated onto the trunk gradient.
        let g13 = be.linear_multi_backward(&a.x1, &[self.p(s.w13)], &[&dgv], &[s.b13.is_some()], Some(m2_dx))?;
        let mut g13_dw = g13.dw.into_iter();
        put(s.w13, g13_dw.next().ok_or_else(|| Error::new("linear_multi_backward returned no dw"))?);
        if let (Some(i), Some(Some(g))) = (s.b13, g13.db.into_iter().next()) {
            put(i, g);
        }
        let dx1 = g13.dx;

        let (m1_dx, m1_du) = self.merge_backward(be, &a.x, &a.a, &s.merge1, &a.r1, &dx1, d, put)?;
        if let Some((p, i)) = probe.as_mut() {
            record(be, &mut **p, *i, Tap::GradAttnBranch, &m1_du)?;
        }
        let go = be.linear_backward(&a.o, self.p(s.wo), &m1_du, true, false)?;
        put(s.wo, go.dw);
        let (dqn, dkn, dv) = be.attention_backward(&a.qn, &a.kn, &a.v, &a.o, &a.lse, &go.dx.expect("dx requested"), d.nh)?;
        let dq = be.rope_qknorm_backward(&a.q, cos, sin, &a.rq, &dqn, d.nh, d.li)?;
        let dk = be.rope_qknorm_backward(&a.k, cos, sin, &a.rk, &dkn, d.nh, d.li)?;
        // dx = m1_dx + dq·Wq + dk·Wk + dv·Wv: the fused Q/K/V projection's backward.
        let g = be.linear_multi_backward(
            &a.x,
            &[self.p(s.wq), self.p(s.wk), self.p(s.wv)],
            &[&dq, &dk, &dv],
            &[s.bq.is_some(), s.bk.is_some(), s.bv.is_some()],
            Some(m1_dx),
        )?;
        if g.dw.len() != 3 || g.db.len() != 3 {
            return Err(Error::new("linear_multi_backward returned the wrong number of gradients"));
        }
        for ((w, b), (dw, db)) in [(s.wq, s.bq), (s.wk, s.bk), (s.wv, s.bv)].into_iter().zip(g.dw.into_iter().zip(g.db)) {
            put(w, dw);
            if let (Some(i), Some(gb)) = (b, db) {
                put(i, gb);
            }
        }
        Ok(g.dx)
    }
}

/// Hands `t` to the probe when it wants (block, tap).
fn record<B: Backend>(be: &B, p: &mut dyn Probe, block: usize, tap: Tap, t: &B::Tensor) -> Result<()> {
    if p.wants(block, tap) {
        let values = be.download(t)?;
        p.record(block, tap, be.shape(t), values);
    }
    Ok(())
}

fn record_forward<B: Backend>(be: &B, p: &mut dyn Probe, i: usize, a: &BlockActs<B::Tensor>, out: &B::Tensor) -> Result<()> {
    let taps = [
        (Tap::BlockIn, &a.x),
        (Tap::QNorm, &a.qn),
        (Tap::KNorm, &a.kn),
        (Tap::Value, &a.v),
        (Tap::AttnOut, &a.o),
        (Tap::AttnBranch, &a.a),
        (Tap::Mid, &a.x1),
        (Tap::FfnHidden, &a.h),
        (Tap::FfnBranch, &a.f),
        (Tap::BlockOut, out),
    ];
    for (tap, t) in taps {
        record(be, p, i, tap, t)?;
    }
    Ok(())
}
