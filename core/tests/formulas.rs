//! Reference ops checked against formulas rather than finite differences: the patch
//! permutations against their index formulas (and their backwards as adjoints), AdamW against a
//! line-by-line transcription of torch.optim.AdamW, and clipping against clip_grad_norm_.

mod common;

use common::{dot, norm, rel_err, Rng};
use mvdit_core::ops::{adamw_step, clip_scale, patchify, patchify_backward, unpatchify, unpatchify_backward, AdamW};
use mvdit_core::Dims;

// ---------------------------------------------------------------- patchify / unpatchify

fn patch_dims(b: usize, c: usize, h: usize, w: usize, p: usize) -> Dims {
    let (gh, gw) = (h / p, w / p);
    // Only the image sizes matter to the patch ops; the rest is filler.
    Dims {
        b,
        c,
        h,
        w,
        p,
        gh,
        gw,
        li: gh * gw,
        lt: 0,
        l: gh * gw,
        d: 0,
        nh: 1,
        dh: 0,
        m: 0,
        dc: 0,
    }
}

/// Non-square grid, several channels, and the p = 1 case of the golden set.
const PATCH_CASES: [(usize, usize, usize, usize, usize); 3] = [(2, 3, 4, 6, 2), (1, 2, 6, 3, 3), (2, 2, 3, 2, 1)];

#[test]
fn patchify_and_unpatchify_match_index_formula() {
    for &(b, c, h, w, p) in &PATCH_CASES {
        let d = patch_dims(b, c, h, w, p);
        let (li, f) = (d.li, c * p * p);
        let x: Vec<f64> = (0..b * c * h * w).map(|i| i as f64).collect();
        let mut rows = vec![f64::NAN; b * li * f];
        patchify(&d, &x, &mut rows);
        let mut img = vec![f64::NAN; x.len()];
        unpatchify(&d, &x, &mut img); // x reused as rows: same element count

        // Walk the image in its own order and place each pixel by hand.
        for bi in 0..b {
            for ch in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        let (gy, py, gx, px) = (y / p, y % p, xx / p, xx % p);
                        let pix = ((bi * c + ch) * h + y) * w + xx;
                        let tok = bi * li + gy * d.gw + gx;
                        assert_eq!(
                            rows[tok * f + (ch * p + py) * p + px],
                            x[pix],
                            "patchify {b}x{c}x{h}x{w} p{p}"
                        );
                        assert_eq!(
                            img[pix],
                            x[tok * f + (py * p + px) * c + ch],
                            "unpatchify {b}x{c}x{h}x{w} p{p}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn patch_backwards_are_adjoint_permutations() {
    for (ci, &(b, c, h, w, p)) in PATCH_CASES.iter().enumerate() {
        let d = patch_dims(b, c, h, w, p);
        let n = b * c * h * w;
        let mut rng = Rng::new(17 + ci as u64);
        let (x, r) = (rng.f64s(n), rng.f64s(n));

        // ⟨patchify(x), r⟩ = ⟨x, patchify_backward(r)⟩
        let (mut px, mut pr) = (vec![0.0; n], vec![0.0; n]);
        patchify(&d, &x, &mut px);
        patchify_backward(&d, &r, &mut pr);
        assert!((dot(&px, &r) - dot(&x, &pr)).abs() < 1e-12, "patchify J-consistency");

        // ⟨unpatchify(x), r⟩ = ⟨x, unpatchify_backward(r)⟩
        let (mut ux, mut ur) = (vec![0.0; n], vec![0.0; n]);
        unpatchify(&d, &x, &mut ux);
        unpatchify_backward(&d, &r, &mut ur);
        assert!((dot(&ux, &r) - dot(&x, &ur)).abs() < 1e-12, "unpatchify J-consistency");

        // Permutations: each backward is the exact inverse.
        let mut back = vec![0.0; n];
        patchify_backward(&d, &px, &mut back);
        assert_eq!(back, x);
        unpatchify_backward(&d, &ux, &mut back);
        assert_eq!(back, x);
    }
}

// ---------------------------------------------------------------- AdamW

/// Line-by-line transcription of torch.optim.AdamW's single-tensor step (foreach=False).
struct TorchAdamW {
    p: Vec<f64>,
    exp_avg: Vec<f64>,
    exp_avg_sq: Vec<f64>,
    step: u64,
}

impl TorchAdamW {
    #[allow(clippy::needless_range_loop)] // indexed like the torch loop it transcribes
    fn step(&mut self, opt: &AdamW, grad: &[f64]) {
        self.step += 1;
        let t = self.step as f64;
        for i in 0..self.p.len() {
            let g = grad[i];
            self.p[i] *= 1.0 - opt.lr * opt.weight_decay;
            // exp_avg.lerp_(grad, 1 - beta1)
            self.exp_avg[i] += (g - self.exp_avg[i]) * (1.0 - opt.beta1);
            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            self.exp_avg_sq[i] = self.exp_avg_sq[i] * opt.beta2 + (1.0 - opt.beta2) * g * g;
            let bc1 = 1.0 - opt.beta1.powf(t);
            let bc2 = 1.0 - opt.beta2.powf(t);
            let step_size = opt.lr / bc1;
            let denom = self.exp_avg_sq[i].sqrt() / bc2.sqrt() + opt.eps;
            self.p[i] -= step_size * self.exp_avg[i] / denom;
        }
    }
}

#[test]
fn adamw_step_matches_torch_adamw() {
    let n = 6;
    for &wd in &[0.1, 0.0] {
        let opt = AdamW {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: wd,
        };
        let mut rng = Rng::new(20);
        let p0 = rng.f64s(n);
        let (mut p, mut m, mut v) = (p0.clone(), vec![0.0; n], vec![0.0; n]);
        let mut torch = TorchAdamW {
            p: p0.clone(),
            exp_avg: vec![0.0; n],
            exp_avg_sq: vec![0.0; n],
            step: 0,
        };
        for step in 1..=5u64 {
            // A clipping factor as the trainer passes it: torch sees the already-scaled gradient.
            let g = rng.f64s(n);
            let scale = clip_scale(norm(&g), 0.7);
            let scaled: Vec<f64> = g.iter().map(|x| x * scale).collect();
            adamw_step(&opt, step, scale, &mut p, &g, &mut m, &mut v);
            torch.step(&opt, &scaled);
            assert!(
                rel_err(&p, &torch.p) < 1e-13,
                "wd={wd} step {step}: {p:?} vs {:?}",
                torch.p
            );
            assert!(rel_err(&m, &torch.exp_avg) < 1e-13 && rel_err(&v, &torch.exp_avg_sq) < 1e-13);
        }
        assert!(
            rel_err(&p, &p0) > 1e-2,
            "parameters barely moved; the test would be vacuous"
        );
    }
}

#[test]
fn clip_scale_matches_torch_clip_grad_norm() {
    // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1.
    assert_eq!(clip_scale(10.0, 1.0), 1.0 / (10.0 + 1e-6));
    assert_eq!(clip_scale(0.5, 1.0), 1.0);
    assert_eq!(clip_scale(0.0, 1.0), 1.0);
    // At exactly max_norm torch still scales by a hair.
    assert!(clip_scale(1.0, 1.0) < 1.0);
    let g = [3.0, -4.0, 12.0]; // norm 13
    let s = clip_scale(norm(&g), 1.0);
    let clipped: Vec<f64> = g.iter().map(|x| x * s).collect();
    assert!((norm(&clipped) - 1.0).abs() < 1e-6);
}
