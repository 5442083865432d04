//! Fused f32 kernels of the element-wise and normalisation ops, each over a block of rows (or
//! one sample) so the backend can hand blocks to the team. Their meaning is the reference in
//! `mvdit_core::ops` (checked by the op parity suite); here every row is read once or twice
//! while it sits in L1, reductions use 16 partial sums, and exp is the vectorising polynomial.

#![allow(clippy::needless_range_loop)] // index loops over equal-length rows vectorise best

use crate::simd::{dot, multiversion, sigmoid};
use mvdit_core::ops::segments;

multiversion! {
    /// RMSNorm of rows of width d: y = x · rstd · g, rstd = 1/sqrt(mean(x²) + eps).
    pub fn rmsnorm_rows(x: &[f32], g: Option<&[f32]>, eps: f32, y: &mut [f32], rstd: &mut [f32], d: usize) {
        for ((xr, yr), r) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).zip(rstd.iter_mut()) {
            let inv = 1.0 / (dot(xr, xr) / d as f32 + eps).sqrt();
            *r = inv;
            match g {
                Some(g) => {
                    let g = &g[..d];
                    for i in 0..d {
                        yr[i] = xr[i] * inv * g[i];
                    }
                }
                None => {
                    for i in 0..d {
                        yr[i] = xr[i] * inv;
                    }
                }
            }
        }
    }
}

multiversion! {
    /// RMSNorm backward of rows: dx = r·(g⊙dy) − r³·x·mean(g⊙dy⊙x); dg += dy⊙x·r (dg: [d] or empty).
    pub fn rmsnorm_backward_rows(x: &[f32], g: Option<&[f32]>, rstd: &[f32], dy: &[f32], dx: &mut [f32], dg: &mut [f32], d: usize) {
        for (((xr, dyr), dxr), &inv) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)).zip(rstd) {
            match g {
                Some(g) => {
                    let (g, dg) = (&g[..d], &mut dg[..d]);
                    // dx holds g⊙dy first.
                    for i in 0..d {
                        dxr[i] = g[i] * dyr[i];
                    }
                    let c = inv * inv * inv * dot(dxr, xr) / d as f32;
                    for i in 0..d {
                        dxr[i] = inv * dxr[i] - c * xr[i];
                    }
                    for i in 0..d {
                        dg[i] += dyr[i] * xr[i] * inv;
                    }
                }
                None => {
                    let c = inv * inv * inv * dot(dyr, xr) / d as f32;
                    for i in 0..d {
                        dxr[i] = inv * dyr[i] - c * xr[i];
                    }
                }
            }
        }
    }
}

/// Segment means of one sample: for each non-empty segment, mu = M(u) and dm = M(u) − M(x),
/// written to scr[seg * 2d ..][..d] and [.. + d][..d].
#[inline(always)]
fn segment_means(x: &[f32], u: &[f32], scr: &mut [f32], d: usize, seg: usize, s: usize, e: usize) {
    let (mu, dm) = scr[seg * 2 * d..(seg + 1) * 2 * d].split_at_mut(d);
    let (mu, dm) = (&mut mu[..d], &mut dm[..d]);
    mu.fill(0.0);
    dm.fill(0.0);
    for t in s..e {
        let (xr, ur) = (&x[t * d..][..d], &u[t * d..][..d]);
        for c in 0..d {
            mu[c] += ur[c];
            dm[c] += xr[c];
        }
    }
    let inv = 1.0 / (e - s) as f32;
    for c in 0..d {
        mu[c] *= inv;
        dm[c] = mu[c] - dm[c] * inv;
    }
}

