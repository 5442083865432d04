//! Rectified flow: noising, the velocity target, the time shift and the training t distribution.

/// x_t = (1 − t)·x0 + t·ε per sample; target v = x0 − ε. x0, eps: [B, ..] flat; t: [B].
pub fn noised_and_target(x0: &[f32], eps: &[f32], t: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let per = x0.len() / t.len();
    let mut xt = Vec::with_capacity(x0.len());
    let mut target = Vec::with_capacity(x0.len());
    for (i, (&a, &e)) in x0.iter().zip(eps).enumerate() {
        let ti = t[i / per];
        xt.push((1.0 - ti) * a + ti * e);
        target.push(a - e);
    }
    (xt, target)
}

/// The sampler's time shift: t ↦ a·t / (1 + (a − 1)·t). a = 1 is the identity; a > 1 spends
/// more steps near the noise end.
pub fn shift_time(t: f64, a: f64) -> f64 {
    a * t / (1.0 + (a - 1.0) * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noising_interpolates_and_target_points_from_noise_to_data() {
        let (xt, v) = noised_and_target(&[1.0, 2.0, 3.0, 4.0], &[0.0, 0.0, 1.0, 1.0], &[0.25, 1.0]);
        assert_eq!(xt, vec![0.75, 1.5, 1.0, 1.0]);
        assert_eq!(v, vec![1.0, 2.0, 2.0, 3.0]);
    }

    #[test]
    fn time_shift_fixes_endpoints_and_pushes_toward_noise() {
        assert_eq!(shift_time(0.0, 4.0), 0.0);
        assert_eq!(shift_time(1.0, 4.0), 1.0);
        assert!((shift_time(0.5, 4.0) - 0.8).abs() < 1e-12);
        assert!((shift_time(0.3, 1.0) - 0.3).abs() < 1e-12);
    }
}
