//! The wgpu backend against the f64 scalar references (every trait op, forward and backward),
//! the PyTorch golden cases through the model, and the CPU backend on a small random model.
//!
//! Needs a GPU adapter (CI installs lavapipe: `apt-get install mesa-vulkan-drivers libvulkan1`);
//! without one every test fails with the reason, unless MVDIT_SKIP_GPU=1.
//! Shapes are small: lavapipe runs 25-45x slower than the CPU backend.

use mvdit_backend_cpu::Cpu;
use mvdit_backend_wgpu::{Wgpu, WgpuTensor};
use mvdit_core::ops::{self, AdamW};
use mvdit_core::{Backend, BackendError, Dims, Layout, ModelConfig};
use mvdit_model::{compute_shape, Dit, Keep, TensorFile};
use std::path::PathBuf;
use std::sync::OnceLock;

const TOL: f64 = 1e-4;
const GOLDEN_TOL: f64 = 1e-3;

// ---- harness ---------------------------------------------------------------------------

fn gpu() -> Option<&'static Wgpu> {
    static BE: OnceLock<Result<Wgpu, String>> = OnceLock::new();
    match BE.get_or_init(|| Wgpu::new(None).map_err(|e| e.to_string())) {
        Ok(be) => Some(be),
        Err(e) if std::env::var("MVDIT_SKIP_GPU").as_deref() == Ok("1") => {
            eprintln!("skipping GPU test (MVDIT_SKIP_GPU=1): {e}");
            None
        }
        Err(e) => panic!("cannot open a GPU adapter: {e}\n(set MVDIT_SKIP_GPU=1 to skip the wgpu tests)"),
    }
}

macro_rules! gpu_or_skip {
    () => {
        match gpu() {
            Some(be) => be,
            None => return,
        }
    };
}

/// ‖a − b‖ / ‖b‖ in f64 (‖a‖ when b is all zeros).
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|&y| y.powi(2)).sum::<f64>().sqrt();
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Deterministic pseudo-random values in [-scale, scale) (SplitMix64).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn up(be: &Wgpu, data: &[f32], shape: &[usize]) -> WgpuTensor {
    be.upload(data, shape).unwrap()
}

#[track_caller]
fn close(be: &Wgpu, got: &WgpuTensor, want: &[f64], shape: &[usize], what: &str) {
    assert_eq!(be.shape(got), shape, "{what}: shape");
    let g = be.download(got).unwrap();
    let e = rel_err(&g, want);
    assert!(e < TOL, "{what}: rel err {e:e}");
}

/// Token-op cases: (B, L, Li, D, Nh). Two mean segments, batch 2, heads 1 and 2, L = 1 and 17.
const CASES: [(usize, usize, usize, usize, usize); 5] = [(2, 17, 12, 16, 2), (2, 17, 5, 8, 1), (2, 1, 1, 8, 1), (1, 17, 0, 16, 2), (2, 17, 17, 12, 2)];

// ---- device ------------------------------------------------------------------------------

#[test]
fn adapters_are_listed_and_bad_index_is_a_clear_error() {
    let be = gpu_or_skip!();
    let names = Wgpu::adapters();
    assert!(!names.is_empty());
    eprintln!("adapters: {names:?}; backend: {}", be.name());
    match Wgpu::new(Some(names.len() + 7)) {
        Err(BackendError::Device(m)) => assert!(m.contains("out of range"), "{m}"),
        other => panic!("expected a Device error, got {:?}", other.err()),
    }
}

#[test]
fn memory_ops_round_trip() {
    let be = gpu_or_skip!();
    let v = values(30, 1, 1.0);
    let t = up(be, &v, &[2, 3, 5]);
    assert_eq!(be.download(&t).unwrap(), v);
    let t = be.reshape(t, &[6, 5]).unwrap();
    assert_eq!(be.shape(&t), [6, 5]);
    assert_eq!(be.download(&t).unwrap(), v);
    assert!(matches!(be.reshape(t, &[7, 5]), Err(BackendError::Shape(_))));
    let z = be.zeros(&[3, 4]).unwrap();
    assert_eq!(be.download(&z).unwrap(), vec![0.0; 12]);
    let e = be.zeros(&[2, 0, 4]).unwrap();
    assert!(be.download(&e).unwrap().is_empty());
    assert!(matches!(be.upload(&v, &[4, 4]), Err(BackendError::Shape(_))));
    // A tensor no device can hold is an OutOfMemory error, not a panic.
    match be.zeros(&[1 << 20, 1 << 20]) {
        Err(BackendError::OutOfMemory { bytes }) => assert_eq!(bytes, 4 << 40),
        other => panic!("expected OutOfMemory, got {:?}", other.err()),
    }
}

