//! Training state and one rectified-flow step, conditioned on class labels (a learned table) or
//! on caption contexts (given by the data). Its checkpoints: `crate::checkpoints`.
//!
//! The model sits on one device or is split by depth over several ([`Placement`]): the state
//! holds it as a [`DepthSplit`] of one or more stages, and every step, checkpoint, held-out loss
//! and sample grid goes through the same code for both (a step of one stage and one
//! micro-batch is one forward and backward; otherwise the GPipe schedule).

use crate::config::TrainConfig;
use crate::batches::{Cond, Source};
use crate::data::Dataset;
use crate::depth_split::{even_split, DepthSplit, StageBackend};
use crate::flow::{noised_and_target, shift_time};
use crate::loss_scale::LossScaler;
use crate::init::{default_weight_std, init_params_with, Init};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::sampler::{sample, Conditioner};
use crate::dist::{Dist, GradReducer};
use crate::observe::StepObserver;
use crate::step::{loss_and_grads, update, Group, StepOutcome, Watchers};
use mvdit_core::{Backend, Dims, ModelConfig};
use mvdit_model::{Dit, Error, Keep, Probe, Result};
use std::ops::Range;

/// Name of the class-embedding table in checkpoints: [classes + 1, Lt·Dc], last row = null class.
pub const CLASS_TABLE: &str = "cond.class_embed";

/// Where a run's model lives: one backend per depth stage and the micro-batches of a step.
pub struct Placement<'a, B> {
    /// Stage s runs on `devices[s]`; the blocks are divided evenly ([`even_split`]).
    /// One entry: the whole model on one device.
    pub devices: Vec<&'a B>,
    /// Micro-batches per step: the GPipe schedule over the stages (with one stage, gradient
    /// accumulation). The batch's gradient is the same either way.
    pub micro_batches: usize,
}

impl<'a, B> Placement<'a, B> {
    /// The whole model on `be`, the batch in one pass.
    pub fn one(be: &'a B) -> Self {
        Placement { devices: vec![be], micro_batches: 1 }
    }

    /// The block ranges of the stages for a model of `depth` blocks trained with batch `batch`.
    pub fn ranges(&self, depth: usize, batch: usize) -> Result<Vec<Range<usize>>> {
        let n = self.devices.len();
        if n == 0 || n > depth {
            return Err(Error::new(format!("--devices: {n} devices for a model of {depth} blocks (give 1..={depth}, one stage per device)")));
        }
        if self.micro_batches == 0 || self.micro_batches > batch {
            return Err(Error::new(format!("--micro-batches must be in 1..={batch} (the batch size), got {}", self.micro_batches)));
        }
        Ok(even_split(depth, n))
    }
}

/// The class-embedding table [classes + 1, Lt·Dc] (last row = the null class) with its EMA and
/// AdamW moments, on the first stage's device (its rows feed the stem).
pub struct ClassTable<B: Backend> {
    pub weights: B::Tensor,
    pub ema: B::Tensor,
    pub opt: Optimizer<B>,
}

/// Everything a run needs to continue exactly where it stopped.
pub struct TrainState<'a, B: Backend> {
    pub cfg: TrainConfig,
    /// The model on its devices with its AdamW moments: one stage holding the whole model, or
    /// the blocks split by depth over several devices (`mvdit train --devices`).
    pub net: DepthSplit<'a, B>,
    /// Micro-batches per step ([`Placement::micro_batches`]): a run setting, not saved.
    pub micro_batches: usize,
    /// EMA of each stage's parameters (in its `params` order).
    pub ema: Vec<Vec<B::Tensor>>,
    /// The class table; `None` when the samples are conditioned on captions
    /// (`data.captions`), whose contexts come with the data.
    pub table: Option<ClassTable<B>>,
    pub rng: Rng,
    pub step: u64,
    /// Non-finite steps in a row (reset by a good step) and in total.
    pub bad_in_row: u64,
    pub bad_total: u64,
    pub class_names: Vec<String>,
    /// The activation budget resolved once on this process's memory ([`activation_mib`]).
    pub activation_mib: usize,
    /// The loss scale and its growth count, where the run scales its loss
    /// ([`crate::loss_scale`]; part of a checkpoint).
    pub loss_scaler: Option<LossScaler>,
}

