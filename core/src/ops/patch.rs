//! Patchify (the stride-P convolution's input rows) and unpatchify (the final projection's output).
//! The two use different feature orders, as the released model does:
//! patchify rows are (c, py, px) to match the conv weight [D, C, P, P];
//! unpatchify rows are (py, px, c) to match final_proj's output [P*P*C].

use crate::shape::Dims;
use crate::Real;

fn for_each_patch_value(d: &Dims, channel_last: bool, mut f: impl FnMut(usize, usize)) {
    let (p, c) = (d.p, d.c);
    for b in 0..d.b {
        for gy in 0..d.gh {
            for gx in 0..d.gw {
                let row = (b * d.li + gy * d.gw + gx) * c * p * p;
                for ch in 0..c {
                    for py in 0..p {
                        for px in 0..p {
                            let img = ((b * c + ch) * d.h + gy * p + py) * d.w + gx * p + px;
                            let col = if channel_last { (py * p + px) * c + ch } else { (ch * p + py) * p + px };
                            f(img, row + col);
                        }
                    }
                }
            }
        }
    }
}

/// x: [B, C, H, W] → rows: [B, Li, C*P*P], features ordered (c, py, px).
pub fn patchify<T: Real>(d: &Dims, x: &[T], rows: &mut [T]) {
    for_each_patch_value(d, false, |i, r| rows[r] = x[i]);
}

/// d_rows: [B, Li, C*P*P] → dx: [B, C, H, W] (a permutation, so the exact inverse of [`patchify`]).
pub fn patchify_backward<T: Real>(d: &Dims, d_rows: &[T], dx: &mut [T]) {
    for_each_patch_value(d, false, |i, r| dx[i] = d_rows[r]);
}

/// rows: [B, Li, P*P*C], features ordered (py, px, c) → x: [B, C, H, W].
pub fn unpatchify<T: Real>(d: &Dims, rows: &[T], x: &mut [T]) {
    for_each_patch_value(d, true, |i, r| x[i] = rows[r]);
}

/// dx: [B, C, H, W] → d_rows: [B, Li, P*P*C].
pub fn unpatchify_backward<T: Real>(d: &Dims, dx: &[T], d_rows: &mut [T]) {
    for_each_patch_value(d, true, |i, r| d_rows[r] = dx[i]);
}
