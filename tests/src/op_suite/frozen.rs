//! The forward-only ops of the frozen networks (autoencoder, text encoder), each against its
//! f64 reference in `mvdit_core::ops`. Shapes cover the layers of both networks at small sizes:
//! 3×3 "same" convolutions, the autoencoder's asymmetric stride-2 downsample, 1×1 convolutions,
//! 32-group norms, odd image sizes, grouped KV heads (4 over 2, 2 over 1), causal and padding
//! masks including a row with no key at all (the empty prompt), and the autoencoder's
//! single-head attention with a wide head (Dh 96) over 70 pixels.

use super::helpers::*;
use mvdit_core::ops::{self, AttnMask, Conv2d, Heads};
use mvdit_core::Backend;

/// [B, H, W, Ci, Co, K] with the geometry of each case.
const CONVS: [([usize; 6], Conv2d); 6] = [
    ([2, 5, 7, 3, 8, 3], Conv2d::same(1)),
    ([1, 8, 6, 16, 5, 3], Conv2d { stride: 2, pad: [0, 1, 0, 1] }),
    ([2, 4, 3, 6, 10, 1], Conv2d::same(0)),
    ([1, 9, 9, 4, 4, 3], Conv2d { stride: 2, pad: [1, 1, 1, 1] }),
    ([1, 3, 2, 33, 7, 3], Conv2d::same(1)),
    ([1, 6, 5, 2, 3, 2], Conv2d { stride: 1, pad: [0, 1, 1, 0] }),
];

pub fn conv2d<B: Backend>(be: &B) {
    for (i, &([b, h, w, ci, co, k], conv)) in CONVS.iter().enumerate() {
        let mut r = Rng::new(300 + i as u64);
        let (x, wt, bias) = (r.f32s(b * h * w * ci), r.f32s(co * k * k * ci), r.f32s(co));
        let (ho, wo) = conv.out_size(h, w, k, k).unwrap();
        for with_bias in [true, false] {
            let mut want = vec![0.0f64; b * ho * wo * co];
            let bw = wide(&bias);
            ops::conv2d(&wide(&x), &wide(&wt), with_bias.then_some(&bw[..]), &mut want, [b, h, w, ci], [co, k, k], conv);
            let bt = up(be, &bias, &[co]);
            let got = be.conv2d(&up(be, &x, &[b, h, w, ci]), &up(be, &wt, &[co, k, k, ci]), with_bias.then_some(&bt), conv).unwrap();
            close(be, &format!("conv2d {:?} {conv:?} bias {with_bias}", CONVS[i].0), &got, &[b, ho, wo, co], &want);
        }
    }
}

pub fn group_norm<B: Backend>(be: &B) {
    // [B, N, C, groups]
    for (i, &[b, n, c, g]) in [[2, 12, 64, 32], [1, 35, 96, 32], [3, 5, 6, 3], [1, 7, 4, 1]].iter().enumerate() {
        let mut r = Rng::new(320 + i as u64);
        let (x, gamma, beta) = (r.f32s(b * n * c), r.f32s(c), r.f32s(c));
        // An offset mean so the statistics matter.
        let x: Vec<f32> = x.iter().map(|v| v * 3.0 + 0.5).collect();
        let mut want = vec![0.0f64; x.len()];
        ops::group_norm(&wide(&x), &wide(&gamma), &wide(&beta), &mut want, n, g, ops::GROUP_NORM_EPS);
        let got = be.group_norm(&up(be, &x, &[b, n, c]), &up(be, &gamma, &[c]), &up(be, &beta, &[c]), g, ops::GROUP_NORM_EPS).unwrap();
        close(be, &format!("group_norm {:?}", [b, n, c, g]), &got, &[b, n, c], &want);
        // The autoencoder hands images [B, H, W, C] to it as they are.
        let img = be.group_norm(&up(be, &x, &[b, 1, n, c]), &up(be, &gamma, &[c]), &up(be, &beta, &[c]), g, ops::GROUP_NORM_EPS).unwrap();
        close(be, "group_norm of an image", &img, &[b, 1, n, c], &want);
    }
}

