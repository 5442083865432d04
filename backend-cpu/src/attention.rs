//! Attention on the CPU: one (batch, head) pair per team task, results written straight into
//! the [B, L, Nh·Dh] outputs. Short sequences (deep1000 has 17 tokens) use direct loops, where a
//! GEMM call's set-up would cost more than the arithmetic; longer ones the register-blocked
//! kernels of [`tiled`] when Dh is a multiple of 16, else GEMMs for QKᵀ, PV and the gradients,
//! with the L×L scratch per thread.

#![allow(clippy::needless_range_loop)] // index loops over equal-length rows vectorise best

use crate::matmul::{matmul, matmul_ptr, View};
use crate::simd::{dot, exp, fma, hsum, multiversion, with_scratch, Out};
use crate::team::Team;

mod shape;
#[cfg(target_arch = "x86_64")]
mod tiled;

pub use shape::Shape;

/// Whether the register-blocked kernels of [`tiled`] take these shapes on this CPU.
fn use_tiled(sh: Shape) -> bool {
    #[cfg(target_arch = "x86_64")]
    return tiled::fits(sh);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = sh;
        false
    }
}

/// Sequences up to this length use the direct loops.
const DIRECT_MAX_L: usize = 32;

/// Runs `f(b · Nh + h)` for every (sample, head) on the team: one task per sample (its heads in
/// turn) when there are enough samples, so a task streams through whole [L, D] blocks (cold
/// inputs come from memory as contiguous runs, not rows cut in Nh pieces between threads);
/// else one task per (sample, head).
fn per_head(team: &Team, sh: Shape, f: impl Fn(usize) + Sync) {
    if sh.b >= 2 * team.threads() {
        team.run(sh.b, |bi| (bi * sh.nh..(bi + 1) * sh.nh).for_each(&f));
    } else {
        team.run(sh.b * sh.nh, f);
    }
}

/// o: [B, L, D], lse: [B, Nh, L] (both overwritten).
pub fn forward(team: &Team, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32], lse: &mut [f32], sh: Shape) {
    let (oo, lo) = (Out::new(o), Out::new(lse));
    per_head(team, sh, |bh| {
        let (bi, h) = (bh / sh.nh, bh % sh.nh);
        // SAFETY: (bi, h) writes lse row bh and head h of sample bi only.
        let lse = unsafe { lo.part(bh * sh.l, sh.l) };
        if sh.l <= DIRECT_MAX_L {
            with_scratch(sh.dh * LP, |t| forward_direct(q, k, v, oo, lse, t, sh, bi, h));
        } else if use_tiled(sh) {
            #[cfg(target_arch = "x86_64")]
            tiled::forward(q, k, v, oo, lse, sh, bi, h);
        } else {
            with_scratch(sh.l * sh.l, |p| forward_gemm(q, k, v, oo, lse, p, sh, bi, h));
        }
    });
}

/// Padded key count of the direct path: logits of one query row live in one [f32; LP].
const LP: usize = DIRECT_MAX_L;

/// Copies head h of sample bi of x transposed into t: t[e * LP + j] = x[j, e], zero-padded.
#[inline(always)]
fn transpose_head(x: &[f32], t: &mut [f32], sh: Shape, bi: usize, h: usize) {
    t[..sh.dh * LP].fill(0.0);
    for j in 0..sh.l {
        let xj = &x[sh.at(bi, j, h)..][..sh.dh];
        for e in 0..sh.dh {
            t[e * LP + j] = xj[e];
        }
    }
}

/// dst = Σ_j w[j] · src[start + j·stride ..][..dst.len()], the sum kept in registers when
/// dst.len() is 64 (the bench models' head size) or 32.
#[inline(always)]
fn weighted_rows(dst: &mut [f32], w: &[f32], src: &[f32], start: usize, stride: usize) {
    match dst.len() {
        64 => weighted_rows_n::<64>(dst.try_into().expect("64"), w, src, start, stride),
        32 => weighted_rows_n::<32>(dst.try_into().expect("32"), w, src, start, stride),
        n => {
            dst.fill(0.0);
            for (j, &wj) in w.iter().enumerate() {
                let r = &src[start + j * stride..][..n];
                for e in 0..n {
                    dst[e] = fma(wj, r[e], dst[e]);
                }
            }
        }
    }
}

#[inline(always)]
fn weighted_rows_n<const N: usize>(dst: &mut [f32; N], w: &[f32], src: &[f32], start: usize, stride: usize) {
    let mut acc = [0.0f32; N];
    for (j, &wj) in w.iter().enumerate() {
        let r: &[f32; N] = src[start + j * stride..][..N].try_into().expect("row");
        for e in 0..N {
            acc[e] = fma(wj, r[e], acc[e]);
        }
    }
    *dst = acc;
}

/// 1 for the first l of LP columns, else 0.
#[inline(always)]
fn valid_mask(l: usize) -> [f32; LP] {
    let mut m = [0.0f32; LP];
    m[..l].fill(1.0);
    m
}

