//! Metrics of one attention map A = softmax(q kᵀ/√Dh) (L×L, rows sum to one: A1 = 1) of the
//! paper's Appendix A. P = I − J is the token-centering projector, J = 11ᵀ/L the token mean.
//! Definitions: ../../../docs/diagnostics.md ("Attention-map metrics").
//!
//! - μ_eff in two forms: ‖AP‖₂ (what the official code's power iteration computes, key `mu_eff`) and the
//!   paper's ‖PAP‖₂ (key `mu_eff_pap`); ‖PAP‖₂ ≤ ‖AP‖₂.
//! - RowDiv = ‖A − JA‖_F / ‖A‖_F: how far the rows are from all being the mean row.
//! - Centered retention Ret(c←c) = ‖P A P X‖_F / ‖P X‖_F and mean leakage
//!   ‖J A P X‖_F / ‖P X‖_F of a token signal X [L, dx]; Ret² + leak² = ‖A P X‖² / ‖P X‖².

use alloc::vec;
use alloc::vec::Vec;
use libm::sqrt;

/// Attention probabilities softmax(q kᵀ/√Dh) of q, k: [B, L, Nh, Dh] → [B, Nh, L, L].
pub fn attention_probs(q: &[f64], k: &[f64], b: usize, l: usize, nh: usize, dh: usize) -> Vec<f64> {
    let scale = 1.0 / sqrt(dh as f64);
    let at = |bi: usize, t: usize, h: usize| ((bi * l + t) * nh + h) * dh;
    let mut p = vec![0.0; b * nh * l * l];
    for bi in 0..b {
        for h in 0..nh {
            for i in 0..l {
                let row = &mut p[((bi * nh + h) * l + i) * l..][..l];
                let mut mx = f64::NEG_INFINITY;
                for (j, r) in row.iter_mut().enumerate() {
                    *r = (0..dh).map(|e| q[at(bi, i, h) + e] * k[at(bi, j, h) + e]).sum::<f64>() * scale;
                    mx = mx.max(*r);
                }
                let mut s = 0.0;
                for r in row.iter_mut() {
                    *r = libm::exp(*r - mx);
                    s += *r;
                }
                row.iter_mut().for_each(|r| *r /= s);
            }
        }
    }
    p
}

/// Subtracts the mean of `v` from every entry (v ↦ P v).
fn center(v: &mut [f64]) {
    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
    v.iter_mut().for_each(|x| *x -= m);
}

fn norm(v: &[f64]) -> f64 {
    sqrt(v.iter().map(|x| x * x).sum())
}

/// AᵀA of A [L, L] (the Gram matrix whose centered top eigenvalue is ‖AP‖₂²).
fn gram(a: &[f64], l: usize) -> Vec<f64> {
    let mut g = vec![0.0; l * l];
    for row in a.chunks(l) {
        for i in 0..l {
            let ri = row[i];
            for j in 0..l {
                g[i * l + j] += ri * row[j];
            }
        }
    }
    g
}

/// AᵀPA = AᵀA − L·c cᵀ from G = AᵀA, c = Aᵀ1/L (the column means): the Gram matrix of PA,
/// whose centered top eigenvalue is ‖PAP‖₂².
fn centered_gram(a: &[f64], g: &[f64], l: usize) -> Vec<f64> {
    let c: Vec<f64> = (0..l).map(|j| (0..l).map(|i| a[i * l + j]).sum::<f64>() / l as f64).collect();
    (0..l * l).map(|k| g[k] - l as f64 * c[k / l] * c[k % l]).collect()
}

/// √λ_max(P G P) of a symmetric positive semi-definite G [L, L]: ‖MP‖₂ when G = MᵀM. Power
/// iteration from a fixed centered start with components along every centered direction,
/// then the Rayleigh quotient.
fn centered_top_singular(g: &[f64], l: usize) -> f64 {
    if l < 2 {
        return 0.0;
    }
    let mul = |v: &[f64]| -> Vec<f64> {
        let mut w: Vec<f64> = g.chunks(l).map(|row| row.iter().zip(v).map(|(x, y)| x * y).sum()).collect();
        center(&mut w);
        w
    };
    let mut v: Vec<f64> = (0..l).map(|i| libm::sin(1.7 * i as f64 + 0.3) + 0.1 * i as f64).collect();
    center(&mut v);
    let n0 = norm(&v);
    v.iter_mut().for_each(|x| *x /= n0);
    let mut lambda = 0.0;
    for _ in 0..500 {
        let mut w = mul(&v);
        let n = norm(&w);
        if n == 0.0 {
            return 0.0;
        }
        w.iter_mut().for_each(|x| *x /= n);
        let done = (n - lambda).abs() <= 1e-12 * n;
        lambda = n;
        v = w;
        if done {
            break;
        }
    }
    let rayleigh: f64 = mul(&v).iter().zip(&v).map(|(x, y)| x * y).sum();
    sqrt(rayleigh.max(0.0))
}

