//! Mean-squared error, the rectified-flow loss.

use crate::Real;

/// pred, target: [any] → mean((pred − target)²).
pub fn mse_forward<T: Real>(pred: &[T], target: &[T]) -> T {
    let mut s = T::ZERO;
    for (&p, &t) in pred.iter().zip(target) {
        s += (p - t) * (p - t);
    }
    s / T::from_usize(pred.len())
}

/// d loss / d pred = 2 (pred − target) / n, scaled by `dloss`.
pub fn mse_backward<T: Real>(pred: &[T], target: &[T], dloss: T, dpred: &mut [T]) {
    let c = dloss * T::from_f64(2.0) / T::from_usize(pred.len());
    for i in 0..pred.len() {
        dpred[i] = c * (pred[i] - target[i]);
    }
}