/// row[j] = Σ_e a[e] · t[e * LP + j] for all LP columns (t from [`transpose_head`]).
#[inline(always)]
fn row_times_transposed(a: &[f32], t: &[f32], row: &mut [f32; LP]) {
    let mut acc = [[0.0f32; LP]; 4];
    let quads = a.len() / 4;
    for q in 0..quads {
        for u in 0..4 {
            let (av, tr) = (a[4 * q + u], &t[(4 * q + u) * LP..(4 * q + u + 1) * LP]);
            for j in 0..LP {
                acc[u][j] = fma(av, tr[j], acc[u][j]);
            }
        }
    }
    for e in 4 * quads..a.len() {
        let (av, tr) = (a[e], &t[e * LP..(e + 1) * LP]);
        for j in 0..LP {
            acc[0][j] = fma(av, tr[j], acc[0][j]);
        }
    }
    for j in 0..LP {
        row[j] = (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);
    }
}

multiversion! {
    /// Direct attention of one (sample, head) for L ≤ LP: logits via the transposed keys (no
    /// horizontal sums), softmax on one padded row, o = Σ p_j v_j. scr: Dh·LP values.
    fn forward_direct(q: &[f32], k: &[f32], v: &[f32], o: Out, lse: &mut [f32], scr: &mut [f32], sh: Shape, bi: usize, h: usize) {
        let (l, dh) = (sh.l, sh.dh);
        let scale = 1.0 / (dh as f32).sqrt();
        transpose_head(k, scr, sh, bi, h);
        let valid = valid_mask(l);
        let mut p = [0.0f32; LP];
        for i in 0..l {
            row_times_transposed(&q[sh.at(bi, i, h)..][..dh], scr, &mut p);
            let mut mx = f32::NEG_INFINITY;
            for j in 0..l {
                p[j] *= scale;
                mx = mx.max(p[j]);
            }
            for j in 0..LP {
                p[j] = exp(p[j] - mx) * valid[j];
            }
            let mut halves = [0.0f32; 16];
            for j in 0..16 {
                halves[j] = p[j] + p[j + 16];
            }
            let sum = hsum(halves);
            lse[i] = mx + sum.ln();
            let inv = 1.0 / sum;
            for pj in p.iter_mut() {
                *pj *= inv;
            }
            // SAFETY: head h of token i of sample bi: this task's alone.
            let oi = unsafe { o.part(sh.at(bi, i, h), dh) };
            weighted_rows(oi, &p[..l], v, sh.at(bi, 0, h), sh.d());
        }
    }
}

multiversion! {
    /// Turns logits s into probabilities row by row: p = exp(s·scale − lse), finding lse first
    /// when `find_lse` (else reading it). Reductions run in 16 lanes so everything vectorises.
    fn softmax_rows(p: &mut [f32], lse: &mut [f32], l: usize, scale: f32, find_lse: bool) {
        for (row, m) in p.chunks_exact_mut(l).zip(lse.iter_mut()) {
            if find_lse {
                let mx = row_max(row) * scale; // scale > 0
                for s in row.iter_mut() {
                    *s = exp(*s * scale - mx);
                }
                let sum = row_sum(row);
                *m = mx + sum.ln();
                let inv = 1.0 / sum;
                for s in row.iter_mut() {
                    *s *= inv;
                }
            } else {
                let m = *m;
                for s in row.iter_mut() {
                    *s = exp(*s * scale - m);
                }
            }
        }
    }
}

#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = row.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    rest.iter().chain(&acc).fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

#[inline(always)]
fn row_sum(row: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = row.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    hsum(acc) + rest.iter().sum::<f32>()
}

#[allow(clippy::too_many_arguments)]
fn forward_gemm(q: &[f32], k: &[f32], v: &[f32], o: Out, lse: &mut [f32], p: &mut [f32], sh: Shape, bi: usize, h: usize) {
    let (l, dh, d) = (sh.l, sh.dh, sh.d());
    let kh = sh.head(k, bi, h);
    matmul(l, l, dh, p, l, sh.head(q, bi, h), View { data: kh.data, rs: 1, cs: d }, false);
    softmax_rows(p, lse, l, 1.0 / (dh as f32).sqrt(), true);
    let start = sh.at(bi, 0, h);
    // SAFETY: head h of sample bi (rows strided by D): this task's alone.
    unsafe { matmul_ptr(l, dh, l, o.ptr(start, (l - 1) * d + dh), d, View::rows(p, l), sh.head(v, bi, h), false) };
}

/// Gradients dq, dk, dv: [B, L, D] (overwritten); P is rebuilt from lse.
#[allow(clippy::too_many_arguments)]
pub fn backward(team: &Team, q: &[f32], k: &[f32], v: &[f32], o: &[f32], lse: &[f32], d_o: &[f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32], sh: Shape) {
    let outs = [Out::new(dq), Out::new(dk), Out::new(dv)];
    per_head(team, sh, |bh| {
        let (bi, h) = (bh / sh.nh, bh % sh.nh);
        let lse = &lse[bh * sh.l..(bh + 1) * sh.l];
        if sh.l <= DIRECT_MAX_L {
            with_scratch(2 * sh.dh * LP + 2 * sh.l * LP, |t| backward_direct(q, k, v, o, lse, d_o, outs, t, sh, bi, h));
        } else if use_tiled(sh) {
            #[cfg(target_arch = "x86_64")]
            tiled::backward(q, k, v, o, lse, d_o, outs, sh, bi, h);
        } else {
            with_scratch(2 * sh.l * sh.l, |s| backward_gemm(q, k, v, o, lse, d_o, outs, s, sh, bi, h));
        }
    });
}

