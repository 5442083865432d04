//! The Mean-Mode-Screaming analysis quantities of the paper's Appendix A, on host values in f64.
//! Definitions (and which tensors the trainer feeds them): ../../docs/diagnostics.md.
//!
//! Token tensors are [B, T, D] row-major (`b` samples of `t` tokens). "Mean" is the token mean
//! of one sample (ȳ = Σ_t y_t / T), "centered" the rest (ỹ_t = y_t − ȳ).

use alloc::vec;
use alloc::vec::Vec;

fn sqrt(x: f64) -> f64 {
    libm::sqrt(x)
}

/// Token mean of each sample: [B, T, D] → [B, D].
pub fn token_means(x: &[f64], b: usize, t: usize, d: usize) -> Vec<f64> {
    let mut m = vec![0.0; b * d];
    for bi in 0..b {
        for ti in 0..t {
            for c in 0..d {
                m[bi * d + c] += x[(bi * t + ti) * d + c];
            }
        }
    }
    m.iter_mut().for_each(|v| *v /= t as f64);
    m
}

/// The three [Dout, Din] matrices of the writer-gradient decomposition of a writer W (y ↦ W y),
/// each summed over the batch: `full` = Σ_t δ_t y_tᵀ (the weight gradient), `mean` = T·δ̄ ȳᵀ,
/// `ctr` = Σ_t δ̃_t ỹ_tᵀ. Exactly full = mean + ctr (the cross terms vanish because centered
/// parts sum to zero over tokens).
pub struct WriterParts {
    pub full: Vec<f64>,
    pub mean: Vec<f64>,
    pub ctr: Vec<f64>,
}

/// y: [B, T, Din] (writer inputs), delta: [B, T, Dout] (loss gradient at the writer outputs).
pub fn writer_gradient_parts(y: &[f64], delta: &[f64], b: usize, t: usize, din: usize, dout: usize) -> WriterParts {
    let (yb, db) = (token_means(y, b, t, din), token_means(delta, b, t, dout));
    let mut full = vec![0.0; dout * din];
    let mut mean = vec![0.0; dout * din];
    let mut ctr = vec![0.0; dout * din];
    for bi in 0..b {
        for o in 0..dout {
            let dm = db[bi * dout + o];
            for i in 0..din {
                mean[o * din + i] += t as f64 * dm * yb[bi * din + i];
            }
        }
        for ti in 0..t {
            let (yr, dr) = (&y[(bi * t + ti) * din..][..din], &delta[(bi * t + ti) * dout..][..dout]);
            for o in 0..dout {
                let (dv, dc) = (dr[o], dr[o] - db[bi * dout + o]);
                for i in 0..din {
                    full[o * din + i] += dv * yr[i];
                    ctr[o * din + i] += dc * (yr[i] - yb[bi * din + i]);
                }
            }
        }
    }
    WriterParts { full, mean, ctr }
}

/// Frobenius norm.
pub fn frobenius(m: &[f64]) -> f64 {
    sqrt(m.iter().map(|v| v * v).sum())
}

/// (G_mean, G_ctr) = (‖T·δ̄ȳᵀ‖, ‖Σ δ̃ỹᵀ‖), matrices summed over the batch before the norm.
pub fn writer_gradient_norms(y: &[f64], delta: &[f64], b: usize, t: usize, din: usize, dout: usize) -> (f64, f64) {
    let p = writer_gradient_parts(y, delta, b, t, din, dout);
    (frobenius(&p.mean), frobenius(&p.ctr))
}

/// Mean and centered energies of [B, T, D]: (mean over samples of ‖1ȳᵀ‖_F, of ‖Ỹ‖_F).
pub fn mean_centered_energy(x: &[f64], b: usize, t: usize, d: usize) -> (f64, f64) {
    let m = token_means(x, b, t, d);
    let (mut em, mut ev) = (0.0, 0.0);
    for bi in 0..b {
        let mm: f64 = m[bi * d..(bi + 1) * d].iter().map(|v| v * v).sum::<f64>() * t as f64;
        let mut vv = 0.0;
        for ti in 0..t {
            for c in 0..d {
                let v = x[(bi * t + ti) * d + c] - m[bi * d + c];
                vv += v * v;
            }
        }
        em += sqrt(mm);
        ev += sqrt(vv);
    }
    (em / b as f64, ev / b as f64)
}

/// ρ = mean energy / centered energy (large: the tokens are dominated by their common mean).
pub fn energy_ratio(x: &[f64], b: usize, t: usize, d: usize) -> f64 {
    let (em, ev) = mean_centered_energy(x, b, t, d);
    em / (ev + 1e-12)
}

