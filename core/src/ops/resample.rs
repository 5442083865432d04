//! Resolution changes of channels-last images: nearest-neighbour upsampling and the
//! pixel (un)shuffle that moves r×r pixel blocks into channels and back.

use crate::Real;

/// x: [B, H, W, C] → y: [B, r·H, r·W, C], each pixel repeated over an r×r block.
pub fn upsample_nearest<T: Real>(x: &[T], y: &mut [T], dims: [usize; 4], r: usize) {
    let [b, h, w, c] = dims;
    for bi in 0..b {
        for oy in 0..h * r {
            for ox in 0..w * r {
                let src = &x[((bi * h + oy / r) * w + ox / r) * c..][..c];
                y[((bi * h * r + oy) * w * r + ox) * c..][..c].copy_from_slice(src);
            }
        }
    }
}

/// x: [B, H, W, C] → y: [B, H/r, W/r, C·r²]: output channel c·r² + i·r + j holds input pixel
/// (r·oy + i, r·ox + j) of channel c (PyTorch's `pixel_unshuffle` order, `c (h i) (w j) → (c i j) h w`).
pub fn pixel_unshuffle<T: Real>(x: &[T], y: &mut [T], dims: [usize; 4], r: usize) {
    let [b, h, w, c] = dims;
    let (ho, wo) = (h / r, w / r);
    for bi in 0..b {
        for oy in 0..ho {
            for ox in 0..wo {
                for ch in 0..c {
                    for i in 0..r {
                        for j in 0..r {
                            let out = ((bi * ho + oy) * wo + ox) * c * r * r + (ch * r + i) * r + j;
                            y[out] = x[((bi * h + oy * r + i) * w + ox * r + j) * c + ch];
                        }
                    }
                }
            }
        }
    }
}

/// The inverse of [`pixel_unshuffle`]: x: [B, H, W, C·r²] → y: [B, r·H, r·W, C]; `dims` are x's
/// with C the output channel count.
pub fn pixel_shuffle<T: Real>(x: &[T], y: &mut [T], dims: [usize; 4], r: usize) {
    let [b, h, w, c] = dims;
    let (ho, wo) = (h * r, w * r);
    for bi in 0..b {
        for iy in 0..h {
            for ix in 0..w {
                for ch in 0..c {
                    for i in 0..r {
                        for j in 0..r {
                            let src = ((bi * h + iy) * w + ix) * c * r * r + (ch * r + i) * r + j;
                            y[((bi * ho + iy * r + i) * wo + ix * r + j) * c + ch] = x[src];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn upsampling_repeats_pixels() {
        let x: [f64; 4] = [1.0, 2.0, 3.0, 4.0]; // [1, 1, 2, 2]: one row of two 2-channel pixels
        let mut y = [0.0; 16];
        upsample_nearest(&x, &mut y, [1, 1, 2, 2], 2);
        assert_eq!(y, [1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
    }

    #[test]
    fn unshuffle_puts_a_block_into_channels_in_torch_order() {
        // One 2×2 image with 2 channels; pixel (y, x) channel c holds 10·c + 2·y + x.
        let x: Vec<f64> = (0..4).flat_map(|p| [(p) as f64, 10.0 + p as f64]).collect();
        let mut y = [0.0; 8];
        pixel_unshuffle(&x, &mut y, [1, 2, 2, 2], 2);
        assert_eq!(y, [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]);
    }

    #[test]
    fn shuffle_undoes_unshuffle() {
        let x: Vec<f64> = (0..2 * 4 * 6 * 3).map(|i| i as f64).collect();
        let mut packed = vec![0.0; x.len()];
        pixel_unshuffle(&x, &mut packed, [2, 4, 6, 3], 2);
        let mut back = vec![0.0; x.len()];
        pixel_shuffle(&packed, &mut back, [2, 2, 3, 3], 2);
        assert_eq!(back, x);
    }
}
