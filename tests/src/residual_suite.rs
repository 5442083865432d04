//! The residual merges on a backend, written once and stamped per backend:
//! `mvdit_tests::backend_residual_tests!(ctor)` expands to one `#[test]` per check below.
//!
//! - `residual_rmsnorm` (LayerScale and post-norm) and its backward against the core reference
//!   in f64 on the same f32 inputs, relative error per output ≤ 1e-5 (f32 round-off on these
//!   well-conditioned row norms is ~1e-7; a wrong index or formula gives 1e-2..1), on odd
//!   shapes and the MMS experiment's shape; also the trait's host fallback body.
//! - The whole model's gradient for every residual kind, in one of two ways chosen where the
//!   suite is stamped:
//!   * `backend_residual_tests!(ctor)`: against a central-difference directional derivative of
//!     the backend's own f32 loss (1e-2 relative plus 5e-5 absolute; a missing or wrong merge
//!     gradient is off by O(1)). This needs a loss whose f32 round-off, divided by the step
//!     2h = 4e-3, stays under the 5e-5 floor: true of the CPU backend's sequential sums, not
//!     of the wgpu backend, whose chunked reductions add in another order (measured 6e-5).
//!   * `backend_residual_tests!(ctor, gradients_against: reference_ctor)`: every parameter's
//!     gradient (and the loss) against the reference backend's on the same model and inputs,
//!     ‖g − g_ref‖/‖g_ref‖ ≤ [`GRAD_TOL`] per parameter tensor. With the CPU backend as the
//!     reference this is transitive: the CPU stamping checks the CPU gradients against finite
//!     differences, and the merge ops themselves are checked against the f64 reference above.
//! - A probe sees the right tensors and changes nothing.

use mvdit_core::backend::{residual_rmsnorm_backward_host, residual_rmsnorm_host};
use mvdit_core::ops::{scaled_residual_rmsnorm_backward, scaled_residual_rmsnorm_forward, NORM_EPS};
use mvdit_core::{Backend, Layout, ModelConfig};
pub use mvdit_core::Residual;
use mvdit_model::{Dit, Keep, Recorder, Tap};

/// Relative-error tolerance of the op checks (see the module docs).
pub const TOL: f64 = 1e-5;

/// Per-parameter relative tolerance of the cross-backend gradient check. Both sides are f32
/// with different summation orders through a depth-3 model (norms, softmax, 16..48-term dot
/// products): measured wgpu (lavapipe) vs CPU, worst over all parameters, 4e-7 (post-norm),
/// 7e-7 (LayerScale), 1e-6 (MV-Split), losses 2e-7; a wrong merge gradient is off by O(1).
/// The same 1e-5 as the op suite, ~10× above honest f32 differences.
pub const GRAD_TOL: f64 = 1e-5;

#[macro_export]
macro_rules! backend_residual_tests {
    ($backend_ctor:expr) => {
        $crate::backend_residual_tests!(@ops $backend_ctor);
        $crate::backend_residual_tests!(@each $backend_ctor;
            model_gradients_mvsplit, model_gradients_layerscale, model_gradients_postnorm);
    };
    ($backend_ctor:expr, gradients_against: $reference_ctor:expr) => {
        $crate::backend_residual_tests!(@ops $backend_ctor);
        $crate::backend_residual_tests!(@against $backend_ctor, $reference_ctor;
            model_gradients_mvsplit: Mvsplit, model_gradients_layerscale: Layerscale,
            model_gradients_postnorm: Postnorm);
    };
    (@ops $backend_ctor:expr) => {
        $crate::backend_residual_tests!(@each $backend_ctor;
            residual_rmsnorm_layerscale, residual_rmsnorm_postnorm, residual_rmsnorm_host_fallback,
            residual_rmsnorm_shape_errors, probe_records_and_changes_nothing);
    };
    (@against $backend_ctor:expr, $reference_ctor:expr; $($name:ident: $kind:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (be, reference) = ($backend_ctor, $reference_ctor);
                $crate::residual_suite::model_gradients_against(&be, &reference, $crate::residual_suite::Residual::$kind);
            }
        )*
    };
    (@each $backend_ctor:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let be = $backend_ctor;
                $crate::residual_suite::$name(&be);
            }
        )*
    };
}

