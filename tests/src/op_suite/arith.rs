//! The op suite's loss, arithmetic, optimiser, row-gather and 16-bit unpack ops.

use super::helpers::{close, down, up, wide, Rng, TOL};
use mvdit_core::ops::{self, AdamW};
use mvdit_core::Backend;

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

/// `upload_packed` + `unpack` against `dtype::unpack_into`, bit for bit: every 16-bit pattern
/// that is a finite f16 / bf16 value (subnormals, ±0, the extremes), odd lengths (a half-used
/// last word), an empty tensor, and the errors.
pub fn unpack<B: Backend>(be: &B) {
    use mvdit_core::dtype::{unpack_into, Dtype};
    for dtype in [Dtype::F16, Dtype::Bf16] {
        let finite = |b: u16| match dtype {
            Dtype::F16 => (b >> 10) & 0x1f != 0x1f,
            _ => (b >> 7) & 0xff != 0xff,
        };
        let all: Vec<u16> = (0..=u16::MAX).filter(|&b| finite(b)).collect();
        for n in [all.len(), 7, 1] {
            let bits = &all[all.len() - n..];
            let shape = [n];
            let mut want = vec![0.0f32; n];
            unpack_into(bits, dtype, &mut want);
            let p = be.upload_packed(bits, dtype, &shape).unwrap();
            let got = be.unpack(&p).unwrap();
            assert_eq!(be.shape(&got), shape);
            let got = down(be, &got);
            let bad = got.iter().zip(&want).position(|(g, w)| g.to_bits() != w.to_bits());
            assert!(bad.is_none(), "{dtype:?}: pattern {:#06x} gave {:?}, want {:?}", bits[bad.unwrap()], got[bad.unwrap()], want[bad.unwrap()]);
        }
        let p = be.upload_packed(&[0x3c00; 6], dtype, &[2, 3]).unwrap();
        assert_eq!(be.shape(&be.unpack(&p).unwrap()), [2, 3]);
        let e = be.upload_packed(&[], dtype, &[0, 4]).unwrap();
        assert!(down(be, &be.unpack(&e).unwrap()).is_empty());
        assert!(be.upload_packed(&[0; 5], dtype, &[2, 3]).is_err(), "length must match the shape");
    }
    assert!(be.upload_packed(&[0; 2], Dtype::F32, &[2]).is_err(), "f32 is not a 16-bit dtype");
}
