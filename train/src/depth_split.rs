//! Depth (pipeline) split: the block stack divided over several backend instances — the GPUs of
//! one machine, or on a CPU several `Cpu` instances standing in for them — so a model deeper
//! than one device's memory trains.
//!
//! Stage s holds blocks `ranges[s]` (stage 0 also the stem, the last stage the head), their
//! AdamW moments, and runs on its own thread. A step cuts the batch into micro-batches and runs
//! the GPipe schedule: every stage forwards micro-batch m as soon as the stage before hands it
//! the trunk [b, L, D], so stages work on different micro-batches at once; then the backward
//! passes flow back the same way. Activations cross devices through the host (download on one
//! backend, upload on the next), which any [`Backend`] supports.
//!
//! Each micro-batch's d velocity is scaled by its share of the batch, so the gradients summed
//! over micro-batches are the whole batch's: the same loss, gradients and update as the
//! unsplit model up to float summation order.

use crate::dist::shard;
use crate::optim::{OptimConfig, Optimizer};
use mvdit_core::{Backend, Dims, ModelConfig};
use mvdit_model::{compute_shape, Dit, Error, Keep, Result, StageIn, StageOut, Tape};
use std::ops::Range;
use std::sync::mpsc::{channel, Receiver, Sender};

/// `depth` blocks in `n` contiguous ranges whose sizes differ by at most one: the stages of a
/// split over `n` devices.
pub fn even_split(depth: usize, n: usize) -> Vec<Range<usize>> {
    let n = n.clamp(1, depth.max(1));
    (0..n).map(|s| depth * s / n..depth * (s + 1) / n).collect()
}

/// A backend whose instances drive pipeline stages from their own threads (every backend here:
/// `Cpu`, `Wgpu`).
pub trait StageBackend: Backend<Tensor: Send + Sync> + Sync {}
impl<B: Backend<Tensor: Send + Sync> + Sync> StageBackend for B {}

/// One stage: its backend, its part of the model and its optimiser state.
pub struct Stage<'a, B: Backend> {
    pub be: &'a B,
    pub model: Dit<B>,
    pub opt: Optimizer<B>,
}

/// A model split by depth over several backends.
pub struct DepthSplit<'a, B: Backend> {
    pub cfg: ModelConfig,
    pub stages: Vec<Stage<'a, B>>,
}

/// One micro-batch's host inputs: x_t [b, C, H, W], context [b, Lt, Dc], target [b, C, H, W].
struct Micro {
    x: Vec<f32>,
    ctx: Vec<f32>,
    target: Vec<f32>,
    b: usize,
    /// The factor on the loss gradient (the run's loss scale; 1 = none).
    loss_scale: f32,
}

/// What stage s returns from a step: loss parts (last stage), summed gradients (its parameter
/// order), d context per micro-batch (first stage).
struct StageResult<T> {
    losses: Vec<f64>,
    grads: Vec<T>,
    d_context: Vec<(usize, Vec<f32>)>,
}

