//! The three residual merges (MV-Split, LayerScale, post-norm) checked against central finite
//! differences in f64, as core/tests/finite_diff.rs does for the other ops: random inputs and a
//! random upstream gradient g, objective J = Σ g ⊙ merge(inputs).

mod common;

use common::{assert_close, assert_grad, dot, fd_grad, norm, Rng};
use mvdit_core::ops::{
    mvsplit_backward, mvsplit_forward, rmsnorm_forward, scaled_residual_rmsnorm_backward, scaled_residual_rmsnorm_forward,
    NORM_EPS,
};

/// λ values away from zero with random sign, so no gradient term vanishes by accident.
fn lambdas(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| if rng.unit() < 0.5 { -rng.uniform(0.2, 1.0) } else { rng.uniform(0.2, 1.0) }).collect()
}

fn scaled_j(x: &[f64], u: &[f64], lambda: Option<&[f64]>, g: &[f64], d: usize) -> f64 {
    let (mut z, mut rstd) = (vec![0.0; x.len()], vec![0.0; x.len() / d]);
    scaled_residual_rmsnorm_forward(x, u, lambda, NORM_EPS, &mut z, &mut rstd, d);
    dot(g, &z)
}

fn check_scaled(seed: u64, n: usize, d: usize, with_lambda: bool) {
    let mut rng = Rng::new(seed);
    let (x, u, g) = (rng.f64s(n * d), rng.f64s(n * d), rng.f64s(n * d));
    let lam = with_lambda.then(|| lambdas(&mut rng, d));
    let l = lam.as_deref();
    let (mut z, mut rstd) = (vec![0.0; n * d], vec![0.0; n]);
    scaled_residual_rmsnorm_forward(&x, &u, l, NORM_EPS, &mut z, &mut rstd, d);
    let (mut dx, mut du) = (vec![f64::NAN; n * d], vec![f64::NAN; n * d]);
    let mut dl = lam.as_ref().map(|_| vec![f64::NAN; d]);
    scaled_residual_rmsnorm_backward(&x, &u, l, &rstd, &g, &mut dx, &mut du, dl.as_deref_mut(), d);
    let tag = if with_lambda { "layerscale" } else { "postnorm" };
    assert_grad(&format!("{tag} dx"), &dx, &fd_grad(&x, |x| scaled_j(x, &u, l, &g, d)));
    assert_grad(&format!("{tag} du"), &du, &fd_grad(&u, |u| scaled_j(&x, u, l, &g, d)));
    if let (Some(lam), Some(dl)) = (&lam, &dl) {
        assert_grad("layerscale dlambda", dl, &fd_grad(lam, |lm| scaled_j(&x, &u, Some(lm), &g, d)));
    }
}

#[test]
fn layerscale_backward_matches_fd() {
    check_scaled(11, 5, 6, true);
    check_scaled(12, 1, 3, true);
}

#[test]
fn postnorm_backward_matches_fd() {
    check_scaled(13, 4, 5, false);
}

