//! The samplers against a velocity field whose ODE has a closed-form solution: Gaussian data
//! x0 ~ N(μ, s²) per dimension. With x_t = (1−t)·x0 + t·ε the marginal variance is
//! m(t) = (1−t)²s² + t², the exact velocity v = E[x0 − ε | x_t] = μ + ((1−t)s² − t)/m·(x − (1−t)μ),
//! and the probability-flow ODE carries noise z at t = 1 to x0 = μ + s·z exactly. Each solver's
//! error against that falls at its order as the steps double; the SDE's samples have the data's
//! spread; guidance inside an interval costs what `SampleOptions::evaluations` says.

use mvdit_backend_cpu::Cpu;
use mvdit_core::Backend;
use mvdit_train::rng::Rng;
use mvdit_train::sampler::{sample_from, time_grid, Contexts, Method, SampleOptions, Velocity};
use mvdit_train::Result;
use std::cell::Cell;

/// Gaussian data; a context of 1 asks for mean `mu`, of 0 for mean `mu_uncond` (the guidance
/// pair). Counts evaluations per image.
struct Gaussian {
    mu: Vec<f64>,
    mu_uncond: Vec<f64>,
    s: Vec<f64>,
    evals: Cell<usize>,
}

impl Gaussian {
    fn new(dims: usize) -> Self {
        let mu = (0..dims).map(|k| 0.3 * ((k % 5) as f64 - 2.0)).collect();
        let mu_uncond = (0..dims).map(|k| -0.1 * (k % 3) as f64).collect();
        let s = (0..dims).map(|k| [0.5, 1.0, 2.0, 0.2][k % 4]).collect();
        Gaussian { mu, mu_uncond, s, evals: Cell::new(0) }
    }
}

/// The field as the sampler queries it: the model takes no time input (as mvdit's DiT), so the
/// test knows the time of each call from the sampler's schedule.
struct Timed<'a> {
    field: &'a Gaussian,
    /// The time of each call, in order (Heun's second call is at its step's end).
    schedule: Vec<f64>,
    call: Cell<usize>,
}

impl Velocity<Cpu> for Timed<'_> {
    fn velocity(&self, be: &Cpu, x: &<Cpu as Backend>::Tensor, context: <Cpu as Backend>::Tensor) -> Result<<Cpu as Backend>::Tensor> {
        let t = self.schedule[self.call.get()];
        self.call.set(self.call.get() + 1);
        let shape = be.shape(x).to_vec();
        let xs = be.download(x)?;
        let ctx = be.download(&context)?;
        let (b, per) = (shape[0], xs.len() / shape[0]);
        let f = self.field;
        f.evals.set(f.evals.get() + b);
        let mut v = vec![0.0f32; xs.len()];
        for i in 0..b {
            let mu = if ctx[i * ctx.len() / b] > 0.5 { &f.mu } else { &f.mu_uncond };
            for k in 0..per {
                let (m, s) = (mu[k], f.s[k]);
                let var = (1.0 - t).powi(2) * s * s + t * t;
                v[i * per + k] = (m + ((1.0 - t) * s * s - t) / var * (xs[i * per + k] as f64 - (1.0 - t) * m)) as f32;
            }
        }
        Ok(be.upload(&v, &shape)?)
    }
}

/// The times at which a sampler of `opts` calls the model, in order.
fn schedule(opts: &SampleOptions) -> Vec<f64> {
    let grid = time_grid(opts.steps, opts.shift);
    let mut out = Vec::new();
    for w in grid.windows(2) {
        out.push(w[0]);
        if opts.method == Method::Heun && w[1] > 0.0 {
            out.push(w[1]);
        }
    }
    out
}

fn opts(method: Method, steps: usize) -> SampleOptions {
    SampleOptions { steps, cfg_scale: 1.0, shift: 4.0, seed: 7, method, cfg_interval: None, cache_threshold: 0.0 }
}

/// Samples `images` images of `field` from seeded noise; returns (samples, noise).
fn run(field: &Gaussian, o: &SampleOptions, images: usize) -> (Vec<f32>, Vec<f32>) {
    let dims = field.s.len();
    let noise = Rng::new(11).normals(images * dims);
    let ctx = Contexts { cond: vec![1.0; images], uncond: vec![0.0; images], shape: [images, 1, 1] };
    let model = Timed { field, schedule: schedule(o), call: Cell::new(0) };
    let out = sample_from(&Cpu::new(1), &model, &ctx, &noise, [dims, 1, 1], o).unwrap();
    (out, noise)
}