impl<'a, B: StageBackend> DepthSplit<'a, B> {
    /// Splits a model given as host parameters in layout order: stage s on `backends[s]` with
    /// blocks `ranges[s]` (contiguous, covering 0..depth in order).
    pub fn new(backends: &[&'a B], cfg: ModelConfig, params: Vec<Vec<f32>>, ranges: &[Range<usize>], optim: OptimConfig) -> Result<Self> {
        cfg.validate()?;
        let n = mvdit_core::Layout::new(&cfg).specs.len();
        if params.len() != n {
            return Err(Error::new(format!("expected {n} parameter tensors, got {}", params.len())));
        }
        let mut params = params.into_iter();
        Self::load(backends, cfg, ranges, optim, &mut |be, spec| {
            let v = params.next().ok_or_else(|| Error::new("internal: fewer parameters than the layout"))?;
            if v.len() != spec.numel() {
                return Err(Error::new(format!("parameter `{}`: {} values for shape {:?}", spec.name, v.len(), spec.shape)));
            }
            Ok(be.upload(&v, &compute_shape(&spec.shape))?)
        })
    }

    /// [`Self::new`] with each parameter uploaded by `load` (its device, its spec), one at a
    /// time in layout order, onto the device given: a checkpoint is read tensor by tensor
    /// without the whole model on the host. Each tensor must have its spec's [`compute_shape`].
    pub fn load(
        backends: &[&'a B],
        cfg: ModelConfig,
        ranges: &[Range<usize>],
        optim: OptimConfig,
        load: &mut dyn FnMut(&B, &mvdit_core::ParamSpec) -> Result<B::Tensor>,
    ) -> Result<Self> {
        cfg.validate()?;
        if backends.len() != ranges.len() || ranges.is_empty() {
            return Err(Error::new(format!("{} devices for {} stages", backends.len(), ranges.len())));
        }
        let mut next = 0;
        for r in ranges {
            if r.start != next || r.end <= r.start {
                return Err(Error::new(format!("stage blocks {ranges:?} do not cover 0..{} in order, each non-empty", cfg.depth)));
            }
            next = r.end;
        }
        if next != cfg.depth {
            return Err(Error::new(format!("stage blocks {ranges:?} do not cover 0..{} in order, each non-empty", cfg.depth)));
        }
        let layout = mvdit_core::Layout::new(&cfg);
        let mut stages = Vec::with_capacity(ranges.len());
        for (be, r) in backends.iter().zip(ranges) {
            let idx = layout.stage_params(r.clone());
            let params = layout.specs[idx.clone()].iter().map(|spec| load(be, spec)).collect::<Result<Vec<_>>>()?;
            let model = Dit::stage_from_tensors(*be, cfg.clone(), r.clone(), params)?;
            let shapes: Vec<Vec<usize>> = layout.specs[idx.clone()].iter().map(|s| compute_shape(&s.shape)).collect();
            let decays = layout.specs[idx].iter().map(|s| s.decays()).collect();
            let opt = Optimizer::new(*be, optim.clone(), &shapes, decays)?;
            stages.push(Stage { be: *be, model, opt });
        }
        Ok(DepthSplit { cfg, stages })
    }

    /// Every parameter in layout order (gathered from the stages).
    pub fn to_host(&self) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for s in &self.stages {
            out.extend(s.model.to_host(s.be)?);
        }
        Ok(out)
    }

    /// Inference: x [B, C, H, W] and context [B, Lt, Dc] on the first stage's device → velocity
    /// [B, C, H, W] on the first stage's device, the trunk passing from stage to stage through
    /// the host. One stage is the plain [`Dit::forward`].
    pub fn forward(&self, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor> {
        let first = &self.stages[0];
        let (xs, lt) = (first.be.shape(x).to_vec(), first.be.shape(&context).get(1).copied().unwrap_or(0));
        let (mut out, _) = first.model.stage_forward(first.be, StageIn::Inputs { x, context }, Keep::Nothing, None)?;
        // The first stage checked the shapes: x is [B, C, H, W].
        let mut on = first.be;
        for stage in &self.stages[1..] {
            let StageOut::Tokens(t) = out else { return Err(Error::new("internal: a stage before the last returned the velocity")) };
            let dims = Dims::new(&self.cfg, xs[0], xs[2], xs[3], lt)?;
            let t = stage.be.upload(&on.download(&t)?, &[dims.b, dims.l, dims.d])?;
            out = stage.model.stage_forward(stage.be, StageIn::Tokens { t, dims }, Keep::Nothing, None)?.0;
            on = stage.be;
        }
        let StageOut::Velocity(v) = out else { return Err(Error::new("internal: the last stage handed on tokens")) };
        if self.stages.len() == 1 {
            return Ok(v);
        }
        Ok(first.be.upload(&on.download(&v)?, &xs)?)
    }

    /// Loss and gradients of a batch in `micro` micro-batches. x_t, target: [B, C, H, W] flat;
    /// context: [B, Lt, Dc] flat. → (loss, each stage's gradients on its device in its parameter
    /// order, d context [B, Lt, Dc] on the host); the gradients carry the factor `loss_scale`.
    #[allow(clippy::too_many_arguments)]
    pub fn loss_and_grads(
        &self,
        x_t: &[f32],
        image: [usize; 4],
        context: &[f32],
        context_tokens: usize,
        target: &[f32],
        micro: usize,
        keep: Keep,
        loss_scale: f32,
    ) -> Result<(f64, Vec<Vec<B::Tensor>>, Vec<f32>)> {
        let b = image[0];
        if micro == 0 || micro > b {
            return Err(Error::new(format!("--micro-batches must be in 1..={b} (the batch), got {micro}")));
        }
        let per = image[1] * image[2] * image[3];
        let per_ctx = context_tokens * self.cfg.context_dim;
        if x_t.len() != b * per || target.len() != b * per || context.len() != b * per_ctx {
            return Err(Error::new(format!("batch of {b}: x_t, target or context has the wrong number of values")));
        }
        let micros: Vec<Micro> = (0..micro)
            .map(|m| {
                let r = shard(b, m, micro);
                Micro {
                    x: x_t[r.start * per..r.end * per].to_vec(),
                    ctx: context[r.start * per_ctx..r.end * per_ctx].to_vec(),
                    target: target[r.start * per..r.end * per].to_vec(),
                    b: r.len(),
                    loss_scale,
                }
            })
            .collect();
        let keep = if keep == Keep::Nothing { Keep::All } else { keep };
        let n = self.stages.len();
        // fwd[s]: stage s → s+1 (tokens, dims); bwd[s]: stage s+1 → s (d tokens).
        let (mut fwd_tx, mut fwd_rx): (Vec<Option<Sender<(Vec<f32>, Dims)>>>, Vec<Option<Receiver<(Vec<f32>, Dims)>>>) = (vec![], vec![None]);
        let (mut bwd_tx, mut bwd_rx): (Vec<Option<Sender<Vec<f32>>>>, Vec<Option<Receiver<Vec<f32>>>>) = (vec![None], vec![]);
        for _ in 1..n {
            let (t, r) = channel();
            fwd_tx.push(Some(t));
            fwd_rx.push(Some(r));
            let (t, r) = channel();
            bwd_tx.push(Some(t));
            bwd_rx.push(Some(r));
        }
        fwd_tx.push(None);
        bwd_rx.push(None);
        let results: Vec<Result<StageResult<B::Tensor>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .stages
                .iter()
                .enumerate()
                .map(|(s, stage)| {
                    let io = StageIo { from_prev: fwd_rx[s].take(), to_next: fwd_tx[s].take(), from_next: bwd_rx[s].take(), to_prev: bwd_tx[s].take() };
                    let (micros, cfg) = (&micros, &self.cfg);
                    scope.spawn(move || run_stage(stage, cfg, micros, image, context_tokens, b, keep, io).map_err(|e| e.context(format!("stage {s}"))))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::new("a pipeline stage panicked")))).collect()
        });
        // A stage that failed closes its channels and its neighbours fail too: report the cause.
        let mut ok = Vec::with_capacity(n);
        let mut first_err: Option<Error> = None;
        for r in results {
            match r {
                Ok(v) => ok.push(v),
                Err(e) => {
                    let hangup = e.0.contains("neighbour stage stopped");
                    if first_err.as_ref().is_none_or(|f| f.0.contains("neighbour stage stopped") && !hangup) {
                        first_err = Some(e);
                    }
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let loss = ok[n - 1].losses.iter().sum();
        let mut d_context = vec![0.0f32; b * per_ctx];
        for (m, d) in &ok[0].d_context {
            let r = shard(b, *m, micro);
            d_context[r.start * per_ctx..r.end * per_ctx].copy_from_slice(d);
        }
        Ok((loss, ok.into_iter().map(|r| r.grads).collect(), d_context))
    }
}

struct StageIo {
    from_prev: Option<Receiver<(Vec<f32>, Dims)>>,
    to_next: Option<Sender<(Vec<f32>, Dims)>>,
    from_next: Option<Receiver<Vec<f32>>>,
    to_prev: Option<Sender<Vec<f32>>>,
}

fn hangup() -> Error {
    Error::new("neighbour stage stopped")
}

/// Stage `s`'s part of the GPipe schedule: forward every micro-batch, then backward them in
/// reverse, accumulating the gradients.
#[allow(clippy::too_many_arguments)]
fn run_stage<B: Backend>(
    stage: &Stage<'_, B>,
    cfg: &ModelConfig,
    micros: &[Micro],
    image: [usize; 4],
    lt: usize,
    batch: usize,
    keep: Keep,
    io: StageIo,
) -> Result<StageResult<B::Tensor>> {
    let be = stage.be;
    let model = &stage.model;
    let mut tapes: Vec<Tape<B::Tensor>> = Vec::with_capacity(micros.len());
    let mut d_vel: Vec<B::Tensor> = Vec::new();
    let mut losses = Vec::new();
    for m in micros {
        let shape = [m.b, image[1], image[2], image[3]];
        let (out, tape) = match &io.from_prev {
            None => {
                let x = be.upload(&m.x, &shape)?;
                let ctx = be.upload(&m.ctx, &[m.b, lt, cfg.context_dim])?;
                model.stage_forward(be, StageIn::Inputs { x: &x, context: ctx }, keep, None)?
            }
            Some(rx) => {
                let (t, dims) = rx.recv().map_err(|_| hangup())?;
                let t = be.upload(&t, &[dims.b, dims.l, dims.d])?;
                model.stage_forward(be, StageIn::Tokens { t, dims }, keep, None)?
            }
        };
        let tape = tape.ok_or_else(|| Error::new("internal: training forward without a tape"))?;
        match out {
            StageOut::Tokens(t) => {
                let tx = io.to_next.as_ref().ok_or_else(|| Error::new("internal: a middle stage without a successor"))?;
                tx.send((be.download(&t)?, tape.dims())).map_err(|_| hangup())?;
            }
            StageOut::Velocity(v) => {
                let (loss, dv) = be.mse(&v, &be.upload(&m.target, &shape)?)?;
                // This micro-batch's share of the batch mean.
                let w = m.b as f64 / batch as f64;
                losses.push(be.download(&loss)?[0] as f64 * w);
                d_vel.push(be.axpby(w as f32 * m.loss_scale, &dv, 0.0, &dv)?);
            }
        }
        tapes.push(tape);
    }
    let mut grads: Option<Vec<B::Tensor>> = None;
    let mut d_context = Vec::new();
    for (mi, tape) in tapes.into_iter().enumerate().rev() {
        let d_out = match &io.from_next {
            None => d_vel.pop().ok_or_else(|| Error::new("internal: no d velocity"))?,
            Some(rx) => {
                let d = rx.recv().map_err(|_| hangup())?;
                let dims = tape.dims();
                be.upload(&d, &[dims.b, dims.l, dims.d])?
            }
        };
        let g = model.stage_backward(be, tape, &d_out, None, None)?;
        match &io.to_prev {
            Some(tx) => tx.send(be.download(&g.d_input)?).map_err(|_| hangup())?,
            None => d_context.push((mi, be.download(&g.d_input)?)),
        }
        grads = Some(match grads {
            None => g.params,
            Some(acc) => acc.iter().zip(&g.params).map(|(a, b)| be.axpby(1.0, a, 1.0, b)).collect::<std::result::Result<Vec<_>, _>>()?,
        });
    }
    Ok(StageResult { losses, grads: grads.ok_or_else(|| Error::new("internal: no micro-batches"))?, d_context })
}