/// The run's loss scaler: the config's `loss_scale`, "auto" on whether any stage's device
/// rounds its products to 16 bits.
pub fn loss_scaler<B: Backend>(net: &DepthSplit<'_, B>, cfg: &TrainConfig) -> Option<LossScaler> {
    cfg.loss_scale.scaler(net.stages.iter().any(|s| s.be.half_products()))
}

/// The MiB of activations a step may keep: the config's `activation_budget_mb`, "auto"
/// resolved on the memory of `be`'s device (or this process's share of the host's).
pub fn activation_mib<B: Backend>(be: &B, cfg: &TrainConfig) -> usize {
    cfg.activation_budget_mb.mib(crate::memory::available_memory(be.device_memory()), mvdit_core::Layout::new(&cfg.model).numel())
}

fn copy<B: Backend>(be: &B, t: &B::Tensor) -> Result<B::Tensor> {
    Ok(be.axpby(1.0, t, 0.0, t)?)
}

impl<'a, B: Backend> TrainState<'a, B> {
    /// The device of the first stage: the class table, conditioning, sampling and the held-out
    /// loss's inputs live there.
    pub fn home(&self) -> &'a B {
        self.net.stages[0].be
    }

    /// The whole model, when it is not split (experiments and diagnostics look inside it).
    pub fn unsplit(&self) -> Result<&Dit<B>> {
        match self.net.stages.as_slice() {
            [one] => Ok(&one.model),
            stages => Err(Error::new(format!("this needs the whole model on one device; it is split over {} devices", stages.len()))),
        }
    }

    /// The class table as a sampler's conditioner (class-conditional runs only).
    pub fn conditioner(&self) -> Result<Conditioner<'_, B>> {
        let t = self.table.as_ref().ok_or_else(|| Error::new("this run is conditioned on captions, not class labels"))?;
        Ok(Conditioner { table: &t.weights, context_tokens: self.cfg.context_tokens, context_dim: self.cfg.model.context_dim })
    }

    /// The contexts [n, Lt, Dc] of a batch's conditions on the first stage's device.
    pub fn context(&self, cond: &Cond) -> Result<B::Tensor> {
        let (be, lt, dc) = (self.home(), self.cfg.context_tokens, self.cfg.model.context_dim);
        match cond {
            Cond::Labels(labels) => self.conditioner()?.context(be, labels),
            Cond::Contexts(c) => Ok(be.upload(c, &[c.len() / (lt * dc).max(1), lt, dc])?),
        }
    }

    /// Whether a step runs as one forward and backward of the whole model on one device (the
    /// path with probes and overlapped data-parallel gradient sums).
    pub fn one_pass(&self) -> bool {
        self.net.stages.len() == 1 && self.micro_batches == 1
    }
}

/// The model weights of checkpoint `path` for `model` (layout order); a missing or mis-shaped
/// tensor is an error naming it.
fn init_weights(path: &std::path::Path, model: &ModelConfig) -> Result<Vec<Vec<f32>>> {
    let at = |e: Error| e.context("--init");
    let w = mvdit_model::WeightFile::open(path).map_err(at)?;
    mvdit_model::streamed::load_values(&w, &mvdit_core::Layout::new(model), 0..model.depth).map_err(at)
}

impl<'a, B: StageBackend> TrainState<'a, B> {
    /// A fresh state from the config's seed, the whole model on `be`.
    pub fn new(be: &'a B, cfg: TrainConfig, class_names: Vec<String>) -> Result<Self> {
        Self::placed(Placement::one(be), cfg, class_names)
    }

