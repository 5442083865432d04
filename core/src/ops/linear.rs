//! Linear layer: `y = x Wᵀ + b`.

use crate::Real;

/// x: [N, K], w: [M, K], b: [M] → y: [N, M].
pub fn linear_forward<T: Real>(x: &[T], w: &[T], b: Option<&[T]>, y: &mut [T], n: usize, k: usize, m: usize) {
    for r in 0..n {
        let xr = &x[r * k..(r + 1) * k];
        for o in 0..m {
            let wr = &w[o * k..(o + 1) * k];
            let mut s = b.map_or(T::ZERO, |b| b[o]);
            for i in 0..k {
                s += xr[i] * wr[i];
            }
            y[r * m + o] = s;
        }
    }
}

/// dy: [N, M] → dx: [N, K] = dy W, dw: [M, K] = dyᵀ x, db: [M] = Σ_rows dy (all overwritten).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Real>(
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
    n: usize,
    k: usize,
    m: usize,
) {
    if let Some(dx) = dx {
        for r in 0..n {
            for i in 0..k {
                let mut s = T::ZERO;
                for o in 0..m {
                    s += dy[r * m + o] * w[o * k + i];
                }
                dx[r * k + i] = s;
            }
        }
    }
    for o in 0..m {
        for i in 0..k {
            let mut s = T::ZERO;
            for r in 0..n {
                s += dy[r * m + o] * x[r * k + i];
            }
            dw[o * k + i] = s;
        }
    }
    if let Some(db) = db {
        for o in 0..m {
            let mut s = T::ZERO;
            for r in 0..n {
                s += dy[r * m + o];
            }
            db[o] = s;
        }
    }
}
