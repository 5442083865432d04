//! Sample quality of small images (the bundled digits: 64 values an image; config field
//! `sample.quality`): the Fréchet distance between Gaussians fitted to EMA samples and to the
//! held-out images in pixel space, divided by the distance between the two halves of the
//! training images. The distance grows as the sets shrink, so the log also holds the score of as
//! many real training images as samples (for 200 digits: 3.73), the floor a model can reach.
//! Logged at each checkpoint as `{"kind": "quality", ...}` in metrics.jsonl. A non-finite value
//! in either set gives NaN (logged as null), never a perfect 0.

/// Mean [d] and covariance [d, d] (divided by n − 1) of `n` rows of `d` values.
pub fn mean_cov(x: &[f32], n: usize, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mu = vec![0.0; d];
    for row in x.chunks_exact(d).take(n) {
        mu.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mu.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut cov = vec![0.0; d * d];
    let mut c = vec![0.0; d];
    for row in x.chunks_exact(d).take(n) {
        c.iter_mut().zip(row).zip(&mu).for_each(|((c, &v), m)| *c = v as f64 - m);
        for (i, ci) in c.iter().enumerate() {
            cov[i * d..(i + 1) * d].iter_mut().zip(&c).for_each(|(a, cj)| *a += ci * cj);
        }
    }
    cov.iter_mut().for_each(|a| *a /= n.saturating_sub(1).max(1) as f64);
    (mu, cov)
}

/// Eigenvalues and eigenvectors (columns of the [d, d] result) of symmetric `a` by cyclic
/// Jacobi rotations.
pub fn sym_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    (0..d).for_each(|i| v[i * d + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..d).flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * d + j].powi(2)).sum();
        let scale: f64 = a.iter().map(|x| x * x).sum::<f64>();
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// The square root of symmetric positive semi-definite `a` [d, d] (negative eigenvalues from
/// rounding count as 0).
pub fn sqrt_psd(a: &[f64], d: usize) -> Vec<f64> {
    let (vals, v) = sym_eigen(a, d);
    let mut out = vec![0.0; d * d];
    for (k, &l) in vals.iter().enumerate() {
        let s = l.max(0.0).sqrt();
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] += s * v[i * d + k] * v[j * d + k];
            }
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            out[i * d..(i + 1) * d].iter_mut().zip(&b[k * d..(k + 1) * d]).for_each(|(o, bk)| *o += aik * bk);
        }
    }
    out
}

/// Fréchet distance between N(mu1, c1) and N(mu2, c2):
/// ‖µ₁ − µ₂‖² + tr C₁ + tr C₂ − 2 tr (C₁^½ C₂ C₁^½)^½.
pub fn frechet(mu1: &[f64], c1: &[f64], mu2: &[f64], c2: &[f64], d: usize) -> f64 {
    let s1 = sqrt_psd(c1, d);
    let m = matmul(&matmul(&s1, c2, d), &s1, d);
    let (vals, _) = sym_eigen(&m, d);
    let cross: f64 = vals.iter().map(|l| l.max(0.0).sqrt()).sum();
    let dm: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b).powi(2)).sum();
    let tr = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    let fd = dm + tr(c1) + tr(c2) - 2.0 * cross;
    if fd.is_nan() { fd } else { fd.max(0.0) }
}

/// The Fréchet distance between image sets `a` and `b` (rows of `d` values).
pub fn frechet_of(a: &[f32], b: &[f32], d: usize) -> f64 {
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let (ma, ca) = mean_cov(a, a.len() / d, d);
    let (mb, cb) = mean_cov(b, b.len() / d, d);
    frechet(&ma, &ca, &mb, &cb, d)
}

/// `n` of the images (rows of `d`) evenly spread over the set (all of them when fewer).
pub fn spread(x: &[f32], d: usize, n: usize) -> Vec<f32> {
    let rows = x.len() / d;
    let take = n.min(rows);
    (0..take).flat_map(|k| x[(k * rows / take.max(1)) * d..][..d].iter().copied()).collect()
}

/// The normaliser: the distance between the even- and the odd-indexed training images.
pub fn real_to_real(train: &[f32], d: usize) -> f64 {
    let (mut even, mut odd) = (vec![], vec![]);
    for (i, r) in train.chunks_exact(d).enumerate() {
        if i % 2 == 0 { even.extend_from_slice(r) } else { odd.extend_from_slice(r) }
    }
    frechet_of(&even, &odd, d)
}