/// μ_eff as the official code computes it: ‖A P‖₂ with P = I − 11ᵀ/L (the largest factor by
/// which A can scale a token signal that has zero mean).
pub fn centered_contraction(a: &[f64], l: usize) -> f64 {
    centered_top_singular(&gram(a, l), l)
}

/// μ_eff as the paper defines it: ‖P A P‖₂, the gain of A from centered signals to the centered
/// part of its output (what leaks into the token mean is not counted).
pub fn double_centered_contraction(a: &[f64], l: usize) -> f64 {
    centered_top_singular(&centered_gram(a, &gram(a, l), l), l)
}

/// RowDiv = ‖A − JA‖_F / ‖A‖_F: JA has every row equal to the mean row, so RowDiv is 0 when all
/// rows are the same (every query attends alike) and √((L−1)/L) for A = I.
pub fn row_divergence(a: &[f64], l: usize) -> f64 {
    let mean_row: Vec<f64> = (0..l).map(|j| (0..l).map(|i| a[i * l + j]).sum::<f64>() / l as f64).collect();
    let (mut dev, mut all) = (0.0, 0.0);
    for i in 0..l {
        for j in 0..l {
            let x = a[i * l + j];
            dev += (x - mean_row[j]) * (x - mean_row[j]);
            all += x * x;
        }
    }
    if all == 0.0 {
        return 0.0;
    }
    sqrt(dev / all)
}

/// (Ret(c←c), mean leakage) of A [L, L] on a token signal X [L, dx] (rows are tokens):
/// Y = A·PX; Ret = ‖PY‖_F / ‖PX‖_F and leakage = ‖JY‖_F / ‖PX‖_F = √L‖ȳ‖ / ‖PX‖_F (the
/// centered input that comes out as a token mean). (0, 0) when X has no centered part.
pub fn centered_retention(a: &[f64], x: &[f64], l: usize, dx: usize) -> (f64, f64) {
    let mean: Vec<f64> = (0..dx).map(|c| (0..l).map(|t| x[t * dx + c]).sum::<f64>() / l as f64).collect();
    let xc: Vec<f64> = (0..l * dx).map(|i| x[i] - mean[i % dx]).collect();
    let den = norm(&xc);
    if den == 0.0 {
        return (0.0, 0.0);
    }
    let mut y = vec![0.0; l * dx];
    for i in 0..l {
        for j in 0..l {
            let w = a[i * l + j];
            for c in 0..dx {
                y[i * dx + c] += w * xc[j * dx + c];
            }
        }
    }
    let ym: Vec<f64> = (0..dx).map(|c| (0..l).map(|t| y[t * dx + c]).sum::<f64>() / l as f64).collect();
    let centered = sqrt((0..l * dx).map(|i| (y[i] - ym[i % dx]) * (y[i] - ym[i % dx])).sum());
    let leak = sqrt(l as f64) * norm(&ym);
    (centered / den, leak / den)
}

/// μ_eff = ‖AP‖₂ averaged over samples and heads of probabilities [B, Nh, L, L].
pub fn mean_centered_contraction(p: &[f64], b: usize, nh: usize, l: usize) -> f64 {
    let n = b * nh;
    (0..n).map(|i| centered_contraction(&p[i * l * l..][..l * l], l)).sum::<f64>() / n as f64
}

/// Every attention-map metric of one block, each the mean over samples and heads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionMetrics {
    /// ‖AP‖₂ (official code).
    pub mu_eff: f64,
    /// ‖PAP‖₂ (paper).
    pub mu_eff_pap: f64,
    pub row_div: f64,
    pub retention: f64,
    pub leakage: f64,
}

