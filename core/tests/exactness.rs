//! The paper's exact statements, checked in f64 on the reference ops, and the diagnostics math
//! (`mvdit_core::mms`) on cases with known answers:
//! - Σ_t δ_t y_tᵀ = T·δ̄ȳᵀ + Σ_t δ̃_t ỹ_tᵀ (the writer-gradient decomposition);
//! - attention (RoPE, QK-norm, softmax) keeps a pure token-mean input a pure mean;
//! - the attention-logit gradient (hence dQ, dK) vanishes when all value rows are equal;
//! - under the segment projectors J, the MV-Split sum Z has J Z = (1 − α) J X + α J F and
//!   (I − J) Z = (I − J) X + β (I − J) F.

mod common;

use common::{assert_close, norm, Rng};
use mvdit_core::mms;
use mvdit_core::ops::{
    attention_backward, attention_forward, linear_backward, linear_forward, mvsplit_sum, rmsnorm_forward, rope_apply,
    rope_tables, segment_mean, QK_NORM_EPS,
};

#[test]
fn writer_gradient_is_mean_plus_centered_part() {
    let (b, t, din, dout) = (3, 7, 5, 4);
    let mut rng = Rng::new(21);
    let (y, delta) = (rng.f64s(b * t * din), rng.f64s(b * t * dout));
    let parts = mms::writer_gradient_parts(&y, &delta, b, t, din, dout);
    // The weight gradient of the writer y ↦ W y, from the linear op's own backward.
    let w = vec![0.0; dout * din];
    let mut dw = vec![0.0; dout * din];
    linear_backward(&y, &w, &delta, None, &mut dw, None, b * t, din, dout);
    assert_close("full = Σ δ yᵀ", &parts.full, &dw, 1e-12);
    let sum: Vec<f64> = parts.mean.iter().zip(&parts.ctr).map(|(a, c)| a + c).collect();
    assert_close("Σ δ yᵀ = T δ̄ȳᵀ + Σ δ̃ỹᵀ", &sum, &dw, 1e-12);
    assert!(norm(&parts.mean) > 0.1 && norm(&parts.ctr) > 0.1, "both parts non-trivial");

    // Identical tokens have no centered part; zero-mean gradients have no mean part.
    let same: Vec<f64> = (0..b * t).flat_map(|r| y[(r / t) * t * din..][..din].to_vec()).collect();
    let p = mms::writer_gradient_parts(&same, &delta, b, t, din, dout);
    assert!(norm(&p.ctr) < 1e-12 && norm(&p.mean) > 0.1);
    let mut centered = delta.clone();
    for bi in 0..b {
        for o in 0..dout {
            let m: f64 = (0..t).map(|ti| delta[(bi * t + ti) * dout + o]).sum::<f64>() / t as f64;
            (0..t).for_each(|ti| centered[(bi * t + ti) * dout + o] -= m);
        }
    }
    let (gm, gc) = mms::writer_gradient_norms(&y, &centered, b, t, din, dout);
    assert!(gm < 1e-12 && gc > 0.1, "G_mean {gm}, G_ctr {gc}");
}

/// q/k path of one attention layer: x W → RoPE on the image tokens → per-head RMSNorm.
fn rope_qknorm(x: &[f64], w: &[f64], cos: &[f64], sin: &[f64], dims: (usize, usize, usize, usize, usize)) -> Vec<f64> {
    let (b, l, li, nh, dh) = dims;
    let d = nh * dh;
    let mut q = vec![0.0; b * l * d];
    linear_forward(x, w, None, &mut q, b * l, d, d);
    rope_apply(&mut q, cos, sin, b, l, li, nh, dh, false);
    let (mut y, mut r) = (vec![0.0; q.len()], vec![0.0; b * l * nh]);
    rmsnorm_forward(&q, None, QK_NORM_EPS, &mut y, &mut r, dh);
    y
}

