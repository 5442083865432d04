//! The timestep probe of `mvdit experiment mms`: how well a ridge regression reads the noise
//! level t from each layer's image-token mean (fit on training images, R² on held-out ones).

use mvdit_train::data::Dataset;
use mvdit_train::depth_split::StageBackend;
use mvdit_train::flow::noised_and_target;
use mvdit_train::rng::Rng;
use mvdit_train::run::{list_checkpoints, load_data};
use mvdit_train::trainer::TrainState;
use mvdit_core::Backend;
use mvdit_model::{Error, Keep, Probe, Recorder, Result, Tap};
use std::path::Path;

/// Loads the latest checkpoint of `dir` and runs [`timestep_probe`] (fit on training images,
/// scored on the held-out ones).
pub fn timestep_probe_run<B: StageBackend>(be: &B, dir: &Path) -> Result<Vec<f64>> {
    let (_, path) = list_checkpoints(dir).pop().ok_or_else(|| Error::new(format!("{}: no checkpoint", dir.display())))?;
    let state = TrainState::from_weights(mvdit_train::trainer::Placement::one(be), &mvdit_model::WeightFile::open(&path)?)?;
    let (train_set, eval_set) = load_data(&state.cfg)?;
    timestep_probe(be, &state, (&train_set, PROBE_FIT), (&eval_set, PROBE_TEST), 0x7153)
}

/// The probe's fit set: up to 640 training images at one noise level each (ridge regression on
/// D ≤ 64 features needs no more; the whole set at 4 levels took longer than training).
pub const PROBE_FIT: ProbeDraws = ProbeDraws { images: 640, draws: 1 };
/// The probe's test set: every held-out image at two noise levels.
pub const PROBE_TEST: ProbeDraws = ProbeDraws { images: usize::MAX, draws: 2 };

/// Which samples a probe runs: up to `images` images (a seeded random subset when the set is
/// larger), each at `draws` random noise levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeDraws {
    pub images: usize,
    pub draws: usize,
}

impl ProbeDraws {
    /// The image indices of a set of `n`, each repeated `draws` times, in order.
    pub fn samples(&self, n: usize, rng: &mut Rng) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        if self.images < n {
            for i in 0..self.images {
                let j = i + rng.below(n - i);
                idx.swap(i, j);
            }
            idx.truncate(self.images);
            idx.sort_unstable();
        }
        idx.into_iter().flat_map(|i| std::iter::repeat_n(i, self.draws)).collect()
    }
}

/// Records the embedded input (block 0's input) and every block's output.
#[derive(Default)]
struct LayerOutputs(Recorder);

impl Probe for LayerOutputs {
    fn wants(&self, block: usize, tap: Tap) -> bool {
        tap == Tap::BlockOut || (block == 0 && tap == Tap::BlockIn)
    }
    fn record(&mut self, block: usize, tap: Tap, shape: &[usize], values: Vec<f32>) {
        self.0.record(block, tap, shape, values);
    }
}

/// Per-layer features of samples, [layer][sample][D], and the sample targets.
pub type LayerFeatures = (Vec<Vec<Vec<f64>>>, Vec<f64>);

/// Per-layer image-token means of noised images at random t: (features[layer][sample][D], t).
/// Layer 0 is the embedded input (block 0's input), layer i+1 block i's output.
pub fn token_mean_features<B: Backend>(be: &B, state: &TrainState<B>, data: &Dataset, draws: ProbeDraws, seed: u64) -> Result<LayerFeatures> {
    let cfg = &state.cfg;
    let depth = cfg.model.depth;
    let (d, p) = (cfg.model.hidden_size, cfg.model.patch_size);
    let li = (cfg.data.image_size / p).pow(2);
    let per = data.image_len();
    let mut rng = Rng::new(seed);
    let samples = draws.samples(data.len(), &mut rng);
    let mut feats = vec![vec![]; depth + 1];
    let mut ts = vec![];
    for chunk in samples.chunks(64) {
        let n = chunk.len();
        let x0: Vec<f32> = chunk.iter().flat_map(|&i| data.image(i).iter().copied()).collect();
        let labels: Vec<u32> = chunk.iter().map(|&i| data.label(i)).collect();
        let t: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
        let eps = rng.normals(n * per);
        let (xt, _) = noised_and_target(&x0, &eps, &t);
        let shape = [n, cfg.data.channels, cfg.data.image_size, cfg.data.image_size];
        let mut rec = LayerOutputs::default();
        let ctx = state.conditioner()?.context(be, &labels)?;
        state.unsplit()?.forward_probed(be, &be.upload(&xt, &shape)?, ctx, Keep::Nothing, Some(&mut rec as &mut dyn Probe))?;
        for (layer, feat) in feats.iter_mut().enumerate() {
            let (shape, v) = if layer == 0 { rec.0.get(0, Tap::BlockIn) } else { rec.0.get(layer - 1, Tap::BlockOut) }
                .ok_or_else(|| Error::new("timestep probe: missing block tensor"))?;
            let l = shape[1];
            for bi in 0..n {
                let mut m = vec![0.0f64; d];
                for tok in 0..li {
                    for c in 0..d {
                        m[c] += v[(bi * l + tok) * d + c] as f64;
                    }
                }
                m.iter_mut().for_each(|x| *x /= li as f64);
                feat.push(m);
            }
        }
        ts.extend(t.iter().map(|&x| x as f64));
    }
    Ok((feats, ts))
}