/// The metrics of probabilities p [B, Nh, L, L] with, for retention and leakage, the signal
/// each head mixes: the values v [B, L, Nh, Dh] (head h's map acts on head h's slice).
pub fn attention_metrics(p: &[f64], v: &[f64], b: usize, nh: usize, l: usize, dh: usize) -> AttentionMetrics {
    let mut m = AttentionMetrics { mu_eff: 0.0, mu_eff_pap: 0.0, row_div: 0.0, retention: 0.0, leakage: 0.0 };
    for bi in 0..b {
        for h in 0..nh {
            let a = &p[(bi * nh + h) * l * l..][..l * l];
            let x: Vec<f64> = (0..l).flat_map(|t| v[((bi * l + t) * nh + h) * dh..][..dh].iter().copied()).collect();
            let (ret, leak) = centered_retention(a, &x, l, dh);
            let g = gram(a, l);
            m.mu_eff += centered_top_singular(&g, l);
            m.mu_eff_pap += centered_top_singular(&centered_gram(a, &g, l), l);
            m.row_div += row_divergence(a, l);
            m.retention += ret;
            m.leakage += leak;
        }
    }
    let n = (b * nh).max(1) as f64;
    AttentionMetrics { mu_eff: m.mu_eff / n, mu_eff_pap: m.mu_eff_pap / n, row_div: m.row_div / n, retention: m.retention / n, leakage: m.leakage / n }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense n×n matrices for the references.
    fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
        let mut c = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                c[i * m + j] = (0..k).map(|e| a[i * k + e] * b[e * m + j]).sum();
            }
        }
        c
    }

    fn transpose(a: &[f64], n: usize, m: usize) -> Vec<f64> {
        (0..m * n).map(|i| a[(i % n) * m + i / n]).collect()
    }

    fn eye(l: usize) -> Vec<f64> {
        (0..l * l).map(|i| if i / l == i % l { 1.0 } else { 0.0 }).collect()
    }

    fn mean_op(l: usize) -> Vec<f64> {
        vec![1.0 / l as f64; l * l]
    }

    fn projector(l: usize) -> Vec<f64> {
        eye(l).iter().zip(mean_op(l)).map(|(i, j)| i - j).collect()
    }

    fn frob(a: &[f64]) -> f64 {
        sqrt(a.iter().map(|x| x * x).sum())
    }

    /// Largest eigenvalue of a symmetric matrix by cyclic Jacobi rotations (the reference for
    /// the spectral norms: ‖M‖₂² = λ_max(MᵀM)).
    fn max_eigenvalue(mut s: Vec<f64>, n: usize) -> f64 {
        for _ in 0..100 {
            for p in 0..n {
                for q in p + 1..n {
                    let apq = s[p * n + q];
                    if apq.abs() < 1e-300 {
                        continue;
                    }
                    let theta = (s[q * n + q] - s[p * n + p]) / (2.0 * apq);
                    let t = theta.signum() / (theta.abs() + sqrt(theta * theta + 1.0));
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let c = 1.0 / sqrt(t * t + 1.0);
                    let sn = t * c;
                    for k in 0..n {
                        let (skp, skq) = (s[k * n + p], s[k * n + q]);
                        s[k * n + p] = c * skp - sn * skq;
                        s[k * n + q] = sn * skp + c * skq;
                    }
                    for k in 0..n {
                        let (spk, sqk) = (s[p * n + k], s[q * n + k]);
                        s[p * n + k] = c * spk - sn * sqk;
                        s[q * n + k] = sn * spk + c * sqk;
                    }
                }
            }
        }
        (0..n).map(|i| s[i * n + i]).fold(f64::NEG_INFINITY, f64::max)
    }

    fn spectral_norm(m: &[f64], n: usize) -> f64 {
        sqrt(max_eigenvalue(matmul(&transpose(m, n, n), m, n, n, n), n).max(0.0))
    }

    /// A row-stochastic L×L map from a deterministic pseudo-random stream.
    fn random_map(l: usize, seed: u64) -> Vec<f64> {
        let mut r = crate::SplitMix64::new(seed);
        let mut a: Vec<f64> = (0..l * l).map(|_| libm::exp(2.0 * r.signed_f32() as f64)).collect();
        for row in a.chunks_mut(l) {
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= s);
        }
        a
    }

    fn random_signal(n: usize, seed: u64) -> Vec<f64> {
        let mut r = crate::SplitMix64::new(seed);
        (0..n).map(|_| r.signed_f32() as f64 + 0.7).collect()
    }

    #[test]
    fn identity_keeps_centered_signals_and_uniform_attention_erases_them() {
        let l = 5;
        let x = random_signal(l * 3, 1);
        let (i, j) = (eye(l), mean_op(l));
        assert!((centered_contraction(&i, l) - 1.0).abs() < 1e-12);
        assert!((double_centered_contraction(&i, l) - 1.0).abs() < 1e-12);
        assert!((row_divergence(&i, l) - sqrt((l as f64 - 1.0) / l as f64)).abs() < 1e-12);
        let (ret, leak) = centered_retention(&i, &x, l, 3);
        assert!((ret - 1.0).abs() < 1e-12 && leak.abs() < 1e-12, "{ret} {leak}");
        assert!(centered_contraction(&j, l) < 1e-12 && double_centered_contraction(&j, l) < 1e-12);
        assert!(row_divergence(&j, l) < 1e-12);
        let (ret, leak) = centered_retention(&j, &x, l, 3);
        assert!(ret < 1e-12 && leak < 1e-12, "{ret} {leak}");
        assert_eq!(centered_retention(&j, &vec![2.0; l * 3], l, 3), (0.0, 0.0), "no centered part");
    }

    #[test]
    fn two_by_two_maps_have_closed_forms() {
        // A = [[p, 1−p], [q, 1−q]], P = u uᵀ with u = (1, −1)/√2: ‖PAP‖ = |uᵀAu| = |p − q|,
        // ‖AP‖ = ‖Au‖ = √(((2p−1)² + (2q−1)²)/2).
        for (p, q) in [(0.9, 0.2), (0.5, 0.5), (0.1, 0.7), (1.0, 0.0)] {
            let a = [p, 1.0 - p, q, 1.0 - q];
            assert!((double_centered_contraction(&a, 2) - (p - q).abs()).abs() < 1e-12, "{p} {q}");
            let ap = sqrt(((2.0 * p - 1.0) * (2.0 * p - 1.0) + (2.0 * q - 1.0) * (2.0 * q - 1.0)) / 2.0);
            assert!((centered_contraction(&a, 2) - ap).abs() < 1e-12, "{p} {q}");
        }
    }

    #[test]
    fn an_attention_sink_moves_the_sink_token_into_the_mean() {
        // Every query attends to token 0: A X = 1 x₀ᵀ. Nothing centered survives; the centered
        // input of token 0 becomes the mean: leakage = √L‖x₀ − x̄‖ / ‖PX‖.
        let (l, dx) = (4, 2);
        let a: Vec<f64> = (0..l * l).map(|i| if i % l == 0 { 1.0 } else { 0.0 }).collect();
        let x = [1.0, 0.0, -1.0, 2.0, 0.0, 0.0, 4.0, 2.0];
        let mean = [1.0, 1.0];
        let den = sqrt(x.chunks(2).map(|r| (r[0] - mean[0]) * (r[0] - mean[0]) + (r[1] - mean[1]) * (r[1] - mean[1])).sum());
        let (ret, leak) = centered_retention(&a, &x, l, dx);
        assert!(ret.abs() < 1e-12);
        assert!((leak - 2.0 * sqrt(0.0 + 1.0) / den).abs() < 1e-12, "{leak}");
        assert!(row_divergence(&a, l) < 1e-12, "identical rows");
    }

    #[test]
    fn random_maps_match_dense_references() {
        let (l, dx) = (6, 3);
        let p = projector(l);
        let j = mean_op(l);
        for seed in 0..4 {
            let a = random_map(l, seed);
            let ap = matmul(&a, &p, l, l, l);
            let pap = matmul(&p, &ap, l, l, l);
            assert!((centered_contraction(&a, l) - spectral_norm(&ap, l)).abs() < 1e-9, "seed {seed}");
            assert!((double_centered_contraction(&a, l) - spectral_norm(&pap, l)).abs() < 1e-9, "seed {seed}");
            assert!(double_centered_contraction(&a, l) <= centered_contraction(&a, l) + 1e-12);
            let ja = matmul(&j, &a, l, l, l);
            let diff: Vec<f64> = a.iter().zip(&ja).map(|(x, y)| x - y).collect();
            assert!((row_divergence(&a, l) - frob(&diff) / frob(&a)).abs() < 1e-12);
            let x = random_signal(l * dx, 100 + seed);
            let px = matmul(&p, &x, l, l, dx);
            let y = matmul(&a, &px, l, l, dx);
            let (ret, leak) = centered_retention(&a, &x, l, dx);
            assert!((ret - frob(&matmul(&p, &y, l, l, dx)) / frob(&px)).abs() < 1e-12);
            assert!((leak - frob(&matmul(&j, &y, l, l, dx)) / frob(&px)).abs() < 1e-12);
            assert!((ret * ret + leak * leak - frob(&y) * frob(&y) / (frob(&px) * frob(&px))).abs() < 1e-12, "Pythagoras");
        }
    }

    #[test]
    fn batched_metrics_are_means_over_samples_and_heads() {
        let (b, nh, l, dh) = (2, 2, 5, 3);
        let maps: Vec<Vec<f64>> = (0..b * nh).map(|i| random_map(l, 7 + i as u64)).collect();
        let p: Vec<f64> = maps.concat();
        let v = random_signal(b * l * nh * dh, 9);
        let m = attention_metrics(&p, &v, b, nh, l, dh);
        let mut want = [0.0; 5];
        for bi in 0..b {
            for h in 0..nh {
                let a = &maps[bi * nh + h];
                let x: Vec<f64> = (0..l).flat_map(|t| v[((bi * l + t) * nh + h) * dh..][..dh].to_vec()).collect();
                let (ret, leak) = centered_retention(a, &x, l, dh);
                let vals = [centered_contraction(a, l), double_centered_contraction(a, l), row_divergence(a, l), ret, leak];
                want.iter_mut().zip(vals).for_each(|(w, v)| *w += v / (b * nh) as f64);
            }
        }
        let got = [m.mu_eff, m.mu_eff_pap, m.row_div, m.retention, m.leakage];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        assert!((m.mu_eff - mean_centered_contraction(&p, b, nh, l)).abs() < 1e-12);
    }
}