// ---- layout ------------------------------------------------------------------------------

#[test]
fn patch_ops_match_reference() {
    let be = gpu_or_skip!();
    for (b, c, h, w, p) in [(2, 3, 8, 12, 2), (2, 1, 4, 4, 1), (1, 2, 8, 8, 4)] {
        let d = Dims { b, c, h, w, p, gh: h / p, gw: w / p, li: (h / p) * (w / p), lt: 0, l: 0, d: 0, nh: 0, dh: 0, m: 0, dc: 0 };
        let img = values(b * c * h * w, 3, 1.0);
        let rows_shape = [b, d.li, c * p * p];
        let n = img.len();
        let x = up(be, &img, &[b, c, h, w]);
        let mut want = vec![0.0f64; n];
        ops::patchify(&d, &f64s(&img), &mut want);
        close(be, &be.patchify(&x, p).unwrap(), &want, &rows_shape, "patchify");
        let rows = values(n, 4, 1.0);
        let r = up(be, &rows, &rows_shape);
        ops::patchify_backward(&d, &f64s(&rows), &mut want);
        close(be, &be.patchify_backward(&r, [b, c, h, w], p).unwrap(), &want, &[b, c, h, w], "patchify_backward");
        ops::unpatchify(&d, &f64s(&rows), &mut want);
        close(be, &be.unpatchify(&r, [b, c, h, w], p).unwrap(), &want, &[b, c, h, w], "unpatchify");
        ops::unpatchify_backward(&d, &f64s(&img), &mut want);
        close(be, &be.unpatchify_backward(&x, p).unwrap(), &want, &rows_shape, "unpatchify_backward");
    }
    let x = up(be, &values(2 * 3 * 5 * 4, 1, 1.0), &[2, 3, 5, 4]);
    assert!(matches!(be.patchify(&x, 2), Err(BackendError::Shape(_))));
}

#[test]
fn concat_and_split_tokens() {
    let be = gpu_or_skip!();
    let (b, la, lb, d) = (2, 5, 3, 8);
    let av = values(b * la * d, 5, 1.0);
    let bv = values(b * lb * d, 6, 1.0);
    let (a, bt) = (up(be, &av, &[b, la, d]), up(be, &bv, &[b, lb, d]));
    let cat = be.concat_tokens(&a, &bt).unwrap();
    let mut want = Vec::new();
    for bi in 0..b {
        want.extend_from_slice(&av[bi * la * d..(bi + 1) * la * d]);
        want.extend_from_slice(&bv[bi * lb * d..(bi + 1) * lb * d]);
    }
    assert_eq!(be.shape(&cat), [b, la + lb, d]);
    assert_eq!(be.download(&cat).unwrap(), want);
    for cut in [0, la, la + lb, 2] {
        let (p, q) = be.split_tokens(&cat, cut).unwrap();
        assert_eq!(be.shape(&p), [b, cut, d]);
        assert_eq!(be.shape(&q), [b, la + lb - cut, d]);
        let (pv, qv) = (be.download(&p).unwrap(), be.download(&q).unwrap());
        let l = la + lb;
        for bi in 0..b {
            assert_eq!(pv[bi * cut * d..(bi + 1) * cut * d], want[bi * l * d..(bi * l + cut) * d]);
            assert_eq!(qv[bi * (l - cut) * d..(bi + 1) * (l - cut) * d], want[(bi * l + cut) * d..(bi + 1) * l * d]);
        }
    }
    // Concatenating an empty token tensor works too.
    let (e, _) = be.split_tokens(&cat, 0).unwrap();
    assert_eq!(be.download(&be.concat_tokens(&e, &a).unwrap()).unwrap(), av);
    assert!(matches!(be.split_tokens(&cat, 9), Err(BackendError::Shape(_))));
    let wrong = up(be, &values(2 * 3 * 4, 1, 1.0), &[2, 3, 4]);
    assert!(matches!(be.concat_tokens(&a, &wrong), Err(BackendError::Shape(_))));
}

// ---- layers ------------------------------------------------------------------------------