/// R² per layer (embedded input first) of ridge regressions of t from the image-token mean,
/// fit on `fit` images and scored on `test` images (each with its [`ProbeDraws`]).
pub fn timestep_probe<B: Backend>(be: &B, state: &TrainState<B>, fit: (&Dataset, ProbeDraws), test: (&Dataset, ProbeDraws), seed: u64) -> Result<Vec<f64>> {
    let (fx, fy) = token_mean_features(be, state, fit.0, fit.1, seed)?;
    let (tx, ty) = token_mean_features(be, state, test.0, test.1, seed + 1)?;
    Ok(fx.iter().zip(&tx).map(|(f, t)| ridge_r2(f, &fy, t, &ty, 1.0)).collect())
}

/// Ridge regression on standardised features (penalty `lambda`, intercept free), fit on
/// (x, y) and scored on (xt, yt): R² = 1 − SS_res / SS_tot around the test mean.
pub fn ridge_r2(x: &[Vec<f64>], y: &[f64], xt: &[Vec<f64>], yt: &[f64], lambda: f64) -> f64 {
    let (n, d) = (x.len(), x.first().map_or(0, Vec::len));
    if n == 0 || d == 0 || xt.is_empty() {
        return f64::NAN;
    }
    let mean: Vec<f64> = (0..d).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
    let sd: Vec<f64> = (0..d).map(|j| (x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n as f64).sqrt().max(1e-12)).collect();
    let z = |r: &[f64]| -> Vec<f64> { (0..d).map(|j| (r[j] - mean[j]) / sd[j]).collect() };
    let ym = y.iter().sum::<f64>() / n as f64;
    // (ZᵀZ + λI) w = Zᵀ(y − ȳ).
    let mut a = vec![0.0; d * d];
    let mut b = vec![0.0; d];
    for (r, &yv) in x.iter().zip(y) {
        let zr = z(r);
        for i in 0..d {
            b[i] += zr[i] * (yv - ym);
            for j in 0..d {
                a[i * d + j] += zr[i] * zr[j];
            }
        }
    }
    (0..d).for_each(|i| a[i * d + i] += lambda);
    let w = solve_spd(a, b, d);
    let tm = yt.iter().sum::<f64>() / yt.len() as f64;
    let (mut res, mut tot) = (0.0, 0.0);
    for (r, &yv) in xt.iter().zip(yt) {
        let pred = ym + z(r).iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
        res += (yv - pred).powi(2);
        tot += (yv - tm).powi(2);
    }
    1.0 - res / tot.max(1e-300)
}

/// Solves A w = b for symmetric positive definite A (Cholesky).
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, d: usize) -> Vec<f64> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= a[j * d + k] * a[j * d + k];
        }
        let l = s.max(1e-300).sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / l;
        }
    }
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * d + k] * b[k];
        }
        b[i] = s / a[i * d + i];
    }
    for i in (0..d).rev() {
        let mut s = b[i];
        for k in i + 1..d {
            s -= a[k * d + i] * b[k];
        }
        b[i] = s / a[i * d + i];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_target_and_scores_noise_near_zero() {
        let mut rng = Rng::new(3);
        let gen = |rng: &mut Rng, n: usize| -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
            let x: Vec<Vec<f64>> = (0..n).map(|_| (0..5).map(|_| rng.normal() as f64).collect()).collect();
            let y: Vec<f64> = x.iter().map(|r| 0.3 + 2.0 * r[0] - r[3]).collect();
            let noise: Vec<f64> = (0..n).map(|_| rng.normal() as f64).collect();
            (x, y, noise)
        };
        let (x, y, ny) = gen(&mut rng, 400);
        let (xt, yt, nyt) = gen(&mut rng, 300);
        let r2 = ridge_r2(&x, &y, &xt, &yt, 1e-6);
        assert!(r2 > 0.999_99, "{r2}");
        let r2n = ridge_r2(&x, &ny, &xt, &nyt, 1.0);
        assert!(r2n.abs() < 0.05, "{r2n}");
        // Heavy ridge shrinks toward the mean: R² falls but stays positive.
        let r2h = ridge_r2(&x, &y, &xt, &yt, 1e3);
        assert!(r2h > 0.0 && r2h < r2, "{r2h}");
    }

    #[test]
    fn probe_draws_pick_a_sorted_subset_and_repeat_it() {
        let mut rng = Rng::new(1);
        let all = ProbeDraws { images: usize::MAX, draws: 2 }.samples(3, &mut rng);
        assert_eq!(all, vec![0, 0, 1, 1, 2, 2]);
        let some = ProbeDraws { images: 4, draws: 1 }.samples(10, &mut rng);
        assert_eq!(some.len(), 4);
        assert!(some.windows(2).all(|w| w[0] < w[1]) && some.iter().all(|&i| i < 10), "{some:?}");
        let pick = |seed| ProbeDraws { images: 4, draws: 1 }.samples(10, &mut Rng::new(seed));
        assert_eq!(pick(7), pick(7), "a pure function of the seed");
    }
}