    /// A fresh state from the config's seed, split as `place` says. The initial weights, and so
    /// the whole run, are the same however the model is placed.
    pub fn placed(place: Placement<'a, B>, cfg: TrainConfig, class_names: Vec<String>) -> Result<Self> {
        cfg.validate()?;
        let mut rng = Rng::new(cfg.seed);
        let std = cfg.weight_std.unwrap_or_else(|| default_weight_std(cfg.model.hidden_size));
        let init = Init {
            weight_std: std,
            beta: cfg.beta_init,
            layerscale: cfg.layerscale_init,
            zero_writers: cfg.zero_writers(),
            output_std: cfg.output_std,
            patch_std: cfg.patch_std,
        };
        // Writers that are not zero draw from their own stream: every residual kind then gets
        // the same other weights, class table and batches from one seed.
        let mut writer_rng = Rng::new(cfg.seed ^ 0x5752_4954_4552_5321);
        let mut params = init_params_with(&cfg.model, &init, &mut rng, &mut writer_rng);
        if let Some(path) = &cfg.init {
            params = init_weights(path, &cfg.model)?;
        }
        let rows = class_names.len() + 1;
        let width = cfg.context_tokens * cfg.model.context_dim;
        let table = (!cfg.data.captions).then(|| rng.normals(rows * width));
        let micro_batches = place.micro_batches;
        let net = Self::split(place, &cfg, cfg.model.clone(), params)?;
        let ema = net.stages.iter().map(|s| s.model.params.iter().map(|p| copy(s.be, p)).collect()).collect::<Result<Vec<_>>>()?;
        let be0 = net.stages[0].be;
        let table = match table {
            Some(t) => {
                let weights = be0.upload(&t, &[rows, width])?;
                Some(ClassTable { ema: copy(be0, &weights)?, weights, opt: Self::table_optimizer(be0, &cfg, rows, width)? })
            }
            None => None,
        };
        let activation_mib = activation_mib(be0, &cfg);
        let loss_scaler = loss_scaler(&net, &cfg);
        Ok(TrainState { cfg, net, micro_batches, ema, table, rng, step: 0, bad_in_row: 0, bad_total: 0, class_names, activation_mib, loss_scaler })
    }

    /// The model (host parameters in layout order) on the devices of `place`.
    fn split(place: Placement<'a, B>, cfg: &TrainConfig, model: ModelConfig, params: Vec<Vec<f32>>) -> Result<DepthSplit<'a, B>> {
        let ranges = place.ranges(model.depth, cfg.batch_size)?;
        DepthSplit::new(&place.devices, model, params, &ranges, cfg.optim.clone())
    }

    /// Embedding rows are looked up, not multiplied: no weight decay, as is usual for embeddings.
    pub(crate) fn table_optimizer(be: &B, cfg: &TrainConfig, rows: usize, width: usize) -> Result<Optimizer<B>> {
        Ok(Optimizer::new(be, cfg.optim.clone(), &[vec![rows, width]], vec![false])?)
    }

    fn image_shape(&self, b: usize) -> [usize; 4] {
        let d = &self.cfg.data;
        [b, d.channels, d.image_size, d.image_size]
    }

    /// One step: draw a batch, its conditions (with dropout to the null class or the empty
    /// prompt), t and noise; forward, backward, clip, AdamW, EMA. Non-finite loss or gradients
    /// skip the update.
    pub fn train_step<'d>(&mut self, data: impl Into<Source<'d>>) -> Result<StepOutcome> {
        self.train_step_with(data.into(), None, &Dist::single())
    }

    /// Draws the step's batch (the same stream whatever the rank count) and keeps samples
    /// `lo..hi`: (x0 [n, C, H, W] flat, conditions, t [n], noise [n, C, H, W] flat).
    fn draw_shard(&mut self, data: Source, lo: usize, hi: usize) -> Result<(Vec<f32>, Cond, Vec<f32>, Vec<f32>)> {
        let b = self.cfg.batch_size;
        let per = data.image_len();
        let batch = data.draw(&mut self.rng, self.step, b, self.cfg.label_dropout, lo, hi)?;
        let t: Vec<f32> = (0..b).map(|_| shift_time(self.rng.uniform(), self.cfg.time_shift) as f32).collect();
        self.rng.skip_normals(lo * per);
        let eps = self.rng.normals((hi - lo) * per);
        self.rng.skip_normals((b - hi) * per);
        Ok((batch.x0, batch.cond, t[lo..hi].to_vec(), eps))
    }

