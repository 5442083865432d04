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

use mvdit_core::ops::{self, AdamW};
use mvdit_core::{BResult, Backend, BackendError, Dims, SplitMix64};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Relative-error tolerance per output tensor (see the module docs).
pub const TOL: f64 = 1e-5;

/// Stamps the suite for one backend: `mvdit_tests::backend_op_tests!(MyBackend::new());`
/// (`ctor` is evaluated once per test).
#[macro_export]
macro_rules! backend_op_tests {
    ($backend_ctor:expr) => {
        $crate::backend_op_tests!(@each $backend_ctor;
            upload_download_zeros, patchify, patchify_backward, unpatchify, unpatchify_backward,
            concat_split_tokens, linear_with_bias, linear_without_bias, linear_backward_with_bias,
            linear_backward_without_bias, linear_multi, linear_multi_backward, rmsnorm_with_gain, rmsnorm_without_gain,
            rmsnorm_backward_with_gain, rmsnorm_backward_without_gain, mvsplit, mvsplit_backward,
            rope_qknorm, rope_qknorm_backward, attention, attention_backward, swiglu,
            swiglu_backward, mse, axpby, sum_squares, adamw, gather_rows, scatter_add_rows,
            shape_errors_are_err);
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

/// Test inputs: f32 values uniform in [-1, 1) (so the f64 reference sees the same inputs).
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }
    pub fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.0.f32s(n, 1.0)
    }
}

fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn up<B: Backend>(be: &B, data: &[f32], shape: &[usize]) -> B::Tensor {
    be.upload(data, shape).unwrap_or_else(|e| panic!("upload {shape:?}: {e}"))
}

fn down<B: Backend>(be: &B, t: &B::Tensor) -> Vec<f32> {
    be.download(t).unwrap_or_else(|e| panic!("download: {e}"))
}