multiversion! {
    /// MV-Split merge + RMSNorm of one sample x, u: [L, D]:
    /// z = RMSNorm(x + β(u − M(u)) + α(M(u) − M(x))). scr: 4·D scratch values.
    pub fn mvsplit_sample(x: &[f32], u: &[f32], alpha: &[f32], beta: &[f32], eps: f32, z: &mut [f32], rstd: &mut [f32], l: usize, d: usize, li: usize, scr: &mut [f32]) {
        for (seg, (s, e)) in segments(li, l).into_iter().enumerate() {
            if s == e {
                continue;
            }
            segment_means(x, u, scr, d, seg, s, e);
            let (mu, dm) = scr[seg * 2 * d..(seg + 1) * 2 * d].split_at(d);
            let (mu, dm, alpha, beta) = (&mu[..d], &dm[..d], &alpha[..d], &beta[..d]);
            for t in s..e {
                let (xr, ur, zr) = (&x[t * d..][..d], &u[t * d..][..d], &mut z[t * d..][..d]);
                for c in 0..d {
                    zr[c] = xr[c] + beta[c] * (ur[c] - mu[c]) + alpha[c] * dm[c];
                }
                let inv = 1.0 / (dot(zr, zr) / d as f32 + eps).sqrt();
                rstd[t] = inv;
                for v in zr.iter_mut() {
                    *v *= inv;
                }
            }
        }
    }
}

multiversion! {
    /// Backward of [`mvsplit_sample`] for one sample; dα, dβ are accumulated into da, db.
    /// scr: 8·D scratch values.
    pub fn mvsplit_backward_sample(
        x: &[f32], u: &[f32], alpha: &[f32], beta: &[f32], rstd: &[f32], dz: &[f32],
        dx: &mut [f32], du: &mut [f32], da: &mut [f32], db: &mut [f32],
        l: usize, d: usize, li: usize, scr: &mut [f32],
    ) {
        let (means, sums) = scr.split_at_mut(4 * d);
        for (seg, (s, e)) in segments(li, l).into_iter().enumerate() {
            if s == e {
                continue;
            }
            segment_means(x, u, means, d, seg, s, e);
            let (mu, dm) = means[seg * 2 * d..(seg + 1) * 2 * d].split_at(d);
            let (sds, sdsu) = sums[seg * 2 * d..(seg + 1) * 2 * d].split_at_mut(d);
            let (mu, dm, alpha, beta, sds, sdsu) = (&mu[..d], &dm[..d], &alpha[..d], &beta[..d], &mut sds[..d], &mut sdsu[..d]);
            let (da, db) = (&mut da[..d], &mut db[..d]);
            sds.fill(0.0);
            sdsu.fill(0.0);
            for t in s..e {
                let (xr, ur, dzr) = (&x[t * d..][..d], &u[t * d..][..d], &dz[t * d..][..d]);
                let (sr, dsr) = (&mut du[t * d..][..d], &mut dx[t * d..][..d]);
                // s (the pre-norm sum) in du's row, then ds = RMSNorm backward in dx's row.
                for c in 0..d {
                    sr[c] = xr[c] + beta[c] * (ur[c] - mu[c]) + alpha[c] * dm[c];
                }
                let inv = rstd[t];
                let k = inv * inv * inv * dot(dzr, sr) / d as f32;
                for c in 0..d {
                    let ds = inv * dzr[c] - k * sr[c];
                    dsr[c] = ds;
                    sds[c] += ds;
                    sdsu[c] += ds * (ur[c] - mu[c]);
                }
            }
            let inv_n = 1.0 / (e - s) as f32;
            for c in 0..d {
                db[c] += sdsu[c];
                da[c] += dm[c] * sds[c];
                sds[c] *= inv_n; // M(ds)
            }
            for t in s..e {
                let (dxr, dur) = (&mut dx[t * d..][..d], &mut du[t * d..][..d]);
                for c in 0..d {
                    let ds = dxr[c];
                    dxr[c] = ds - alpha[c] * sds[c];
                    dur[c] = beta[c] * ds + (alpha[c] - beta[c]) * sds[c];
                }
            }
        }
    }
}

/// Rotates one head vector in place by the table row (inverse: turns back).
#[inline(always)]
fn rotate(v: &mut [f32], c: &[f32], s: &[f32], inverse: bool) {
    let half = c.len();
    let (a, b) = v.split_at_mut(half);
    let (a, b, s) = (&mut a[..half], &mut b[..half], &s[..half]);
    for i in 0..half {
        let (x1, x2) = (a[i], b[i]);
        let sn = if inverse { -s[i] } else { s[i] };
        a[i] = x1 * c[i] + x2 * sn;
        b[i] = x2 * c[i] - x1 * sn;
    }
}

