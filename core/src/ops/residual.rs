//! The scaled residual merge with RMSNorm (eps, no gain): `z = RMSNorm(x + λ⊙u)`.
//!
//! LayerScale uses a trainable per-channel λ [D]; the post-norm baseline is λ = ones with no
//! gradient (`lambda = None`), i.e. `z = RMSNorm(x + u)`. Unlike MV-Split this merge is
//! token-isotropic: it has no token means, so rows are independent.

use crate::ops::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use crate::Real;
use alloc::vec::Vec;

/// The pre-norm sum s = x + λ⊙u (λ = ones when `None`).
fn scaled_sum<T: Real>(x: &[T], u: &[T], lambda: Option<&[T]>, d: usize) -> Vec<T> {
    match lambda {
        Some(l) => x.iter().zip(u).enumerate().map(|(i, (&x, &u))| x + l[i % d] * u).collect(),
        None => x.iter().zip(u).map(|(&x, &u)| x + u).collect(),
    }
}

/// x, u: [N, D], lambda: [D] or None → z: [N, D], rstd: [N] = 1/sqrt(mean(s²) + eps).
#[allow(clippy::too_many_arguments)]
pub fn scaled_residual_rmsnorm_forward<T: Real>(
    x: &[T],
    u: &[T],
    lambda: Option<&[T]>,
    eps: f64,
    z: &mut [T],
    rstd: &mut [T],
    d: usize,
) {
    let s = scaled_sum(x, u, lambda, d);
    rmsnorm_forward(&s, None, eps, z, rstd, d);
}

/// Gradients of [`scaled_residual_rmsnorm_forward`] (all overwritten), with ds the RMSNorm
/// backward at s = x + λ⊙u: dx = ds, du = λ⊙ds (ds when λ is None), dλ = Σ_rows ds⊙u
/// (only when a λ is given).
#[allow(clippy::too_many_arguments)]
pub fn scaled_residual_rmsnorm_backward<T: Real>(
    x: &[T],
    u: &[T],
    lambda: Option<&[T]>,
    rstd: &[T],
    dz: &[T],
    dx: &mut [T],
    du: &mut [T],
    dlambda: Option<&mut [T]>,
    d: usize,
) {
    let s = scaled_sum(x, u, lambda, d);
    rmsnorm_backward(&s, None, rstd, dz, dx, None, d);
    match lambda {
        Some(l) => {
            for (i, (du, &ds)) in du.iter_mut().zip(dx.iter()).enumerate() {
                *du = l[i % d] * ds;
            }
        }
        None => du.copy_from_slice(dx),
    }
    if let Some(dl) = dlambda {
        dl.iter_mut().for_each(|v| *v = T::ZERO);
        for (i, (&ds, &u)) in dx.iter().zip(u).enumerate() {
            dl[i % d] += ds * u;
        }
    }
}
