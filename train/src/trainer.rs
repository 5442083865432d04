//! Training state and one class-conditional rectified-flow step; checkpoints of the whole state.

use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::flow::{noised_and_target, shift_time};
use crate::init::{default_weight_std, init_params_with, Init};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::sampler::{sample, Conditioner, Method, SampleOptions};
use crate::dist::{Dist, GradReducer};
use crate::step::{loss_and_grads_hooked, loss_and_grads_probed};
use mvdit_core::Backend;
use mvdit_model::checkpoint::{from_tensor_file, to_tensor_file, Checkpoint};
use mvdit_model::{compute_shape, Dit, Error, HostTensor, Keep, Probe, Result, TensorFile};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Name of the class-embedding table in checkpoints: [classes + 1, Lt·Dc], last row = null class.
pub const CLASS_TABLE: &str = "cond.class_embed";

/// Everything a run needs to continue exactly where it stopped.
pub struct TrainState<B: Backend> {
    pub cfg: TrainConfig,
    pub model: Dit<B>,
    pub table: B::Tensor,
    /// EMA of the model parameters, then of the class table.
    pub ema: Vec<B::Tensor>,
    /// Moments for the model parameters, then the class table.
    pub opt: Optimizer<B>,
    pub rng: Rng,
    pub step: u64,
    /// Non-finite steps in a row (reset by a good step) and in total.
    pub bad_in_row: u64,
    pub bad_total: u64,
    pub class_names: Vec<String>,
}

/// Looks inside one training step (diagnostics): the model probe, then every gradient.
pub trait StepObserver<B: Backend> {
    fn probe(&mut self) -> &mut dyn Probe;
    /// Every parameter gradient (layout order, compute shapes), before clipping and the update.
    fn grads(&mut self, be: &B, model: &Dit<B>, grads: &[B::Tensor]) -> Result<()>;
}

/// A step's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepOutcome {
    Updated { loss: f64, grad_norm: f64, lr: f64 },
    /// Non-finite loss or gradient: nothing was changed.
    Skipped { loss: f64, grad_norm: f64 },
}

fn copy<B: Backend>(be: &B, t: &B::Tensor) -> Result<B::Tensor> {
    Ok(be.axpby(1.0, t, 0.0, t)?)
}

impl<B: Backend> TrainState<B> {
    pub fn new(be: &B, cfg: TrainConfig, class_names: Vec<String>) -> Result<Self> {
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
        let params = init_params_with(&cfg.model, &init, &mut rng, &mut writer_rng);
        let model = Dit::from_host(be, cfg.model.clone(), params)?;
        let rows = class_names.len() + 1;
        let width = cfg.context_tokens * cfg.model.context_dim;
        let table = be.upload(&rng.normals(rows * width), &[rows, width])?;
        let mut ema = model.params.iter().map(|p| copy(be, p)).collect::<Result<Vec<_>>>()?;
        ema.push(copy(be, &table)?);
        let opt = Self::optimizer(be, &cfg, &model, rows, width)?;
        Ok(TrainState { cfg, model, table, ema, opt, rng, step: 0, bad_in_row: 0, bad_total: 0, class_names })
    }

    fn optimizer(be: &B, cfg: &TrainConfig, model: &Dit<B>, rows: usize, width: usize) -> Result<Optimizer<B>> {
        let mut shapes: Vec<Vec<usize>> = model.layout.specs.iter().map(|s| compute_shape(&s.shape)).collect();
        shapes.push(vec![rows, width]);
        // Embedding rows are looked up, not multiplied: no decay, as is usual for embeddings.
        let mut decays = Optimizer::<B>::decays_of(&model.layout);
        decays.push(false);
        Ok(Optimizer::new(be, cfg.optim.clone(), &shapes, decays)?)
    }

