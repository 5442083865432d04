//! 2-D convolution over channels-last images (the autoencoder's layout: an image is a token
//! sequence [B, H·W, C], so its 1×1 convolutions are plain linear layers).
//!
//! Letters: B batch, H×W input pixels, Ci/Co input/output channels, Kh×Kw the kernel,
//! Ho×Wo output pixels.

use crate::Real;

/// The geometry of a convolution: one stride for both axes and zero padding per side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub stride: usize,
    /// Zero pixels added above, below, left and right.
    pub pad: [usize; 4],
}

impl Conv2d {
    /// Stride 1, `p` zero pixels on every side (the "same" 3×3 convolution when p = 1).
    pub const fn same(p: usize) -> Self {
        Conv2d { stride: 1, pad: [p; 4] }
    }

    /// The output size for an h×w input and a kh×kw kernel; `None` when the kernel does not fit
    /// or the stride is 0.
    pub fn out_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        let [top, bottom, left, right] = self.pad;
        let (ph, pw) = (h + top + bottom, w + left + right);
        if self.stride == 0 || kh == 0 || kw == 0 || ph < kh || pw < kw {
            return None;
        }
        Some(((ph - kh) / self.stride + 1, (pw - kw) / self.stride + 1))
    }
}

/// x: [B, H, W, Ci], w: [Co, Kh, Kw, Ci], bias: [Co] → y: [B, Ho, Wo, Co] (overwritten):
/// y[b, oy, ox, o] = bias[o] + Σ_{ky, kx, c} w[o, ky, kx, c] · x[b, oy·s + ky − top, ox·s + kx − left, c],
/// pixels outside the image reading 0. `x_dims` = (B, H, W, Ci), `w_dims` = (Co, Kh, Kw).
pub fn conv2d<T: Real>(x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T], x_dims: [usize; 4], w_dims: [usize; 3], conv: Conv2d) {
    let [b, h, wd, ci] = x_dims;
    let [co, kh, kw] = w_dims;
    let (ho, wo) = conv.out_size(h, wd, kh, kw).expect("conv2d: kernel larger than the padded image");
    let [top, _, left, _] = conv.pad;
    for bi in 0..b {
        for oy in 0..ho {
            for ox in 0..wo {
                let out = &mut y[((bi * ho + oy) * wo + ox) * co..][..co];
                for (o, yo) in out.iter_mut().enumerate() {
                    let mut s = bias.map_or(T::ZERO, |bv| bv[o]);
                    for ky in 0..kh {
                        let Some(iy) = (oy * conv.stride + ky).checked_sub(top).filter(|&iy| iy < h) else { continue };
                        for kx in 0..kw {
                            let Some(ix) = (ox * conv.stride + kx).checked_sub(left).filter(|&ix| ix < wd) else { continue };
                            let xp = &x[((bi * h + iy) * wd + ix) * ci..][..ci];
                            let wp = &w[((o * kh + ky) * kw + kx) * ci..][..ci];
                            for c in 0..ci {
                                s += wp[c] * xp[c];
                            }
                        }
                    }
                    *yo = s;
                }
            }
        }
    }
}

/// A PyTorch convolution weight [Co, Ci, Kh, Kw] in this module's layout [Co, Kh, Kw, Ci].
pub fn weight_to_channels_last<T: Copy>(w: &[T], co: usize, ci: usize, kh: usize, kw: usize) -> alloc::vec::Vec<T> {
    let mut out = alloc::vec::Vec::with_capacity(w.len());
    for o in 0..co {
        for ky in 0..kh {
            for kx in 0..kw {
                for c in 0..ci {
                    out.push(w[((o * ci + c) * kh + ky) * kw + kx]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_size_follows_padding_and_stride() {
        assert_eq!(Conv2d::same(1).out_size(8, 6, 3, 3), Some((8, 6)));
        // The autoencoder's downsample: pad right and bottom by one, 3×3, stride 2.
        let down = Conv2d { stride: 2, pad: [0, 1, 0, 1] };
        assert_eq!(down.out_size(8, 6, 3, 3), Some((4, 3)));
        assert_eq!(Conv2d::same(0).out_size(2, 2, 3, 3), None);
        assert_eq!(Conv2d { stride: 0, pad: [0; 4] }.out_size(4, 4, 1, 1), None);
    }

    #[test]
    fn a_centred_delta_kernel_copies_the_image() {
        // 3×3 kernel with a single 1 in the middle, Ci = Co = 1.
        let x: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut w = [0.0f64; 9];
        w[4] = 1.0;
        let mut y = [0.0f64; 6];
        conv2d(&x, &w, Some(&[0.5]), &mut y, [1, 2, 3, 1], [1, 3, 3], Conv2d::same(1));
        assert_eq!(y, [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]);
    }

    #[test]
    fn padding_reads_zeros() {
        // All-ones 3×3 kernel on a 2×2 image of ones: each output counts its in-image neighbours.
        let x = [1.0f64; 4];
        let w = [1.0f64; 9];
        let mut y = [0.0f64; 4];
        conv2d(&x, &w, None, &mut y, [1, 2, 2, 1], [1, 3, 3], Conv2d::same(1));
        assert_eq!(y, [4.0; 4]);
        let mut y1 = [0.0f64; 1];
        conv2d(&x, &w, None, &mut y1, [1, 2, 2, 1], [1, 3, 3], Conv2d { stride: 2, pad: [0, 1, 0, 1] });
        assert_eq!(y1, [4.0]);
    }

    #[test]
    fn channels_last_weights_keep_every_value() {
        let w: alloc::vec::Vec<f64> = (0..2 * 3 * 2 * 2).map(|i| i as f64).collect();
        let cl = weight_to_channels_last(&w, 2, 3, 2, 2);
        // [o=1, c=2, ky=1, kx=0] in PyTorch order → [o=1, ky=1, kx=0, c=2] here.
        assert_eq!(cl[((2 + 1) * 2) * 3 + 2], w[((3 + 2) * 2 + 1) * 2]);
        let mut sorted = cl.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(sorted, w);
    }
}
