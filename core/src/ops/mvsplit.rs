//! The fused MV-Split merge and RMSNorm (eps, no gain):
//! `z = RMSNorm(x + β⊙(u − M(u)) + α⊙(M(u) − M(x)))`, where M is the token mean taken
//! separately over image tokens [0, Li) and condition tokens [Li, L) of each sample.

use crate::ops::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use crate::Real;
use alloc::vec;
use alloc::vec::Vec;

/// Token ranges of the two mean segments; one segment when either would be empty (as the reference).
pub fn segments(li: usize, l: usize) -> [(usize, usize); 2] {
    if li == 0 || li >= l {
        [(0, l), (l, l)]
    } else {
        [(0, li), (li, l)]
    }
}

/// x: [B, L, D] → M(x): [B, L, D], segment means broadcast back to every token.
pub fn segment_mean<T: Real>(x: &[T], b: usize, l: usize, d: usize, li: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; x.len()];
    for bi in 0..b {
        for (s, e) in segments(li, l) {
            if s == e {
                continue;
            }
            let mut mean = vec![T::ZERO; d];
            for t in s..e {
                for (m, &v) in mean.iter_mut().zip(&x[(bi * l + t) * d..(bi * l + t + 1) * d]) {
                    *m += v;
                }
            }
            let inv = T::ONE / T::from_usize(e - s);
            for t in s..e {
                for (o, &m) in out[(bi * l + t) * d..(bi * l + t + 1) * d].iter_mut().zip(&mean) {
                    *o = m * inv;
                }
            }
        }
    }
    out
}

/// The pre-norm sum s = x + β(u − Mu) + α(Mu − Mx) of [`mvsplit_forward`].
#[allow(clippy::too_many_arguments)]
pub fn mvsplit_sum<T: Real>(x: &[T], u: &[T], alpha: &[T], beta: &[T], b: usize, l: usize, d: usize, li: usize) -> Vec<T> {
    let (mu, mx) = (segment_mean(u, b, l, d, li), segment_mean(x, b, l, d, li));
    (0..x.len()).map(|i| x[i] + beta[i % d] * (u[i] - mu[i]) + alpha[i % d] * (mu[i] - mx[i])).collect()
}

/// x, u: [B, L, D], alpha, beta: [D] → z: [B, L, D], rstd: [B*L].
#[allow(clippy::too_many_arguments)]
pub fn mvsplit_forward<T: Real>(
    x: &[T],
    u: &[T],
    alpha: &[T],
    beta: &[T],
    eps: f64,
    z: &mut [T],
    rstd: &mut [T],
    dims: (usize, usize, usize, usize),
) {
    let (b, l, d, li) = dims;
    let s = mvsplit_sum(x, u, alpha, beta, b, l, d, li);
    rmsnorm_forward(&s, None, eps, z, rstd, d);
}

/// Gradients of [`mvsplit_forward`] (all overwritten):
/// dx = ds − α M(ds), du = β ds + (α − β) M(ds), dβ = Σ ds⊙(u − Mu), dα = Σ ds⊙(Mu − Mx).
#[allow(clippy::too_many_arguments)]
pub fn mvsplit_backward<T: Real>(
    x: &[T],
    u: &[T],
    alpha: &[T],
    beta: &[T],
    rstd: &[T],
    dz: &[T],
    dx: &mut [T],
    du: &mut [T],
    dalpha: &mut [T],
    dbeta: &mut [T],
    dims: (usize, usize, usize, usize),
) {
    let (b, l, d, li) = dims;
    let s = mvsplit_sum(x, u, alpha, beta, b, l, d, li);
    let mut ds = vec![T::ZERO; s.len()];
    rmsnorm_backward(&s, None, rstd, dz, &mut ds, None, d);
    let (mu, mx, mds) = (segment_mean(u, b, l, d, li), segment_mean(x, b, l, d, li), segment_mean(&ds, b, l, d, li));
    dalpha.iter_mut().chain(dbeta.iter_mut()).for_each(|v| *v = T::ZERO);
    for i in 0..s.len() {
        let c = i % d;
        dx[i] = ds[i] - alpha[c] * mds[i];
        du[i] = beta[c] * ds[i] + (alpha[c] - beta[c]) * mds[i];
        dbeta[c] += ds[i] * (u[i] - mu[i]);
        dalpha[c] += ds[i] * (mu[i] - mx[i]);
    }
}