    pub fn conditioner(&self) -> Conditioner<'_, B> {
        Conditioner { table: &self.table, context_tokens: self.cfg.context_tokens, context_dim: self.cfg.model.context_dim }
    }

    fn image_shape(&self, b: usize) -> [usize; 4] {
        let d = &self.cfg.data;
        [b, d.channels, d.image_size, d.image_size]
    }

    /// One step: draw a batch, labels (with dropout to null), t and noise; forward, backward,
    /// clip, AdamW, EMA. Non-finite loss or gradients skip the update.
    pub fn train_step(&mut self, be: &B, data: &Dataset) -> Result<StepOutcome> {
        self.train_step_observed(be, data, None)
    }

    /// [`Self::train_step`] with an observer looking inside (the same numbers either way).
    pub fn train_step_observed(&mut self, be: &B, data: &Dataset, observer: Option<&mut dyn StepObserver<B>>) -> Result<StepOutcome> {
        self.train_step_parallel(be, data, observer, &Dist::single())
    }

    /// Draws the step's batch (the same stream whatever the rank count) and keeps samples
    /// `lo..hi`: (x0 [n, C, H, W] flat, labels [n], t [n], noise [n, C, H, W] flat).
    fn draw_shard(&mut self, data: &Dataset, lo: usize, hi: usize) -> (Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>) {
        let b = self.cfg.batch_size;
        let null = self.class_names.len() as u32;
        let per = data.image_len();
        let mut x0 = Vec::with_capacity((hi - lo) * per);
        let mut labels = Vec::with_capacity(hi - lo);
        for j in 0..b {
            let i = self.rng.below(data.len());
            let label = if self.rng.uniform() < self.cfg.label_dropout { null } else { data.label(i) };
            if (lo..hi).contains(&j) {
                x0.extend_from_slice(data.image(i));
                labels.push(label);
            }
        }
        let t: Vec<f32> = (0..b).map(|_| shift_time(self.rng.uniform(), self.cfg.time_shift) as f32).collect();
        self.rng.skip_normals(lo * per);
        let eps = self.rng.normals((hi - lo) * per);
        self.rng.skip_normals((b - hi) * per);
        (x0, labels, t[lo..hi].to_vec(), eps)
    }

    /// One step as rank `dist.comm.rank()` of a data-parallel group: this rank's shard of the
    /// global batch forward and backward, gradients summed over the ranks with each shard
    /// weighted by its share (so every rank holds the global batch's gradient), then the same
    /// clipping, AdamW and EMA as one process. One rank is [`Self::train_step_observed`].
    pub fn train_step_parallel(&mut self, be: &B, data: &Dataset, mut observer: Option<&mut dyn StepObserver<B>>, dist: &Dist) -> Result<StepOutcome> {
        let b = self.cfg.batch_size;
        let (rank, size) = (dist.comm.rank(), dist.comm.size());
        if size > b {
            return Err(Error::new(format!("config field `batch_size`: {b} is smaller than the {size} data-parallel ranks")));
        }
        let shard = crate::dist::shard(b, rank, size);
        let n = shard.len();
        let (x0, labels, t, eps) = self.draw_shard(data, shard.start, shard.end);
        let (xt, target) = noised_and_target(&x0, &eps, &t);
        let shape = self.image_shape(n);
        let xt = be.upload(&xt, &shape)?;
        let target = be.upload(&target, &shape)?;
        let ctx = self.conditioner().context(be, &labels)?;
        let keep = if self.cfg.recompute { Keep::BlockInputs } else { Keep::All };
        let probe = observer.as_deref_mut().map(|o| o.probe());
        let n_params = self.model.params.len();
        let rows = self.class_names.len() + 1;
        let width = self.cfg.context_tokens * self.cfg.model.context_dim;
        let (loss, grads) = if size == 1 {
            let (loss, mut grads, d_ctx) = loss_and_grads_probed(be, &self.model, &xt, ctx, &target, keep, probe)?;
            let d_ctx = be.reshape(d_ctx, &[n, width])?;
            grads.push(be.scatter_add_rows(&d_ctx, &labels, rows)?);
            (loss, grads)
        } else {
            // This shard's loss is the mean over its n samples: weight n / B makes the ranks' sum
            // the global batch's mean, for the loss and (by linearity) for every gradient.
            let weight = n as f64 / b as f64;
            let mut reducer = GradReducer::new(be, dist.comm, dist.bucket_elems, weight as f32, n_params + 1);
            let (loss, mut grads, d_ctx) = loss_and_grads_hooked(be, &self.model, &xt, ctx, &target, keep, probe, Some(&mut reducer))?;
            let d_ctx = be.reshape(d_ctx, &[n, width])?;
            let table_grad = be.scatter_add_rows(&d_ctx, &labels, rows)?;
            reducer.add(n_params, &table_grad)?;
            grads.push(table_grad);
            let summed = reducer.finish()?;
            for (i, (g, s)) in grads.iter_mut().zip(summed).enumerate() {
                let s = s.ok_or_else(|| Error::new(format!("internal: gradient {i} was not all-reduced")))?;
                *g = be.upload(&s, &be.shape(g).to_vec())?;
            }
            (dist.comm.sum_f64(vec![loss * weight])?[0], grads)
        };
        if let Some(o) = observer {
            o.grads(be, &self.model, &grads[..n_params])?;
        }
        let refs: Vec<&B::Tensor> = grads.iter().collect();
        let grad_norm = self.opt.grad_norm(be, &refs)?;
        self.step += 1;
        if !(loss.is_finite() && grad_norm.is_finite()) {
            self.bad_in_row += 1;
            self.bad_total += 1;
            return Ok(StepOutcome::Skipped { loss, grad_norm });
        }
        self.bad_in_row = 0;
        let mut params: Vec<&mut B::Tensor> = self.model.params.iter_mut().collect();
        params.push(&mut self.table);
        let lr = self.opt.apply(be, params, &refs, grad_norm)?;
        if self.cfg.ema_decay > 0.0 {
            let d = self.cfg.ema_decay as f32;
            let live = self.model.params.iter().chain(std::iter::once(&self.table));
            for (e, p) in self.ema.iter_mut().zip(live) {
                *e = be.axpby(d, e, 1.0 - d, p)?;
            }
        }
        Ok(StepOutcome::Updated { loss, grad_norm, lr })
    }

    /// Held-out flow-matching loss on a fixed grid: every eval image at t ∈ {0.1, 0.3, …, 0.9}
    /// with noise from a fixed seed, conditional labels, current (not EMA) weights.
    pub fn eval_loss(&self, be: &B, eval: &Dataset) -> Result<f64> {
        if eval.is_empty() {
            return Err(Error::new("the evaluation split is empty (raise data.eval_fraction)"));
        }
        let mut noise = Rng::new(0x5EED);
        let per = eval.image_len();
        let (mut sum, mut count) = (0.0f64, 0usize);
        for &t in &[0.1f32, 0.3, 0.5, 0.7, 0.9] {
            for chunk in (0..eval.len()).collect::<Vec<_>>().chunks(self.cfg.batch_size.max(1)) {
                let x0: Vec<f32> = chunk.iter().flat_map(|&i| eval.image(i).iter().copied()).collect();
                let labels: Vec<u32> = chunk.iter().map(|&i| eval.label(i)).collect();
                let eps = noise.normals(chunk.len() * per);
                let (xt, target) = noised_and_target(&x0, &eps, &vec![t; chunk.len()]);
                let shape = self.image_shape(chunk.len());
                let ctx = self.conditioner().context(be, &labels)?;
                let (v, _) = self.model.forward(be, &be.upload(&xt, &shape)?, ctx, Keep::Nothing)?;
                let (loss, _) = be.mse(&v, &be.upload(&target, &shape)?)?;
                sum += be.download(&loss)?[0] as f64 * chunk.len() as f64;
                count += chunk.len();
            }
        }
        Ok(sum / count as f64)
    }

    /// Samples `per_class` images of every class with the EMA weights → ([N, C, H, W], labels).
    pub fn sample_grid(&mut self, be: &B, per_class: usize, seed: u64) -> Result<(Vec<f32>, Vec<u32>)> {
        let labels: Vec<u32> = (0..self.class_names.len() as u32).flat_map(|c| std::iter::repeat_n(c, per_class)).collect();
        let s = &self.cfg.sample;
        let opts = SampleOptions { steps: s.steps, cfg_scale: s.cfg_scale, shift: s.shift, seed, method: Method::Euler };
        let image = [self.cfg.data.channels, self.cfg.data.image_size, self.cfg.data.image_size];
        self.swap_ema();
        let out = sample(be, &self.model, &self.conditioner(), &labels, image, &opts);
        self.swap_ema();
        Ok((out?, labels))
    }

    /// Exchanges live and EMA weights (model and class table).
    fn swap_ema(&mut self) {
        let n = self.model.params.len();
        for (p, e) in self.model.params.iter_mut().zip(&mut self.ema[..n]) {
            std::mem::swap(p, e);
        }
        std::mem::swap(&mut self.table, &mut self.ema[n]);
    }

    /// The whole state as a checkpoint file (parameters under released names).
    pub fn to_checkpoint(&self, be: &B) -> Result<TensorFile> {
        let specs = &self.model.layout.specs;
        let mut state = BTreeMap::new();
        let table_shape = be.shape(&self.table).to_vec();
        state.insert(CLASS_TABLE.to_string(), HostTensor::new(table_shape.clone(), be.download(&self.table)?));
        let names: Vec<(String, Vec<usize>)> =
            specs.iter().map(|s| (s.name.clone(), s.shape.clone())).chain(std::iter::once((CLASS_TABLE.to_string(), table_shape))).collect();
        for (i, (name, shape)) in names.iter().enumerate() {
            state.insert(format!("ema.{name}"), HostTensor::new(shape.clone(), be.download(&self.ema[i])?));
            state.insert(format!("optim.m.{name}"), HostTensor::new(shape.clone(), be.download(&self.opt.m[i])?));
            state.insert(format!("optim.v.{name}"), HostTensor::new(shape.clone(), be.download(&self.opt.v[i])?));
        }
        let mut metadata = HashMap::new();
        metadata.insert("train_config".into(), to_json(&self.cfg));
        metadata.insert("class_names".into(), to_json(&self.class_names));
        metadata.insert("step".into(), self.step.to_string());
        metadata.insert("optim_step".into(), self.opt.step.to_string());
        metadata.insert("rng".into(), self.rng.to_state());
        metadata.insert("bad_steps".into(), format!("{},{}", self.bad_in_row, self.bad_total));
        let ck = Checkpoint { cfg: self.model.cfg.clone(), params: self.model.to_host(be)?, state, metadata };
        to_tensor_file(&ck)
    }

    /// Restores a state written by [`Self::to_checkpoint`].
    pub fn from_checkpoint(be: &B, file: TensorFile, origin: &Path) -> Result<Self> {
        let at = |e: Error| e.context(origin.display());
        let ck = from_tensor_file(file, None).map_err(at)?;
        let meta = |k: &str| ck.metadata.get(k).ok_or_else(|| at(Error::new(format!("metadata key `{k}` missing: not a mvdit training checkpoint"))));
        let cfg: TrainConfig = serde_json::from_str(meta("train_config")?).map_err(|e| at(Error::new(format!("metadata `train_config`: {e}"))))?;
        let class_names: Vec<String> = serde_json::from_str(meta("class_names")?).map_err(|e| at(Error::new(format!("metadata `class_names`: {e}"))))?;
        let num = |k: &str| -> Result<u64> { meta(k)?.parse().map_err(|_| at(Error::new(format!("metadata `{k}` is not a number")))) };
        let (step, opt_step) = (num("step")?, num("optim_step")?);
        let rng = Rng::from_state(meta("rng")?).ok_or_else(|| at(Error::new("metadata `rng` is malformed")))?;
        let (bad_in_row, bad_total) = meta("bad_steps")?
            .split_once(',')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| at(Error::new("metadata `bad_steps` is malformed")))?;
        let rows = class_names.len() + 1;
        let width = cfg.context_tokens * cfg.model.context_dim;
        let get = |name: &str, shape: &[usize]| -> Result<B::Tensor> {
            let t = ck.state.get(name).ok_or_else(|| at(Error::new(format!("missing tensor `{name}`"))))?;
            if t.data.len() != shape.iter().product::<usize>() {
                return Err(at(Error::new(format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.shape))));
            }
            Ok(be.upload(&t.data, shape)?)
        };
        let model = Dit::from_host(be, ck.cfg.clone(), ck.params)?;
        let table = get(CLASS_TABLE, &[rows, width])?;
        let mut opt = Self::optimizer(be, &cfg, &model, rows, width)?;
        opt.step = opt_step;
        let mut shapes: Vec<(String, Vec<usize>)> = model.layout.specs.iter().map(|s| (s.name.clone(), compute_shape(&s.shape))).collect();
        shapes.push((CLASS_TABLE.to_string(), vec![rows, width]));
        let mut ema = Vec::with_capacity(shapes.len());
        for (i, (name, shape)) in shapes.iter().enumerate() {
            ema.push(get(&format!("ema.{name}"), shape)?);
            opt.m[i] = get(&format!("optim.m.{name}"), shape)?;
            opt.v[i] = get(&format!("optim.v.{name}"), shape)?;
        }
        Ok(TrainState { cfg, model, table, ema, opt, rng, step, bad_in_row, bad_total, class_names })
    }
}

/// JSON text of plain data (metadata values are strings).
fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}