fn rel(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum::<f64>().sqrt();
    let den: f64 = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Asserts the downloaded tensor has `shape` and is within [`TOL`] of `want` (relative).
fn close<B: Backend>(be: &B, what: &str, t: &B::Tensor, shape: &[usize], want: &[f64]) {
    assert_eq!(be.shape(t), shape, "{what}: shape");
    close_vals(what, &down(be, t), want);
}

fn close_vals(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite values");
    let e = rel(got, want);
    assert!(e <= TOL, "{what}: relative error {e:.3e} > {TOL:e}");
}

fn close_abs<B: Backend>(be: &B, what: &str, t: &B::Tensor, want: &[f64], atol: f64) {
    let got = down(be, t);
    let worst = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    assert!(worst <= atol, "{what}: max abs error {worst:.3e} > {atol:e}");
}

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
    let want: Vec<f64> = (0..b)
        .flat_map(|bi| xa[bi * la * d..(bi + 1) * la * d].iter().chain(&xb[bi * lb * d..(bi + 1) * lb * d]).map(|&v| v as f64))
        .collect();
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
const LINEAR_MULTI: [(&[usize], &[usize]); 4] = [(&[2, 5, 7], &[6, 1, 3]), (&[16, 17, 64], &[64, 64, 64]), (&[2, 65, 128], &[128, 128, 128]), (&[3, 4, 16], &[40])];

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

// --- RMSNorm -----------------------------------------------------------------------------------

/// Row lengths below, between and at multiples of the subgroup sizes of the subgroup kernels
/// (8 on lavapipe, 32 or 64 on GPUs): 3, 12, 16, 33, 64.
const NORM_SHAPES: [&[usize]; 5] = [&[3, 7, 16], &[5, 12], &[16, 17, 64], &[4, 3], &[3, 2, 33]];

fn check_rmsnorm<B: Backend>(be: &B, with_gain: bool) {
    for (i, &xs) in NORM_SHAPES.iter().enumerate() {
        let d = *xs.last().unwrap();
        let n = xs.iter().product::<usize>() / d;
        let mut rng = Rng::new(80 + i as u64);
        let (x, g) = (rng.f32s(n * d), rng.f32s(d));
        let (mut y, mut r) = (vec![0.0f64; n * d], vec![0.0f64; n]);
        let g64 = wide(&g);
        ops::rmsnorm_forward(&wide(&x), with_gain.then_some(&g64[..]), 1e-5, &mut y, &mut r, d);
        let gt = up(be, &g, &[d]);
        let (yt, rt) = be.rmsnorm(&up(be, &x, xs), with_gain.then_some(&gt), 1e-5).unwrap();
        close(be, &format!("rmsnorm {xs:?} gain {with_gain}: y"), &yt, xs, &y);
        close(be, &format!("rmsnorm {xs:?} gain {with_gain}: rstd"), &rt, &[n], &r);
    }
}

pub fn rmsnorm_with_gain<B: Backend>(be: &B) {
    check_rmsnorm(be, true);
}

pub fn rmsnorm_without_gain<B: Backend>(be: &B) {
    check_rmsnorm(be, false);
}

fn check_rmsnorm_backward<B: Backend>(be: &B, with_gain: bool) {
    for (i, &xs) in NORM_SHAPES.iter().enumerate() {
        let d = *xs.last().unwrap();
        let n = xs.iter().product::<usize>() / d;
        let mut rng = Rng::new(90 + i as u64);
        let (x, g, dy) = (rng.f32s(n * d), rng.f32s(d), rng.f32s(n * d));
        let (xt, gt) = (up(be, &x, xs), up(be, &g, &[d]));
        let (_, rt) = be.rmsnorm(&xt, with_gain.then_some(&gt), 1e-5).unwrap();
        let r = down(be, &rt);
        let (mut dx, mut dg) = (vec![0.0f64; n * d], vec![0.0f64; d]);
        let g64 = wide(&g);
        ops::rmsnorm_backward(&wide(&x), with_gain.then_some(&g64[..]), &wide(&r), &wide(&dy), &mut dx, with_gain.then_some(&mut dg[..]), d);
        let (dxt, dgt) = be.rmsnorm_backward(&xt, with_gain.then_some(&gt), &rt, &up(be, &dy, xs)).unwrap();
        let what = format!("rmsnorm_backward {xs:?} gain {with_gain}");
        close(be, &format!("{what}: dx"), &dxt, xs, &dx);
        assert_eq!(dgt.is_some(), with_gain, "{what}: dgain presence");
        if let Some(t) = &dgt {
            close(be, &format!("{what}: dgain"), t, &[d], &dg);
        }
    }
}

pub fn rmsnorm_backward_with_gain<B: Backend>(be: &B) {
    check_rmsnorm_backward(be, true);
}

pub fn rmsnorm_backward_without_gain<B: Backend>(be: &B) {
    check_rmsnorm_backward(be, false);
}

// --- MV-Split ----------------------------------------------------------------------------------

/// (B, L, D, Li): two segments with batch > 1, deep1000 and small shapes, one segment (Li = L and
/// Li = 0), and an odd D.
const MVSPLIT: [(usize, usize, usize, usize); 6] = [(3, 7, 16, 4), (16, 17, 64, 16), (2, 65, 128, 64), (2, 5, 8, 5), (2, 6, 24, 0), (2, 5, 13, 3)];

struct MvIn {
    x: Vec<f32>,
    u: Vec<f32>,
    alpha: Vec<f32>,
    beta: Vec<f32>,
}

fn mv_inputs(seed: u64, b: usize, l: usize, d: usize) -> MvIn {
    let mut rng = Rng::new(seed);
    MvIn { x: rng.f32s(b * l * d), u: rng.f32s(b * l * d), alpha: rng.f32s(d), beta: rng.f32s(d) }
}

pub fn mvsplit<B: Backend>(be: &B) {
    for (i, &(b, l, d, li)) in MVSPLIT.iter().enumerate() {
        let v = mv_inputs(100 + i as u64, b, l, d);
        let (mut z, mut r) = (vec![0.0f64; b * l * d], vec![0.0f64; b * l]);
        ops::mvsplit_forward(&wide(&v.x), &wide(&v.u), &wide(&v.alpha), &wide(&v.beta), 1e-5, &mut z, &mut r, (b, l, d, li));
        let (zt, rt) = be
            .mvsplit(&up(be, &v.x, &[b, l, d]), &up(be, &v.u, &[b, l, d]), &up(be, &v.alpha, &[d]), &up(be, &v.beta, &[d]), 1e-5, li)
            .unwrap();
        close(be, &format!("mvsplit {:?}: z", (b, l, d, li)), &zt, &[b, l, d], &z);
        close(be, &format!("mvsplit {:?}: rstd", (b, l, d, li)), &rt, &[b * l], &r);
    }
}

pub fn mvsplit_backward<B: Backend>(be: &B) {
    for (i, &(b, l, d, li)) in MVSPLIT.iter().enumerate() {
        let v = mv_inputs(110 + i as u64, b, l, d);
        let dz = Rng::new(120 + i as u64).f32s(b * l * d);
        let (xt, ut, at, bt) = (up(be, &v.x, &[b, l, d]), up(be, &v.u, &[b, l, d]), up(be, &v.alpha, &[d]), up(be, &v.beta, &[d]));
        let (_, rt) = be.mvsplit(&xt, &ut, &at, &bt, 1e-5, li).unwrap();
        let r = down(be, &rt);
        let (mut dx, mut du, mut da, mut db) = (vec![0.0f64; b * l * d], vec![0.0f64; b * l * d], vec![0.0f64; d], vec![0.0f64; d]);
        ops::mvsplit_backward(
            &wide(&v.x),
            &wide(&v.u),
            &wide(&v.alpha),
            &wide(&v.beta),
            &wide(&r),
            &wide(&dz),
            &mut dx,
            &mut du,
            &mut da,
            &mut db,
            (b, l, d, li),
        );
        let g = be.mvsplit_backward(&xt, &ut, &at, &bt, &rt, &up(be, &dz, &[b, l, d]), li).unwrap();
        let what = format!("mvsplit_backward {:?}", (b, l, d, li));
        close(be, &format!("{what}: dx"), &g.dx, &[b, l, d], &dx);
        close(be, &format!("{what}: du"), &g.du, &[b, l, d], &du);
        close(be, &format!("{what}: dalpha"), &g.dalpha, &[d], &da);
        close(be, &format!("{what}: dbeta"), &g.dbeta, &[d], &db);
    }
}

// --- RoPE + QK-norm ----------------------------------------------------------------------------

/// (B, L, Li, Nh, Dh): condition tokens after the image ones, deep1000's shape, image tokens only,
/// heads shorter than a subgroup, no image tokens (no table rows), and one token.
const ROPE: [(usize, usize, usize, usize, usize); 6] = [(2, 7, 5, 2, 8), (16, 17, 16, 1, 64), (2, 9, 9, 2, 16), (2, 5, 3, 3, 6), (1, 17, 0, 2, 8), (2, 1, 1, 1, 8)];

/// Tables of random angles: [Li, Dh/2] each.
fn rope_inputs(seed: u64, li: usize, dh: usize) -> (Vec<f32>, Vec<f32>) {
    let angles = Rng::new(seed).f32s(li * dh / 2);
    (angles.iter().map(|a| (3.0 * a).cos()).collect(), angles.iter().map(|a| (3.0 * a).sin()).collect())
}

/// Reference: r = rope(x), then RMSNorm per head → (y, rstd, r).
#[allow(clippy::type_complexity)]
fn rope_qknorm_ref(x: &[f32], cos: &[f32], sin: &[f32], dims: (usize, usize, usize, usize, usize)) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (b, l, li, nh, dh) = dims;
    let mut r = wide(x);
    ops::rope_apply(&mut r, &wide(cos), &wide(sin), b, l, li, nh, dh, false);
    let (mut y, mut rstd) = (vec![0.0f64; r.len()], vec![0.0f64; b * l * nh]);
    ops::rmsnorm_forward(&r, None, 1e-6, &mut y, &mut rstd, dh);
    (y, rstd, r)
}