pub fn silu<B: Backend>(be: &B) {
    let x: Vec<f32> = Rng::new(330).f32s(1000).iter().map(|v| v * 12.0).collect();
    let mut want = vec![0.0f64; x.len()];
    ops::silu(&wide(&x), &mut want);
    close(be, "silu", &be.silu(&up(be, &x, &[10, 100])).unwrap(), &[10, 100], &want);
}

const IMAGES4: [[usize; 4]; 3] = [[2, 3, 5, 4], [1, 4, 6, 33], [1, 2, 2, 1]];

pub fn upsample_nearest<B: Backend>(be: &B) {
    for (i, &[b, h, w, c]) in IMAGES4.iter().enumerate() {
        let x = Rng::new(340 + i as u64).f32s(b * h * w * c);
        let mut want = vec![0.0f64; x.len() * 4];
        ops::upsample_nearest(&wide(&x), &mut want, [b, h, w, c], 2);
        close(be, &format!("upsample_nearest {:?}", IMAGES4[i]), &be.upsample_nearest(&up(be, &x, &[b, h, w, c]), 2).unwrap(), &[b, 2 * h, 2 * w, c], &want);
    }
}

pub fn pixel_shuffle<B: Backend>(be: &B) {
    for (i, &[b, h, w, c]) in IMAGES4.iter().enumerate() {
        let x = Rng::new(350 + i as u64).f32s(b * h * w * c * 4);
        let mut want = vec![0.0f64; x.len()];
        ops::pixel_shuffle(&wide(&x), &mut want, [b, h, w, c], 2);
        let got = be.pixel_shuffle(&up(be, &x, &[b, h, w, 4 * c]), 2).unwrap();
        close(be, &format!("pixel_shuffle {:?}", IMAGES4[i]), &got, &[b, 2 * h, 2 * w, c], &want);
    }
}

pub fn pixel_unshuffle<B: Backend>(be: &B) {
    for (i, &[b, h, w, c]) in IMAGES4.iter().enumerate() {
        let x = Rng::new(360 + i as u64).f32s(b * h * w * c * 4);
        let mut want = vec![0.0f64; x.len()];
        ops::pixel_unshuffle(&wide(&x), &mut want, [b, 2 * h, 2 * w, c], 2);
        let got = be.pixel_unshuffle(&up(be, &x, &[b, 2 * h, 2 * w, c]), 2).unwrap();
        close(be, &format!("pixel_unshuffle {:?}", IMAGES4[i]), &got, &[b, h, w, 4 * c], &want);
    }
}

/// [B, L, Hq, Hkv, Dh, causal, masked]: the text encoder's shapes (grouped heads, causal,
/// padding) and the autoencoder's (one wide head, no mask).
const MASKED: [(usize, usize, usize, usize, usize, bool, bool); 5] = [
    (3, 7, 4, 2, 16, true, true),
    (2, 9, 2, 1, 8, true, false),
    (2, 5, 3, 3, 4, false, true),
    (1, 70, 1, 1, 96, false, false),
    (2, 130, 2, 2, 32, true, true),
];