#[test]
fn scaled_merge_forward_is_rmsnorm_of_the_scaled_sum() {
    let (n, d) = (3, 4);
    let mut rng = Rng::new(14);
    let (x, u, lam) = (rng.f64s(n * d), rng.f64s(n * d), lambdas(&mut rng, d));
    let (mut z, mut r) = (vec![0.0; n * d], vec![0.0; n]);
    scaled_residual_rmsnorm_forward(&x, &u, Some(&lam), NORM_EPS, &mut z, &mut r, d);
    // Direct formula: s = x + λu, z = s / sqrt(mean(s²) + eps).
    for row in 0..n {
        let s: Vec<f64> = (0..d).map(|c| x[row * d + c] + lam[c] * u[row * d + c]).collect();
        let inv = 1.0 / (s.iter().map(|v| v * v).sum::<f64>() / d as f64 + NORM_EPS).sqrt();
        assert!((r[row] - inv).abs() < 1e-12);
        assert_close("z row", &z[row * d..(row + 1) * d], &s.iter().map(|v| v * inv).collect::<Vec<_>>(), 1e-12);
    }
    // Post-norm is LayerScale at λ = 1.
    let (mut zp, mut rp, mut z1, mut r1) = (vec![0.0; n * d], vec![0.0; n], vec![0.0; n * d], vec![0.0; n]);
    scaled_residual_rmsnorm_forward(&x, &u, None, NORM_EPS, &mut zp, &mut rp, d);
    scaled_residual_rmsnorm_forward(&x, &u, Some(&[1.0; 4]), NORM_EPS, &mut z1, &mut r1, d);
    assert_eq!(zp, z1);
    let sum: Vec<f64> = x.iter().zip(&u).map(|(a, b)| a + b).collect();
    let (mut zr, mut rr) = (vec![0.0; n * d], vec![0.0; n]);
    rmsnorm_forward(&sum, None, NORM_EPS, &mut zr, &mut rr, d);
    assert_close("postnorm = rmsnorm(x + u)", &zp, &zr, 1e-15);
    // A tiny λ keeps the trunk: z ≈ RMSNorm(x).
    let tiny = vec![1e-9; d];
    scaled_residual_rmsnorm_forward(&x, &u, Some(&tiny), NORM_EPS, &mut z1, &mut r1, d);
    rmsnorm_forward(&x, None, NORM_EPS, &mut zr, &mut rr, d);
    assert_close("λ → 0 keeps the trunk", &z1, &zr, 1e-7);
}

#[test]
fn postnorm_gradients_to_trunk_and_branch_are_equal() {
    let (n, d) = (3, 5);
    let mut rng = Rng::new(15);
    let (x, u, g) = (rng.f64s(n * d), rng.f64s(n * d), rng.f64s(n * d));
    let (mut z, mut r) = (vec![0.0; n * d], vec![0.0; n]);
    scaled_residual_rmsnorm_forward(&x, &u, None, NORM_EPS, &mut z, &mut r, d);
    let (mut dx, mut du) = (vec![0.0; n * d], vec![0.0; n * d]);
    scaled_residual_rmsnorm_backward(&x, &u, None, &r, &g, &mut dx, &mut du, None, d);
    assert_eq!(dx, du);
    assert!(norm(&dx) > 1e-3);
}

/// MV-Split again here, so the three merges the model dispatches between sit in one file (its
/// fuller coverage, with one and two segments, is in finite_diff.rs).
#[test]
fn mvsplit_backward_matches_fd_alongside_the_other_merges() {
    let (b, l, d, li) = (2, 5, 3, 3);
    let mut rng = Rng::new(16);
    let n = b * l * d;
    let (x, u, g) = (rng.f64s(n), rng.f64s(n), rng.f64s(n));
    let (alpha, beta) = (lambdas(&mut rng, d), lambdas(&mut rng, d));
    let j = |x: &[f64], u: &[f64], a: &[f64], be: &[f64]| {
        let (mut z, mut r) = (vec![0.0; n], vec![0.0; b * l]);
        mvsplit_forward(x, u, a, be, NORM_EPS, &mut z, &mut r, (b, l, d, li));
        dot(&g, &z)
    };
    let (mut z, mut r) = (vec![0.0; n], vec![0.0; b * l]);
    mvsplit_forward(&x, &u, &alpha, &beta, NORM_EPS, &mut z, &mut r, (b, l, d, li));
    let (mut dx, mut du, mut da, mut db) = (vec![0.0; n], vec![0.0; n], vec![0.0; d], vec![0.0; d]);
    mvsplit_backward(&x, &u, &alpha, &beta, &r, &g, &mut dx, &mut du, &mut da, &mut db, (b, l, d, li));
    assert_grad("mvsplit dx", &dx, &fd_grad(&x, |x| j(x, &u, &alpha, &beta)));
    assert_grad("mvsplit du", &du, &fd_grad(&u, |u| j(&x, u, &alpha, &beta)));
    assert_grad("mvsplit dalpha", &da, &fd_grad(&alpha, |a| j(&x, &u, a, &beta)));
    assert_grad("mvsplit dbeta", &db, &fd_grad(&beta, |be| j(&x, &u, &alpha, be)));
}