    /// [`Self::train_step`] with an observer looking inside (diagnostics; the same numbers
    /// either way), as rank `dist.comm.rank()` of a data-parallel group: this rank's shard of
    /// the global batch forward and backward, gradients summed over the ranks with each shard
    /// weighted by its share (so every rank holds the global batch's gradient), then the one
    /// [`update`] of every parameter group (the class table, each depth stage).
    pub fn train_step_with(&mut self, data: Source, mut observer: Option<&mut dyn StepObserver<B>>, dist: &Dist) -> Result<StepOutcome> {
        let b = self.cfg.batch_size;
        let (rank, size) = (dist.comm.rank(), dist.comm.size());
        if size > b {
            return Err(Error::new(format!("config field `batch_size`: {b} is smaller than the {size} data-parallel ranks")));
        }
        let shard = crate::dist::shard(b, rank, size);
        // A batch one rank cannot read (a damaged shard) stops every rank here, before any
        // collective, rather than leaving the others waiting in the all-reduce.
        let drawn = self.draw_shard(data, shard.start, shard.end);
        if dist.any(drawn.is_err())? {
            return Err(drawn.err().unwrap_or_else(|| Error::new("another rank could not read its share of the batch")));
        }
        let (x0, cond, t, eps) = drawn?;
        let (xt, target) = noised_and_target(&x0, &eps, &t);
        let scale = self.loss_scale();
        let (loss, grads, table_grad) = if self.one_pass() {
            self.loss_and_grads_one_pass(&xt, &target, &cond, scale as f32, observer.as_deref_mut().and_then(|o| o.probe()), dist)?
        } else {
            if observer.is_some() {
                return Err(Error::new("diagnostics need the batch in one pass on one device: drop --devices and --micro-batches"));
            }
            let (loss, mut grads, mut table_grad) = self.loss_and_grads_pipelined(&xt, &target, &cond, scale as f32)?;
            let n = shard.len();
            (self.sum_over_ranks(loss, &mut grads, &mut table_grad, n, dist)?, grads, table_grad)
        };
        if let Some(o) = observer.as_deref_mut() {
            let s = &self.net.stages[0];
            o.grads(s.be, &s.model, &grads[0])?;
        }
        self.step += 1;
        // The class table is a group of its own on stage 0's device.
        let mut groups = Vec::with_capacity(self.net.stages.len() + 1);
        if let (Some(t), Some(g)) = (self.table.as_mut(), table_grad.as_ref()) {
            let be = self.net.stages[0].be;
            groups.push(Group { be, params: std::slice::from_mut(&mut t.weights), grads: std::slice::from_ref(g), opt: &mut t.opt, ema: Some(std::slice::from_mut(&mut t.ema)) });
        }
        for ((stage, g), ema) in self.net.stages.iter_mut().zip(&grads).zip(&mut self.ema) {
            groups.push(Group { be: stage.be, params: &mut stage.model.params, grads: g, opt: &mut stage.opt, ema: Some(ema) });
        }
        let mut outcome = update(groups, loss, self.cfg.ema_decay, scale)?;
        if let Some(s) = self.loss_scaler.as_mut() {
            outcome = s.after(outcome);
        }
        if let Some(o) = observer {
            let s = &self.net.stages[0];
            o.updated(s.be, &s.model, &grads[0], table_grad.as_ref(), outcome)?;
        }
        match outcome {
            StepOutcome::Skipped { .. } => {
                self.bad_in_row += 1;
                self.bad_total += 1;
            }
            StepOutcome::Updated { .. } => self.bad_in_row = 0,
            StepOutcome::Overflow { .. } => {}
        }
        Ok(outcome)
    }

    /// The factor the next step puts on its loss gradient: the loss scale, or 1 unscaled.
    pub fn loss_scale(&self) -> f64 {
        self.loss_scaler.as_ref().map_or(1.0, |s| s.scale)
    }

    /// What a pass holding the tapes of `n` samples on one device keeps for backward (the
    /// config's [`crate::config::Recompute`] rule and the resolved activation budget).
    pub fn keep(&self, n: usize) -> Result<Keep> {
        let (c, s) = (&self.cfg, self.cfg.data.image_size);
        let dims = Dims::new(&c.model, n, s, s, c.context_tokens)?;
        Ok(c.recompute.keep(c.model.depth, &dims, self.activation_mib))
    }

    /// What a step keeps, in words, for a run's first lines: the rule, the budget and where
    /// it came from, the blocks kept of a pass over `n` samples.
    pub fn keep_note(&self, n: usize) -> Result<String> {
        let (c, depth) = (&self.cfg, self.cfg.model.depth);
        let kept = self.keep(n)?.kept_blocks(depth);
        let budget = match c.activation_budget_mb {
            crate::config::ActivationBudget::Auto => format!("{} MiB (auto: half of this process's memory after the training state)", self.activation_mib),
            given => format!("{given} (activation_budget_mb)"),
        };
        let recompute = serde_json::to_value(c.recompute).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        Ok(format!("activations: recompute {recompute}, budget {budget}: {kept} of {depth} blocks kept at {n} samples a pass"))
    }

