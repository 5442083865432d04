//! Cross-backend op parity suite, written once and stamped per backend (burn's testgen
//! pattern): `backend_op_tests!(ctor)` expands to one `#[test]` per group of `Backend` methods,
//! each calling a generic check below with a fresh backend from `ctor`.
//!
//! Every check runs the backend (f32) and the core reference op (`mvdit_core::ops`) in f64 on
//! the same inputs (random f32 values, so both sides see exactly the same numbers) and compares
//! ‖got − want‖ / ‖want‖ per output tensor against [`TOL`].
//!
//! Why 1e-5: f32's unit round-off is u = 2⁻²⁴ ≈ 6e-8. A K-term dot product in f32 carries a
//! relative error of about √K·u for random-sign data (K·u in the worst case); the largest K here
//! is 384, so ≈1.2e-6, and the norms, softmax and exp on top are well conditioned for these
//! inputs (uniform in [-1, 1)), adding a few ulp. 1e-5 leaves ~10× headroom over honest f32
//! arithmetic in any summation order (blocked GEMM, fused or reordered loops, a polynomial exp
//! good to a few ulp), while a wrong index, segment or formula gives errors of 1e-2..1.
//! Outputs that are exactly zero by construction (dq and dk of attention over one token) are
//! compared absolutely instead.
//!
//! The shapes include odd sizes (7, 17, 65 tokens; heads 1 and 2; one and two MV-Split
//! segments; batch > 1) and the shapes of benches/ (deep1000: B 16, L 17, D 64, one head;
//! small: L 65, D 128, 2 heads, SwiGLU 384), so backends' fast paths for those are covered.

use mvdit_core::ops;
use mvdit_core::{Backend, Dims};

mod arith;
mod errors;
mod frozen;
mod helpers;
mod layers;
pub use arith::*;
pub use errors::*;
pub use frozen::*;
pub use helpers::{Rng, TOL};
pub use layers::*;

use helpers::{close, close_vals, down, up, wide};

/// Stamps the suite for one backend: `mvdit_tests::backend_op_tests!(MyBackend::new());`
/// (`ctor` is evaluated once per test).
#[macro_export]
macro_rules! backend_op_tests {
    ($backend_ctor:expr) => {
        $crate::backend_op_tests!(@each $backend_ctor;
            upload_download_zeros, unpack, patchify, patchify_backward, unpatchify, unpatchify_backward,
            concat_split_tokens, linear_with_bias, linear_without_bias, linear_backward_with_bias,
            linear_backward_without_bias, linear_multi, linear_multi_backward, rmsnorm_with_gain, rmsnorm_without_gain,
            rmsnorm_backward_with_gain, rmsnorm_backward_without_gain, mvsplit, mvsplit_backward,
            rope_qknorm, rope_qknorm_backward, attention, attention_backward, swiglu,
            swiglu_backward, mse, axpby, sum_squares, adamw, gather_rows, scatter_add_rows,
            shape_errors_are_err, conv2d, group_norm, silu, upsample_nearest, pixel_shuffle,
            pixel_unshuffle, attention_masked, rope, frozen_shape_errors_are_err);
    };
    (@each $backend_ctor:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let be = $backend_ctor;
                $crate::op_suite::$name(&be);
            }
        )*
    };
}

// --- helpers ---------------------------------------------------------------------------------

fn image_dims(b: usize, c: usize, h: usize, w: usize, p: usize) -> Dims {
    let (gh, gw) = (h / p, w / p);
    Dims { b, c, h, w, p, gh, gw, li: gh * gw, lt: 0, l: gh * gw, d: 0, nh: 0, dh: 0, m: 0, dc: 0 }
}

/// [B, C, H, W, P] cases: odd channels and a non-square image, deep1000's 8×8 input, patch 1,
/// patch 4.
const IMAGES: [[usize; 5]; 4] = [[2, 3, 4, 6, 2], [16, 1, 8, 8, 2], [2, 4, 4, 4, 1], [1, 2, 8, 8, 4]];

// --- memory and layout -----------------------------------------------------------------------

pub fn upload_download_zeros<B: Backend>(be: &B) {
    let x = Rng::new(1).f32s(60);
    let t = up(be, &x, &[3, 4, 5]);
    assert_eq!(be.shape(&t), [3, 4, 5]);
    assert_eq!(down(be, &t), x);
    let z = be.zeros(&[2, 7]).unwrap();
    assert_eq!(be.shape(&z), [2, 7]);
    assert_eq!(down(be, &z), vec![0.0; 14]);
    let r = be.reshape(t, &[12, 5]).unwrap();
    assert_eq!((be.shape(&r), down(be, &r)), (&[12, 5][..], x), "reshape keeps the values");
    let empty = be.zeros(&[2, 0, 4]).unwrap();
    assert!(down(be, &empty).is_empty());
    assert!(!be.name().is_empty());
}