/// A quality score: the distance, normalised, and over the floor of as many real images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub fd: f64,
    pub fd_norm: f64,
    pub vs_real: f64,
    pub samples: usize,
}

/// Scores `n` samples against a dataset's held-out images: what `mvdit train` logs as
/// `kind: "quality"` and `mvdit samplers` measures.
#[derive(Clone, Debug)]
pub struct Scorer {
    /// The distance between the two halves of the training images.
    pub norm: f64,
    /// The normalised score of `n` real training images.
    pub floor: f64,
    eval: Vec<f32>,
    d: usize,
    n: usize,
}

impl Scorer {
    /// From the training and held-out images (rows of `d` values); `n` samples a score.
    pub fn new(train: &[f32], eval: &[f32], d: usize, n: usize) -> Self {
        let norm = real_to_real(train, d);
        let floor = frechet_of(&spread(train, d, n), eval, d) / norm;
        Scorer { norm, floor, eval: eval.to_vec(), d, n }
    }

    /// Whether the training images differ at all (a constant set gives no scale).
    pub fn usable(&self) -> bool {
        self.norm > 1e-12
    }

    /// The score of (`n` of) `samples`.
    pub fn score(&self, samples: &[f32]) -> Score {
        let images = spread(samples, self.d, self.n);
        let fd = frechet_of(&images, &self.eval, self.d);
        Score { fd, fd_norm: fd / self.norm, vs_real: fd / self.norm / self.floor, samples: images.len() / self.d }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn eigen_reconstructs_and_the_square_root_squares_back() {
        let d = 5;
        let mut rng = Rng::new(1);
        let g: Vec<f64> = (0..d * d).map(|_| rng.normal() as f64).collect();
        let a = matmul(&g, &(0..d * d).map(|k| g[(k % d) * d + k / d]).collect::<Vec<_>>(), d); // G·Gᵀ
        let (vals, v) = sym_eigen(&a, d);
        for i in 0..d {
            for j in 0..d {
                let r: f64 = (0..d).map(|k| vals[k] * v[i * d + k] * v[j * d + k]).sum();
                assert!((r - a[i * d + j]).abs() < 1e-9, "{i} {j}");
            }
        }
        let s = sqrt_psd(&a, d);
        let ss = matmul(&s, &s, d);
        assert!(ss.iter().zip(&a).all(|(x, y)| (x - y).abs() < 1e-8));
    }

    #[test]
    fn frechet_matches_closed_forms() {
        // Diagonal covariances: ‖µ₁ − µ₂‖² + Σ (√a − √b)².
        let (mu1, mu2) = ([0.0, 1.0], [2.0, 1.0]);
        let (c1, c2) = ([4.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 9.0]);
        let want = 4.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2);
        assert!((frechet(&mu1, &c1, &mu2, &c2, 2) - want).abs() < 1e-10);
        assert!(frechet(&mu1, &c1, &mu1, &c1, 2).abs() < 1e-10);
        // Symmetric in its arguments for full covariances.
        let (a, b) = ([2.0, 0.5, 0.5, 1.0], [1.0, -0.3, -0.3, 2.0]);
        let (x, y) = (frechet(&mu1, &a, &mu2, &b, 2), frechet(&mu2, &b, &mu1, &a, 2));
        assert!((x - y).abs() < 1e-10, "{x} {y}");
    }

    #[test]
    fn sets_from_one_distribution_score_near_zero_and_a_shift_is_seen() {
        let mut rng = Rng::new(2);
        let (n, d) = (4000, 4);
        let a = rng.normals(n * d);
        let b = rng.normals(n * d);
        assert!(frechet_of(&a, &b, d) < 0.02);
        let shifted: Vec<f32> = b.iter().map(|v| v + 1.0).collect();
        assert!((frechet_of(&a, &shifted, d) - 4.0).abs() < 0.1);
        assert!(real_to_real(&a, d) < 0.02);
        let mut bad = b.clone();
        bad[3] = f32::NAN;
        assert!(frechet_of(&a, &bad, d).is_nan(), "a diverged model never scores 0");
        assert_eq!(spread(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 1, 3), [0.0, 2.0, 4.0]);
        assert_eq!(spread(&[0.0, 1.0], 1, 5), [0.0, 1.0]);
        let (mu, cov) = mean_cov(&[1.0, 2.0, 3.0, 4.0], 2, 2);
        assert_eq!((mu, cov), (vec![2.0, 3.0], vec![2.0, 2.0, 2.0, 2.0]));
    }
}
