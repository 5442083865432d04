//! Integration of the learned velocity from t = 1 (noise) to t = 0 (data) on the shifted time
//! grid: Euler, Heun, DPM-Solver++ 2M and 3M, or the reverse SDE ([`Method`]; the step rules are
//! in [`crate::solver`]), with classifier-free guidance (optionally only inside an interval of t)
//! against the null class of a class-conditional model ([`Labels`]), or against the empty
//! prompt's context of a text-conditional one ([`Contexts`]).

use crate::depth_split::{DepthSplit, StageBackend};
use crate::flow::shift_time;
use crate::rng::Rng;
use mvdit_core::Backend;
use mvdit_model::step_cache::StepCache;
use mvdit_model::{Dit, Error, Keep, Result, WeightedDit};

/// A model the sampler queries: the velocity [B, C, H, W] at x [B, C, H, W] under context
/// [B, Lt, Dc], inputs and result on `be` — a whole [`Dit`], or a depth split whose first stage
/// is on `be` (the trained model of `mvdit train --devices`).
pub trait Velocity<B: Backend> {
    fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor>;

    /// [`Self::velocity`] reusing updates from `cache` where the model can (a [`Dit`], a
    /// [`WeightedDit`] in any residency); others compute every block.
    fn velocity_cached(&self, be: &B, x: &B::Tensor, context: B::Tensor, cache: &mut StepCache<B::Tensor>) -> Result<B::Tensor> {
        let _ = cache;
        self.velocity(be, x, context)
    }
}

impl<B: Backend> Velocity<B> for Dit<B> {
    fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor> {
        Ok(self.forward(be, x, context, Keep::Nothing)?.0)
    }
    fn velocity_cached(&self, be: &B, x: &B::Tensor, context: B::Tensor, cache: &mut StepCache<B::Tensor>) -> Result<B::Tensor> {
        self.velocity_cached(be, x, context, cache)
    }
}

impl<B: Backend> Velocity<B> for WeightedDit<B> {
    fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor> {
        WeightedDit::velocity(self, be, x, context)
    }
    fn velocity_cached(&self, be: &B, x: &B::Tensor, context: B::Tensor, cache: &mut StepCache<B::Tensor>) -> Result<B::Tensor> {
        WeightedDit::velocity_cached(self, be, x, context, cache)
    }
}

impl<B: StageBackend> Velocity<B> for DepthSplit<'_, B> {
    fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor> {
        if !std::ptr::eq(be, self.stages[0].be) {
            return Err(Error::new("internal: a depth split's inputs live on its first stage's device"));
        }
        self.forward(x, context)
    }
}

/// How the sampler steps through the time grid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// One model evaluation a step (the official sampler).
    #[default]
    Euler,
    /// Euler, then a corrector at the step's end (two evaluations a step, one on the last).
    Heun,
    /// DPM-Solver++ 2M: second order from the previous step's prediction, one evaluation a step.
    Dpm2m,
    /// DPM-Solver++ 3M: third order from the two previous predictions, one evaluation a step.
    Dpm3m,
    /// Adams–Bashforth in t on the velocity, second order, one evaluation a step.
    Ab2,
    /// Adams–Bashforth, third order, one evaluation a step.
    Ab3,
    /// The reverse SDE with SiT's diffusion σ_t (Euler–Maruyama, seeded; the last step plain).
    Sde,
}

impl Method {
    pub const ALL: [Method; 7] = [Method::Euler, Method::Heun, Method::Dpm2m, Method::Dpm3m, Method::Ab2, Method::Ab3, Method::Sde];

    pub fn name(self) -> &'static str {
        match self {
            Method::Euler => "euler",
            Method::Heun => "heun",
            Method::Dpm2m => "dpm2m",
            Method::Dpm3m => "dpm3m",
            Method::Ab2 => "ab2",
            Method::Ab3 => "ab3",
            Method::Sde => "sde",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let choices: Vec<(&str, Method)> = Method::ALL.iter().map(|m| (m.name(), *m)).collect();
        mvdit_core::parse_choice(s, &choices, "sampler")
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    pub steps: usize,
    pub cfg_scale: f64,
    pub shift: f64,
    /// The initial noise's seed (and, for [`Method::Sde`], the seed of the noise it adds).
    pub seed: u64,
    pub method: Method,
    /// Guidance only for t in [lo, hi] (Kynkäänniemi et al. 2024); elsewhere one conditional
    /// evaluation a step. None: every step.
    pub cfg_interval: Option<[f64; 2]>,
    /// Step caching: a block's update is reused while its input has moved less than this
    /// (relative RMS) since it was computed, every [`CACHE_REFRESH`]-th model call computing
    /// all; 0 = off (exact).
    pub cache_threshold: f64,
}

/// Every this many model calls, step caching computes every block.
pub const CACHE_REFRESH: usize = 5;

impl SampleOptions {
    /// Whether a step at time `t` is guided.
    pub fn guided_at(&self, t: f64) -> bool {
        self.cfg_scale != 1.0 && self.cfg_interval.is_none_or(|[lo, hi]| (lo..=hi).contains(&t))
    }