pub fn patchify<B: Backend>(be: &B) {
    for (i, &[b, c, h, w, p]) in IMAGES.iter().enumerate() {
        let d = image_dims(b, c, h, w, p);
        let x = Rng::new(10 + i as u64).f32s(b * c * h * w);
        let mut want = vec![0.0f64; x.len()];
        ops::patchify(&d, &wide(&x), &mut want);
        let got = be.patchify(&up(be, &x, &[b, c, h, w]), p).unwrap();
        close(be, "patchify", &got, &[b, d.li, c * p * p], &want);
    }
}

pub fn patchify_backward<B: Backend>(be: &B) {
    for (i, &[b, c, h, w, p]) in IMAGES.iter().enumerate() {
        let d = image_dims(b, c, h, w, p);
        let dr = Rng::new(20 + i as u64).f32s(b * c * h * w);
        let mut want = vec![0.0f64; dr.len()];
        ops::patchify_backward(&d, &wide(&dr), &mut want);
        let got = be.patchify_backward(&up(be, &dr, &[b, d.li, c * p * p]), [b, c, h, w], p).unwrap();
        close(be, "patchify_backward", &got, &[b, c, h, w], &want);
    }
}

pub fn unpatchify<B: Backend>(be: &B) {
    for (i, &[b, c, h, w, p]) in IMAGES.iter().enumerate() {
        let d = image_dims(b, c, h, w, p);
        let rows = Rng::new(30 + i as u64).f32s(b * c * h * w);
        let mut want = vec![0.0f64; rows.len()];
        ops::unpatchify(&d, &wide(&rows), &mut want);
        let got = be.unpatchify(&up(be, &rows, &[b, d.li, p * p * c]), [b, c, h, w], p).unwrap();
        close(be, "unpatchify", &got, &[b, c, h, w], &want);
    }
}

pub fn unpatchify_backward<B: Backend>(be: &B) {
    for (i, &[b, c, h, w, p]) in IMAGES.iter().enumerate() {
        let d = image_dims(b, c, h, w, p);
        let dx = Rng::new(40 + i as u64).f32s(b * c * h * w);
        let mut want = vec![0.0f64; dx.len()];
        ops::unpatchify_backward(&d, &wide(&dx), &mut want);
        let got = be.unpatchify_backward(&up(be, &dx, &[b, c, h, w]), p).unwrap();
        close(be, "unpatchify_backward", &got, &[b, d.li, p * p * c], &want);
    }
}

pub fn concat_split_tokens<B: Backend>(be: &B) {
    let (b, la, lb, d) = (3, 4, 2, 5);
    let mut rng = Rng::new(50);
    let (xa, xb) = (rng.f32s(b * la * d), rng.f32s(b * lb * d));
    let want: Vec<f64> =
        (0..b).flat_map(|bi| xa[bi * la * d..(bi + 1) * la * d].iter().chain(&xb[bi * lb * d..(bi + 1) * lb * d]).map(|&v| v as f64)).collect();
    let cat = be.concat_tokens(&up(be, &xa, &[b, la, d]), &up(be, &xb, &[b, lb, d])).unwrap();
    close(be, "concat_tokens", &cat, &[b, la + lb, d], &want);
    let (a, rest) = be.split_tokens(&cat, la).unwrap();
    close(be, "split_tokens head", &a, &[b, la, d], &wide(&xa));
    close(be, "split_tokens tail", &rest, &[b, lb, d], &wide(&xb));
    for cut in [0, la + lb] {
        let (a, rest) = be.split_tokens(&cat, cut).unwrap();
        assert_eq!((be.shape(&a), be.shape(&rest)), (&[b, cut, d][..], &[b, la + lb - cut, d][..]), "split at {cut}");
        close_vals(&format!("split at {cut}"), &down(be, if cut == 0 { &rest } else { &a }), &want);
        if cut == 0 {
            close(be, "concat_tokens of no tokens", &be.concat_tokens(&a, &cat).unwrap(), &[b, la + lb, d], &want);
        }
    }
}

// --- linear ----------------------------------------------------------------------------------