#[test]
fn attention_keeps_a_pure_token_mean_input_a_pure_mean() {
    let (b, gh, gw, lt, nh, dh) = (2, 3, 2, 1, 2, 8);
    let (li, d) = (gh * gw, nh * dh);
    let l = li + lt;
    let mut rng = Rng::new(22);
    // Every token of a sample equal: X = 1 x̄ᵀ.
    let xbar = rng.f64s(b * d);
    let x: Vec<f64> = (0..b * l).flat_map(|r| xbar[(r / l) * d..][..d].to_vec()).collect();
    let (wq, wk, wv) = (rng.f64s(d * d), rng.f64s(d * d), rng.f64s(d * d));
    let (cos, sin) = rope_tables::<f64>(dh, gh, gw, 10000.0);
    let q = rope_qknorm(&x, &wq, &cos, &sin, (b, l, li, nh, dh));
    let k = rope_qknorm(&x, &wk, &cos, &sin, (b, l, li, nh, dh));
    let mut v = vec![0.0; x.len()];
    linear_forward(&x, &wv, None, &mut v, b * l, d, d);
    // RoPE makes queries and keys differ by position, so the attention map is not uniform ...
    let (_, cq) = mms::mean_centered_energy(&q, b, l, d);
    assert!(cq > 0.1, "rotated queries differ across tokens ({cq})");
    let (mut o, mut lse) = (vec![0.0; x.len()], vec![0.0; b * nh * l]);
    attention_forward(&q, &k, &v, &mut o, &mut lse, b, l, nh, dh);
    // ... but the output is still a pure token mean: every row equals the common value row.
    let (em, ev) = mms::mean_centered_energy(&o, b, l, d);
    assert!(ev < 1e-12 * em, "centered energy {ev} of mean {em}");
    assert_close("o = v", &o, &v, 1e-12);
}

#[test]
fn attention_logit_gradient_vanishes_when_all_value_rows_are_equal() {
    let (b, l, nh, dh) = (2, 6, 2, 4);
    let d = nh * dh;
    let mut rng = Rng::new(23);
    let (q, k, d_o) = (rng.f64s(b * l * d), rng.f64s(b * l * d), rng.f64s(b * l * d));
    let vrow = rng.f64s(b * d);
    let v_equal: Vec<f64> = (0..b * l).flat_map(|r| vrow[(r / l) * d..][..d].to_vec()).collect();
    let v_random = rng.f64s(b * l * d);
    let grads = |v: &[f64]| {
        let (mut o, mut lse) = (vec![0.0; v.len()], vec![0.0; b * nh * l]);
        attention_forward(&q, &k, v, &mut o, &mut lse, b, l, nh, dh);
        let (mut dq, mut dk, mut dv) = (vec![0.0; v.len()], vec![0.0; v.len()], vec![0.0; v.len()]);
        attention_backward(&q, &k, v, &o, &lse, &d_o, &mut dq, &mut dk, &mut dv, b, l, nh, dh);
        (dq, dk, dv)
    };
    let (dq, dk, dv) = grads(&v_equal);
    assert!(norm(&dq) < 1e-13 && norm(&dk) < 1e-13, "dq {} dk {}", norm(&dq), norm(&dk));
    assert!(norm(&dv) > 0.1, "values still get a gradient");
    let (dq, dk, _) = grads(&v_random);
    assert!(norm(&dq) > 1e-2 && norm(&dk) > 1e-2, "with distinct values the logits do get a gradient");
}

#[test]
fn mvsplit_sum_under_segment_projectors() {
    let (b, l, d) = (2, 7, 3);
    let mut rng = Rng::new(24);
    let n = b * l * d;
    let (x, f) = (rng.f64s(n), rng.f64s(n));
    let (alpha, beta) = (vec![0.3, -0.7, 0.05], vec![1.2, 0.4, -0.6]);
    for li in [4, 0] {
        let z = mvsplit_sum(&x, &f, &alpha, &beta, b, l, d, li);
        let j = |t: &[f64]| segment_mean(t, b, l, d, li);
        let (jz, jx, jf) = (j(&z), j(&x), j(&f));
        let want: Vec<f64> = (0..n).map(|i| (1.0 - alpha[i % d]) * jx[i] + alpha[i % d] * jf[i]).collect();
        assert_close("J Z = (1 − α) J X + α J F", &jz, &want, 1e-12);
        let want_c: Vec<f64> = (0..n).map(|i| (x[i] - jx[i]) + beta[i % d] * (f[i] - jf[i])).collect();
        let zc: Vec<f64> = (0..n).map(|i| z[i] - jz[i]).collect();
        assert_close("(I − J) Z = (I − J) X + β (I − J) F", &zc, &want_c, 1e-12);
        // J is a projector: J J = J.
        assert_close("J J = J", &j(&jz), &jz, 1e-12);
    }
}

