//! The f16 matmul path (operands rounded to f16 at scale 1, f32 accumulation) against the f64
//! reference and against the f32 path, and the limits of f16's range that training's loss
//! scale handles, written once for every GPU backend (`tests/tests/wgpu_f16.rs`,
//! `tests/tests/vulkan_f16.rs`).
//!
//! Tolerance [`F16_TOL`] = 4e-3 relative per output tensor: rounding an operand to f16 has a
//! relative error up to 2⁻¹¹ ≈ 4.9e-4; a product of two rounded operands up to ~1e-3, and a
//! sum of K such products with random signs keeps about that relative error in norm (the
//! rounding errors are independent). 4e-3 leaves ~4× headroom; a wrong layout or precision lost
//! to f16 underflow gives errors of 1e-2..1.

use crate::{rel_err, values};
use mvdit_core::{ops, Backend};
use mvdit_train::config::preset;
use mvdit_train::run::load_data;
use mvdit_train::trainer::TrainState;

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn rel64(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
    num / want.iter().map(|w| w * w).sum::<f64>().sqrt()
}

pub const F16_TOL: f64 = 4e-3;

/// linear and linear_backward on (x shape, M, input scale, gradient scale).
const CASES: [(&[usize], usize, f32, f32); 5] = [
    (&[2, 5, 7], 6, 1.0, 1.0),
    (&[16, 17, 64], 384, 1.0, 1.0),
    (&[2, 65, 128], 384, 1.0, 1.0),
    // Gradients of a mean over ~10^5 values (1e-6, below f16's normal range) at the default
    // loss scale 2^16.
    (&[4, 33, 96], 64, 1.0, 1e-6 * 65536.0),
    // Activations of a few hundred, as after an MLP's up-projection.
    (&[3, 9, 40], 24, 300.0, 1.0),
];

/// `linear` and `linear_backward` of a backend with f16 matmul operands against the f64
/// reference, on [`CASES`]; returns the worst relative error.
pub fn linear_in_f16_matches_the_f64_reference<B: Backend>(be: &B) -> f64 {
    let mut worst = 0.0f64;
    for (i, &(xs, m, sx, sg)) in CASES.iter().enumerate() {
        let k = *xs.last().unwrap();
        let n = xs.iter().product::<usize>() / k;
        let seed = 10 * i as u64;
        let (x, w, b, dy) = (values(n * k, seed, sx), values(m * k, seed + 1, 1.0), values(m, seed + 2, 1.0), values(n * m, seed + 3, sg));
        let mut ys = xs.to_vec();
        *ys.last_mut().unwrap() = m;
        let (xt, wt, bt, dyt) = (be.upload(&x, xs).unwrap(), be.upload(&w, &[m, k]).unwrap(), be.upload(&b, &[m]).unwrap(), be.upload(&dy, &ys).unwrap());
        let mut y = vec![0.0f64; n * m];
        ops::linear_forward(&wide(&x), &wide(&w), Some(&wide(&b)), &mut y, n, k, m);
        let (mut dx, mut dw, mut db) = (vec![0.0f64; n * k], vec![0.0f64; m * k], vec![0.0f64; m]);
        ops::linear_backward(&wide(&x), &wide(&w), &wide(&dy), Some(&mut dx), &mut dw, Some(&mut db), n, k, m);
        let got_y = be.download(&be.linear(&xt, &wt, Some(&bt)).unwrap()).unwrap();
        let g = be.linear_backward(&xt, &wt, &dyt, true, true).unwrap();
        let checks = [
            ("y", rel64(&got_y, &y)),
            ("dx", rel64(&be.download(g.dx.as_ref().unwrap()).unwrap(), &dx)),
            ("dw", rel64(&be.download(&g.dw).unwrap(), &dw)),
            ("db", rel64(&be.download(g.db.as_ref().unwrap()).unwrap(), &db)),
        ];
        for (what, e) in checks {
            worst = worst.max(e);
            assert!(e <= F16_TOL, "{xs:?}x{m} (scales {sx}, {sg}): {what} rel err {e:e}");
        }
    }
    eprintln!("f16 linear: worst rel err {worst:e}");
    // f32 arithmetic would be ~1e-7 here: an error this small means no f16 rounding happened.
    assert!(worst > 1e-5, "f16 path shows no f16 rounding (worst rel err {worst:e})");
    worst
}

