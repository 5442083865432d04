//! `Real`: the scalar type the reference operators are generic over (f32 for backends, f64 for
//! finite-difference checks). Math goes through libm so results are the same with or without std.

use core::fmt::Debug;
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Real:
    Copy
    + Default
    + Debug
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Send
    + Sync
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }
    fn max(self, o: Self) -> Self {
        if self > o {
            self
        } else {
            o
        }
    }
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn sqrt(self) -> Self {
        libm::sqrtf(self)
    }
    fn exp(self) -> Self {
        libm::expf(self)
    }
    fn sin(self) -> Self {
        libm::sinf(self)
    }
    fn cos(self) -> Self {
        libm::cosf(self)
    }
    fn powf(self, e: Self) -> Self {
        libm::powf(self, e)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn sqrt(self) -> Self {
        libm::sqrt(self)
    }
    fn exp(self) -> Self {
        libm::exp(self)
    }
    fn sin(self) -> Self {
        libm::sin(self)
    }
    fn cos(self) -> Self {
        libm::cos(self)
    }
    fn powf(self, e: Self) -> Self {
        libm::pow(self, e)
    }
}

#[cfg(test)]
mod tests {
    use super::Real;

    #[test]
    fn f32_and_f64_agree_on_basic_math() {
        for &x in &[0.0f64, 0.5, 1.0, 2.5] {
            assert!((f32::from_f64(x).exp().to_f64() - x.exp()).abs() < 1e-5 * x.exp());
            assert!((f32::from_f64(x).sin().to_f64() - Real::sin(x)).abs() < 1e-6);
        }
        assert_eq!(Real::max(2.0f64, 3.0), 3.0);
    }
}