#[test]
fn token_cosine_similarity_and_energy_ratio_limits() {
    let (t, d) = (5, 3);
    let mut rng = Rng::new(25);
    let row = rng.f64s(d);
    let same: Vec<f64> = (0..t).flat_map(|_| row.clone()).collect();
    assert!((mms::token_cosine_similarity(&same, 1, t, d) - 1.0).abs() < 1e-12);
    assert!(mms::energy_ratio(&same, 1, t, d) > 1e6);
    // Centered tokens of equal norm, symmetric: the anti-aligned limit −1/(T − 1).
    let tokens: Vec<f64> = (0..t)
        .flat_map(|i| {
            let a = std::f64::consts::TAU * i as f64 / t as f64;
            vec![a.cos(), a.sin(), 0.0]
        })
        .collect();
    assert!((mms::token_cosine_similarity(&tokens, 1, t, d) + 1.0 / (t as f64 - 1.0)).abs() < 1e-12);
    assert!(mms::energy_ratio(&tokens, 1, t, d) < 1e-12);
    // Energies: ‖1ȳᵀ‖ = √T‖ȳ‖.
    let shifted: Vec<f64> = tokens.iter().enumerate().map(|(i, v)| v + [2.0, 0.0, 0.0][i % d]).collect();
    let (em, ev) = mms::mean_centered_energy(&shifted, 1, t, d);
    assert!((em - 2.0 * (t as f64).sqrt()).abs() < 1e-12 && (ev - (t as f64).sqrt()).abs() < 1e-12);
}

#[test]
fn writer_amplification_is_bounded_by_its_coherence_envelope() {
    let (t, din, dout) = (6, 4, 3);
    let mut rng = Rng::new(26);
    // Unit-norm tokens: A − 1 ≤ (T − 1)κ holds exactly.
    let unit = |v: Vec<f64>, n: usize| -> Vec<f64> {
        v.chunks(n).flat_map(|r| {
            let s = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            r.iter().map(move |x| x / s).collect::<Vec<_>>()
        }).collect()
    };
    let (y, delta) = (unit(rng.f64s(t * din), din), unit(rng.f64s(t * dout), dout));
    let (a, coh) = mms::writer_amplification(&y, &delta, t, din, dout);
    assert!(a - 1.0 <= coh + 1e-12, "A − 1 = {} > (T − 1)κ = {coh}", a - 1.0);
    // Identical tokens and gradients: A = T, (T − 1)κ = T − 1.
    let y1: Vec<f64> = (0..t).flat_map(|_| y[..din].to_vec()).collect();
    let d1: Vec<f64> = (0..t).flat_map(|_| delta[..dout].to_vec()).collect();
    let (a, coh) = mms::writer_amplification(&y1, &d1, t, din, dout);
    assert!((a - t as f64).abs() < 1e-9 && (coh - (t as f64 - 1.0)).abs() < 1e-9, "A {a}, coh {coh}");
}

#[test]
fn centered_contraction_of_known_attention_maps() {
    let l = 5;
    let uniform = vec![1.0 / l as f64; l * l];
    assert!(mms::centered_contraction(&uniform, l) < 1e-12, "uniform attention erases centered signals");
    let eye: Vec<f64> = (0..l * l).map(|i| if i / l == i % l { 1.0 } else { 0.0 }).collect();
    assert!((mms::centered_contraction(&eye, l) - 1.0).abs() < 1e-9);
    // Half identity, half uniform: centered signals shrink by exactly 1/2.
    let mix: Vec<f64> = eye.iter().zip(&uniform).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
    assert!((mms::centered_contraction(&mix, l) - 0.5).abs() < 1e-9);
    // From q, k: identical keys give a uniform map.
    let (q, k) = (vec![0.3; l * 4], vec![0.7; l * 4]);
    let p = mms::attention_probs(&q, &k, 1, l, 1, 4);
    assert!(mms::mean_centered_contraction(&p, 1, 1, l) < 1e-9);
}
