//! Shared helpers for the finite-difference tests: the deterministic PRNG of core,
//! central differences and the relative-error check.
#![allow(dead_code)]

/// Step of the central differences. In f64 the truncation error (~h²) and the round-off error
/// (~1e-16·|J|/h) are both far below the 1e-6 tolerance at this step.
pub const H: f64 = 1e-6;

/// Tolerance on ‖analytic − numeric‖ / ‖numeric‖.
pub const TOL: f64 = 1e-6;

/// The shared test generator (uniform values through `unit`, `uniform` and `f64s`).
pub use mvdit_core::SplitMix64 as Rng;

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// ‖a − b‖ / ‖b‖ (b is the reference).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    norm(&diff) / norm(b)
}

/// Central-difference gradient of the scalar `f` at `x`, over every element.
pub fn fd_grad(x: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = xp[i];
            xp[i] = x0 + H;
            let fp = f(&xp);
            xp[i] = x0 - H;
            let fm = f(&xp);
            xp[i] = x0;
            (fp - fm) / (2.0 * H)
        })
        .collect()
}

/// Asserts the analytic gradient matches the numeric one to [`TOL`] (relative, whole tensor).
/// The numeric gradient must be non-trivial, otherwise the comparison would prove nothing.
pub fn assert_grad(name: &str, analytic: &[f64], numeric: &[f64]) {
    assert!(
        norm(numeric) > 1e-3,
        "{name}: numeric gradient is ~0 ({}), test data too weak",
        norm(numeric)
    );
    let e = rel_err(analytic, numeric);
    eprintln!("{name}: rel err {e:.3e}");
    assert!(
        e < TOL,
        "{name}: relative error {e:.3e} >= {TOL:.0e}\n analytic {analytic:?}\n numeric  {numeric:?}"
    );
}

/// Asserts two slices agree element-wise to an absolute tolerance.
pub fn assert_close(name: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{name}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "{name}[{i}]: {x} vs {y} (tol {tol:e})");
    }
}
