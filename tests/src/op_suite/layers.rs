//! The op suite's layer ops: RMSNorm, MV-Split, RoPE + QK-norm, attention, SwiGLU.

use super::helpers::{close, close_abs, down, up, wide, Rng};
use mvdit_core::{ops, Backend};

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
