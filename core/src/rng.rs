//! SplitMix64 (Steele, Lea, Flood 2014): a tiny seedable generator for test data, benchmark
//! inputs and shuffles. Every stream is fixed by its seed: snapshot tests and golden inputs
//! depend on the exact values, so none of these formulas may change.

use alloc::vec::Vec;

/// SplitMix64's increment (2⁶⁴ / φ, odd).
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The generator; its state advances by [`GAMMA`] per draw.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// `n` values uniform in [-1, 1), in f64.
    pub fn f64s(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform(-1.0, 1.0)).collect()
    }

    /// Uniform in [-1, 1) as f32, from the top 24 bits (exact in f32).
    pub fn signed_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// `n` values uniform in [-scale, scale), in f32.
    pub fn f32s(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.signed_f32() * scale).collect()
    }

    /// Uniform in `0..n` (n > 0), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

/// Deterministic test values: `n` values uniform in [-scale, scale) from the stream of
/// `seed · GAMMA + 1`, so that neighbouring seeds give unrelated streams.
pub fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    SplitMix64::new(seed.wrapping_mul(GAMMA).wrapping_add(1)).f32s(n, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs for seed 0 (the reference values of the SplitMix64 paper's C code).
    #[test]
    fn first_outputs_are_fixed() {
        let mut r = SplitMix64::new(0);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]);
    }

    #[test]
    fn floats_are_in_range_and_fixed() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            let (u, s) = (r.unit(), r.signed_f32());
            assert!((0.0..1.0).contains(&u) && (-1.0..1.0).contains(&s));
        }
        let v = values(3, 1, 0.5);
        let again = SplitMix64::new(GAMMA + 1).f32s(3, 0.5);
        assert_eq!(v, again);
        assert_eq!(SplitMix64::new(0).signed_f32(), (0xE220_A839_7B1D_CDAFu64 >> 40) as f32 / 16_777_216.0 * 2.0 - 1.0);
    }

    #[test]
    fn below_stays_below() {
        let mut r = SplitMix64::new(3);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(1), 0);
    }
}
