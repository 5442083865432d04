//! Euler (or Heun) integration of the learned velocity from t = 1 (noise) to t = 0 (data), with
//! the time shift and classifier-free guidance: against the null class of a class-conditional
//! model ([`Labels`]), or against the empty prompt's context of a text-conditional one
//! ([`Contexts`]).

use crate::depth_split::{DepthSplit, StageBackend};
use crate::flow::shift_time;
use crate::rng::Rng;
use mvdit_core::Backend;
use mvdit_model::{Dit, Error, Keep, Result, WeightedDit};

/// A model the sampler queries: the velocity [B, C, H, W] at x [B, C, H, W] under context
/// [B, Lt, Dc], inputs and result on `be` — a whole [`Dit`], or a depth split whose first stage
/// is on `be` (the trained model of `mvdit train --devices`).
pub trait Velocity<B: Backend> {
    fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor>;
}

impl<B: Backend> Velocity<B> for Dit<B> {
    fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor> {
        Ok(self.forward(be, x, context, Keep::Nothing)?.0)
    }
}

impl<B: Backend> Velocity<B> for WeightedDit<B> {
    fn velocity(&self, be: &B, x: &B::Tensor, context: B::Tensor) -> Result<B::Tensor> {
        WeightedDit::velocity(self, be, x, context)
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Euler,
    Heun,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    pub steps: usize,
    pub cfg_scale: f64,
    pub shift: f64,
    pub seed: u64,
    pub method: Method,
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
    if scale == 1.0 {
        return model.velocity(be, x, cond.context(be)?);
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
    let v = model.velocity(be, &xx, cc)?;
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
    let shape = [cond.batch(), image[0], image[1], image[2]];
    if noise.len() != shape.iter().product::<usize>() {
        return Err(Error::new(format!("noise has {} values for shape {shape:?}", noise.len())));
    }
    let mut x = be.upload(noise, &shape)?;
    let grid = time_grid(opts.steps.max(1), opts.shift);
    for w in grid.windows(2) {
        let dt = (w[0] - w[1]) as f32; // x_t = (1−t)x0 + tε and v = x0 − ε, so dx/d(−t) = v
        let v1 = guided_velocity(be, model, cond, &x, opts.cfg_scale)?;
        x = match opts.method {
            Method::Heun if w[1] > 0.0 => {
                let pred = be.axpby(1.0, &x, dt, &v1)?;
                let v2 = guided_velocity(be, model, cond, &pred, opts.cfg_scale)?;
                let avg = be.axpby(0.5, &v1, 0.5, &v2)?;
                be.axpby(1.0, &x, dt, &avg)?
            }
            _ => be.axpby(1.0, &x, dt, &v1)?,
        };
    }
    Ok(be.download(&x)?)
}
