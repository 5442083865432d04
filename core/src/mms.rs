//! The Mean-Mode-Screaming analysis quantities of the paper's Appendix A, on host values in f64.
//! Definitions (and which tensors the trainer feeds them): ../../docs/diagnostics.md.
//!
//! Token tensors are [B, T, D] row-major (`b` samples of `t` tokens). "Mean" is the token mean
//! of one sample (ȳ = Σ_t y_t / T), "centered" the rest (ỹ_t = y_t − ȳ).

pub mod attention;

pub use attention::{
    attention_metrics, attention_probs, centered_contraction, centered_retention, double_centered_contraction, mean_centered_contraction,
    row_divergence, AttentionMetrics,
};

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

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
    let mut mean = vec![0.0; dout * din];
    let mut ctr = vec![0.0; dout * din];
    let mut yc = vec![0.0; din];
    for bi in 0..b {
        let (ybr, dbr) = (&yb[bi * din..][..din], &db[bi * dout..][..dout]);
        for (row, &dm) in mean.chunks_exact_mut(din).zip(dbr) {
            let s = t as f64 * dm;
            row.iter_mut().zip(ybr).for_each(|(m, &yv)| *m += s * yv);
        }
        for ti in 0..t {
            let (yr, dr) = (&y[(bi * t + ti) * din..][..din], &delta[(bi * t + ti) * dout..][..dout]);
            yc.iter_mut().zip(yr).zip(ybr).for_each(|((c, &a), &m)| *c = a - m);
            for ((row, &dv), &dm) in ctr.chunks_exact_mut(din).zip(dr).zip(dbr) {
                let dc = dv - dm;
                row.iter_mut().zip(&yc).for_each(|(c, &yv)| *c += dc * yv);
            }
        }
    }
    // Σ_t δ_t y_tᵀ = T·δ̄ȳᵀ + Σ_t δ̃_t ỹ_tᵀ per sample (the cross terms sum to zero).
    let full = mean.iter().zip(&ctr).map(|(m, c)| m + c).collect();
    WriterParts { full, mean, ctr }
}

/// The upper median of the finite values of `v` (NaN when there are none): the baseline of
/// the MMS detector and of the gradient-spike watch. (The usual median, of measurements such
/// as step times: [`crate::stats::median`].)
pub fn upper_median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
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

/// Tokens `range` of each sample of [B, L, D] → [B, range.len(), D] (a segment: the image tokens
/// 0..Lᵢ, the text/context tokens Lᵢ..L).
pub fn segment(x: &[f64], b: usize, l: usize, d: usize, range: Range<usize>) -> Vec<f64> {
    (0..b).flat_map(|bi| x[(bi * l + range.start) * d..(bi * l + range.end) * d].iter().copied()).collect()
}

/// Trunk ρ of one segment of [B, L, D]: [`energy_ratio`] of its tokens, each sample centered
/// over the segment alone. None for a segment of fewer than two tokens (no centered part).
pub fn segment_energy_ratio(x: &[f64], b: usize, l: usize, d: usize, range: Range<usize>) -> Option<f64> {
    let t = range.len();
    (t >= 2).then(|| energy_ratio(&segment(x, b, l, d, range), b, t, d))
}

/// ‖a‖ / ‖b‖ from the squared norms (a gradient-norm ratio such as ‖∇W_O‖ / ‖∇W_Q‖); None
/// when ‖b‖ = 0 (e.g. ∇W_Q at the first step of zero-initialised writers).
pub fn norm_ratio(a_sq: f64, b_sq: f64) -> Option<f64> {
    (b_sq > 0.0).then(|| sqrt(a_sq) / sqrt(b_sq))
}

/// The depth stage of block `layer` of `depth` blocks split into `stages` stages as the official
/// code splits them: stage size ⌈depth / stages⌉, the last stage taking any rest.
pub fn depth_stage(layer: usize, depth: usize, stages: usize) -> usize {
    let size = depth.div_ceil(stages.max(1)).max(1);
    (layer / size).min(stages.max(1) - 1)
}

/// Whether block `layer` is "deep" in the official code's sense: layer ≥ ⌊0.75·(depth − 1)⌋.
pub fn is_deep_layer(layer: usize, depth: usize) -> bool {
    layer >= 3 * depth.saturating_sub(1) / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upper_median_skips_non_finite_values() {
        assert_eq!(upper_median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(upper_median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(upper_median(vec![f64::NAN, 5.0, f64::INFINITY]), 5.0);
        assert!(upper_median(vec![]).is_nan() && upper_median(vec![f64::NAN]).is_nan());
    }

    #[test]
    fn segments_split_the_tokens_and_have_their_own_means() {
        // b = 2 samples of l = 4 tokens, d = 1: image tokens 0..2, text tokens 2..4.
        let x = [1.0, 3.0, 10.0, 10.0, 0.0, 0.0, 5.0, 7.0];
        assert_eq!(segment(&x, 2, 4, 1, 0..2), vec![1.0, 3.0, 0.0, 0.0]);
        assert_eq!(segment(&x, 2, 4, 1, 2..4), vec![10.0, 10.0, 5.0, 7.0]);
        // Text: sample 0 is all mean (ρ = E_M/E_V with E_V = 0), sample 1 has mean 6 and ±1:
        // E_M = (√2·10 + √2·6)/2, E_V = (0 + √2)/2.
        let rho = segment_energy_ratio(&x, 2, 4, 1, 2..4).unwrap();
        let want = (sqrt(2.0) * 10.0 + sqrt(2.0) * 6.0) / sqrt(2.0);
        assert!((rho - want).abs() < 1e-9 * want, "{rho} vs {want}");
        // Image: sample 0 mean 2 and ±1, sample 1 all zero: E_M = √2·2/2, E_V = √2/2 → ρ = 2.
        assert!((segment_energy_ratio(&x, 2, 4, 1, 0..2).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(segment_energy_ratio(&x, 2, 4, 1, 3..4), None, "one token has no centered part");
    }

    #[test]
    fn gradient_ratios_and_stages_follow_the_official_split() {
        assert_eq!(norm_ratio(9.0, 4.0), Some(1.5));
        assert_eq!(norm_ratio(0.0, 1e-300), Some(0.0));
        assert_eq!(norm_ratio(1.0, 0.0), None);
        // depth 200 in 4 stages of 50; depth 10 in stages of 3, 3, 3, 1.
        assert_eq!([0, 49, 50, 149, 150, 199].map(|i| depth_stage(i, 200, 4)), [0, 0, 1, 2, 3, 3]);
        assert_eq!((0..10).map(|i| depth_stage(i, 10, 4)).collect::<Vec<_>>(), vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
        assert_eq!((0..3).map(|i| depth_stage(i, 3, 4)).collect::<Vec<_>>(), vec![0, 1, 2]);
        // ⌊0.75·199⌋ = 149; ⌊0.75·3⌋ = 2; ⌊0.75·0⌋ = 0.
        assert!(!is_deep_layer(148, 200) && is_deep_layer(149, 200) && is_deep_layer(199, 200));
        assert!(!is_deep_layer(1, 4) && is_deep_layer(2, 4));
        assert!(is_deep_layer(0, 1));
    }
}