#[test]
fn linear_forward_and_backward() {
    let be = gpu_or_skip!();
    // (leading shape, K, M): ragged sizes exercise the 4x4 blocks' edges, several workgroups and
    // each matmul kernel (vec4 loads of A along k or across rows, vec4 B only, scalar).
    let shapes = [(vec![2, 17], 24, 40), (vec![1, 1], 8, 3), (vec![70], 33, 37), (vec![2, 1], 1, 5), (vec![3, 9], 65, 130), (vec![3, 9], 33, 40), (vec![5], 4, 4)];
    for (lead, k, m) in shapes {
        let n: usize = lead.iter().product();
        let xv = values(n * k, 7, 1.0);
        let wv = values(m * k, 8, 0.5);
        let bv = values(m, 9, 0.5);
        let mut xs = lead.clone();
        xs.push(k);
        let mut ys = lead.clone();
        ys.push(m);
        let (x, w, bias) = (up(be, &xv, &xs), up(be, &wv, &[m, k]), up(be, &bv, &[m]));
        let mut want = vec![0.0f64; n * m];
        for with_bias in [true, false] {
            let b64 = f64s(&bv);
            ops::linear_forward(&f64s(&xv), &f64s(&wv), with_bias.then_some(b64.as_slice()), &mut want, n, k, m);
            let y = be.linear(&x, &w, with_bias.then_some(&bias)).unwrap();
            close(be, &y, &want, &ys, &format!("linear {lead:?}x{k}->{m} bias={with_bias}"));
        }
        let dyv = values(n * m, 10, 1.0);
        let dy = up(be, &dyv, &ys);
        let (mut dx, mut dw, mut db) = (vec![0.0f64; n * k], vec![0.0f64; m * k], vec![0.0f64; m]);
        ops::linear_backward(&f64s(&xv), &f64s(&wv), &f64s(&dyv), Some(&mut dx), &mut dw, Some(&mut db), n, k, m);
        let g = be.linear_backward(&x, &w, &dy, true, true).unwrap();
        close(be, g.dx.as_ref().unwrap(), &dx, &xs, "linear dx");
        close(be, &g.dw, &dw, &[m, k], "linear dw");
        close(be, g.db.as_ref().unwrap(), &db, &[m], "linear db");
        let g = be.linear_backward(&x, &w, &dy, false, false).unwrap();
        assert!(g.dx.is_none() && g.db.is_none());
        close(be, &g.dw, &dw, &[m, k], "linear dw (alone)");
    }
    let x = up(be, &values(8, 1, 1.0), &[2, 4]);
    let w = up(be, &values(15, 1, 1.0), &[3, 5]);
    assert!(matches!(be.linear(&x, &w, None), Err(BackendError::Shape(_))));
}

#[test]
fn rmsnorm_forward_and_backward() {
    let be = gpu_or_skip!();
    for (rows, d) in [(34, 16), (1, 8), (300, 24)] {
        let xv = values(rows * d, 11, 2.0);
        let gv: Vec<f32> = values(d, 12, 0.5).iter().map(|v| 1.0 + v).collect();
        let dyv = values(rows * d, 13, 1.0);
        let (x, g, dy) = (up(be, &xv, &[rows, d]), up(be, &gv, &[d]), up(be, &dyv, &[rows, d]));
        for with_gain in [true, false] {
            let g64 = f64s(&gv);
            let gain = with_gain.then_some(g64.as_slice());
            let (mut y, mut r) = (vec![0.0f64; rows * d], vec![0.0f64; rows]);
            ops::rmsnorm_forward(&f64s(&xv), gain, 1e-5, &mut y, &mut r, d);
            let (gy, gr) = be.rmsnorm(&x, with_gain.then_some(&g), 1e-5).unwrap();
            close(be, &gy, &y, &[rows, d], "rmsnorm y");
            close(be, &gr, &r, &[rows], "rmsnorm rstd");
            let (mut dx, mut dg) = (vec![0.0f64; rows * d], vec![0.0f64; d]);
            ops::rmsnorm_backward(&f64s(&xv), gain, &r, &f64s(&dyv), &mut dx, with_gain.then_some(dg.as_mut_slice()), d);
            let (gdx, gdg) = be.rmsnorm_backward(&x, with_gain.then_some(&g), &gr, &dy).unwrap();
            close(be, &gdx, &dx, &[rows, d], "rmsnorm dx");
            assert_eq!(gdg.is_some(), with_gain);
            if let Some(gdg) = gdg {
                close(be, &gdg, &dg, &[d], "rmsnorm dgain");
            }
        }
    }
}