    /// The table's gradient [rows, Lt·Dc] from d context [n, Lt, Dc] of the samples' labels;
    /// none for caption contexts (given, not learned).
    fn table_grad(&self, d_ctx: B::Tensor, cond: &Cond) -> Result<Option<B::Tensor>> {
        let Cond::Labels(labels) = cond else { return Ok(None) };
        let be = self.home();
        let width = self.cfg.context_tokens * self.cfg.model.context_dim;
        let d_ctx = be.reshape(d_ctx, &[labels.len(), width])?;
        Ok(Some(be.scatter_add_rows(&d_ctx, labels, self.class_names.len() + 1)?))
    }

    /// Loss, gradients (one list: the whole model's) and the table's gradient of this rank's
    /// shard, x_t and target [n, C, H, W] flat, in one pass on one device; with several ranks,
    /// summed over them while backward runs. The gradients carry the factor `scale`.
    fn loss_and_grads_one_pass(
        &self,
        xt: &[f32],
        target: &[f32],
        cond: &Cond,
        scale: f32,
        probe: Option<&mut dyn Probe>,
        dist: &Dist,
    ) -> Result<(f64, Vec<Vec<B::Tensor>>, Option<B::Tensor>)> {
        let (be, model) = (self.home(), &self.net.stages[0].model);
        let n = cond.len(self.cfg.context_tokens * self.cfg.model.context_dim);
        let shape = self.image_shape(n);
        let xt = be.upload(xt, &shape)?;
        let target = be.upload(target, &shape)?;
        let ctx = self.context(cond)?;
        if dist.comm.size() == 1 {
            let (loss, grads, d_ctx) = loss_and_grads(be, model, &xt, ctx, &target, self.keep(n)?, scale, Watchers { probe, hook: None })?;
            return Ok((loss, vec![grads], self.table_grad(d_ctx, cond)?));
        }
        // This shard's loss is the mean over its n samples: weight n / B makes the ranks' sum
        // the global batch's mean, for the loss and (by linearity) for every gradient.
        let weight = n as f64 / self.cfg.batch_size as f64;
        let n_params = model.params.len();
        let table = usize::from(self.table.is_some());
        let mut reducer = GradReducer::new(be, dist.comm, dist.bucket_elems, weight as f32, n_params + table);
        let (loss, mut grads, d_ctx) = loss_and_grads(be, model, &xt, ctx, &target, self.keep(n)?, scale, Watchers { probe, hook: Some(&mut reducer) })?;
        let mut table_grad = self.table_grad(d_ctx, cond)?;
        if let Some(g) = &table_grad {
            reducer.add(n_params, g)?;
        }
        reducer.finish_into(grads.iter_mut().chain(table_grad.as_mut()))?;
        Ok((dist.comm.sum_f64(vec![loss * weight])?[0], vec![grads], table_grad))
    }

    /// [`Self::loss_and_grads_one_pass`] through the depth split's GPipe schedule: the
    /// gradients of each stage on its device, the table's on the first.
    fn loss_and_grads_pipelined(&self, xt: &[f32], target: &[f32], cond: &Cond, scale: f32) -> Result<(f64, Vec<Vec<B::Tensor>>, Option<B::Tensor>)> {
        let be = self.home();
        let (lt, dc) = (self.cfg.context_tokens, self.cfg.model.context_dim);
        let n = cond.len(lt * dc);
        let shape = self.image_shape(n);
        let ctx = be.download(&self.context(cond)?)?;
        let (loss, grads, d_ctx) = self.net.loss_and_grads(xt, shape, &ctx, lt, target, self.micro_batches, self.keep(n)?, scale)?;
        let d_ctx = be.upload(&d_ctx, &[n, lt, dc])?;
        Ok((loss, grads, self.table_grad(d_ctx, cond)?))
    }