/// Token cosine similarity: the mean over samples of the mean off-diagonal cosine between the
/// sample's tokens (1: all tokens point the same way; −1/(T−1): the anti-aligned limit).
pub fn token_cosine_similarity(x: &[f64], b: usize, t: usize, d: usize) -> f64 {
    if t < 2 {
        return 1.0;
    }
    let mut total = 0.0;
    for bi in 0..b {
        let rows: Vec<Vec<f64>> = (0..t)
            .map(|ti| {
                let r = &x[(bi * t + ti) * d..][..d];
                let n = sqrt(r.iter().map(|v| v * v).sum()).max(1e-12);
                r.iter().map(|v| v / n).collect()
            })
            .collect();
        // Σ_{i≠j} cos_ij = ‖Σ_i x̂_i‖² − T.
        let mut s = vec![0.0; d];
        for r in &rows {
            s.iter_mut().zip(r).for_each(|(a, v)| *a += v);
        }
        let norms: f64 = rows.iter().map(|r| r.iter().map(|v| v * v).sum::<f64>()).sum();
        total += (s.iter().map(|v| v * v).sum::<f64>() - norms) / (t * (t - 1)) as f64;
    }
    total / b as f64
}

/// Writer amplification of one sample: A = ‖Σ_t δ_t y_tᵀ‖² / Σ_t ‖δ_t‖²‖y_t‖² and its
/// coherence envelope (T−1)·κ, κ = mean over t≠s of |cos(y_t, y_s)|·|cos(δ_t, δ_s)|
/// (A − 1 ≤ (T−1)κ). y: [T, Din], delta: [T, Dout].
pub fn writer_amplification(y: &[f64], delta: &[f64], t: usize, din: usize, dout: usize) -> (f64, f64) {
    let yy: Vec<f64> = (0..t).map(|i| y[i * din..][..din].iter().map(|v| v * v).sum()).collect();
    let dd: Vec<f64> = (0..t).map(|i| delta[i * dout..][..dout].iter().map(|v| v * v).sum()).collect();
    let dot = |a: &[f64], i: usize, j: usize, n: usize| -> f64 { (0..n).map(|c| a[i * n + c] * a[j * n + c]).sum() };
    // ‖Σ δ yᵀ‖² = Σ_{t,s} (δ_t·δ_s)(y_t·y_s).
    let (mut num, mut kappa) = (0.0, 0.0);
    for i in 0..t {
        for j in 0..t {
            let (gy, gd) = (dot(y, i, j, din), dot(delta, i, j, dout));
            num += gy * gd;
            if i != j {
                let cy = gy / (sqrt(yy[i] * yy[j]).max(1e-300));
                let cd = gd / (sqrt(dd[i] * dd[j]).max(1e-300));
                kappa += cy.abs() * cd.abs();
            }
        }
    }
    let den: f64 = yy.iter().zip(&dd).map(|(a, b)| a * b).sum();
    let a = num / den.max(1e-300);
    let coh = if t > 1 { kappa / (t * (t - 1)) as f64 * (t - 1) as f64 } else { 0.0 };
    (a, coh)
}

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

/// Effective contraction of one attention map A [L, L] on centered inputs:
/// μ_eff = ‖A P‖₂ with P = I − 11ᵀ/L (the largest factor by which A can scale a token signal
/// that has zero mean), by power iteration on P AᵀA P.
pub fn centered_contraction(a: &[f64], l: usize) -> f64 {
    if l < 2 {
        return 0.0;
    }
    let center = |v: &mut [f64]| {
        let m = v.iter().sum::<f64>() / l as f64;
        v.iter_mut().for_each(|x| *x -= m);
    };
    let normalize = |v: &mut [f64]| -> f64 {
        let n = sqrt(v.iter().map(|x| x * x).sum());
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
        n
    };
    let apply = |v: &[f64]| -> Vec<f64> { (0..l).map(|i| (0..l).map(|j| a[i * l + j] * v[j]).sum()).collect() };
    let apply_t = |v: &[f64]| -> Vec<f64> { (0..l).map(|j| (0..l).map(|i| a[i * l + j] * v[i]).sum()).collect() };
    // A fixed start with components along every centered direction.
    let mut v: Vec<f64> = (0..l).map(|i| libm::sin(1.7 * i as f64 + 0.3) + 0.1 * i as f64).collect();
    center(&mut v);
    normalize(&mut v);
    let mut sigma2 = 0.0;
    for _ in 0..200 {
        let mut w = apply_t(&apply(&v));
        center(&mut w);
        let n = normalize(&mut w);
        if n == 0.0 {
            return 0.0;
        }
        let done = (n - sigma2).abs() <= 1e-13 * n;
        sigma2 = n;
        v = w;
        if done {
            break;
        }
    }
    sqrt(apply(&v).iter().map(|x| x * x).sum())
}

/// μ_eff averaged over samples and heads of probabilities [B, Nh, L, L].
pub fn mean_centered_contraction(p: &[f64], b: usize, nh: usize, l: usize) -> f64 {
    let n = b * nh;
    (0..n).map(|i| centered_contraction(&p[i * l * l..][..l * l], l)).sum::<f64>() / n as f64
}

/// Root mean square of all values.
pub fn rms(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    sqrt(x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64)
}

/// Centered energy only: mean over samples of ‖Ỹ‖_F (VarGain's numerator and denominator).
pub fn centered_energy(x: &[f64], b: usize, t: usize, d: usize) -> f64 {
    mean_centered_energy(x, b, t, d).1
}