pub fn rope_qknorm<B: Backend>(be: &B) {
    for (i, &(b, l, li, nh, dh)) in ROPE.iter().enumerate() {
        let x = Rng::new(130 + i as u64).f32s(b * l * nh * dh);
        let (cos, sin) = rope_inputs(140 + i as u64, li, dh);
        let (y, rstd, _) = rope_qknorm_ref(&x, &cos, &sin, (b, l, li, nh, dh));
        let (yt, rt) = be
            .rope_qknorm(&up(be, &x, &[b, l, nh * dh]), &up(be, &cos, &[li, dh / 2]), &up(be, &sin, &[li, dh / 2]), nh, li, 1e-6)
            .unwrap();
        let what = format!("rope_qknorm {:?}", (b, l, li, nh, dh));
        close(be, &format!("{what}: y"), &yt, &[b, l, nh * dh], &y);
        close(be, &format!("{what}: rstd"), &rt, &[b * l * nh], &rstd);
    }
}

pub fn rope_qknorm_backward<B: Backend>(be: &B) {
    for (i, &(b, l, li, nh, dh)) in ROPE.iter().enumerate() {
        let mut rng = Rng::new(150 + i as u64);
        let (x, dy) = (rng.f32s(b * l * nh * dh), rng.f32s(b * l * nh * dh));
        let (cos, sin) = rope_inputs(160 + i as u64, li, dh);
        let (xt, ct, st) = (up(be, &x, &[b, l, nh * dh]), up(be, &cos, &[li, dh / 2]), up(be, &sin, &[li, dh / 2]));
        let (_, rt) = be.rope_qknorm(&xt, &ct, &st, nh, li, 1e-6).unwrap();
        let (_, _, r) = rope_qknorm_ref(&x, &cos, &sin, (b, l, li, nh, dh));
        let mut dx = vec![0.0f64; x.len()];
        ops::rmsnorm_backward(&r, None, &wide(&down(be, &rt)), &wide(&dy), &mut dx, None, dh);
        ops::rope_apply(&mut dx, &wide(&cos), &wide(&sin), b, l, li, nh, dh, true);
        let got = be.rope_qknorm_backward(&xt, &ct, &st, &rt, &up(be, &dy, &[b, l, nh * dh]), nh, li).unwrap();
        close(be, &format!("rope_qknorm_backward {:?}", (b, l, li, nh, dh)), &got, &[b, l, nh * dh], &dx);
    }
}