/// (x shape, M): K is the last dim of x. 3-D and 2-D inputs, deep1000's q/k/v and w13 shapes,
/// small's w13 (large enough for a threaded GEMM), then ragged sizes past the GPU kernels' 4×4
/// blocks and vec4 loads (K = 1, 33, 65) over several workgroups.
const LINEAR: [(&[usize], usize); 8] =
    [(&[2, 5, 7], 6), (&[11, 3], 1), (&[16, 17, 64], 64), (&[16, 17, 64], 384), (&[2, 65, 128], 384), (&[2, 1, 1], 5), (&[70, 33], 37), (&[3, 9, 65], 130)];

fn check_linear<B: Backend>(be: &B, bias: bool) {
    for (i, &(xs, m)) in LINEAR.iter().enumerate() {
        let k = *xs.last().unwrap();
        let n: usize = xs.iter().product::<usize>() / k;
        let mut rng = Rng::new(60 + i as u64);
        let (x, w, b) = (rng.f32s(n * k), rng.f32s(m * k), rng.f32s(m));
        let mut want = vec![0.0f64; n * m];
        let b64 = wide(&b);
        ops::linear_forward(&wide(&x), &wide(&w), bias.then_some(&b64[..]), &mut want, n, k, m);
        let bt = up(be, &b, &[m]);
        let y = be.linear(&up(be, &x, xs), &up(be, &w, &[m, k]), bias.then_some(&bt)).unwrap();
        let mut ys = xs.to_vec();
        *ys.last_mut().unwrap() = m;
        close(be, &format!("linear {xs:?}x{m} bias {bias}"), &y, &ys, &want);
    }
}

pub fn linear_with_bias<B: Backend>(be: &B) {
    check_linear(be, true);
}

pub fn linear_without_bias<B: Backend>(be: &B) {
    check_linear(be, false);
}

fn check_linear_backward<B: Backend>(be: &B, need_db: bool) {
    for (i, &(xs, m)) in LINEAR.iter().enumerate() {
        let k = *xs.last().unwrap();
        let n: usize = xs.iter().product::<usize>() / k;
        let mut rng = Rng::new(70 + i as u64);
        let (x, w, dy) = (rng.f32s(n * k), rng.f32s(m * k), rng.f32s(n * m));
        let (mut dx, mut dw, mut db) = (vec![0.0f64; n * k], vec![0.0f64; m * k], vec![0.0f64; m]);
        ops::linear_backward(&wide(&x), &wide(&w), &wide(&dy), Some(&mut dx), &mut dw, Some(&mut db), n, k, m);
        let mut ys = xs.to_vec();
        *ys.last_mut().unwrap() = m;
        let (xt, wt, dyt) = (up(be, &x, xs), up(be, &w, &[m, k]), up(be, &dy, &ys));
        for need_dx in [true, false] {
            let g = be.linear_backward(&xt, &wt, &dyt, need_dx, need_db).unwrap();
            let what = format!("linear_backward {xs:?}x{m} dx {need_dx} db {need_db}");
            close(be, &format!("{what}: dw"), &g.dw, &[m, k], &dw);
            assert_eq!(g.dx.is_some(), need_dx, "{what}: dx presence");
            assert_eq!(g.db.is_some(), need_db, "{what}: db presence");
            if let Some(t) = &g.dx {
                close(be, &format!("{what}: dx"), t, xs, &dx);
            }
            if let Some(t) = &g.db {
                close(be, &format!("{what}: db"), t, &[m], &db);
            }
        }
    }
}

pub fn linear_backward_with_bias<B: Backend>(be: &B) {
    check_linear_backward(be, true);
}

pub fn linear_backward_without_bias<B: Backend>(be: &B) {
    check_linear_backward(be, false);
}

/// (x shape, [M per weight]) of the multi-output linear: odd sizes, deep1000's and small's Q/K/V
/// (three D→D weights), and one weight alone (the SwiGLU input projection's backward).
const LINEAR_MULTI: [(&[usize], &[usize]); 4] =
    [(&[2, 5, 7], &[6, 1, 3]), (&[16, 17, 64], &[64, 64, 64]), (&[2, 65, 128], &[128, 128, 128]), (&[3, 4, 16], &[40])];