#[test]
fn mvsplit_forward_and_backward() {
    let be = gpu_or_skip!();
    for (b, l, li, d, _) in CASES {
        let n = b * l * d;
        let (xv, uv, dzv) = (values(n, 14, 1.0), values(n, 15, 1.0), values(n, 16, 1.0));
        let av = values(d, 17, 0.3);
        let bv: Vec<f32> = values(d, 18, 0.3).iter().map(|v| 0.5 + v).collect();
        let t = |v: &[f32], s: &[usize]| up(be, v, s);
        let (x, uu, a, bb, dz) = (t(&xv, &[b, l, d]), t(&uv, &[b, l, d]), t(&av, &[d]), t(&bv, &[d]), t(&dzv, &[b, l, d]));
        let (mut z, mut r) = (vec![0.0f64; n], vec![0.0f64; b * l]);
        ops::mvsplit_forward(&f64s(&xv), &f64s(&uv), &f64s(&av), &f64s(&bv), 1e-5, &mut z, &mut r, (b, l, d, li));
        let (gz, gr) = be.mvsplit(&x, &uu, &a, &bb, 1e-5, li).unwrap();
        let what = format!("mvsplit B={b} L={l} Li={li} D={d}");
        close(be, &gz, &z, &[b, l, d], &format!("{what} z"));
        close(be, &gr, &r, &[b * l], &format!("{what} rstd"));
        let (mut dx, mut du, mut da, mut db) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; d], vec![0.0f64; d]);
        ops::mvsplit_backward(&f64s(&xv), &f64s(&uv), &f64s(&av), &f64s(&bv), &r, &f64s(&dzv), &mut dx, &mut du, &mut da, &mut db, (b, l, d, li));
        let g = be.mvsplit_backward(&x, &uu, &a, &bb, &gr, &dz, li).unwrap();
        close(be, &g.dx, &dx, &[b, l, d], &format!("{what} dx"));
        close(be, &g.du, &du, &[b, l, d], &format!("{what} du"));
        close(be, &g.dalpha, &da, &[d], &format!("{what} dalpha"));
        close(be, &g.dbeta, &db, &[d], &format!("{what} dbeta"));
    }
}

#[test]
fn rope_qknorm_forward_and_backward() {
    let be = gpu_or_skip!();
    for (b, l, li, d, nh) in CASES {
        let dh = d / nh;
        let n = b * l * d;
        // A grid whose size is li (li = 0 uses no table rows).
        let (gh, gw) = if li == 12 { (3, 4) } else { (1, li) };
        let (cos, sin) = ops::rope_tables::<f32>(dh, gh, gw, 10000.0);
        let (xv, dyv) = (values(n, 19, 1.0), values(n, 20, 1.0));
        let x = up(be, &xv, &[b, l, d]);
        let (ct, st) = (up(be, &cos, &[li, dh / 2]), up(be, &sin, &[li, dh / 2]));
        let mut r = f64s(&xv);
        ops::rope_apply(&mut r, &f64s(&cos), &f64s(&sin), b, l, li, nh, dh, false);
        let (mut y, mut rs) = (vec![0.0f64; n], vec![0.0f64; b * l * nh]);
        ops::rmsnorm_forward(&r, None, 1e-6, &mut y, &mut rs, dh);
        let what = format!("rope_qknorm B={b} L={l} Li={li} D={d} Nh={nh}");
        let (gy, gr) = be.rope_qknorm(&x, &ct, &st, nh, li, 1e-6).unwrap();
        close(be, &gy, &y, &[b, l, d], &format!("{what} y"));
        close(be, &gr, &rs, &[b * l * nh], &format!("{what} rstd"));
        let mut dx = vec![0.0f64; n];
        ops::rmsnorm_backward(&r, None, &rs, &f64s(&dyv), &mut dx, None, dh);
        ops::rope_apply(&mut dx, &f64s(&cos), &f64s(&sin), b, l, li, nh, dh, true);
        let dy = up(be, &dyv, &[b, l, d]);
        close(be, &be.rope_qknorm_backward(&x, &ct, &st, &gr, &dy, nh, li).unwrap(), &dx, &[b, l, d], &format!("{what} dx"));
    }
}