multiversion! {
    /// Direct attention backward of one (sample, head) for L ≤ LP. scr: 2·Dh·LP + 2·L·LP values
    /// (transposed K and V, then the P and dS rows).
    fn backward_direct(q: &[f32], k: &[f32], v: &[f32], o: &[f32], lse: &[f32], d_o: &[f32], outs: [Out; 3], scr: &mut [f32], sh: Shape, bi: usize, h: usize) {
        let (l, dh) = (sh.l, sh.dh);
        let scale = 1.0 / (dh as f32).sqrt();
        let (kt, rest) = scr.split_at_mut(dh * LP);
        let (vt, rest) = rest.split_at_mut(dh * LP);
        let (pm, dsm) = rest.split_at_mut(l * LP);
        transpose_head(k, kt, sh, bi, h);
        transpose_head(v, vt, sh, bi, h);
        let [dq, dk, dv] = outs;
        let valid = valid_mask(l);
        let (mut s, mut dp) = ([0.0f32; LP], [0.0f32; LP]);
        for i in 0..l {
            let at = sh.at(bi, i, h);
            let (doi, oi) = (&d_o[at..at + dh], &o[at..at + dh]);
            row_times_transposed(&q[at..at + dh], kt, &mut s);
            row_times_transposed(doi, vt, &mut dp);
            let di = dot(doi, oi);
            let (pr, dsr) = (&mut pm[i * LP..(i + 1) * LP], &mut dsm[i * LP..(i + 1) * LP]);
            let (pr, dsr) = (&mut pr[..LP], &mut dsr[..LP]);
            for j in 0..LP {
                let pij = exp(s[j] * scale - lse[i]) * valid[j];
                pr[j] = pij;
                dsr[j] = pij * (dp[j] - di) * scale;
            }
            // SAFETY: head h of each gradient row of sample bi is this task's alone; one part
            // of a buffer is live at a time.
            weighted_rows(unsafe { dq.part(at, dh) }, &dsr[..l], k, sh.at(bi, 0, h), sh.d());
        }
        let (mut ws, mut wp) = ([0.0f32; LP], [0.0f32; LP]);
        for j in 0..l {
            for i in 0..l {
                ws[i] = dsm[i * LP + j];
                wp[i] = pm[i * LP + j];
            }
            let at = sh.at(bi, j, h);
            // SAFETY: as above.
            weighted_rows(unsafe { dk.part(at, dh) }, &ws[..l], q, sh.at(bi, 0, h), sh.d());
            weighted_rows(unsafe { dv.part(at, dh) }, &wp[..l], d_o, sh.at(bi, 0, h), sh.d());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_gemm(q: &[f32], k: &[f32], v: &[f32], o: &[f32], lse: &[f32], d_o: &[f32], outs: [Out; 3], scr: &mut [f32], sh: Shape, bi: usize, h: usize) {
    let (l, dh, d) = (sh.l, sh.dh, sh.d());
    let scale = 1.0 / (dh as f32).sqrt();
    let (p, ds) = scr.split_at_mut(l * l);
    let (qh, kh, vh, doh) = (sh.head(q, bi, h), sh.head(k, bi, h), sh.head(v, bi, h), sh.head(d_o, bi, h));
    matmul(l, l, dh, p, l, qh, View { data: kh.data, rs: 1, cs: d }, false);
    let mut lse_copy = lse.to_vec();
    softmax_rows(p, &mut lse_copy, l, scale, false);
    // dP = dO Vᵀ, then dS = P ⊙ (dP − rowsum(dO ⊙ O)) · scale
    matmul(l, l, dh, ds, l, doh, View { data: vh.data, rs: 1, cs: d }, false);
    for i in 0..l {
        let at = sh.at(bi, i, h);
        let di = dot(&d_o[at..at + dh], &o[at..at + dh]);
        for (s, &pij) in ds[i * l..(i + 1) * l].iter_mut().zip(&p[i * l..(i + 1) * l]) {
            *s = pij * (*s - di) * scale;
        }
    }
    let [dq, dk, dv] = outs;
    let (start, extent) = (sh.at(bi, 0, h), (l - 1) * d + dh);
    // SAFETY: head h of sample bi (rows strided by D) of each gradient: this task's alone.
    unsafe {
        matmul_ptr(l, dh, l, dv.ptr(start, extent), d, View::transposed(p, l), doh, false);
        matmul_ptr(l, dh, l, dq.ptr(start, extent), d, View::rows(ds, l), kh, false);
        matmul_ptr(l, dh, l, dk.ptr(start, extent), d, View::transposed(ds, l), qh, false);
    }
}
