//! The step rules of the samplers as plain numbers: each step's new x is a linear combination of
//! the current x and the model's data predictions D = x + t·v (the velocity v = x0 − ε of
//! rectified flow, x_t = (1−t)·x0 + t·ε), so a backend applies it with `axpby`.
//!
//! In the coordinates of DPM-Solver (α_t = 1 − t, σ_t = t, λ = ln(α/σ)), the flow's ODE is
//! d(x/σ)/dλ = e^λ·D, and a step from t to t' with h = λ' − λ is exactly
//! x' = (σ'/σ)·x + σ'·∫ e^λ D(λ) dλ. Euler is the first-order rule (D constant); DPM-Solver++ 2M
//! (Lu et al. 2022, their multistep second order) and 3M extrapolate D through the previous
//! steps' predictions. 3M integrates the quadratic through the last three predictions exactly:
//! its D″ term weighs −2·φ₃ where DPM-Solver's reference code (and k-diffusion's `dpmpp_3m_sde`)
//! weigh −φ₃, half the integral (the test below checks exactness on a quadratic D). A step that ends at t' = 0 returns D itself (x0), and a step whose history reaches
//! back to t = 1 (λ = −∞) uses the first-order rule, as every implementation of these solvers does.
//! Adams–Bashforth (2 and 3) extrapolates the velocity itself, polynomially in t.

/// λ = ln((1 − t)/t): the log signal-to-noise ratio of rectified flow at t (−∞ at t = 1).
pub fn lambda(t: f64) -> f64 {
    ((1.0 - t) / t).ln()
}

/// x' = `x`·x + Σ `d[k]`·D_k, where D_0 is this step's prediction, D_1 the previous step's, D_2
/// the one before.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Combination {
    pub x: f64,
    pub d: [f64; 3],
}

/// The DPM-Solver++ step of `order` (1, 2 or 3) from `t` to `t_next` (< t), given the step sizes
/// in λ of the previous steps, newest first (`h_prev[0]` = the last step's h): fewer or
/// non-finite ones lower the order.
pub fn dpm_step(order: usize, t: f64, t_next: f64, h_prev: &[f64]) -> Combination {
    if t_next <= 0.0 {
        return Combination { x: 0.0, d: [1.0, 0.0, 0.0] };
    }
    let a = t_next / t;
    let alpha = 1.0 - t_next;
    // t = 1: λ = −∞, so e^−h = 0 and the step is x' = t'·x + (1 − t')·D.
    let h = lambda(t_next) - lambda(t);
    let one_minus = if h.is_finite() { -(-h).exp_m1() } else { 1.0 };
    let first = one_minus * alpha;
    let usable = h_prev.iter().take(order.saturating_sub(1)).take_while(|p| p.is_finite() && **p > 0.0).count();
    if usable == 0 || !h.is_finite() {
        return Combination { x: a, d: [first, 0.0, 0.0] };
    }
    if order == 2 {
        // The paper's 2M: D = (1 + 1/(2r))·D_0 − 1/(2r)·D_1, r = h_prev/h.
        let r = h_prev[0] / h;
        return Combination { x: a, d: [first * (1.0 + 0.5 / r), -first * 0.5 / r, 0.0] };
    }
    // 3M: the exact integrals of e^λ times a polynomial through the predictions.
    let phi2 = (-h).exp_m1() / h + 1.0;
    let r0 = h_prev[0] / h;
    let d1_0 = [1.0 / r0, -1.0 / r0, 0.0];
    if usable == 1 {
        return Combination { x: a, d: [first + alpha * phi2 * d1_0[0], alpha * phi2 * d1_0[1], 0.0] };
    }
    let phi3 = phi2 / h - 0.5;
    let r1 = h_prev[1] / h;
    let d1_1 = [0.0, 1.0 / r1, -1.0 / r1];
    let mut d = [first, 0.0, 0.0];
    for k in 0..3 {
        // d1 ≈ h·D′ and d2 ≈ h²·D″/2 at λ; ∫₀ʰ e^(s−h)·s²/2 ds·D″ = −2·φ₃·d2.
        let d1 = d1_0[k] + (d1_0[k] - d1_1[k]) * r0 / (r0 + r1);
        let d2 = (d1_0[k] - d1_1[k]) / (r0 + r1);
        d[k] += alpha * (phi2 * d1 - 2.0 * phi3 * d2);
    }
    Combination { x: a, d }
}

/// The Adams–Bashforth step from `t` to `t_next` through the velocities at times `ts` (newest
/// first, this step's own first): the weights w_i of x' = x + Σ w_i·v_i, each the integral over
/// [t_next, t] of the Lagrange polynomial through `ts` that is 1 at ts[i] (exact for a velocity
/// polynomial in t of degree < ts.len(); any spacing of the grid).
pub fn adams_bashforth(t: f64, t_next: f64, ts: &[f64]) -> Vec<f64> {
    // 3-point Gauss–Legendre: exact for the polynomials of degree ≤ 5 integrated here.
    let (mid, half) = ((t + t_next) / 2.0, (t - t_next) / 2.0);
    let nodes = [(-(0.6f64).sqrt(), 5.0 / 9.0), (0.0, 8.0 / 9.0), ((0.6f64).sqrt(), 5.0 / 9.0)];
    (0..ts.len())
        .map(|i| {
            let basis = |tau: f64| ts.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, &tj)| (tau - tj) / (ts[i] - tj)).product::<f64>();
            nodes.iter().map(|&(u, w)| w * half * basis(mid + half * u)).sum()
        })
        .collect()
}

