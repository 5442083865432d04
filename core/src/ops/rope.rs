//! 2-D rotary position embedding on image tokens (condition tokens pass unrotated).
//! Rotate-half layout: pair (i, i + Dh/2) turns by angle θ_i, i < Dh/2. The first Dh/4 angles
//! follow the patch row, the last Dh/4 the column, with frequencies base^(−2j/(Dh/2)).

use crate::Real;
use alloc::vec::Vec;

/// Angle tables for a gh×gw patch grid: cos, sin: [gh*gw, Dh/2].
/// Computed in f32 like the reference (its tables are float32 before use).
pub fn rope_tables<T: Real>(dh: usize, gh: usize, gw: usize, base: f64) -> (Vec<T>, Vec<T>) {
    let half = dh / 2;
    let quarter = dh / 4;
    let mut cos = Vec::with_capacity(gh * gw * half);
    let mut sin = Vec::with_capacity(gh * gw * half);
    for gy in 0..gh {
        for gx in 0..gw {
            for i in 0..half {
                let (pos, j) = if i < quarter { (gy, i) } else { (gx, i - quarter) };
                let inv = 1.0f32 / libm::powf(base as f32, (2 * j) as f32 / half as f32);
                let angle = pos as f32 * inv;
                cos.push(T::from_f64(libm::cosf(angle) as f64));
                sin.push(T::from_f64(libm::sinf(angle) as f64));
            }
        }
    }
    (cos, sin)
}

/// In place on x: [B, L, Nh, Dh]; rotates tokens [0, Li) by the tables, `inverse` turns back
/// (which is also the backward pass: the rotation is orthogonal).
#[allow(clippy::too_many_arguments)]
pub fn rope_apply<T: Real>(x: &mut [T], cos: &[T], sin: &[T], b: usize, l: usize, li: usize, nh: usize, dh: usize, inverse: bool) {
    let half = dh / 2;
    for bi in 0..b {
        for t in 0..li {
            let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
            for h in 0..nh {
                let v = &mut x[((bi * l + t) * nh + h) * dh..((bi * l + t) * nh + h + 1) * dh];
                for i in 0..half {
                    let (x1, x2) = (v[i], v[i + half]);
                    let sn = if inverse { -s[i] } else { s[i] };
                    v[i] = x1 * c[i] + x2 * sn;
                    v[i + half] = x2 * c[i] - x1 * sn;
                }
            }
        }
    }
}

/// Tables for 1-D positions 0…L−1 (the text encoder's RoPE), to apply with [`rope_apply`] over
/// all L tokens: cos: [L, Dh/2] = cos(a), sin = −sin(a) with a = pos·θ^(−2i/Dh), computed in f32
/// as transformers does (`inv_freq` and the products are float32). The sign: [`rope_apply`]
/// turns (x_i, x_{i+Dh/2}) by −a for a table sin(a) (the DiT's convention), transformers'
/// `rotate_half` by +a.
pub fn rope_tables_1d<T: Real>(dh: usize, l: usize, theta: f64) -> (Vec<T>, Vec<T>) {
    let half = dh / 2;
    let inv: Vec<f32> = (0..half).map(|i| 1.0f32 / libm::powf(theta as f32, (2 * i) as f32 / dh as f32)).collect();
    let (mut cos, mut sin) = (Vec::with_capacity(l * half), Vec::with_capacity(l * half));
    for pos in 0..l {
        for &f in &inv {
            let angle = pos as f32 * f;
            cos.push(T::from_f64(libm::cosf(angle) as f64));
            sin.push(T::from_f64(-libm::sinf(angle) as f64));
        }
    }
    (cos, sin)
}