/// What f16's range leaves to training's loss scale: gradients of 1e-6 multiplied unscaled lose
/// more than [`F16_TOL`] to underflow (the case that [`CASES`] runs at the loss scale 2^16), and
/// an operand past 65504 makes the product non-finite (an overflow the loss scale sees and
/// backs off from) rather than a clamped, silently wrong value.
pub fn f16_range_is_the_loss_scales_job<B: Backend>(be: &B) {
    let (n, k, m) = (4 * 33, 96, 64);
    let (x, w, dy) = (values(n * k, 7, 1.0), values(m * k, 8, 1.0), values(n * m, 9, 1e-6));
    let (xt, wt, dyt) = (be.upload(&x, &[4, 33, k]).unwrap(), be.upload(&w, &[m, k]).unwrap(), be.upload(&dy, &[4, 33, m]).unwrap());
    let (mut dx, mut dw) = (vec![0.0f64; n * k], vec![0.0f64; m * k]);
    ops::linear_backward(&wide(&x), &wide(&w), &wide(&dy), Some(&mut dx), &mut dw, None, n, k, m);
    let g = be.linear_backward(&xt, &wt, &dyt, true, false).unwrap();
    let e = rel64(&be.download(&g.dw).unwrap(), &dw);
    assert!(e > F16_TOL, "unscaled 1e-6 gradients in f16: rel err {e:e}, expected the underflow's loss");
    let big = values(3 * 9 * 40, 10, 3e5);
    let y = be.download(&be.linear(&be.upload(&big, &[3, 9, 40]).unwrap(), &be.upload(&values(24 * 40, 11, 1.0), &[24, 40]).unwrap(), None).unwrap()).unwrap();
    assert!(y.iter().any(|v| !v.is_finite()), "operands past 65504 must overflow to a non-finite product");
}

/// A few training steps with f16 matmuls follow the f32 path: losses within 1e-3 relative
/// (measured 2.5e-5 on the tiny preset: the loss is a mean over the batch, so the per-element
/// f16 rounding of ~5e-4 largely averages out; a broken path is off by far more).
pub fn training_in_f16_follows_f32<B: mvdit_train::depth_split::StageBackend>(half: &B, full: &B) {
    let cfg = preset("tiny").unwrap();
    let (data, _) = load_data(&cfg).unwrap();
    let mut a = TrainState::new(full, cfg.clone(), data.class_names.clone()).unwrap();
    let mut b = TrainState::new(half, cfg, data.class_names.clone()).unwrap();
    let (mut la, mut lb) = (vec![], vec![]);
    for _ in 0..3 {
        la.push(crate::step_loss(&mut a, &data) as f32);
        lb.push(crate::step_loss(&mut b, &data) as f32);
    }
    let e = rel_err(&lb, &la);
    eprintln!("f16 vs f32 training losses: {la:?} vs {lb:?} ({e:e})");
    assert!(e < 1e-3, "f16 training losses drift from f32: {la:?} vs {lb:?} ({e:e})");
}

/// (B, L, Nh, Dh) for attention with f16 products: odd lengths past one 64-row tile, the
/// gpu.json head width.
const ATTENTION: [(usize, usize, usize, usize); 3] = [(3, 17, 2, 8), (2, 65, 2, 64), (1, 70, 2, 128)];

/// Attention forward and backward with f16 matmul operands (on a backend whose attention goes
/// through materialised scores, so the score and output products take the f16 path) against
/// the f64 reference; returns the worst relative error.
pub fn attention_in_f16_matches_the_f64_reference<B: Backend>(be: &B) -> f64 {
    let mut worst = 0.0f64;
    for (i, &(b, l, nh, dh)) in ATTENTION.iter().enumerate() {
        let n = b * l * nh * dh;
        let seed = 300 + 10 * i as u64;
        let (q, k, v, d_o) = (values(n, seed, 2.0), values(n, seed + 1, 1.0), values(n, seed + 2, 1.0), values(n, seed + 3, 1.0));
        let s = [b, l, nh * dh];
        let (qt, kt, vt, dot) = (be.upload(&q, &s).unwrap(), be.upload(&k, &s).unwrap(), be.upload(&v, &s).unwrap(), be.upload(&d_o, &s).unwrap());
        let (mut o, mut lse) = (vec![0.0f64; n], vec![0.0f64; b * nh * l]);
        ops::attention_forward(&wide(&q), &wide(&k), &wide(&v), &mut o, &mut lse, b, l, nh, dh);
        let (mut dq, mut dk, mut dv) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; n]);
        ops::attention_backward(&wide(&q), &wide(&k), &wide(&v), &o, &lse, &wide(&d_o), &mut dq, &mut dk, &mut dv, b, l, nh, dh);
        let (ot, lt) = be.attention(&qt, &kt, &vt, nh).unwrap();
        let (dqt, dkt, dvt) = be.attention_backward(&qt, &kt, &vt, &ot, &lt, &dot, nh).unwrap();
        for (what, got, want) in [("o", &ot, &o), ("lse", &lt, &lse), ("dq", &dqt, &dq), ("dk", &dkt, &dk), ("dv", &dvt, &dv)] {
            let e = rel64(&be.download(got).unwrap(), want);
            worst = worst.max(e);
            assert!(e <= F16_TOL, "attention {:?}: {what} rel err {e:e}", (b, l, nh, dh));
        }
    }
    eprintln!("f16 attention: worst rel err {worst:e}");
    assert!(worst > 1e-5, "f16 attention shows no f16 rounding (worst rel err {worst:e})");
    worst
}
