//! Attention on the CPU: one (batch, head) pair per team task, results written straight into
//! the [B, L, Nh·Dh] outputs. Short sequences (deep1000 has 17 tokens) use direct loops, where a
//! GEMM call's set-up would cost more than the arithmetic; longer ones use GEMMs for QKᵀ, PV and
//! the gradients, with the L×L scratch per thread.

use crate::matmul::{matmul, matmul_ptr, View};
use crate::simd::{dot, exp, multiversion, with_scratch, Out};
use crate::team::Team;

/// Sequences up to this length use the direct loops.
const DIRECT_MAX_L: usize = 32;

/// Shapes of one call: B, L, Nh, Dh (D = Nh·Dh).
#[derive(Clone, Copy)]
pub struct Shape {
    pub b: usize,
    pub l: usize,
    pub nh: usize,
    pub dh: usize,
}

impl Shape {
    fn d(&self) -> usize {
        self.nh * self.dh
    }
    /// Offset of head h of token t in sample bi.
    fn at(&self, bi: usize, t: usize, h: usize) -> usize {
        (bi * self.l + t) * self.d() + h * self.dh
    }
    /// Strided [L, Dh] view of one head.
    fn head<'a>(&self, x: &'a [f32], bi: usize, h: usize) -> View<'a> {
        let s = self.at(bi, 0, h);
        View { data: &x[s..s + (self.l - 1) * self.d() + self.dh], rs: self.d(), cs: 1 }
    }
}

/// o: [B, L, D], lse: [B, Nh, L] (both overwritten).
pub fn forward(team: &Team, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32], lse: &mut [f32], sh: Shape) {
    let (oo, lo) = (Out::new(o), Out::new(lse));
    team.run(sh.b * sh.nh, |bh| {
        let (bi, h) = (bh / sh.nh, bh % sh.nh);
        // SAFETY: task bh writes lse row bh and head h of sample bi only.
        let lse = unsafe { lo.part(bh * sh.l, sh.l) };
        if sh.l <= DIRECT_MAX_L {
            with_scratch(sh.l, |p| forward_direct(q, k, v, oo, lse, p, sh, bi, h));
        } else {
            with_scratch(sh.l * sh.l, |p| forward_gemm(q, k, v, oo, lse, p, sh, bi, h));
        }
    });
}

multiversion! {
    fn forward_direct(q: &[f32], k: &[f32], v: &[f32], o: Out, lse: &mut [f32], p: &mut [f32], sh: Shape, bi: usize, h: usize) {
        let (l, dh) = (sh.l, sh.dh);
        let scale = 1.0 / (dh as f32).sqrt();
        for i in 0..l {
            let qi = &q[sh.at(bi, i, h)..][..dh];
            let mut mx = f32::NEG_INFINITY;
            for j in 0..l {
                p[j] = dot(qi, &k[sh.at(bi, j, h)..][..dh]) * scale;
                mx = mx.max(p[j]);
            }
            let mut sum = 0.0;
            for pj in p[..l].iter_mut() {
                *pj = exp(*pj - mx);
                sum += *pj;
            }
            lse[i] = mx + sum.ln();
            let inv = 1.0 / sum;
            // SAFETY: head h of token i of sample bi: this task's alone.
            let oi = unsafe { o.part(sh.at(bi, i, h), dh) };
            oi.fill(0.0);
            for j in 0..l {
                let (w, vj) = (p[j] * inv, &v[sh.at(bi, j, h)..][..dh]);
                for e in 0..dh {
                    oi[e] += w * vj[e];
                }
            }
        }
    }
}

multiversion! {
    /// Turns logits s·(1/√Dh) into probabilities row by row: p = exp(s·scale − lse), computing
    /// lse when `find_lse` (else reading it).
    fn softmax_rows(p: &mut [f32], lse: &mut [f32], l: usize, scale: f32, find_lse: bool) {
        for (row, m) in p.chunks_exact_mut(l).zip(lse.iter_mut()) {
            if find_lse {
                let mx = row.iter().fold(f32::NEG_INFINITY, |a, &s| a.max(s * scale));
                let mut sum = 0.0;
                for s in row.iter() {
                    sum += exp(*s * scale - mx);
                }
                *m = mx + sum.ln();
            }
            let m = *m;
            for s in row.iter_mut() {
                *s = exp(*s * scale - m);
            }
        }
    }
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
    team.run(sh.b * sh.nh, |bh| {
        let (bi, h) = (bh / sh.nh, bh % sh.nh);
        let lse = &lse[bh * sh.l..(bh + 1) * sh.l];
        if sh.l <= DIRECT_MAX_L {
            with_scratch(sh.l * sh.l, |p| backward_direct(q, k, v, o, lse, d_o, outs, p, sh, bi, h));
        } else {
            with_scratch(2 * sh.l * sh.l, |s| backward_gemm(q, k, v, o, lse, d_o, outs, s, sh, bi, h));
        }
    });
}

multiversion! {
    fn backward_direct(q: &[f32], k: &[f32], v: &[f32], o: &[f32], lse: &[f32], d_o: &[f32], outs: [Out; 3], p: &mut [f32], sh: Shape, bi: usize, h: usize) {
        let (l, dh) = (sh.l, sh.dh);
        let scale = 1.0 / (dh as f32).sqrt();
        let [dq, dk, dv] = outs;
        for j in 0..l {
            // SAFETY: head h of sample bi in each gradient is this task's alone; each part is
            // dropped before the next one of the same buffer is taken.
            unsafe {
                dk.part(sh.at(bi, j, h), dh).fill(0.0);
                dv.part(sh.at(bi, j, h), dh).fill(0.0);
            }
        }
        for i in 0..l {
            let (qi, doi, oi) = (&q[sh.at(bi, i, h)..][..dh], &d_o[sh.at(bi, i, h)..][..dh], &o[sh.at(bi, i, h)..][..dh]);
            let di = dot(doi, oi);
            for j in 0..l {
                let kj = &k[sh.at(bi, j, h)..][..dh];
                let pij = exp(dot(qi, kj) * scale - lse[i]);
                let dp = dot(doi, &v[sh.at(bi, j, h)..][..dh]);
                p[j] = pij * (dp - di) * scale; // dS_ij
                // SAFETY: as above.
                let dvj = unsafe { dv.part(sh.at(bi, j, h), dh) };
                for e in 0..dh {
                    dvj[e] += pij * doi[e];
                }
                let dkj = unsafe { dk.part(sh.at(bi, j, h), dh) };
                for e in 0..dh {
                    dkj[e] += p[j] * qi[e];
                }
            }
            // SAFETY: as above.
            let dqi = unsafe { dq.part(sh.at(bi, i, h), dh) };
            dqi.fill(0.0);
            for j in 0..l {
                let kj = &k[sh.at(bi, j, h)..][..dh];
                for e in 0..dh {
                    dqi[e] += p[j] * kj[e];
                }
            }
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