    /// The global batch's loss and gradients from this rank's shard of `n` samples (every
    /// stage's, summed over the data-parallel ranks on the stage's own device, the table's with
    /// stage 0's), each shard weighted by its share n / B as in the one-pass path; one process:
    /// unchanged. Every rank holds the same stages, so the collectives match up in order.
    fn sum_over_ranks(&self, loss: f64, grads: &mut [Vec<B::Tensor>], table_grad: &mut Option<B::Tensor>, n: usize, dist: &Dist) -> Result<f64> {
        if dist.comm.size() == 1 {
            return Ok(loss);
        }
        let weight = n as f64 / self.cfg.batch_size as f64;
        for (s, (stage, g)) in self.net.stages.iter().zip(grads.iter_mut()).enumerate() {
            let table = table_grad.as_mut().filter(|_| s == 0);
            let mut reducer = GradReducer::new(stage.be, dist.comm, dist.bucket_elems, weight as f32, g.len() + usize::from(table.is_some()));
            for (i, t) in g.iter().chain(table.as_deref()).enumerate() {
                reducer.add(i, t)?;
            }
            reducer.finish_into(g.iter_mut().chain(table)).map_err(|e| e.context(format!("stage {s}")))?;
        }
        Ok(dist.comm.sum_f64(vec![loss * weight])?[0])
    }

    /// Held-out flow-matching loss on a fixed grid: every eval image at t ∈ {0.1, 0.3, …, 0.9}
    /// with noise from a fixed seed, its own label or caption, current (not EMA) weights.
    pub fn eval_loss(&self, eval: &Dataset) -> Result<f64> {
        if eval.is_empty() {
            return Err(Error::new("the evaluation split is empty (raise data.eval_fraction)"));
        }
        let be = self.home();
        let mut noise = Rng::new(0x5EED);
        let per = eval.image_len();
        let (mut sum, mut count) = (0.0f64, 0usize);
        for &t in &[0.1f32, 0.3, 0.5, 0.7, 0.9] {
            for chunk in (0..eval.len()).collect::<Vec<_>>().chunks(self.cfg.batch_size.max(1)) {
                let x0: Vec<f32> = chunk.iter().flat_map(|&i| eval.image(i).iter().copied()).collect();
                let cond = match &eval.text {
                    None => Cond::Labels(chunk.iter().map(|&i| eval.label(i)).collect()),
                    Some(text) => Cond::Contexts(chunk.iter().flat_map(|&i| text.contexts[i * text.len()..(i + 1) * text.len()].iter().copied()).collect()),
                };
                let eps = noise.normals(chunk.len() * per);
                let (xt, target) = noised_and_target(&x0, &eps, &vec![t; chunk.len()]);
                let shape = self.image_shape(chunk.len());
                let ctx = self.context(&cond)?;
                let v = self.net.forward(&be.upload(&xt, &shape)?, ctx)?;
                let (loss, _) = be.mse(&v, &be.upload(&target, &shape)?)?;
                sum += be.download(&loss)?[0] as f64 * chunk.len() as f64;
                count += chunk.len();
            }
        }
        Ok(sum / count as f64)
    }

    /// Samples `per_class` images of every class with the EMA weights → ([N, C, H, W], labels).
    pub fn sample_grid(&mut self, per_class: usize, seed: u64) -> Result<(Vec<f32>, Vec<u32>)> {
        let labels: Vec<u32> = (0..self.class_names.len() as u32).flat_map(|c| std::iter::repeat_n(c, per_class)).collect();
        let s = &self.cfg.sample;
        let opts = s.options(seed);
        let image = [self.cfg.data.channels, self.cfg.data.image_size, self.cfg.data.image_size];
        self.conditioner()?;
        self.swap_ema();
        let out = self.conditioner().and_then(|c| sample(self.home(), &self.net, &c, &labels, image, &opts));
        self.swap_ema();
        Ok((out?, labels))
    }

    /// Exchanges live and EMA weights (every stage and the class table).
    fn swap_ema(&mut self) {
        for (stage, ema) in self.net.stages.iter_mut().zip(&mut self.ema) {
            for (p, e) in stage.model.params.iter_mut().zip(ema) {
                std::mem::swap(p, e);
            }
        }
        if let Some(t) = self.table.as_mut() {
            std::mem::swap(&mut t.weights, &mut t.ema);
        }
    }
}
