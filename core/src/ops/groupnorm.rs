//! Group normalisation over channels-last images (the autoencoder's GroupNorm(32)).

use crate::Real;

/// x: [B, N, C] (N pixels), gamma, beta: [C] → y: [B, N, C] (overwritten). Channels are cut
/// into `groups` runs of C/G; each (image, group) is normalised by the mean and biased variance
/// of its N·C/G values: y = (x − μ)/√(σ² + eps)·γ + β.
pub fn group_norm<T: Real>(x: &[T], gamma: &[T], beta: &[T], y: &mut [T], n: usize, groups: usize, eps: f64) {
    let c = gamma.len();
    let cg = c / groups;
    let count = T::from_usize(n * cg);
    for (xb, yb) in x.chunks_exact(n * c).zip(y.chunks_exact_mut(n * c)) {
        for g in 0..groups {
            let cols = g * cg..(g + 1) * cg;
            let mut sum = T::ZERO;
            for px in xb.chunks_exact(c) {
                for &v in &px[cols.clone()] {
                    sum += v;
                }
            }
            let mean = sum / count;
            let mut ss = T::ZERO;
            for px in xb.chunks_exact(c) {
                for &v in &px[cols.clone()] {
                    ss += (v - mean) * (v - mean);
                }
            }
            let rstd = T::ONE / (ss / count + T::from_f64(eps)).sqrt();
            for (px, py) in xb.chunks_exact(c).zip(yb.chunks_exact_mut(c)) {
                for ch in cols.clone() {
                    py[ch] = (px[ch] - mean) * rstd * gamma[ch] + beta[ch];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn each_group_comes_out_standardised() {
        // B = 1, N = 3 pixels, C = 4 in 2 groups, unit gain, zero shift.
        let x: [f64; 12] = [1.0, 10.0, 5.0, 0.0, 2.0, 20.0, 5.0, 1.0, 3.0, 30.0, 5.0, 2.0];
        let mut y = [0.0; 12];
        group_norm(&x, &[1.0; 4], &[0.0; 4], &mut y, 3, 2, 0.0);
        for g in 0..2 {
            let vals: Vec<f64> = (0..3).flat_map(|p| [y[p * 4 + 2 * g], y[p * 4 + 2 * g + 1]]).collect();
            let mean = vals.iter().sum::<f64>() / 6.0;
            let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 6.0;
            assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12, "group {g}: mean {mean}, var {var}");
        }
    }

    #[test]
    fn gain_and_shift_apply_per_channel() {
        let x: [f64; 4] = [1.0, 3.0, 1.0, 3.0];
        let mut y = [0.0; 4];
        group_norm(&x, &[2.0, 3.0], &[0.5, -0.5], &mut y, 2, 1, 0.0);
        assert_eq!(y, [-1.5, 2.5, -1.5, 2.5]);
    }
}
