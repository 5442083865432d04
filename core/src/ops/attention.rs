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

/// The heads of a grouped-query attention: `q` query heads share `kv` key/value heads, query
/// head h reading KV head h / (q / kv) (q a multiple of kv; q = kv is plain multi-head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    pub q: usize,
    pub kv: usize,
}

/// Which keys a query sees in [`attention_masked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnMask<'a, T> {
    /// Query i sees keys j ≤ i only.
    pub causal: bool,
    /// [B, L]: 1 for a key to attend, 0 for padding; None = every key.
    pub keys: Option<&'a [T]>,
}

/// Forward-only softmax attention with grouped KV heads and a causal and/or key-padding mask,
/// scale 1/√Dh (the text encoder's; with one head and no mask, the autoencoder's).
/// q: [B, L, Hq, Dh], k, v: [B, L, Hkv, Dh] → o: [B, L, Hq, Dh] (overwritten).
/// A query that sees no key at all (every key padding, as in the empty prompt) gets o = 0.
#[allow(clippy::too_many_arguments)]
pub fn attention_masked<T: Real>(q: &[T], k: &[T], v: &[T], o: &mut [T], mask: AttnMask<'_, T>, b: usize, l: usize, heads: Heads, dh: usize) {
    let scale = T::ONE / T::from_usize(dh).sqrt();
    let group = heads.q / heads.kv;
    let qat = |bi: usize, t: usize, h: usize| ((bi * l + t) * heads.q + h) * dh;
    let kat = |bi: usize, t: usize, h: usize| ((bi * l + t) * heads.kv + h) * dh;
    let mut p = vec![T::ZERO; l];
    for bi in 0..b {
        for h in 0..heads.q {
            let hk = h / group;
            for i in 0..l {
                let visible = |j: usize| (!mask.causal || j <= i) && mask.keys.is_none_or(|m| m[bi * l + j] != T::ZERO);
                let qi = &q[qat(bi, i, h)..][..dh];
                let mut mx = T::from_f64(f64::NEG_INFINITY);
                for (j, pj) in p.iter_mut().enumerate().filter(|(j, _)| visible(*j)) {
                    let kj = &k[kat(bi, j, hk)..][..dh];
                    let mut s = T::ZERO;
                    for e in 0..dh {
                        s += qi[e] * kj[e];
                    }
                    *pj = s * scale;
                    mx = mx.max(*pj);
                }
                let oi = &mut o[qat(bi, i, h)..][..dh];
                oi.iter_mut().for_each(|x| *x = T::ZERO);
                if mx.to_f64() == f64::NEG_INFINITY {
                    continue;
                }
                let mut sum = T::ZERO;
                for j in (0..l).filter(|&j| visible(j)) {
                    p[j] = (p[j] - mx).exp();
                    sum += p[j];
                }
                for j in (0..l).filter(|&j| visible(j)) {
                    let w = p[j] / sum;
                    let vj = &v[kat(bi, j, hk)..][..dh];
                    for e in 0..dh {
                        oi[e] += w * vj[e];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;
    use alloc::vec::Vec;

    fn random(n: usize, seed: u64) -> Vec<f64> {
        let mut r = SplitMix64::new(seed);
        (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
    }

    #[test]
    fn unmasked_multi_head_equals_the_training_attention() {
        let (b, l, nh, dh) = (2, 5, 3, 4);
        let (q, k, v) = (random(b * l * nh * dh, 1), random(b * l * nh * dh, 2), random(b * l * nh * dh, 3));
        let (mut o1, mut o2, mut lse) = (vec![0.0; q.len()], vec![0.0; q.len()], vec![0.0; b * nh * l]);
        attention_forward(&q, &k, &v, &mut o1, &mut lse, b, l, nh, dh);
        attention_masked(&q, &k, &v, &mut o2, AttnMask { causal: false, keys: None }, b, l, Heads { q: nh, kv: nh }, dh);
        assert!(o1.iter().zip(&o2).all(|(a, b)| (a - b).abs() < 1e-14));
    }

    #[test]
    fn grouped_heads_read_their_shared_kv_head() {
        // Hq = 4 over Hkv = 2 equals plain 4-head attention with each KV head repeated twice.
        let (b, l, dh) = (1, 4, 2);
        let q = random(b * l * 4 * dh, 4);
        let (k, v) = (random(b * l * 2 * dh, 5), random(b * l * 2 * dh, 6));
        let repeat = |x: &[f64]| -> Vec<f64> { x.chunks(dh).flat_map(|hd| [hd, hd]).flatten().copied().collect() };
        let (k4, v4) = (repeat(&k), repeat(&v));
        let mask = AttnMask { causal: true, keys: None };
        let (mut o1, mut o2) = (vec![0.0; q.len()], vec![0.0; q.len()]);
        attention_masked(&q, &k, &v, &mut o1, mask, b, l, Heads { q: 4, kv: 2 }, dh);
        attention_masked(&q, &k4, &v4, &mut o2, mask, b, l, Heads { q: 4, kv: 4 }, dh);
        assert_eq!(o1, o2);
    }

    #[test]
    fn causal_first_token_copies_its_value_and_blind_rows_are_zero() {
        let (l, dh) = (3, 2);
        let (q, k, v) = (random(l * dh, 7), random(l * dh, 8), random(l * dh, 9));
        let mut o = vec![0.0; q.len()];
        attention_masked(&q, &k, &v, &mut o, AttnMask { causal: true, keys: None }, 1, l, Heads { q: 1, kv: 1 }, dh);
        assert_eq!(&o[..dh], &v[..dh]);
        // Keys 0 and 1 masked: query 0 and 1 see nothing, query 2 sees key 2 only.
        let keys = [0.0, 0.0, 1.0];
        attention_masked(&q, &k, &v, &mut o, AttnMask { causal: true, keys: Some(&keys) }, 1, l, Heads { q: 1, kv: 1 }, dh);
        assert_eq!(o, [0.0, 0.0, 0.0, 0.0, v[4], v[5]]);
    }
}