multiversion! {
    /// RoPE on image tokens then RMSNorm per head, for rows r0.. of [B*L, Nh*Dh] (x, y are the
    /// block's rows, rstd its [rows * Nh]).
    pub fn rope_qknorm_rows(x: &[f32], cos: &[f32], sin: &[f32], y: &mut [f32], rstd: &mut [f32], r0: usize, l: usize, li: usize, nh: usize, dh: usize, eps: f32) {
        let (d, half) = (nh * dh, dh / 2);
        for (ri, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
            let t = (r0 + ri) % l;
            yr.copy_from_slice(xr);
            for h in 0..nh {
                let v = &mut yr[h * dh..(h + 1) * dh];
                if t < li {
                    rotate(v, &cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half], false);
                }
                let inv = 1.0 / (dot(v, v) / dh as f32 + eps).sqrt();
                rstd[ri * nh + h] = inv;
                for e in v.iter_mut() {
                    *e *= inv;
                }
            }
        }
    }
}

multiversion! {
    /// Backward of [`rope_qknorm_rows`]: dx = rope⁻¹(RMSNorm backward at r = rope(x)).
    pub fn rope_qknorm_backward_rows(x: &[f32], cos: &[f32], sin: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], r0: usize, l: usize, li: usize, nh: usize, dh: usize) {
        let (d, half) = (nh * dh, dh / 2);
        for (ri, ((xr, dyr), dxr)) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)).enumerate() {
            let t = (r0 + ri) % l;
            dxr.copy_from_slice(xr);
            for h in 0..nh {
                let (v, g) = (&mut dxr[h * dh..(h + 1) * dh], &dyr[h * dh..(h + 1) * dh]);
                let (c, s) = (&cos[(t * half).min(cos.len())..], &sin[(t * half).min(sin.len())..]);
                if t < li {
                    rotate(v, &c[..half], &s[..half], false);
                }
                let inv = rstd[ri * nh + h];
                let (v, g) = (&mut v[..dh], &g[..dh]);
                let k = inv * inv * inv * dot(g, v) / dh as f32;
                for e in 0..dh {
                    v[e] = inv * g[e] - k * v[e];
                }
                if t < li {
                    rotate(v, &c[..half], &s[..half], true);
                }
            }
        }
    }
}

multiversion! {
    /// SwiGLU of rows [g | v] (width 2m): y = silu(g)·v.
    pub fn swiglu_rows(gv: &[f32], y: &mut [f32], m: usize) {
        for (row, yr) in gv.chunks_exact(2 * m).zip(y.chunks_exact_mut(m)) {
            let (g, v) = row.split_at(m);
            let (g, v, yr) = (&g[..m], &v[..m], &mut yr[..m]);
            for i in 0..m {
                yr[i] = g[i] * sigmoid(g[i]) * v[i];
            }
        }
    }
}

multiversion! {
    /// SwiGLU backward of rows: dg = dy·v·σ(g)(1 + g(1 − σ(g))), dv = dy·g·σ(g).
    pub fn swiglu_backward_rows(gv: &[f32], dy: &[f32], dgv: &mut [f32], m: usize) {
        for ((row, dyr), dr) in gv.chunks_exact(2 * m).zip(dy.chunks_exact(m)).zip(dgv.chunks_exact_mut(2 * m)) {
            let (g, v) = row.split_at(m);
            let (dg, dv) = dr.split_at_mut(m);
            let (g, v, dg, dv, dyr) = (&g[..m], &v[..m], &mut dg[..m], &mut dv[..m], &dyr[..m]);
            for i in 0..m {
                let sg = sigmoid(g[i]);
                dg[i] = dyr[i] * v[i] * sg * (1.0 + g[i] * (1.0 - sg));
                dv[i] = dyr[i] * g[i] * sg;
            }
        }
    }
}