pub fn attention_masked<B: Backend>(be: &B) {
    for (i, &(b, l, hq, hkv, dh, causal, masked)) in MASKED.iter().enumerate() {
        let mut r = Rng::new(370 + i as u64);
        let (q, k, v) = (r.f32s(b * l * hq * dh), r.f32s(b * l * hkv * dh), r.f32s(b * l * hkv * dh));
        // Row 0: every key padding (the empty prompt); row 1: right padding after 3 tokens;
        // row 2: left padding before the last 2 tokens.
        let mask: Vec<f32> = (0..b * l)
            .map(|t| {
                let (bi, j) = (t / l, t % l);
                let keep = match bi {
                    0 => false,
                    1 => j < 3,
                    _ => j + 2 >= l,
                };
                if keep { 1.0 } else { 0.0 }
            })
            .collect();
        let heads = Heads { q: hq, kv: hkv };
        let keys = masked.then(|| wide(&mask));
        let mut want = vec![0.0f64; q.len()];
        ops::attention_masked(&wide(&q), &wide(&k), &wide(&v), &mut want, AttnMask { causal, keys: keys.as_deref() }, b, l, heads, dh);
        let mt = up(be, &mask, &[b, l]);
        let got = be
            .attention_masked(&up(be, &q, &[b, l, hq * dh]), &up(be, &k, &[b, l, hkv * dh]), &up(be, &v, &[b, l, hkv * dh]), heads, causal, masked.then_some(&mt))
            .unwrap();
        close(be, &format!("attention_masked {:?}", MASKED[i]), &got, &[b, l, hq * dh], &want);
    }
}

pub fn rope<B: Backend>(be: &B) {
    for (i, &(b, l, nh, dh)) in [(2, 7, 3, 8), (1, 40, 2, 128), (3, 1, 1, 2)].iter().enumerate() {
        let x = Rng::new(390 + i as u64).f32s(b * l * nh * dh);
        let (cos, sin) = ops::rope_tables_1d::<f32>(dh, l, 1e6);
        let mut want = wide(&x);
        ops::rope_apply(&mut want, &wide(&cos), &wide(&sin), b, l, l, nh, dh, false);
        let got = be.rope(&up(be, &x, &[b, l, nh * dh]), &up(be, &cos, &[l, dh / 2]), &up(be, &sin, &[l, dh / 2]), nh).unwrap();
        close(be, &format!("rope {:?}", (b, l, nh, dh)), &got, &[b, l, nh * dh], &want);
    }
}

/// Bad shapes of the new ops are errors, never panics.
pub fn frozen_shape_errors_are_err<B: Backend>(be: &B) {
    let img = up(be, &[0.0; 2 * 3 * 3 * 4], &[2, 3, 3, 4]);
    let w_wrong_ci = up(be, &[0.0; 5 * 9 * 3], &[5, 3, 3, 3]);
    assert!(be.conv2d(&img, &w_wrong_ci, None, Conv2d::same(1)).is_err(), "conv2d: channel mismatch");
    let w5 = up(be, &[0.0; 5 * 25 * 4], &[5, 5, 5, 4]);
    assert!(be.conv2d(&img, &w5, None, Conv2d::same(0)).is_err(), "conv2d: kernel larger than the image");
    let c4 = up(be, &[1.0; 4], &[4]);
    assert!(be.group_norm(&img, &c4, &c4, 3, 1e-6).is_err(), "group_norm: 4 channels in 3 groups");
    assert!(be.pixel_unshuffle(&img, 2).is_err(), "pixel_unshuffle: odd size");
    let img3 = up(be, &[0.0; 3 * 2 * 2], &[1, 2, 2, 3]);
    assert!(be.pixel_shuffle(&img3, 2).is_err(), "pixel_shuffle: 3 channels");
    let tok = up(be, &[0.0; 2 * 3 * 8], &[2, 3, 8]);
    assert!(be.attention_masked(&tok, &tok, &tok, Heads { q: 3, kv: 2 }, true, None).is_err(), "attention_masked: 3 heads over 2");
    let bad_mask = up(be, &[1.0; 5], &[5]);
    assert!(be.attention_masked(&tok, &tok, &tok, Heads { q: 2, kv: 2 }, true, Some(&bad_mask)).is_err(), "attention_masked: mask shape");
    let t2 = up(be, &[0.0; 2 * 2], &[2, 2]);
    assert!(be.rope(&tok, &t2, &t2, 2).is_err(), "rope: tables for 2 tokens, 3 given");
}