#[test]
fn attention_forward_and_backward() {
    let be = gpu_or_skip!();
    // The token cases, plus a larger head.
    for (b, l, _, d, nh) in CASES.into_iter().chain([(1, 3, 0, 72, 1)]) {
        let dh = d / nh;
        let n = b * l * d;
        let (qv, kv, vv, dov) = (values(n, 21, 2.0), values(n, 22, 2.0), values(n, 23, 1.0), values(n, 24, 1.0));
        let t = |v: &[f32]| up(be, v, &[b, l, d]);
        let (q, k, v, d_o) = (t(&qv), t(&kv), t(&vv), t(&dov));
        let (mut o, mut lse) = (vec![0.0f64; n], vec![0.0f64; b * nh * l]);
        ops::attention_forward(&f64s(&qv), &f64s(&kv), &f64s(&vv), &mut o, &mut lse, b, l, nh, dh);
        let what = format!("attention B={b} L={l} D={d} Nh={nh}");
        let (go, glse) = be.attention(&q, &k, &v, nh).unwrap();
        close(be, &go, &o, &[b, l, d], &format!("{what} o"));
        close(be, &glse, &lse, &[b, nh, l], &format!("{what} lse"));
        let (mut dq, mut dk, mut dv) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; n]);
        ops::attention_backward(&f64s(&qv), &f64s(&kv), &f64s(&vv), &o, &lse, &f64s(&dov), &mut dq, &mut dk, &mut dv, b, l, nh, dh);
        let (gq, gk, gv) = be.attention_backward(&q, &k, &v, &go, &glse, &d_o, nh).unwrap();
        close(be, &gq, &dq, &[b, l, d], &format!("{what} dq"));
        close(be, &gk, &dk, &[b, l, d], &format!("{what} dk"));
        close(be, &gv, &dv, &[b, l, d], &format!("{what} dv"));
    }
    let q = up(be, &values(2 * 3 * 6, 1, 1.0), &[2, 3, 6]);
    assert!(matches!(be.attention(&q, &q, &q, 4), Err(BackendError::Shape(_))));
}

#[test]
fn swiglu_forward_and_backward() {
    let be = gpu_or_skip!();
    for (lead, m) in [(vec![2, 17], 12), (vec![1], 1), (vec![5, 3], 33)] {
        let rows: usize = lead.iter().product();
        let gvv = values(rows * 2 * m, 25, 4.0);
        let dyv = values(rows * m, 26, 1.0);
        let mut gs = lead.clone();
        gs.push(2 * m);
        let mut ys = lead.clone();
        ys.push(m);
        let (gv, dy) = (up(be, &gvv, &gs), up(be, &dyv, &ys));
        let mut y = vec![0.0f64; rows * m];
        ops::swiglu_forward(&f64s(&gvv), &mut y, m);
        close(be, &be.swiglu(&gv).unwrap(), &y, &ys, "swiglu");
        let mut dgv = vec![0.0f64; rows * 2 * m];
        ops::swiglu_backward(&f64s(&gvv), &f64s(&dyv), &mut dgv, m);
        close(be, &be.swiglu_backward(&gv, &dy).unwrap(), &dgv, &gs, "swiglu_backward");
    }
}

// ---- loss, arithmetic, optimiser ----------------------------------------------------------

#[test]
fn mse_axpby_and_sum_squares() {
    let be = gpu_or_skip!();
    for n in [1, 100, 128, 129, 20_000] {
        let (pv, tv) = (values(n, 27, 1.0), values(n, 28, 1.0));
        let (p, t) = (up(be, &pv, &[n]), up(be, &tv, &[n]));
        let (loss, grad) = be.mse(&p, &t).unwrap();
        close(be, &loss, &[ops::mse_forward(&f64s(&pv), &f64s(&tv))], &[1], &format!("mse loss n={n}"));
        let mut g = vec![0.0f64; n];
        ops::mse_backward(&f64s(&pv), &f64s(&tv), 1.0, &mut g);
        close(be, &grad, &g, &[n], "mse grad");
        let want: Vec<f64> = pv.iter().zip(&tv).map(|(&a, &b)| 0.5 * a as f64 - 2.0 * b as f64).collect();
        close(be, &be.axpby(0.5, &p, -2.0, &t).unwrap(), &want, &[n], "axpby");
    }
    // Several tensors, one empty, one large enough for three reduction levels.
    let sizes = [3usize, 0, 128 * 128 * 2 + 5, 1000];
    let host: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(i, &n)| values(n, 30 + i as u64, 1.0)).collect();
    let ts: Vec<WgpuTensor> = host.iter().map(|v| up(be, v, &[v.len()])).collect();
    let got = be.sum_squares(&ts.iter().collect::<Vec<_>>()).unwrap();
    let want: f64 = host.iter().flatten().map(|&v| (v as f64).powi(2)).sum();
    assert!(((got - want) / want).abs() < TOL, "sum_squares {got} vs {want}");
    assert_eq!(be.sum_squares(&[]).unwrap(), 0.0);
    // More threads than one row of the dispatch grid holds (65535 workgroups of 64).
    let n = 65535 * 64 + 1000;
    let (xv, yv) = (values(n, 40, 1.0), values(n, 41, 1.0));
    let out = be.axpby(2.0, &up(be, &xv, &[n]), 1.0, &up(be, &yv, &[n])).unwrap();
    let got = be.download(&out).unwrap();
    assert!(got.iter().zip(xv.iter().zip(&yv)).all(|(&g, (&x, &y))| g == 2.0 * x + y), "axpby on a 2-D grid");
}