/// One Euler–Maruyama step of the reverse SDE of the flow with SiT's diffusion w(t) = σ_t = t
/// (Ma et al. 2024, `diffusion_form = "sigma"`), from t to t − Δ:
/// x' = x + Δ·v − (Δ/2)·ε̂ + √(t·Δ)·z with ε̂ = x − (1 − t)·v. Returns the coefficients of x and v
/// and the noise's scale: x' = `.0`·x + `.1`·v + `.2`·z.
pub fn sde_step(t: f64, t_next: f64) -> (f64, f64, f64) {
    let dt = t - t_next;
    (1.0 - 0.5 * dt, dt + 0.5 * dt * (1.0 - t), (t * dt).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x' of a combination applied to scalars.
    fn apply(c: Combination, x: f64, d: [f64; 3]) -> f64 {
        c.x * x + c.d.iter().zip(d).map(|(a, b)| a * b).sum::<f64>()
    }

    #[test]
    fn first_order_is_euler_and_the_last_step_is_the_prediction() {
        for (t, tn) in [(1.0, 0.8), (0.7, 0.4), (0.3, 0.05)] {
            let (x, v) = (0.37, -1.3);
            let d = x + t * v;
            let got = apply(dpm_step(1, t, tn, &[]), x, [d, 0.0, 0.0]);
            assert!((got - (x + (t - tn) * v)).abs() < 1e-12, "t {t}");
        }
        assert_eq!(dpm_step(3, 0.2, 0.0, &[0.5, 0.5]), Combination { x: 0.0, d: [1.0, 0.0, 0.0] });
    }

    #[test]
    fn a_history_through_t_equal_one_lowers_the_order() {
        let h0 = lambda(0.8) - lambda(1.0);
        assert!(h0.is_infinite());
        assert_eq!(dpm_step(2, 0.8, 0.5, &[h0]), dpm_step(1, 0.8, 0.5, &[]));
        let h1 = lambda(0.5) - lambda(0.8);
        assert_eq!(dpm_step(3, 0.5, 0.3, &[h1, h0]), dpm_step(3, 0.5, 0.3, &[h1]));
    }

    #[test]
    fn multistep_rules_are_exact_for_a_prediction_linear_and_quadratic_in_lambda() {
        // D(λ) = c + b·λ (+ q·λ²): integrate x' = (σ'/σ)x + σ'∫e^λ D dλ in closed form by
        // quadrature and compare with the rules fed D at the grid points.
        let ts = [0.9, 0.75, 0.6, 0.45];
        let (c, b, q) = (0.3, -0.7, 0.2);
        for (order, quad) in [(3, q), (2, 0.0)] {
            let dd = |t: f64| c + b * lambda(t) + quad * lambda(t).powi(2);
            let (t, tn) = (ts[2], ts[3]);
            let h_prev = [lambda(ts[2]) - lambda(ts[1]), lambda(ts[1]) - lambda(ts[0])];
            let x = 0.5;
            let rule = apply(dpm_step(order, t, tn, &h_prev), x, [dd(ts[2]), dd(ts[1]), dd(ts[0])]);
            let (l0, l1, n) = (lambda(t), lambda(tn), 200_000);
            let integral: f64 = (0..n).map(|i| {
                let l = l0 + (i as f64 + 0.5) * (l1 - l0) / n as f64;
                l.exp() * (c + b * l + quad * l * l) * (l1 - l0) / n as f64
            }).sum();
            let exact = tn / t * x + tn * integral;
            let euler = apply(dpm_step(1, t, tn, &[]), x, [dd(ts[2]), 0.0, 0.0]);
            match order {
                3 => assert!((rule - exact).abs() < 1e-9, "3M: {rule} vs {exact}"),
                // The paper's 2M is exact only to O(h³) on a linear D: far closer than Euler.
                _ => assert!((rule - exact).abs() < 0.2 * (euler - exact).abs(), "2M: {rule} vs {exact} (Euler {euler})"),
            }
        }
    }

    #[test]
    fn adams_bashforth_integrates_polynomials_exactly_on_any_grid() {
        // v(τ) = 1 − 2τ + 3τ²: the 3-point rule through 0.9, 0.7, 0.45 integrates it over
        // [0.3, 0.45] exactly; the 1-point rule is Euler.
        let v = |t: f64| 1.0 - 2.0 * t + 3.0 * t * t;
        let ts = [0.45, 0.7, 0.9];
        let w = adams_bashforth(0.45, 0.3, &ts);
        let got: f64 = w.iter().zip(ts).map(|(w, t)| w * v(t)).sum();
        let exact = |t: f64| t - t * t + t * t * t;
        assert!((got - (exact(0.45) - exact(0.3))).abs() < 1e-13, "{got}");
        assert_eq!(adams_bashforth(0.45, 0.3, &[0.45]), vec![0.45 - 0.3]);
        let w2 = adams_bashforth(0.5, 0.25, &[0.5, 0.75]);
        assert!((w2[0] - 0.25 * 1.5).abs() < 1e-14 && (w2[1] + 0.25 * 0.5).abs() < 1e-14, "{w2:?}");
    }

    #[test]
    fn the_sde_step_is_the_euler_step_plus_the_score_term_and_noise() {
        let (t, tn, x, v) = (0.6, 0.5, 0.8, -0.4);
        let (cx, cv, cz) = sde_step(t, tn);
        let eps = x - (1.0 - t) * v;
        assert!((cx * x + cv * v - (x + 0.1 * v - 0.05 * eps)).abs() < 1e-12);
        assert!((cz - (0.06f64).sqrt()).abs() < 1e-12);
    }
}
