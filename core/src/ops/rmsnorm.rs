//! RMSNorm over the last dimension: `y = x / sqrt(mean(x²) + eps) * g`.

use crate::Real;

/// x: [N, D], gain: [D] (None = ones) → y: [N, D], rstd: [N] = 1/sqrt(mean(x²)+eps).
pub fn rmsnorm_forward<T: Real>(x: &[T], gain: Option<&[T]>, eps: f64, y: &mut [T], rstd: &mut [T], d: usize) {
    for (r, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
        let mut ss = T::ZERO;
        for &v in xr {
            ss += v * v;
        }
        let inv = T::ONE / (ss / T::from_usize(d) + T::from_f64(eps)).sqrt();
        rstd[r] = inv;
        for i in 0..d {
            yr[i] = xr[i] * inv * gain.map_or(T::ONE, |g| g[i]);
        }
    }
}

/// dy: [N, D] → dx: [N, D] (overwritten), dgain: [D] (overwritten) when a gain is used.
/// dx = r·(g⊙dy) − r³·x·mean(g⊙dy⊙x).
pub fn rmsnorm_backward<T: Real>(
    x: &[T],
    gain: Option<&[T]>,
    rstd: &[T],
    dy: &[T],
    dx: &mut [T],
    mut dgain: Option<&mut [T]>,
    d: usize,
) {
    if let Some(dg) = dgain.as_deref_mut() {
        dg.iter_mut().for_each(|v| *v = T::ZERO);
    }
    for r in 0..x.len() / d {
        let (xr, dyr, dxr) = (&x[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d], &mut dx[r * d..(r + 1) * d]);
        let inv = rstd[r];
        let mut dot = T::ZERO;
        for i in 0..d {
            dot += gain.map_or(T::ONE, |g| g[i]) * dyr[i] * xr[i];
        }
        let c = inv * inv * inv * dot / T::from_usize(d);
        for i in 0..d {
            dxr[i] = inv * gain.map_or(T::ONE, |g| g[i]) * dyr[i] - c * xr[i];
        }
        if let Some(dg) = dgain.as_deref_mut() {
            for i in 0..d {
                dg[i] += dyr[i] * xr[i] * inv;
            }
        }
    }
}