// --- attention ---------------------------------------------------------------------------------

/// (B, L, Nh, Dh): one token, odd lengths, heads 1 and 2, deep1000 (17 tokens, 1 head of 64),
/// small (65 tokens, 2 heads of 64), and 32/33 tokens (where the CPU backend switches from
/// direct loops to its register-blocked kernels, or GEMMs when Dh is not a multiple of 16).
/// For those kernels (6-row tiles, 16-key vectors, 64-column blocks): L = 65 at B = 3, L = 48
/// (no keys past the last full vector), L = 47, 99 and 38 (15, 3 and 6 left over; last tiles
/// of 5, 3 and 2 rows), Dh = 16, 32, 48, 80,
/// and L = 193 / 257 at Dh = 64 (the last length they take, and past it).
/// Covers L not a multiple of the GPU kernels' 64-row tiles or 16-row staging tiles, Dh up to
/// the tiled attention kernels' limit of 128, and Dh = 136 (past it: the per-row kernels when
/// the tiled plan does not take the materialised-score path).
const ATTENTION: [(usize, usize, usize, usize); 18] = [
    (2, 1, 2, 8),
    (2, 1, 1, 16),
    (2, 5, 1, 16),
    (3, 17, 2, 8),
    (16, 17, 1, 64),
    (2, 65, 2, 64),
    (2, 32, 1, 32),
    (1, 33, 2, 16),
    (1, 70, 2, 128),
    (1, 9, 1, 136),
    (3, 65, 2, 64),
    (2, 48, 1, 64),
    (1, 47, 2, 48),
    (2, 99, 1, 80),
    (1, 34, 3, 16),
    (2, 38, 2, 32),
    (1, 193, 1, 64),
    (1, 257, 1, 64),
];

pub fn attention<B: Backend>(be: &B) {
    for (i, &(b, l, nh, dh)) in ATTENTION.iter().enumerate() {
        let n = b * l * nh * dh;
        let mut rng = Rng::new(170 + i as u64);
        // q scaled up so the softmax is far from uniform.
        let (q, k, v): (Vec<f32>, _, _) = (rng.f32s(n).iter().map(|x| 3.0 * x).collect(), rng.f32s(n), rng.f32s(n));
        let (mut o, mut lse) = (vec![0.0f64; n], vec![0.0f64; b * nh * l]);
        ops::attention_forward(&wide(&q), &wide(&k), &wide(&v), &mut o, &mut lse, b, l, nh, dh);
        let s = [b, l, nh * dh];
        let (ot, lt) = be.attention(&up(be, &q, &s), &up(be, &k, &s), &up(be, &v, &s), nh).unwrap();
        let what = format!("attention {:?}", (b, l, nh, dh));
        close(be, &format!("{what}: o"), &ot, &s, &o);
        close(be, &format!("{what}: lse"), &lt, &[b, nh, l], &lse);
    }
}

