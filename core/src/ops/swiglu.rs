//! SwiGLU gate: `y = silu(g) ⊙ v` where each row of the w13 output is [g | v]; and SiLU alone.

use crate::Real;

fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// SiLU on its own (the autoencoder's activation): y = x·σ(x), element-wise.
pub fn silu<T: Real>(x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = xi * sigmoid(xi);
    }
}

/// gv: [N, 2M] (gate first, then value) → y: [N, M].
pub fn swiglu_forward<T: Real>(gv: &[T], y: &mut [T], m: usize) {
    for (row, yr) in gv.chunks_exact(2 * m).zip(y.chunks_exact_mut(m)) {
        for i in 0..m {
            let g = row[i];
            yr[i] = g * sigmoid(g) * row[m + i];
        }
    }
}

/// dy: [N, M] → dgv: [N, 2M]; silu'(g) = σ(g)(1 + g(1 − σ(g))).
pub fn swiglu_backward<T: Real>(gv: &[T], dy: &[T], dgv: &mut [T], m: usize) {
    for ((row, dyr), dr) in gv.chunks_exact(2 * m).zip(dy.chunks_exact(m)).zip(dgv.chunks_exact_mut(2 * m)) {
        for i in 0..m {
            let (g, v) = (row[i], row[m + i]);
            let sg = sigmoid(g);
            dr[i] = dyr[i] * v * sg * (T::ONE + g * (T::ONE - sg));
            dr[m + i] = dyr[i] * g * sg;
        }
    }
}
