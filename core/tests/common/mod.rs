//! Shared helpers for the finite-difference tests: a deterministic PRNG (no new dependencies),
//! central differences and the relative-error check.
#![allow(dead_code)]

/// Step of the central differences. In f64 the truncation error (~h²) and the round-off error
/// (~1e-16·|J|/h) are both far below the 1e-6 tolerance at this step.
pub const H: f64 = 1e-6;

/// Tolerance on ‖analytic − numeric‖ / ‖numeric‖.
pub const TOL: f64 = 1e-6;

/// SplitMix64: tiny, deterministic and good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// `n` values uniform in [-1, 1).
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform(-1.0, 1.0)).collect()
    }
}

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