pub fn attention_backward<B: Backend>(be: &B) {
    for (i, &(b, l, nh, dh)) in ATTENTION.iter().enumerate() {
        let n = b * l * nh * dh;
        let mut rng = Rng::new(180 + i as u64);
        let (q, k, v, d_o): (Vec<f32>, _, _, _) = (rng.f32s(n).iter().map(|x| 3.0 * x).collect(), rng.f32s(n), rng.f32s(n), rng.f32s(n));
        let s = [b, l, nh * dh];
        let (qt, kt, vt) = (up(be, &q, &s), up(be, &k, &s), up(be, &v, &s));
        let (ot, lt) = be.attention(&qt, &kt, &vt, nh).unwrap();
        let (o, lse) = (down(be, &ot), down(be, &lt));
        let (mut dq, mut dk, mut dv) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; n]);
        ops::attention_backward(&wide(&q), &wide(&k), &wide(&v), &wide(&o), &wide(&lse), &wide(&d_o), &mut dq, &mut dk, &mut dv, b, l, nh, dh);
        let (dqt, dkt, dvt) = be.attention_backward(&qt, &kt, &vt, &ot, &lt, &up(be, &d_o, &s), nh).unwrap();
        let what = format!("attention_backward {:?}", (b, l, nh, dh));
        for t in [&dqt, &dkt, &dvt] {
            assert_eq!(be.shape(t), s, "{what}: shape");
        }
        if l == 1 {
            // softmax over one logit has no gradient: dq = dk = 0 up to f32 round-off in dO·V − dO·O
            close_abs(be, &format!("{what}: dq"), &dqt, &dq, 1e-5);
            close_abs(be, &format!("{what}: dk"), &dkt, &dk, 1e-5);
        } else {
            close(be, &format!("{what}: dq"), &dqt, &s, &dq);
            close(be, &format!("{what}: dk"), &dkt, &s, &dk);
        }
        close(be, &format!("{what}: dv"), &dvt, &s, &dv);
    }
}

// --- SwiGLU ------------------------------------------------------------------------------------

/// (gv shape): odd M, deep1000's [B*L, 2*192] as 3-D, small's M = 384, M = 1.
const SWIGLU: [&[usize]; 4] = [&[3, 5, 2 * 13], &[16, 17, 2 * 192], &[2, 65, 2 * 384], &[1, 2]];

/// gv values in [-6, 6): the sigmoid's tails matter.
fn swiglu_input(seed: u64, n: usize) -> Vec<f32> {
    Rng::new(seed).f32s(n).iter().map(|x| 6.0 * x).collect()
}

pub fn swiglu<B: Backend>(be: &B) {
    for (i, &gs) in SWIGLU.iter().enumerate() {
        let n: usize = gs.iter().product();
        let m = gs.last().unwrap() / 2;
        let gv = swiglu_input(190 + i as u64, n);
        let mut y = vec![0.0f64; n / 2];
        ops::swiglu_forward(&wide(&gv), &mut y, m);
        let mut ys = gs.to_vec();
        *ys.last_mut().unwrap() = m;
        close(be, &format!("swiglu {gs:?}"), &be.swiglu(&up(be, &gv, gs)).unwrap(), &ys, &y);
    }
}

pub fn swiglu_backward<B: Backend>(be: &B) {
    for (i, &gs) in SWIGLU.iter().enumerate() {
        let n: usize = gs.iter().product();
        let m = gs.last().unwrap() / 2;
        let gv = swiglu_input(200 + i as u64, n);
        let dy = Rng::new(210 + i as u64).f32s(n / 2);
        let mut dgv = vec![0.0f64; n];
        ops::swiglu_backward(&wide(&gv), &wide(&dy), &mut dgv, m);
        let mut ys = gs.to_vec();
        *ys.last_mut().unwrap() = m;
        let got = be.swiglu_backward(&up(be, &gv, gs), &up(be, &dy, &ys)).unwrap();
        close(be, &format!("swiglu_backward {gs:?}"), &got, gs, &dgv);
    }
}

// --- loss, arithmetic, optimiser ---------------------------------------------------------------

/// Element counts: tiny, odd, and big enough for threaded loops.
const SIZES: [usize; 3] = [1, 37, 100_003];

pub fn mse<B: Backend>(be: &B) {
    for (i, &n) in SIZES.iter().enumerate() {
        let mut rng = Rng::new(220 + i as u64);
        let (p, t) = (rng.f32s(n), rng.f32s(n));
        let loss = ops::mse_forward(&wide(&p), &wide(&t));
        let mut d = vec![0.0f64; n];
        ops::mse_backward(&wide(&p), &wide(&t), 1.0, &mut d);
        let (lt, dt) = be.mse(&up(be, &p, &[n]), &up(be, &t, &[n])).unwrap();
        close(be, &format!("mse n={n}: loss"), &lt, &[1], &[loss]);
        close(be, &format!("mse n={n}: dpred"), &dt, &[n], &d);
    }
}