    /// One line: the sampler, steps, guidance (and its interval), shift, and what an image costs.
    pub fn describe(&self) -> String {
        let guidance = match (self.cfg_scale == 1.0, self.cfg_interval) {
            (true, _) => "no guidance".to_string(),
            (false, None) => format!("guidance {}", self.cfg_scale),
            (false, Some([lo, hi])) => format!("guidance {} for t in [{lo}, {hi}]", self.cfg_scale),
        };
        let cache = if self.cache_threshold > 0.0 { format!(", step caching below {}", self.cache_threshold) } else { String::new() };
        format!("{}, {} steps, {guidance}, shift {}{cache}: {} model evaluations an image", self.method, self.steps, self.shift, self.evaluations())
    }

    /// The settings as JSON (`sampling.json` beside the images); `from_checkpoint` names the
    /// settings the checkpoint chose.
    pub fn to_json(&self, from_checkpoint: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "sampler": self.method.name(), "steps": self.steps, "cfg": self.cfg_scale, "cfg_interval": self.cfg_interval,
            "shift": self.shift, "seed": self.seed, "evaluations": self.evaluations(), "cache_threshold": self.cache_threshold, "from_checkpoint": from_checkpoint,
        })
    }

    /// Model evaluations per image (a guided evaluation counts two: it runs the conditional and
    /// the unconditional halves).
    pub fn evaluations(&self) -> usize {
        let grid = time_grid(self.steps.max(1), self.shift);
        let per = |t: f64| if self.guided_at(t) { 2 } else { 1 };
        grid.windows(2).map(|w| per(w[0]) + if self.method == Method::Heun && w[1] > 0.0 { per(w[1]) } else { 0 }).sum()
    }
}

/// Class conditioning: a table [classes + 1, Lt·Dc] whose last row is the null class.
pub struct Conditioner<'a, B: Backend> {
    pub table: &'a B::Tensor,
    pub context_tokens: usize,
    pub context_dim: usize,
}

impl<B: Backend> Conditioner<'_, B> {
    pub fn null_class(&self, be: &B) -> u32 {
        (be.shape(self.table)[0] - 1) as u32
    }

    /// labels: [B] → context [B, Lt, Dc].
    pub fn context(&self, be: &B, labels: &[u32]) -> Result<B::Tensor> {
        let rows = be.gather_rows(self.table, labels)?;
        Ok(be.reshape(rows, &[labels.len(), self.context_tokens, self.context_dim])?)
    }
}

/// The time grid t_0 = 1 > t_1 > … > t_N = 0: uniform steps bent by the shift.
pub fn time_grid(steps: usize, shift: f64) -> Vec<f64> {
    (0..=steps).map(|i| shift_time(1.0 - i as f64 / steps as f64, shift)).collect()
}

/// What a batch of samples is conditioned on: each image's context and its unconditional twin.
pub trait Condition<B: Backend> {
    /// Images in the batch.
    fn batch(&self) -> usize;
    /// The conditional contexts [B, Lt, Dc].
    fn context(&self, be: &B) -> Result<B::Tensor>;
    /// The unconditional contexts [B, Lt, Dc] (guidance's other half).
    fn uncond(&self, be: &B) -> Result<B::Tensor>;
}

/// Class labels through a [`Conditioner`]'s table; the null class is the unconditional one.
pub struct Labels<'a, B: Backend> {
    pub cond: &'a Conditioner<'a, B>,
    pub labels: &'a [u32],
}

impl<B: Backend> Condition<B> for Labels<'_, B> {
    fn batch(&self) -> usize {
        self.labels.len()
    }
    fn context(&self, be: &B) -> Result<B::Tensor> {
        self.cond.context(be, self.labels)
    }
    fn uncond(&self, be: &B) -> Result<B::Tensor> {
        self.cond.context(be, &vec![self.cond.null_class(be); self.labels.len()])
    }
}