pub fn linear_multi<B: Backend>(be: &B) {
    for (ci, &(xs, ms)) in LINEAR_MULTI.iter().enumerate() {
        let k = *xs.last().unwrap();
        let n: usize = xs.iter().product::<usize>() / k;
        let mut rng = Rng::new(80 + ci as u64);
        let x = rng.f32s(n * k);
        let ws: Vec<Vec<f32>> = ms.iter().map(|&m| rng.f32s(m * k)).collect();
        let bs: Vec<Option<Vec<f32>>> = ms.iter().enumerate().map(|(i, &m)| (i % 2 == 0).then(|| rng.f32s(m))).collect();
        let xt = up(be, &x, xs);
        let wts: Vec<B::Tensor> = ws.iter().zip(ms).map(|(w, &m)| up(be, w, &[m, k])).collect();
        let bts: Vec<Option<B::Tensor>> = bs.iter().zip(ms).map(|(b, &m)| b.as_ref().map(|b| up(be, b, &[m]))).collect();
        let ys = be.linear_multi(&xt, &wts.iter().collect::<Vec<_>>(), &bts.iter().map(Option::as_ref).collect::<Vec<_>>()).unwrap();
        assert_eq!(ys.len(), ms.len(), "linear_multi {xs:?}: output count");
        for (i, &m) in ms.iter().enumerate() {
            let mut want = vec![0.0f64; n * m];
            let b64 = bs[i].as_ref().map(|b| wide(b));
            ops::linear_forward(&wide(&x), &wide(&ws[i]), b64.as_deref(), &mut want, n, k, m);
            let mut shape = xs.to_vec();
            *shape.last_mut().unwrap() = m;
            close(be, &format!("linear_multi {xs:?} output {i}"), &ys[i], &shape, &want);
        }
    }
}

pub fn linear_multi_backward<B: Backend>(be: &B) {
    for (ci, &(xs, ms)) in LINEAR_MULTI.iter().enumerate() {
        let k = *xs.last().unwrap();
        let n: usize = xs.iter().product::<usize>() / k;
        let mut rng = Rng::new(90 + ci as u64);
        let (x, acc) = (rng.f32s(n * k), rng.f32s(n * k));
        let ws: Vec<Vec<f32>> = ms.iter().map(|&m| rng.f32s(m * k)).collect();
        let dys: Vec<Vec<f32>> = ms.iter().map(|&m| rng.f32s(n * m)).collect();
        let need_db: Vec<bool> = (0..ms.len()).map(|i| i % 2 == 1).collect();
        let xt = up(be, &x, xs);
        let wts: Vec<B::Tensor> = ws.iter().zip(ms).map(|(w, &m)| up(be, w, &[m, k])).collect();
        let dyts: Vec<B::Tensor> = dys
            .iter()
            .zip(ms)
            .map(|(dy, &m)| {
                let mut shape = xs.to_vec();
                *shape.last_mut().unwrap() = m;
                up(be, dy, &shape)
            })
            .collect();
        // Reference: per weight, then dx = acc + Σ.
        let mut want_dx = vec![0.0f64; n * k];
        let mut want_w = Vec::new();
        for (i, &m) in ms.iter().enumerate() {
            let (mut dx, mut dw, mut db) = (vec![0.0f64; n * k], vec![0.0f64; m * k], vec![0.0f64; m]);
            ops::linear_backward(&wide(&x), &wide(&ws[i]), &wide(&dys[i]), Some(&mut dx), &mut dw, Some(&mut db), n, k, m);
            want_dx.iter_mut().zip(&dx).for_each(|(a, b)| *a += b);
            want_w.push((dw, db));
        }
        for with_acc in [false, true] {
            let want: Vec<f64> = if with_acc { want_dx.iter().zip(&acc).map(|(a, &b)| a + b as f64).collect() } else { want_dx.clone() };
            let acc_t = with_acc.then(|| up(be, &acc, xs));
            let g = be.linear_multi_backward(&xt, &wts.iter().collect::<Vec<_>>(), &dyts.iter().collect::<Vec<_>>(), &need_db, acc_t).unwrap();
            let what = format!("linear_multi_backward {xs:?}x{ms:?} acc {with_acc}");
            close(be, &format!("{what}: dx"), &g.dx, xs, &want);
            assert_eq!((g.dw.len(), g.db.len()), (ms.len(), ms.len()), "{what}: gradient count");
            for (i, &m) in ms.iter().enumerate() {
                close(be, &format!("{what}: dw {i}"), &g.dw[i], &[m, k], &want_w[i].0);
                assert_eq!(g.db[i].is_some(), need_db[i], "{what}: db {i} presence");
                if let Some(t) = &g.db[i] {
                    close(be, &format!("{what}: db {i}"), t, &[m], &want_w[i].1);
                }
            }
        }
    }
}