#[test]
fn adamw_matches_reference_over_steps() {
    let be = gpu_or_skip!();
    let n = 300;
    let opt = AdamW { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
    let mut p64 = f64s(&values(n, 42, 1.0));
    let (mut m64, mut v64) = (vec![0.0f64; n], vec![0.0f64; n]);
    let pv: Vec<f32> = p64.iter().map(|&v| v as f32).collect();
    let (mut p, mut m, mut v) = (up(be, &pv, &[n]), be.zeros(&[n]).unwrap(), be.zeros(&[n]).unwrap());
    for step in 1..=5u64 {
        let gv = values(n, 50 + step, 1.0);
        let g = up(be, &gv, &[n]);
        ops::adamw_step(&opt, step, 0.7, &mut p64, &f64s(&gv), &mut m64, &mut v64);
        be.adamw(&opt, step, 0.7, &mut p, &g, &mut m, &mut v).unwrap();
    }
    close(be, &p, &p64, &[n], "adamw p");
    close(be, &m, &m64, &[n], "adamw m");
    close(be, &v, &v64, &[n], "adamw v");
}

#[test]
fn gather_and_scatter_add_rows() {
    let be = gpu_or_skip!();
    let (vocab, e) = (7, 5);
    let tv = values(vocab * e, 60, 1.0);
    let table = up(be, &tv, &[vocab, e]);
    let idx = [3u32, 0, 3, 6, 1, 3];
    let got = be.gather_rows(&table, &idx).unwrap();
    let want: Vec<f64> = idx.iter().flat_map(|&i| tv[i as usize * e..(i as usize + 1) * e].iter().map(|&v| v as f64)).collect();
    close(be, &got, &want, &[idx.len(), e], "gather_rows");
    let dyv = values(idx.len() * e, 61, 1.0);
    let dy = up(be, &dyv, &[idx.len(), e]);
    let mut want = vec![0.0f64; vocab * e];
    for (r, &i) in idx.iter().enumerate() {
        for c in 0..e {
            want[i as usize * e + c] += dyv[r * e + c] as f64;
        }
    }
    close(be, &be.scatter_add_rows(&dy, &idx, vocab).unwrap(), &want, &[vocab, e], "scatter_add_rows");
    assert!(matches!(be.gather_rows(&table, &[7]), Err(BackendError::Shape(_))));
    assert!(matches!(be.scatter_add_rows(&dy, &idx, 3), Err(BackendError::Shape(_))));
    let empty = be.gather_rows(&table, &[]).unwrap();
    assert_eq!(be.shape(&empty), [0, e]);
}

// ---- through the model -----------------------------------------------------------------

fn golden_dir() -> PathBuf {
    match std::env::var_os("MVDIT_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden"),
    }
}

fn golden_case(be: &Wgpu, name: &str, keep: Keep) {
    let dir = golden_dir();
    let model_path = dir.join(format!("{name}.model.safetensors"));
    assert!(model_path.exists(), "golden file {} not found (set MVDIT_GOLDEN_DIR)", model_path.display());
    let ck = mvdit_model::load_checkpoint(&model_path, None).unwrap_or_else(|e| panic!("{e}"));
    let case = TensorFile::read(&dir.join(format!("{name}.case.safetensors"))).unwrap_or_else(|e| panic!("{e}"));
    let model = Dit::from_host(be, ck.cfg.clone(), ck.params.clone()).unwrap();
    let get = |k: &str| &case.tensors[k];
    let t = |k: &str| be.upload(&get(k).data, &get(k).shape).unwrap();
    let (x, ctx, tgt) = (t("input.x"), t("input.context"), t("input.target"));
    let (v, tape) = model.forward(be, &x, ctx, keep).unwrap();
    let e = rel_err(&be.download(&v).unwrap(), &f64s(&get("output.velocity").data));
    assert!(e < GOLDEN_TOL, "{name}: velocity rel err {e:e}");
    let (loss, dv) = be.mse(&v, &tgt).unwrap();
    let e = rel_err(&be.download(&loss).unwrap(), &f64s(&get("output.loss").data));
    assert!(e < GOLDEN_TOL, "{name}: loss rel err {e:e}");
    let grads = model.backward(be, tape.unwrap(), &dv).unwrap();
    let mut worst = (0.0f64, String::new());
    for (spec, g) in model.layout.specs.iter().zip(&grads.params) {
        assert_eq!(be.shape(g), compute_shape(&spec.shape).as_slice(), "{name}: grad shape of {}", spec.name);
        let e = rel_err(&be.download(g).unwrap(), &f64s(&get(&format!("grad.{}", spec.name)).data));
        assert!(e < GOLDEN_TOL, "{name}: grad.{} rel err {e:e}", spec.name);
        if e > worst.0 {
            worst = (e, spec.name.clone());
        }
    }
    let grad_count = case.tensors.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(grad_count, model.layout.specs.len(), "{name}: every reference gradient is checked");
    eprintln!("{name} ({keep:?}) on {}: worst grad rel err {:.2e} at {}", be.name(), worst.0, worst.1);
}

