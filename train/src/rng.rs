//! A small deterministic RNG (xoshiro256**) whose whole state fits in a checkpoint, so a resumed
//! run draws exactly the numbers an uninterrupted one would.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

use mvdit_core::rng::SplitMix64;

impl Rng {
    pub fn new(seed: u64) -> Self {
        // The state is seeded from SplitMix64, as xoshiro's authors recommend.
        let mut x = SplitMix64::new(seed);
        Rng { s: [x.next_u64(), x.next_u64(), x.next_u64(), x.next_u64()] }
    }

    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }

    /// Advances the stream past `n` normals without computing them (each takes two draws):
    /// a data-parallel rank skips the noise of other ranks' samples this way.
    pub fn skip_normals(&mut self, n: usize) {
        for _ in 0..2 * n {
            self.next_u64();
        }
    }

    /// The state as text, for checkpoint metadata.
    pub fn to_state(&self) -> String {
        self.s.iter().map(|v| format!("{v:016x}")).collect::<Vec<_>>().join(",")
    }

    pub fn from_state(text: &str) -> Option<Self> {
        let v: Vec<u64> = text.split(',').map(|p| u64::from_str_radix(p.trim(), 16).ok()).collect::<Option<_>>()?;
        let s: [u64; 4] = v.try_into().ok()?;
        (s != [0; 4]).then_some(Rng { s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_continues_the_same_stream() {
        let mut a = Rng::new(42);
        a.normals(5);
        let mut b = Rng::from_state(&a.to_state()).unwrap();
        assert_eq!(a.next_u64(), b.next_u64());
        assert!(Rng::from_state("zz").is_none());
        assert!(Rng::from_state("0,0,0,0").is_none());
    }

    #[test]
    fn skipping_normals_lands_where_drawing_them_does() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        a.normals(5);
        b.skip_normals(5);
        assert_eq!(a, b);
    }

    #[test]
    fn normals_have_unit_moments_and_uniforms_stay_in_range() {
        let mut r = Rng::new(1);
        let x = r.normals(20000);
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, var {var}");
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.uniform())));
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