pub fn axpby<B: Backend>(be: &B) {
    for (i, &n) in SIZES.iter().enumerate() {
        let mut rng = Rng::new(230 + i as u64);
        let (x, y) = (rng.f32s(n), rng.f32s(n));
        for (a, b) in [(1.0f32, 1.0f32), (0.5, -2.0), (0.0, 1.0)] {
            let want: Vec<f64> = x.iter().zip(&y).map(|(&x, &y)| a as f64 * x as f64 + b as f64 * y as f64).collect();
            let got = be.axpby(a, &up(be, &x, &[n]), b, &up(be, &y, &[n])).unwrap();
            close(be, &format!("axpby n={n} a={a} b={b}"), &got, &[n], &want);
        }
    }
    // More elements than one row of a GPU dispatch grid holds (65535 workgroups of 64).
    let n = 65535 * 64 + 1000;
    let mut rng = Rng::new(235);
    let (x, y) = (rng.f32s(n), rng.f32s(n));
    let want: Vec<f64> = x.iter().zip(&y).map(|(&x, &y)| 2.0 * x as f64 + y as f64).collect();
    close(be, &format!("axpby n={n}"), &be.axpby(2.0, &up(be, &x, &[n]), 1.0, &up(be, &y, &[n])).unwrap(), &[n], &want);
}

pub fn sum_squares<B: Backend>(be: &B) {
    let mut rng = Rng::new(240);
    // with an empty tensor among them
    let vals: Vec<Vec<f32>> = SIZES.iter().chain(&[0]).map(|&n| rng.f32s(n)).collect();
    let ts: Vec<B::Tensor> = vals.iter().map(|v| up(be, v, &[v.len()])).collect();
    let want: f64 = vals.iter().flatten().map(|&v| (v as f64) * (v as f64)).sum();
    let got = be.sum_squares(&ts.iter().collect::<Vec<_>>()).unwrap();
    assert!(((got - want) / want).abs() <= TOL, "sum_squares: {got} vs {want}");
    assert_eq!(be.sum_squares(&[]).unwrap(), 0.0, "sum_squares of nothing");
}

