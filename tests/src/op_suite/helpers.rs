//! The op suite's shared pieces: test inputs ([`Rng`]), up- and downloads that name what
//! failed, and the comparisons against the f64 references within [`TOL`].

use mvdit_core::{Backend, SplitMix64};

/// Relative-error tolerance per output tensor (see the module docs).
pub const TOL: f64 = 1e-5;

/// Test inputs: f32 values uniform in [-1, 1) (so the f64 reference sees the same inputs).
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.0.f32s(n, 1.0)
    }
}

pub(super) fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

pub(super) fn up<B: Backend>(be: &B, data: &[f32], shape: &[usize]) -> B::Tensor {
    be.upload(data, shape).unwrap_or_else(|e| panic!("upload {shape:?}: {e}"))
}

pub(super) fn down<B: Backend>(be: &B, t: &B::Tensor) -> Vec<f32> {
    be.download(t).unwrap_or_else(|e| panic!("download: {e}"))
}

fn rel(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
    let den: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Asserts the downloaded tensor has `shape` and is within [`TOL`] of `want` (relative).
pub(super) fn close<B: Backend>(be: &B, what: &str, t: &B::Tensor, shape: &[usize], want: &[f64]) {
    assert_eq!(be.shape(t), shape, "{what}: shape");
    close_vals(what, &down(be, t), want);
}

pub(super) fn close_vals(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite values");
    let e = rel(got, want);
    assert!(e <= TOL, "{what}: relative error {e:.3e} > {TOL:e}");
}

pub(super) fn close_abs<B: Backend>(be: &B, what: &str, t: &B::Tensor, want: &[f64], atol: f64) {
    let got = down(be, t);
    let worst = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    assert!(worst <= atol, "{what}: max abs error {worst:.3e} > {atol:e}");
}