fn rel(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length");
    assert!(got.iter().all(|v| v.is_finite()), "non-finite values");
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
    let den: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    num / den.max(1e-300)
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

type Fwd<'a, B> = &'a dyn Fn(&B, &<B as Backend>::Tensor, &<B as Backend>::Tensor, Option<&<B as Backend>::Tensor>) -> (<B as Backend>::Tensor, <B as Backend>::Tensor);
type Bwd<'a, B> = &'a dyn Fn(
    &B,
    &<B as Backend>::Tensor,
    &<B as Backend>::Tensor,
    Option<&<B as Backend>::Tensor>,
    &<B as Backend>::Tensor,
    &<B as Backend>::Tensor,
) -> mvdit_core::ResidualGrads<<B as Backend>::Tensor>;

/// One forward/backward comparison on [shape] with or without λ.
fn check_merge<B: Backend>(be: &B, shape: &[usize], with_lambda: bool, seed: u64, fwd: Fwd<B>, bwd: Bwd<B>) {
    let d = *shape.last().unwrap();
    let n: usize = shape.iter().product();
    let x = crate::values(n, seed, 1.0);
    let u = crate::values(n, seed + 1, 1.0);
    let dz = crate::values(n, seed + 2, 1.0);
    let lam = with_lambda.then(|| crate::values(d, seed + 3, 1.0));
    let up = |v: &[f32], s: &[usize]| be.upload(v, s).unwrap();
    let (xt, ut, dzt) = (up(&x, shape), up(&u, shape), up(&dz, shape));
    let lt = lam.as_ref().map(|l| up(l, &[d]));
    let (z, rstd) = fwd(be, &xt, &ut, lt.as_ref());
    assert_eq!(be.shape(&z), shape);
    let (xw, uw, dzw) = (wide(&x), wide(&u), wide(&dz));
    let lw = lam.as_ref().map(|l| wide(l));
    let (mut zw, mut rw) = (vec![0.0; n], vec![0.0; n / d]);
    scaled_residual_rmsnorm_forward(&xw, &uw, lw.as_deref(), NORM_EPS, &mut zw, &mut rw, d);
    let tag = format!("{} {shape:?} λ={with_lambda}", be.name());
    let e = rel(&be.download(&z).unwrap(), &zw);
    assert!(e <= TOL, "{tag}: z rel err {e:e}");
    let e = rel(&be.download(&rstd).unwrap(), &rw);
    assert!(e <= TOL, "{tag}: rstd rel err {e:e}");
    let g = bwd(be, &xt, &ut, lt.as_ref(), &rstd, &dzt);
    let (mut dx, mut du) = (vec![0.0; n], vec![0.0; n]);
    let mut dl = lw.as_ref().map(|_| vec![0.0; d]);
    scaled_residual_rmsnorm_backward(&xw, &uw, lw.as_deref(), &rw, &dzw, &mut dx, &mut du, dl.as_deref_mut(), d);
    for (what, got, want) in [("dx", &g.dx, &dx), ("du", &g.du, &du)] {
        assert_eq!(be.shape(got), shape, "{tag}: {what} shape");
        let e = rel(&be.download(got).unwrap(), want);
        assert!(e <= TOL, "{tag}: {what} rel err {e:e}");
    }
    match (&g.dlambda, &dl) {
        (Some(got), Some(want)) => {
            assert_eq!(be.shape(got), [d]);
            let e = rel(&be.download(got).unwrap(), want);
            assert!(e <= TOL, "{tag}: dlambda rel err {e:e}");
        }
        (None, None) => {}
        _ => panic!("{tag}: dlambda must come exactly when a lambda is given"),
    }
}

/// Shapes: odd token counts, one row, batch > 1, and the MMS experiment's [32, 17, 32].
const SHAPES: [&[usize]; 4] = [&[2, 7, 5], &[1, 1, 16], &[3, 65, 24], &[32, 17, 32]];

fn method_fwd<B: Backend>(be: &B, x: &B::Tensor, u: &B::Tensor, l: Option<&B::Tensor>) -> (B::Tensor, B::Tensor) {
    be.residual_rmsnorm(x, u, l, NORM_EPS).unwrap()
}

fn method_bwd<B: Backend>(be: &B, x: &B::Tensor, u: &B::Tensor, l: Option<&B::Tensor>, r: &B::Tensor, dz: &B::Tensor) -> mvdit_core::ResidualGrads<B::Tensor> {
    be.residual_rmsnorm_backward(x, u, l, r, dz).unwrap()
}

pub fn residual_rmsnorm_layerscale<B: Backend>(be: &B) {
    for (i, s) in SHAPES.iter().enumerate() {
        check_merge(be, s, true, 100 + 10 * i as u64, &method_fwd::<B>, &method_bwd::<B>);
    }
}

pub fn residual_rmsnorm_postnorm<B: Backend>(be: &B) {
    for (i, s) in SHAPES.iter().enumerate() {
        check_merge(be, s, false, 200 + 10 * i as u64, &method_fwd::<B>, &method_bwd::<B>);
    }
}

/// The trait's provided (host) bodies, which a backend without its own kernel uses.
pub fn residual_rmsnorm_host_fallback<B: Backend>(be: &B) {
    let f = |be: &B, x: &B::Tensor, u: &B::Tensor, l: Option<&B::Tensor>| residual_rmsnorm_host(be, x, u, l, NORM_EPS).unwrap();
    let b = |be: &B, x: &B::Tensor, u: &B::Tensor, l: Option<&B::Tensor>, r: &B::Tensor, dz: &B::Tensor| {
        residual_rmsnorm_backward_host(be, x, u, l, r, dz).unwrap()
    };
    for with_lambda in [true, false] {
        check_merge(be, &[2, 7, 5], with_lambda, 300, &f, &b);
    }
}

pub fn residual_rmsnorm_shape_errors<B: Backend>(be: &B) {
    let a = be.upload(&[0.5; 12], &[2, 2, 3]).unwrap();
    let b = be.upload(&[0.5; 8], &[2, 2, 2]).unwrap();
    let l4 = be.upload(&[1.0; 4], &[4]).unwrap();
    assert!(be.residual_rmsnorm(&a, &b, None, NORM_EPS).is_err(), "x/u mismatch");
    assert!(be.residual_rmsnorm(&a, &a, Some(&l4), NORM_EPS).is_err(), "lambda of the wrong size");
    let (_, r) = be.residual_rmsnorm(&a, &a, None, NORM_EPS).unwrap();
    assert!(be.residual_rmsnorm_backward(&a, &a, None, &r, &b).is_err(), "dz mismatch");
}

// ------------------------------------------------------------------------------------------
// The model with each merge

fn tiny(residual: Residual) -> ModelConfig {
    ModelConfig {
        in_channels: 1,
        patch_size: 2,
        hidden_size: 16,
        depth: 3,
        num_heads: 2,
        mlp_hidden_dim: 24,
        qkv_bias: false,
        context_dim: 16,
        rope_base: 10000.0,
        residual,
    }
}

/// Parameters for a gradient check: weights as `test_params`, merge gains away from 0 and 1.
fn params_for(cfg: &ModelConfig) -> Vec<Vec<f32>> {
    let layout = Layout::new(cfg);
    let mut p = crate::test_params(cfg, 7);
    for (i, s) in layout.specs.iter().enumerate() {
        if s.name.ends_with(".lambda") {
            p[i] = crate::values(s.numel(), 500 + i as u64, 0.4).iter().map(|v| v + 0.6).collect();
        }
    }
    p
}

fn loss_of<B: Backend>(be: &B, model: &Dit<B>, x: &B::Tensor, ctx: &[f32], ctx_shape: &[usize], tgt: &B::Tensor) -> f64 {
    let (v, _) = model.forward(be, x, be.upload(ctx, ctx_shape).unwrap(), Keep::Nothing).unwrap();
    let (l, _) = be.mse(&v, tgt).unwrap();
    be.download(&l).unwrap()[0] as f64
}

/// g·v against (L(θ + h v) − L(θ − h v)) / 2h for random directions v over all parameters.
fn model_gradients<B: Backend>(be: &B, residual: Residual) {
    let cfg = tiny(residual);
    let host = params_for(&cfg);
    let model = Dit::from_host(be, cfg.clone(), host.clone()).unwrap();
    let (xs, cs) = ([2usize, 1, 8, 8], [2usize, 2, 16]);
    let x = be.upload(&crate::values(128, 1, 1.0), &xs).unwrap();
    let ctx = crate::values(64, 2, 1.0);
    let tgt = be.upload(&crate::values(128, 3, 1.0), &xs).unwrap();
    let (v, tape) = model.forward(be, &x, be.upload(&ctx, &cs).unwrap(), Keep::All).unwrap();
    let (_, dv) = be.mse(&v, &tgt).unwrap();
    let grads = model.backward(be, tape.unwrap(), &dv).unwrap();
    let g: Vec<Vec<f32>> = grads.params.iter().map(|t| be.download(t).unwrap()).collect();
    // The merge parameters get a gradient (LayerScale λ, MV-Split α/β), each checked alone too.
    let merge_params: Vec<usize> = model.layout.blocks.iter().flat_map(|b| b.merge1.params().chain(b.merge2.params())).collect();
    match residual {
        Residual::Postnorm => assert!(merge_params.is_empty()),
        _ => assert!(!merge_params.is_empty()),
    }
    let h = 2e-3f32;
    let mut directions: Vec<(String, Vec<Vec<f32>>)> = (0..3)
        .map(|k| (format!("random {k}"), host.iter().enumerate().map(|(i, p)| crate::values(p.len(), 1000 * k + i as u64, 1.0)).collect()))
        .collect();
    for &i in &merge_params {
        let mut dir: Vec<Vec<f32>> = host.iter().map(|p| vec![0.0; p.len()]).collect();
        dir[i] = crate::values(host[i].len(), 9000 + i as u64, 1.0);
        directions.push((model.layout.specs[i].name.clone(), dir));
    }
    for (name, dir) in directions {
        let shifted = |sign: f32| {
            let p: Vec<Vec<f32>> = host.iter().zip(&dir).map(|(p, d)| p.iter().zip(d).map(|(a, b)| a + sign * h * b).collect()).collect();
            let m = Dit::from_host(be, cfg.clone(), p).unwrap();
            loss_of(be, &m, &x, &ctx, &cs, &tgt)
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h as f64);
        let analytic: f64 = g.iter().zip(&dir).map(|(g, d)| g.iter().zip(d).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()).sum();
        // f32 losses differenced at h: ~1e-5 absolute noise, so a relative bound plus a floor.
        let err = (analytic - numeric).abs();
        assert!(numeric.abs() > 2e-4, "{residual} {name}: directional derivative ~0 ({numeric:e}), test too weak");
        assert!(err <= 1e-2 * numeric.abs() + 5e-5, "{residual} {name}: analytic {analytic:e} vs numeric {numeric:e}");
    }
}

/// The model's loss, every parameter gradient and the context's gradient on `be` against
/// `reference` (see the module docs), from the same parameters and inputs as the
/// finite-difference check.
pub fn model_gradients_against<B: Backend, R: Backend>(be: &B, reference: &R, residual: Residual) {
    let cfg = tiny(residual);
    let host = params_for(&cfg);
    let (xs, cs) = ([2usize, 1, 8, 8], [2usize, 2, 16]);
    let (x, ctx, tgt) = (crate::values(128, 1, 1.0), crate::values(64, 2, 1.0), crate::values(128, 3, 1.0));
    #[allow(clippy::type_complexity)]
    fn run<B: Backend>(be: &B, cfg: &ModelConfig, host: &[Vec<f32>], inputs: (&[f32], &[f32], &[f32]), (xs, cs): ([usize; 4], [usize; 3])) -> (f64, Vec<Vec<f32>>, Vec<f32>) {
        let model = Dit::from_host(be, cfg.clone(), host.to_vec()).unwrap();
        let x = be.upload(inputs.0, &xs).unwrap();
        let tgt = be.upload(inputs.2, &xs).unwrap();
        let (v, tape) = model.forward(be, &x, be.upload(inputs.1, &cs).unwrap(), Keep::All).unwrap();
        let (l, dv) = be.mse(&v, &tgt).unwrap();
        let grads = model.backward(be, tape.unwrap(), &dv).unwrap();
        let d_context = be.download(&grads.context).unwrap();
        (be.download(&l).unwrap()[0] as f64, grads.params.iter().map(|t| be.download(t).unwrap()).collect(), d_context)
    }
    let (loss, g, dc) = run(be, &cfg, &host, (&x, &ctx, &tgt), (xs, cs));
    let (loss_ref, g_ref, dc_ref) = run(reference, &cfg, &host, (&x, &ctx, &tgt), (xs, cs));
    let tag = format!("{residual}: {} vs {}", be.name(), reference.name());
    let e = (loss - loss_ref).abs() / loss_ref.abs();
    assert!(e <= GRAD_TOL, "{tag}: loss {loss} vs {loss_ref} ({e:e})");
    let e = crate::rel_err(&dc, &dc_ref);
    assert!(e <= GRAD_TOL && dc_ref.iter().any(|&v| v != 0.0), "{tag}: context gradient rel err {e:e}");
    let layout = Layout::new(&cfg);
    let merge_params: Vec<usize> = layout.blocks.iter().flat_map(|b| b.merge1.params().chain(b.merge2.params())).collect();
    match residual {
        Residual::Postnorm => assert!(merge_params.is_empty()),
        _ => assert!(!merge_params.is_empty()),
    }
    let mut worst = 0.0f64;
    for (i, (got, want)) in g.iter().zip(&g_ref).enumerate() {
        let name = &layout.specs[i].name;
        let norm = want.iter().map(|&w| (w as f64).powi(2)).sum::<f64>().sqrt();
        // A zero reference gradient would make the relative check vacuous.
        assert!(norm > 0.0, "{tag}: {name} has a zero gradient on the reference, test too weak");
        let e = crate::rel_err(got, want);
        worst = worst.max(e);
        assert!(e <= GRAD_TOL, "{tag}: {name} gradient rel err {e:e}");
    }
    eprintln!("{tag}: loss rel err {:e}, worst gradient rel err {worst:e}", (loss - loss_ref).abs() / loss_ref.abs());
}

pub fn model_gradients_mvsplit<B: Backend>(be: &B) {
    model_gradients(be, Residual::Mvsplit);
}

pub fn model_gradients_layerscale<B: Backend>(be: &B) {
    model_gradients(be, Residual::Layerscale);
}

pub fn model_gradients_postnorm<B: Backend>(be: &B) {
    model_gradients(be, Residual::Postnorm);
}

fn probe<'a>(r: &'a mut Option<&mut Recorder>) -> Option<&'a mut dyn mvdit_model::Probe> {
    r.as_deref_mut().map(|r| r as &mut dyn mvdit_model::Probe)
}