#[test]
fn golden_g1_ctxproj() {
    let be = gpu_or_skip!();
    golden_case(be, "g1-ctxproj", Keep::All);
    golden_case(be, "g1-ctxproj", Keep::BlockInputs);
}

#[test]
fn golden_g2_bias_nonsquare() {
    golden_case(gpu_or_skip!(), "g2-bias-nonsquare", Keep::All);
}

#[test]
fn golden_g3_patch1() {
    golden_case(gpu_or_skip!(), "g3-patch1", Keep::All);
}

#[test]
fn golden_g4_deep24() {
    golden_case(gpu_or_skip!(), "g4-deep24", Keep::BlockInputs);
}

/// The same random model, input and loss on the CPU backend and on wgpu.
#[test]
fn forward_backward_match_cpu_backend() {
    let be = gpu_or_skip!();
    let cpu = Cpu::new(1);
    let cfg = ModelConfig {
        in_channels: 2,
        patch_size: 2,
        hidden_size: 24,
        depth: 2,
        num_heads: 2,
        mlp_hidden_dim: 40,
        qkv_bias: true,
        context_dim: 20,
        rope_base: 10000.0,
        residual: Default::default(),
    };
    let layout = Layout::new(&cfg);
    let params: Vec<Vec<f32>> = layout
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.name.ends_with(".alpha") {
                values(s.numel(), 100 + i as u64, 0.1)
            } else if s.name.ends_with(".beta") {
                values(s.numel(), 100 + i as u64, 0.2).iter().map(|v| 0.5 + v).collect()
            } else {
                let fan_in: usize = s.shape[1..].iter().product::<usize>().max(1);
                values(s.numel(), 100 + i as u64, 1.0 / (fan_in as f32).sqrt())
            }
        })
        .collect();
    let (b, h, w, lt) = (2, 8, 6, 3);
    let xv = values(b * 2 * h * w, 200, 1.0);
    let cv = values(b * lt * 20, 201, 1.0);
    let tv = values(b * 2 * h * w, 202, 1.0);

    fn run<B: Backend>(be: &B, cfg: &ModelConfig, params: Vec<Vec<f32>>, x: &[f32], c: &[f32], t: &[f32], shapes: ([usize; 4], [usize; 3])) -> (Vec<f32>, f32, Vec<Vec<f32>>, Vec<f32>) {
        let model = Dit::from_host(be, cfg.clone(), params).unwrap();
        let x = be.upload(x, &shapes.0).unwrap();
        let ctx = be.upload(c, &shapes.1).unwrap();
        let tgt = be.upload(t, &shapes.0).unwrap();
        let (v, tape) = model.forward(be, &x, ctx, Keep::All).unwrap();
        let (loss, dv) = be.mse(&v, &tgt).unwrap();
        let g = model.backward(be, tape.unwrap(), &dv).unwrap();
        let grads = g.params.iter().map(|t| be.download(t).unwrap()).collect();
        (be.download(&v).unwrap(), be.download(&loss).unwrap()[0], grads, be.download(&g.context).unwrap())
    }
    let shapes = ([b, 2, h, w], [b, lt, 20]);
    let (cv_, cl, cg, cc) = run(&cpu, &cfg, params.clone(), &xv, &cv, &tv, shapes);
    let (gv_, gl, gg, gc) = run(be, &cfg, params, &xv, &cv, &tv, shapes);
    assert!(rel_err(&gv_, &f64s(&cv_)) < TOL, "velocity: {:e}", rel_err(&gv_, &f64s(&cv_)));
    assert!(((gl - cl) / cl).abs() < TOL as f32, "loss {gl} vs {cl}");
    for ((spec, g), c) in layout.specs.iter().zip(&gg).zip(&cg) {
        let e = rel_err(g, &f64s(c));
        assert!(e < TOL, "grad {}: rel err {e:e}", spec.name);
    }
    assert!(rel_err(&gc, &f64s(&cc)) < TOL, "d context");
    assert_eq!(compute_shape(&layout.specs[0].shape).len(), 2);
}