pub fn adamw<B: Backend>(be: &B) {
    let opt = AdamW { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
    for (i, &n) in SIZES.iter().enumerate() {
        let mut rng = Rng::new(250 + i as u64);
        let p0 = rng.f32s(n);
        let (mut p, mut m, mut v) = (wide(&p0), vec![0.0f64; n], vec![0.0f64; n]);
        let (mut pt, mut mt, mut vt) = (up(be, &p0, &[n]), be.zeros(&[n]).unwrap(), be.zeros(&[n]).unwrap());
        for step in 1..=3u64 {
            let g = rng.f32s(n);
            let scale = 0.7;
            ops::adamw_step(&opt, step, scale, &mut p, &wide(&g), &mut m, &mut v);
            be.adamw(&opt, step, scale, &mut pt, &up(be, &g, &[n]), &mut mt, &mut vt).unwrap();
            let what = format!("adamw n={n} step {step}");
            close(be, &format!("{what}: p"), &pt, &[n], &p);
            close(be, &format!("{what}: m"), &mt, &[n], &m);
            close(be, &format!("{what}: v"), &vt, &[n], &v);
        }
    }
}

pub fn gather_rows<B: Backend>(be: &B) {
    let (vocab, e) = (11, 7);
    let table = Rng::new(260).f32s(vocab * e);
    let idx = [3u32, 0, 10, 3, 7];
    let want: Vec<f64> = idx.iter().flat_map(|&i| table[i as usize * e..(i as usize + 1) * e].iter().map(|&v| v as f64)).collect();
    let got = be.gather_rows(&up(be, &table, &[vocab, e]), &idx).unwrap();
    close(be, "gather_rows", &got, &[idx.len(), e], &want);
    let none = be.gather_rows(&up(be, &table, &[vocab, e]), &[]).unwrap();
    assert_eq!(be.shape(&none), [0, e], "gather_rows of no rows");
}

pub fn scatter_add_rows<B: Backend>(be: &B) {
    let (vocab, e) = (11, 7);
    let idx = [3u32, 0, 10, 3, 7, 3];
    let dy = Rng::new(270).f32s(idx.len() * e);
    let mut want = vec![0.0f64; vocab * e];
    for (r, &i) in idx.iter().enumerate() {
        for c in 0..e {
            want[i as usize * e + c] += dy[r * e + c] as f64;
        }
    }
    let got = be.scatter_add_rows(&up(be, &dy, &[idx.len(), e]), &idx, vocab).unwrap();
    close(be, "scatter_add_rows", &got, &[vocab, e], &want);
}

// --- errors ------------------------------------------------------------------------------------

fn ok<T>(r: BResult<T>) -> BResult<()> {
    r.map(|_| ())
}

/// Every op given tensors that do not fit returns `Err` (a shape error) and does not panic.
pub fn shape_errors_are_err<B: Backend>(be: &B) {
    let t = |shape: &[usize]| be.zeros(shape).unwrap();
    let (x, x2d, w, w1d, b5) = (t(&[2, 3, 8]), t(&[6, 8]), t(&[4, 8]), t(&[8]), t(&[5]));
    let (other, d4) = (t(&[2, 4, 8]), t(&[8]));
    let img = t(&[2, 1, 4, 4]);
    let (cos, sin) = (t(&[2, 2]), t(&[2, 2]));
    let mut failures = Vec::new();
    let mut expect = |what: &str, r: &dyn Fn() -> BResult<()>| match catch_unwind(AssertUnwindSafe(r)) {
        Ok(Err(BackendError::Shape(_))) => {}
        Ok(Err(e)) => failures.push(format!("{what}: expected a shape error, got {e:?}")),
        Ok(Ok(())) => failures.push(format!("{what}: returned Ok")),
        Err(_) => failures.push(format!("{what}: panicked")),
    };
    expect("upload: wrong value count", &|| ok(be.upload(&[1.0; 5], &[2, 3])));
    expect("reshape: element count", &|| ok(be.reshape(t(&[6, 5]), &[7, 5])));
    expect("patchify: 3-D input", &|| ok(be.patchify(&x, 2)));
    expect("patchify: H not divisible by P", &|| ok(be.patchify(&img, 3)));
    expect("patchify: P = 0", &|| ok(be.patchify(&img, 0)));
    expect("patchify_backward: wrong size", &|| ok(be.patchify_backward(&x, [2, 1, 4, 4], 2)));
    expect("unpatchify: wrong size", &|| ok(be.unpatchify(&x, [2, 1, 4, 4], 2)));
    expect("unpatchify_backward: 3-D input", &|| ok(be.unpatchify_backward(&x, 2)));
    expect("concat_tokens: D mismatch", &|| ok(be.concat_tokens(&x, &t(&[2, 3, 4]))));
    expect("concat_tokens: B mismatch", &|| ok(be.concat_tokens(&x, &t(&[1, 3, 8]))));
    expect("concat_tokens: 2-D input", &|| ok(be.concat_tokens(&x2d, &x2d)));
    expect("split_tokens: la > L", &|| ok(be.split_tokens(&x, 4)));
    expect("split_tokens: 2-D input", &|| ok(be.split_tokens(&x2d, 1)));
    expect("linear: K mismatch", &|| ok(be.linear(&x, &t(&[4, 7]), None)));
    expect("linear: 1-D weight", &|| ok(be.linear(&x, &w1d, None)));
    expect("linear: bias size", &|| ok(be.linear(&x, &w, Some(&b5))));
    expect("linear_backward: dy width", &|| ok(be.linear_backward(&x, &w, &t(&[2, 3, 5]), true, true)));
    expect("linear_backward: dy rows", &|| ok(be.linear_backward(&x, &w, &t(&[2, 4, 4]), true, true)));
    expect("linear_multi: bias count", &|| ok(be.linear_multi(&x, &[&w, &w], &[None])));
    expect("linear_multi: K mismatch", &|| ok(be.linear_multi(&x, &[&w, &t(&[4, 7])], &[None, None])));
    expect("linear_multi_backward: dy count", &|| ok(be.linear_multi_backward(&x, &[&w, &w], &[&t(&[2, 3, 4])], &[false, false], None)));
    expect("linear_multi_backward: acc shape", &|| ok(be.linear_multi_backward(&x, &[&w], &[&t(&[2, 3, 4])], &[false], Some(t(&[2, 3, 7])))));
    expect("linear_backward: 1-D weight", &|| ok(be.linear_backward(&x, &w1d, &t(&[2, 3, 8]), true, false)));
    expect("rmsnorm: gain size", &|| ok(be.rmsnorm(&x, Some(&b5), 1e-5)));
    expect("rmsnorm_backward: dy shape", &|| ok(be.rmsnorm_backward(&x, None, &t(&[6]), &other)));
    expect("rmsnorm_backward: rstd size", &|| ok(be.rmsnorm_backward(&x, None, &t(&[5]), &x)));
    expect("rmsnorm_backward: gain size", &|| ok(be.rmsnorm_backward(&x, Some(&b5), &t(&[6]), &x)));
    expect("mvsplit: u shape", &|| ok(be.mvsplit(&x, &other, &d4, &d4, 1e-5, 2)));
    expect("mvsplit: alpha size", &|| ok(be.mvsplit(&x, &x, &b5, &d4, 1e-5, 2)));
    expect("mvsplit: 2-D input", &|| ok(be.mvsplit(&x2d, &x2d, &d4, &d4, 1e-5, 2)));
    expect("mvsplit_backward: dz shape", &|| ok(be.mvsplit_backward(&x, &x, &d4, &d4, &t(&[6]), &other, 2)));
    expect("mvsplit_backward: rstd size", &|| ok(be.mvsplit_backward(&x, &x, &d4, &d4, &t(&[5]), &x, 2)));
    expect("mvsplit_backward: beta size", &|| ok(be.mvsplit_backward(&x, &x, &d4, &b5, &t(&[6]), &x, 2)));
    expect("rope_qknorm: table size", &|| ok(be.rope_qknorm(&x, &t(&[2, 3]), &t(&[2, 3]), 2, 2, 1e-6)));
    expect("rope_qknorm: heads do not divide D", &|| ok(be.rope_qknorm(&x, &cos, &sin, 3, 2, 1e-6)));
    expect("rope_qknorm: Li > L", &|| ok(be.rope_qknorm(&x, &t(&[4, 2]), &t(&[4, 2]), 2, 4, 1e-6)));
    expect("rope_qknorm: 2-D input", &|| ok(be.rope_qknorm(&x2d, &cos, &sin, 2, 2, 1e-6)));
    expect("rope_qknorm_backward: dy shape", &|| ok(be.rope_qknorm_backward(&x, &cos, &sin, &t(&[12]), &other, 2, 2)));
    expect("rope_qknorm_backward: rstd size", &|| ok(be.rope_qknorm_backward(&x, &cos, &sin, &t(&[11]), &x, 2, 2)));
    expect("rope_qknorm_backward: table size", &|| ok(be.rope_qknorm_backward(&x, &t(&[1, 2]), &t(&[1, 2]), &t(&[12]), &x, 2, 2)));
    expect("attention: k shape", &|| ok(be.attention(&x, &other, &x, 2)));
    expect("attention: heads do not divide D", &|| ok(be.attention(&x, &x, &x, 3)));
    expect("attention: zero heads", &|| ok(be.attention(&x, &x, &x, 0)));
    expect("attention: 2-D input", &|| ok(be.attention(&x2d, &x2d, &x2d, 2)));
    expect("attention_backward: v shape", &|| ok(be.attention_backward(&x, &x, &other, &x, &t(&[2, 2, 3]), &x, 2)));
    expect("attention_backward: lse size", &|| ok(be.attention_backward(&x, &x, &x, &x, &t(&[2, 2, 4]), &x, 2)));
    expect("attention_backward: o shape", &|| ok(be.attention_backward(&x, &x, &x, &other, &t(&[2, 2, 3]), &x, 2)));
    expect("swiglu: odd width", &|| ok(be.swiglu(&t(&[2, 3, 7]))));
    expect("swiglu_backward: dy shape", &|| ok(be.swiglu_backward(&x, &t(&[2, 3, 3]))));
    expect("swiglu_backward: dy rows", &|| ok(be.swiglu_backward(&x, &t(&[3, 2, 4]))));
    expect("mse: shape", &|| ok(be.mse(&x, &other)));
    expect("axpby: shape", &|| ok(be.axpby(1.0, &x, 1.0, &other)));
    expect("adamw: moment shape", &|| {
        let (mut p, mut m, mut v) = (t(&[8]), t(&[5]), t(&[8]));
        be.adamw(&AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }, 1, 1.0, &mut p, &d4, &mut m, &mut v)
    });
    expect("adamw: grad shape", &|| {
        let (mut p, mut m, mut v) = (t(&[8]), t(&[8]), t(&[8]));
        be.adamw(&AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }, 1, 1.0, &mut p, &b5, &mut m, &mut v)
    });
    expect("gather_rows: index out of range", &|| ok(be.gather_rows(&w, &[0, 4])));
    expect("scatter_add_rows: index count", &|| ok(be.scatter_add_rows(&w, &[0, 1], 6)));
    expect("scatter_add_rows: index out of range", &|| ok(be.scatter_add_rows(&w, &[0, 1, 2, 6], 6)));
    assert!(failures.is_empty(), "{} bad calls did not return a shape error:\n{}", failures.len(), failures.join("\n"));
}