/// A recorder sees each block's tensors (block i's output is block i+1's input; the recorded
/// attention branch is what the merge consumed), and the outputs and gradients are bit-equal
/// with and without it, with full tapes and with block recompute.
pub fn probe_records_and_changes_nothing<B: Backend>(be: &B) {
    for residual in Residual::ALL {
        let cfg = tiny(residual);
        let model = Dit::from_host(be, cfg.clone(), params_for(&cfg)).unwrap();
        let xs = [2usize, 1, 8, 8];
        let x = be.upload(&crate::values(128, 11, 1.0), &xs).unwrap();
        let ctx = crate::values(64, 12, 1.0);
        let tgt = be.upload(&crate::values(128, 13, 1.0), &xs).unwrap();
        let run = |keep: Keep, mut rec: Option<&mut Recorder>| {
            let (v, tape) = model.forward_probed(be, &x, be.upload(&ctx, &[2, 2, 16]).unwrap(), keep, probe(&mut rec)).unwrap();
            let (_, dv) = be.mse(&v, &tgt).unwrap();
            let g = model.backward_probed(be, tape.unwrap(), &dv, probe(&mut rec)).unwrap();
            (be.download(&v).unwrap(), g.params.iter().map(|t| be.download(t).unwrap()).collect::<Vec<_>>())
        };
        let plain = run(Keep::All, None);
        for keep in [Keep::All, Keep::BlockInputs, Keep::Tail(1)] {
            let mut rec = Recorder::new(vec![0, 1, 2], Tap::FORWARD.iter().chain(&Tap::BACKWARD).copied().collect());
            let probed = run(keep, Some(&mut rec));
            assert_eq!(plain, probed, "{residual} {keep:?}: a probe must not change the numbers");
            assert_eq!(rec.values.len(), 3 * (Tap::FORWARD.len() + Tap::BACKWARD.len()), "{residual} {keep:?}: every tap of every block, once");
            assert_eq!(rec.get(0, Tap::BlockOut).unwrap(), rec.get(1, Tap::BlockIn).unwrap());
            let (shape, h) = rec.get(2, Tap::FfnHidden).unwrap();
            assert_eq!(shape, &vec![2, 18, 24]);
            assert_eq!(h.len(), 2 * 18 * 24);
            assert_eq!(rec.get(1, Tap::GradAttnBranch).unwrap().0, vec![2, 18, 16]);
        }
        let mut only = Recorder::new(vec![1], vec![Tap::BlockOut]);
        run(Keep::All, Some(&mut only));
        assert_eq!(only.values.keys().copied().collect::<Vec<_>>(), vec![(1, Tap::BlockOut)], "{residual}: only what is asked");
    }
}
