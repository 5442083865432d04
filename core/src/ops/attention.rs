//! Multi-head softmax attention over the full sequence (no mask), scale 1/sqrt(Dh).

use crate::Real;
use alloc::vec;

/// q, k, v: [B, L, Nh, Dh] → o: [B, L, Nh, Dh], lse: [B, Nh, L] (log-sum-exp of each logit row,
/// kept so backward can rebuild the probabilities without storing [B, Nh, L, L]).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<T: Real>(q: &[T], k: &[T], v: &[T], o: &mut [T], lse: &mut [T], b: usize, l: usize, nh: usize, dh: usize) {
    let scale = T::ONE / T::from_usize(dh).sqrt();
    let at = |bi: usize, t: usize, h: usize| ((bi * l + t) * nh + h) * dh;
    let mut p = vec![T::ZERO; l];
    for bi in 0..b {
        for h in 0..nh {
            for i in 0..l {
                let qi = &q[at(bi, i, h)..at(bi, i, h) + dh];
                let mut mx = T::from_f64(f64::NEG_INFINITY);
                for j in 0..l {
                    let kj = &k[at(bi, j, h)..at(bi, j, h) + dh];
                    let mut s = T::ZERO;
                    for e in 0..dh {
                        s += qi[e] * kj[e];
                    }
                    p[j] = s * scale;
                    mx = mx.max(p[j]);
                }
                let mut sum = T::ZERO;
                for pj in p.iter_mut() {
                    *pj = (*pj - mx).exp();
                    sum += *pj;
                }
                lse[(bi * nh + h) * l + i] = mx + T::from_f64(libm::log(sum.to_f64()));
                let oi = &mut o[at(bi, i, h)..at(bi, i, h) + dh];
                oi.iter_mut().for_each(|x| *x = T::ZERO);
                for j in 0..l {
                    let w = p[j] / sum;
                    for e in 0..dh {
                        oi[e] += w * v[at(bi, j, h) + e];
                    }
                }
            }
        }
    }
}

/// do: [B, L, Nh, Dh] → dq, dk, dv (overwritten). With P = exp(S − lse):
/// dV = Pᵀ dO, dS = P ⊙ (dO Vᵀ − rowsum(dO ⊙ O)), dQ = dS K·scale, dK = dSᵀ Q·scale.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    lse: &[T],
    d_o: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    b: usize,
    l: usize,
    nh: usize,
    dh: usize,
) {
    let scale = T::ONE / T::from_usize(dh).sqrt();
    let at = |bi: usize, t: usize, h: usize| ((bi * l + t) * nh + h) * dh;
    for x in dq.iter_mut().chain(dk.iter_mut()).chain(dv.iter_mut()) {
        *x = T::ZERO;
    }
    for bi in 0..b {
        for h in 0..nh {
            for i in 0..l {
                let (qi, oi, doi) = (at(bi, i, h), at(bi, i, h), at(bi, i, h));
                let mut di = T::ZERO;
                for e in 0..dh {
                    di += d_o[doi + e] * o[oi + e];
                }
                for j in 0..l {
                    let kj = at(bi, j, h);
                    let mut s = T::ZERO;
                    let mut dp = T::ZERO;
                    for e in 0..dh {
                        s += q[qi + e] * k[kj + e];
                        dp += d_o[doi + e] * v[kj + e];
                    }
                    let p = (s * scale - lse[(bi * nh + h) * l + i]).exp();
                    let ds = p * (dp - di) * scale;
                    for e in 0..dh {
                        dv[kj + e] += p * d_o[doi + e];
                        dq[qi + e] += ds * k[kj + e];
                        dk[kj + e] += ds * q[qi + e];
                    }
                }
            }
        }
    }
}