multiversion! {
    /// out = a·x + b·y.
    pub fn axpby(a: f32, x: &[f32], b: f32, y: &[f32], out: &mut [f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(x).zip(y) {
            *o = a * x + b * y;
        }
    }
}

multiversion! {
    /// dst += src.
    pub fn add_into(dst: &mut [f32], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

multiversion! {
    /// Σ (p − t)² in f64, and dpred = c·(p − t).
    pub fn mse_block(p: &[f32], t: &[f32], c: f32, dp: &mut [f32]) -> f64 {
        for ((d, &p), &t) in dp.iter_mut().zip(p).zip(t) {
            *d = c * (p - t);
        }
        crate::simd::sq_dist_f64(p, t)
    }
}

multiversion! {
    /// Σ x² in f64.
    pub fn sum_squares(x: &[f32]) -> f64 {
        let mut acc = [0.0f64; 8];
        let chunks = x.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..8 {
                acc[i] += c[i] as f64 * c[i] as f64;
            }
        }
        acc.iter().sum::<f64>() + rest.iter().map(|&v| v as f64 * v as f64).sum::<f64>()
    }
}

/// AdamW constants in f32, each formed in f64 first (1 − f32(0.999) is 1.3e-5 off 0.001).
#[derive(Clone, Copy)]
pub struct AdamConsts {
    pub b1: f32,
    pub b2: f32,
    pub c1: f32,
    pub c2: f32,
    pub decay: f32,
    pub step_size: f32,
    pub inv_sqrt_bc2: f32,
    pub eps: f32,
    pub gs: f32,
}

impl AdamConsts {
    pub fn new(opt: &mvdit_core::ops::AdamW, step: u64, grad_scale: f64) -> Self {
        AdamConsts {
            b1: opt.beta1 as f32,
            b2: opt.beta2 as f32,
            c1: (1.0 - opt.beta1) as f32,
            c2: (1.0 - opt.beta2) as f32,
            decay: (1.0 - opt.lr * opt.weight_decay) as f32,
            step_size: (opt.lr / (1.0 - opt.beta1.powf(step as f64))) as f32,
            inv_sqrt_bc2: (1.0 / (1.0 - opt.beta2.powf(step as f64)).sqrt()) as f32,
            eps: opt.eps as f32,
            gs: grad_scale as f32,
        }
    }
}

multiversion! {
    /// One AdamW update (`ops::adamw_step`) of a block.
    pub fn adamw(k: AdamConsts, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let gi = g * k.gs;
            *m = k.b1 * *m + k.c1 * gi;
            *v = k.b2 * *v + k.c2 * gi * gi;
            *p = *p * k.decay - k.step_size * *m / (v.sqrt() * k.inv_sqrt_bc2 + k.eps);
        }
    }
}

multiversion! {
    /// acc[c] += Σ_rows dy[r, c] (bias gradient).
    pub fn column_sums(dy: &[f32], acc: &mut [f32], m: usize) {
        for row in dy.chunks_exact(m) {
            for (a, &g) in acc.iter_mut().zip(row) {
                *a += g;
            }
        }
    }
}

multiversion! {
    /// SiLU element-wise: y = x·σ(x).
    pub fn silu_slice(x: &[f32], y: &mut [f32]) {
        let y = &mut y[..x.len()];
        for i in 0..x.len() {
            y[i] = x[i] * sigmoid(x[i]);
        }
    }
}

multiversion! {
    /// Per-channel affine map of pixel rows of width c: y = x·scale + shift.
    pub fn affine_rows(x: &[f32], y: &mut [f32], scale: &[f32], shift: &[f32]) {
        let c = scale.len();
        for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            let (xr, yr, shift) = (&xr[..c], &mut yr[..c], &shift[..c]);
            for i in 0..c {
                yr[i] = xr[i] * scale[i] + shift[i];
            }
        }
    }
}

multiversion! {
    /// Over pixel rows of width c, adds each channel's Σ (x − centre) to `sum` and
    /// Σ (x − centre)² to `sq` (centre: one value per channel).
    pub fn channel_sums(x: &[f32], centre: &[f32], sum: &mut [f32], sq: &mut [f32]) {
        let c = centre.len();
        let (sum, sq) = (&mut sum[..c], &mut sq[..c]);
        for xr in x.chunks_exact(c) {
            let xr = &xr[..c];
            for i in 0..c {
                let d = xr[i] - centre[i];
                sum[i] += d;
                sq[i] += d * d;
            }
        }
    }
}
