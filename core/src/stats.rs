//! Summary statistics of measured values (step times, benchmark samples).

/// The median of the values of `v` that are not NaN, `None` when there are none: the middle
/// value, or for an even count the mean of the two middle ones. Sorts `v` in place (NaNs last),
/// so a caller that needs the original order passes a copy. For the MMS detector's baseline,
/// the upper median of the finite values, see [`crate::mms::upper_median`].
pub fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(|a, b| a.is_nan().cmp(&b.is_nan()).then(a.total_cmp(b)));
    let n = v.iter().take_while(|x| !x.is_nan()).count();
    match n {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => {
            let (a, b) = (v[n / 2 - 1], v[n / 2]);
            // Halves first, so two huge values do not overflow; equal ones (infinities too) stay.
            Some(if a == b { a } else { a / 2.0 + b / 2.0 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_of_the_values_that_are_not_nan() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [0.25]), Some(0.25));
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [f64::NAN, -f64::NAN]), None);
        // NaNs of either sign are left out, infinities are values.
        assert_eq!(median(&mut [f64::NAN, 5.0, -f64::NAN, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&mut [f64::INFINITY, 1.0, f64::INFINITY]), Some(f64::INFINITY));
        assert_eq!(median(&mut [f64::MAX, f64::MAX, 1.0, f64::MAX]), Some(f64::MAX));
        assert_eq!(median(&mut [f64::MAX, f64::MAX / 2.0]), Some(0.75 * f64::MAX));
        let mut v = [2.0, f64::NAN, 1.0];
        assert_eq!(median(&mut v), Some(1.5));
        assert_eq!(&v[..2], [1.0, 2.0], "sorted in place, NaNs last");
        assert!(v[2].is_nan());
    }
}