/// `t1-train10` through the wgpu backend: 10 AdamW steps with global-norm clipping and decay
/// groups (the trainer's loop, written out here), against PyTorch float64.
#[test]
fn replays_t1_train10() {
    let be = gpu_or_skip!();
    let dir = golden_dir();
    let ck = mvdit_model::load_checkpoint(&dir.join("t1-train10.model.safetensors"), None).unwrap_or_else(|e| panic!("{e}"));
    let data = TensorFile::read(&dir.join("t1-train10.train.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    let train: serde_json::Value = serde_json::from_str(&data.metadata["train"]).unwrap();
    let num = |k: &str| train[k].as_f64().unwrap_or_else(|| panic!("train.{k}"));
    let mut model = Dit::from_host(be, ck.cfg.clone(), ck.params).unwrap();
    let shapes: Vec<Vec<usize>> = model.layout.specs.iter().map(|s| compute_shape(&s.shape)).collect();
    let mut m: Vec<WgpuTensor> = shapes.iter().map(|s| be.zeros(s).unwrap()).collect();
    let mut v: Vec<WgpuTensor> = shapes.iter().map(|s| be.zeros(s).unwrap()).collect();
    let x0 = &data.tensors["input.x0"];
    let ctx = &data.tensors["input.context"];
    let per = x0.data.len() / x0.shape[0];
    let (mut losses, mut norms) = (vec![], vec![]);
    for k in 0..10u64 {
        let t = &data.tensors[&format!("step.{k}.t")].data;
        let eps = &data.tensors[&format!("step.{k}.eps")].data;
        let xt: Vec<f32> = x0.data.iter().zip(eps).enumerate().map(|(i, (&a, &e))| (1.0 - t[i / per]) * a + t[i / per] * e).collect();
        let target: Vec<f32> = x0.data.iter().zip(eps).map(|(&a, &e)| a - e).collect();
        let (xt, target) = (up(be, &xt, &x0.shape), up(be, &target, &x0.shape));
        let (vel, tape) = model.forward(be, &xt, up(be, &ctx.data, &ctx.shape), Keep::All).unwrap();
        let (loss, dv) = be.mse(&vel, &target).unwrap();
        losses.push(be.download(&loss).unwrap()[0]);
        let grads = model.backward(be, tape.unwrap(), &dv).unwrap();
        let norm = be.sum_squares(&grads.params.iter().collect::<Vec<_>>()).unwrap().sqrt();
        norms.push(norm as f32);
        let scale = ops::clip_scale(norm, num("max_grad_norm"));
        for (i, p) in model.params.iter_mut().enumerate() {
            let betas = &train["betas"];
            let opt = AdamW {
                lr: num("lr"),
                beta1: betas[0].as_f64().unwrap(),
                beta2: betas[1].as_f64().unwrap(),
                eps: num("eps"),
                weight_decay: if model.layout.specs[i].decays() { num("weight_decay") } else { 0.0 },
            };
            be.adamw(&opt, k + 1, scale, p, &grads.params[i], &mut m[i], &mut v[i]).unwrap();
        }
    }
    let e = rel_err(&losses, &f64s(&data.tensors["output.losses"].data));
    assert!(e < GOLDEN_TOL, "losses rel err {e:e}: {losses:?}");
    let e = rel_err(&norms, &f64s(&data.tensors["output.grad_norms"].data));
    assert!(e < GOLDEN_TOL, "grad norms rel err {e:e}: {norms:?}");
    let mut worst = 0.0f64;
    for (spec, p) in model.layout.specs.iter().zip(&model.params) {
        let e = rel_err(&be.download(p).unwrap(), &f64s(&data.tensors[&format!("final.{}", spec.name)].data));
        assert!(e < GOLDEN_TOL, "final.{} rel err {e:e}", spec.name);
        worst = worst.max(e);
    }
    eprintln!("t1-train10 on {}: worst final-parameter rel err {worst:.2e}", be.name());
}

/// An application's own device, handed to the backend.
#[test]
fn runs_on_an_application_device() {
    if gpu().is_none() {
        return;
    }
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let be = Wgpu::from_device(device, queue).unwrap();
    let x = be.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let w = be.upload(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap();
    let y = be.linear(&x, &w, None).unwrap();
    assert_eq!(be.download(&y).unwrap(), [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
    assert!(be.name().contains("wgpu"));
}