/// RMS of the samples' distance from the exact ODE solution μ + s·z.
fn error(field: &Gaussian, o: &SampleOptions) -> f64 {
    let (got, z) = run(field, o, 4);
    let dims = field.s.len();
    let sq: f64 = got.iter().enumerate().map(|(i, &g)| (g as f64 - (field.mu[i % dims] + field.s[i % dims] * z[i] as f64)).powi(2)).sum();
    (sq / got.len() as f64).sqrt()
}

#[test]
fn each_solver_converges_and_the_multistep_ones_beat_euler_per_evaluation() {
    let field = Gaussian::new(64);
    let steps = [16, 32, 64, 128];
    let euler: Vec<f64> = steps.iter().map(|&n| error(&field, &opts(Method::Euler, n))).collect();
    let order = |e: &[f64]| (e[1] / e[3]).log2() / 2.0;
    assert!((order(&euler) - 1.0).abs() < 0.1, "Euler: {euler:?}");
    for method in [Method::Heun, Method::Dpm2m, Method::Dpm3m, Method::Ab2, Method::Ab3] {
        let errs: Vec<f64> = steps.iter().map(|&n| error(&field, &opts(method, n))).collect();
        eprintln!("{method}: errors {errs:?}, observed order {:.2}", order(&errs));
        assert!(errs.windows(2).all(|w| w[0] > w[1]), "{method}: {errs:?}");
        match method {
            // Two evaluations a step: second order in t.
            Method::Heun => assert!(order(&errs) > 1.8, "Heun: {errs:?}"),
            // Polynomial in t: second order at least, on the shifted grid too.
            Method::Ab2 | Method::Ab3 => assert!(order(&errs) > 1.9, "{method}: {errs:?}"),
            // Polynomial in λ, whose last steps keep their size as the grid refines (λ runs to
            // ∞ at t = 0): far ahead of Euler at every step count, not of a higher order here.
            _ => assert!(errs.iter().zip(&euler).all(|(e, u)| *e < 0.45 * u), "{method}: {errs:?} vs Euler {euler:?}"),
        }
    }
}

#[test]
fn the_sde_has_the_datas_spread_and_is_reproducible() {
    let field = Gaussian::new(4);
    let o = opts(Method::Sde, 100);
    let (a, _) = run(&field, &o, 3000);
    let (b, _) = run(&field, &o, 3000);
    assert_eq!(a, b, "same seed, same samples");
    let (c, _) = run(&field, &SampleOptions { seed: 8, ..o.clone() }, 3000);
    assert_ne!(a, c, "another seed adds other noise");
    for k in 0..4 {
        let xs: Vec<f64> = a.iter().skip(k).step_by(4).map(|&v| v as f64).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        // 3000 samples: the standard error of the mean is s/55, of the deviation s/77.
        assert!((mean - field.mu[k]).abs() < 0.08 * field.s[k] + 0.02, "dim {k}: mean {mean} vs {}", field.mu[k]);
        assert!((sd / field.s[k] - 1.0).abs() < 0.08, "dim {k}: sd {sd} vs {}", field.s[k]);
    }
}

#[test]
fn guidance_inside_an_interval_costs_what_evaluations_says() {
    let field = Gaussian::new(8);
    let guided = SampleOptions { cfg_scale: 2.0, ..opts(Method::Euler, 10) };
    let everywhere = run(&field, &guided, 2).0;
    field.evals.set(0);
    let inside = SampleOptions { cfg_interval: Some([0.0, 1.0]), ..guided.clone() };
    assert_eq!(run(&field, &inside, 2).0, everywhere, "an interval holding every t is plain guidance");
    assert_eq!(field.evals.get(), 2 * inside.evaluations());
    assert_eq!(inside.evaluations(), 20);
    let unguided = run(&field, &opts(Method::Euler, 10), 2).0;
    let outside = SampleOptions { cfg_interval: Some([1.5, 2.0]), ..guided.clone() };
    assert_eq!(run(&field, &outside, 2).0, unguided, "an interval holding no t is no guidance");
    let part = SampleOptions { cfg_interval: Some([0.3, 0.9]), method: Method::Heun, ..guided };
    field.evals.set(0);
    run(&field, &part, 2);
    assert_eq!(field.evals.get(), 2 * part.evaluations());
    assert!(part.evaluations() > 19 && part.evaluations() < 38, "{}", part.evaluations());
}