/// Contexts given on the host (a text encoder's last hidden states): `cond` and `uncond` are
/// [B, Lt, Dc] row-major.
pub struct Contexts {
    pub cond: Vec<f32>,
    pub uncond: Vec<f32>,
    /// [B, Lt, Dc].
    pub shape: [usize; 3],
}

impl<B: Backend> Condition<B> for Contexts {
    fn batch(&self) -> usize {
        self.shape[0]
    }
    fn context(&self, be: &B) -> Result<B::Tensor> {
        Ok(be.upload(&self.cond, &self.shape)?)
    }
    fn uncond(&self, be: &B) -> Result<B::Tensor> {
        Ok(be.upload(&self.uncond, &self.shape)?)
    }
}

/// Guided velocity at x (shape [B, C, H, W]): v_u + s·(v_c − v_u); one pass when s = 1.
pub fn guided_velocity<B: Backend, M: Velocity<B> + ?Sized>(be: &B, model: &M, cond: &dyn Condition<B>, x: &B::Tensor, scale: f64) -> Result<B::Tensor> {
    guided_velocity_cached(be, model, cond, x, scale, None)
}

/// [`guided_velocity`] through a step cache.
pub fn guided_velocity_cached<B: Backend, M: Velocity<B> + ?Sized>(
    be: &B,
    model: &M,
    cond: &dyn Condition<B>,
    x: &B::Tensor,
    scale: f64,
    cache: Option<&mut StepCache<B::Tensor>>,
) -> Result<B::Tensor> {
    let call = |x: &B::Tensor, c: B::Tensor, cache: Option<&mut StepCache<B::Tensor>>| match cache {
        Some(cache) => model.velocity_cached(be, x, c, cache),
        None => model.velocity(be, x, c),
    };
    if scale == 1.0 {
        return call(x, cond.context(be)?, cache);
    }
    let shape = be.shape(x).to_vec();
    let b = shape[0];
    let per: usize = shape[1..].iter().product();
    // Conditional and unconditional halves in one batch: [1, B, ·] ++ [1, B, ·] → [2B, C, H, W].
    let row = |t: B::Tensor| be.reshape(t, &[1, b, per]);
    let x1 = row(be.axpby(1.0, x, 0.0, x)?)?;
    let x2 = row(be.axpby(1.0, x, 0.0, x)?)?;
    let mut shape2 = shape.clone();
    shape2[0] = 2 * b;
    let xx = be.reshape(be.concat_tokens(&x1, &x2)?, &shape2)?;
    let (c1, c2) = (cond.context(be)?, cond.uncond(be)?);
    let cs = be.shape(&c1).to_vec();
    let flat = |t: B::Tensor| be.reshape(t, &[1, b, cs[1] * cs[2]]);
    let cc = be.concat_tokens(&flat(c1)?, &flat(c2)?)?;
    let cc = be.reshape(cc, &[2 * b, cs[1], cs[2]])?;
    let v = call(&xx, cc, cache)?;
    let (vc, vu) = be.split_tokens(&be.reshape(v, &[1, 2 * b, per])?, b)?;
    let s = scale as f32;
    let v = be.axpby(s, &vc, 1.0 - s, &vu)?;
    Ok(be.reshape(v, &shape)?)
}

/// Samples one image per label. Returns [B, C, H, W] values (roughly in [-1, 1]).
pub fn sample<B: Backend, M: Velocity<B> + ?Sized>(be: &B, model: &M, cond: &Conditioner<B>, labels: &[u32], image: [usize; 3], opts: &SampleOptions) -> Result<Vec<f32>> {
    let shape = [labels.len(), image[0], image[1], image[2]];
    let noise = Rng::new(opts.seed).normals(shape.iter().product());
    sample_from(be, model, &Labels { cond, labels }, &noise, image, opts)
}

/// Integrates from the given noise [B, C, H, W] (B = the condition's batch) to t = 0.
pub fn sample_from<B: Backend, M: Velocity<B> + ?Sized>(be: &B, model: &M, cond: &dyn Condition<B>, noise: &[f32], image: [usize; 3], opts: &SampleOptions) -> Result<Vec<f32>> {
    Ok(sample_reported(be, model, cond, noise, image, opts)?.0)
}

/// [`sample_from`], with the fraction of block evaluations step caching skipped (None when off).
pub fn sample_reported<B: Backend, M: Velocity<B> + ?Sized>(be: &B, model: &M, cond: &dyn Condition<B>, noise: &[f32], image: [usize; 3], opts: &SampleOptions) -> Result<(Vec<f32>, Option<f64>)> {
    let shape = [cond.batch(), image[0], image[1], image[2]];
    if noise.len() != shape.iter().product::<usize>() {
        return Err(Error::new(format!("noise has {} values for shape {shape:?}", noise.len())));
    }
    let mut x = be.upload(noise, &shape)?;
    let grid = time_grid(opts.steps.max(1), opts.shift);
    let mut cache = (opts.cache_threshold > 0.0).then(|| StepCache::new(opts.cache_threshold, CACHE_REFRESH));
    let mut velocity = |x: &B::Tensor, t: f64| guided_velocity_cached(be, model, cond, x, if opts.guided_at(t) { opts.cfg_scale } else { 1.0 }, cache.as_mut());
    // Multistep solvers: the previous predictions D or velocities (newest first), and their
    // steps in λ or their times.
    let (mut preds, mut h_prev, mut times): (Vec<B::Tensor>, Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new(), Vec::new());
    let mut sde_noise = Rng::new(opts.seed ^ 0x5DE5_A3F1_0C4B_9E27);
    for (i, w) in grid.windows(2).enumerate() {
        let (t, t_next) = (w[0], w[1]);
        let dt = (t - t_next) as f32; // x_t = (1−t)x0 + tε and v = x0 − ε, so dx/d(−t) = v
        // Guidance switching on or off changes the field: no extrapolation across the switch.
        if i > 0 && opts.guided_at(t) != opts.guided_at(grid[i - 1]) {
            preds.clear();
            h_prev.clear();
            times.clear();
        }
        let v1 = velocity(&x, t)?;
        x = match opts.method {
            Method::Euler => be.axpby(1.0, &x, dt, &v1)?,
            Method::Heun if t_next > 0.0 => {
                let pred = be.axpby(1.0, &x, dt, &v1)?;
                let v2 = velocity(&pred, t_next)?;
                let avg = be.axpby(0.5, &v1, 0.5, &v2)?;
                be.axpby(1.0, &x, dt, &avg)?
            }
            Method::Heun => be.axpby(1.0, &x, dt, &v1)?,
            Method::Dpm2m | Method::Dpm3m => {
                let order = if opts.method == Method::Dpm2m { 2 } else { 3 };
                let c = crate::solver::dpm_step(order, t, t_next, &h_prev);
                remember(&mut preds, be.axpby(1.0, &x, t as f32, &v1)?, order);
                remember(&mut h_prev, crate::solver::lambda(t_next) - crate::solver::lambda(t), order);
                combine(be, c.x as f32, &x, &c.d, &preds)?
            }
            Method::Ab2 | Method::Ab3 => {
                let order = if opts.method == Method::Ab2 { 2 } else { 3 };
                remember(&mut preds, v1, order);
                remember(&mut times, t, order);
                combine(be, 1.0, &x, &crate::solver::adams_bashforth(t, t_next, &times), &preds)?
            }
            Method::Sde if t_next > 0.0 => {
                let (cx, cv, cz) = crate::solver::sde_step(t, t_next);
                let z = be.upload(&sde_noise.normals(shape.iter().product()), &shape)?;
                let drift = be.axpby(cx as f32, &x, cv as f32, &v1)?;
                be.axpby(1.0, &drift, cz as f32, &z)?
            }
            // The last step without noise: the mean of the last transition.
            Method::Sde => be.axpby(1.0, &x, dt, &v1)?,
        };
    }
    drop(velocity);
    Ok((be.download(&x)?, cache.map(|c| c.skipped_fraction())))
}

/// Puts `item` first in the newest-first history `v`, which keeps `keep` entries.
fn remember<T>(v: &mut Vec<T>, item: T, keep: usize) {
    v.insert(0, item);
    v.truncate(keep);
}

/// `a·x + Σ weights[k]·terms[k]` (a step rule of [`crate::solver`]; zero weights past the
/// first skipped).
fn combine<B: Backend>(be: &B, a: f32, x: &B::Tensor, weights: &[f64], terms: &[B::Tensor]) -> Result<B::Tensor> {
    let mut out = be.axpby(a, x, weights[0] as f32, &terms[0])?;
    for (&w, term) in weights.iter().zip(terms).skip(1).filter(|(w, _)| **w != 0.0) {
        out = be.axpby(1.0, &out, w as f32, term)?;
    }
    Ok(out)
}
