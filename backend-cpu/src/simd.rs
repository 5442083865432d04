//! Vectorisation helpers: runtime dispatch to AVX-512 / AVX2 copies of a function, a
//! polynomial `exp` that vectorises, lane-split reductions, and a shared output pointer for
//! tasks writing disjoint parts of one buffer.

#[cfg(target_arch = "x86_64")]
use std::sync::atomic::{AtomicU8, Ordering};

/// 0 = not probed, 1 = baseline, 2 = AVX2+FMA, 3 = AVX-512.
#[cfg(target_arch = "x86_64")]
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The x86-64 feature level of this CPU (see [`LEVEL`]); other architectures run the baseline
/// copies of [`multiversion`] functions and never ask.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn level() -> u8 {
    let l = LEVEL.load(Ordering::Relaxed);
    if l != 0 {
        return l;
    }
    let l = if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("avx512dq") {
        3
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        2
    } else {
        1
    };
    LEVEL.store(l, Ordering::Relaxed);
    l
}

/// Defines `fn name(args) -> ret { body }` compiled three times (AVX-512, AVX2+FMA, baseline)
/// and dispatched on the CPU at run time. Helpers the body calls should be `#[inline(always)]`
/// so they are compiled with the same features.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma,bmi2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2,fma,bmi2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? $body
                match $crate::simd::level() {
                    // SAFETY: the CPU has the features these copies were compiled for.
                    3 => return unsafe { v4($($arg),*) },
                    2 => return unsafe { v3($($arg),*) },
                    _ => {}
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

/// a·b + c, fused: one instruction in the AVX2/AVX-512 copies of [`multiversion`] functions
/// (CPUs without FMA, pre-2013 x86, get libm's correct but slow software fma).
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// e^x to ~2 ulp (Cephes expf), branch-free so loops over it vectorise. x is clamped to
/// [−87, 88]: below, the result is ~1.6e-38 instead of a denormal or 0; above, e^88.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4; // ln 2, high part
    const C2: f32 = -2.121_944_4e-4; // ln 2 − C1
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // n as an integer, from t's mantissa (t and ROUND share their exponent for |n| < 2^22):
    // integer ops only, so the whole function vectorises.
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = fma(n, -C2, fma(n, -C1, x));
    let mut p = 1.987_569_1e-4f32;
    p = fma(p, r, 1.398_199_9e-3);
    p = fma(p, r, 8.333_452e-3);
    p = fma(p, r, 4.166_579_6e-2);
    p = fma(p, r, 1.666_666_5e-1);
    p = fma(p, r, 0.5);
    let y = fma(p * r, r, r + 1.0);
    y * f32::from_bits((ni.wrapping_add(127) as u32) << 23)
}

/// 1 / (1 + e^−x).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

const LANES: usize = 16;

/// Σ a·b with 16 independent partial sums (so it vectorises).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = fma(x[i], y[i], acc[i]);
        }
    }
    let mut tail = 0.0;
    for i in 0..ra.len() {
        tail += ra[i] * rb[i];
    }
    hsum(acc) + tail
}

#[inline(always)]
pub fn hsum(acc: [f32; LANES]) -> f32 {
    let mut h = [0.0f32; 8];
    for i in 0..8 {
        h[i] = acc[i] + acc[i + 8];
    }
    (h[0] + h[4]) + (h[1] + h[5]) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// Σ (a − b)² in f64.
#[inline(always)]
pub fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let d = x[i] as f64 - y[i] as f64;
            acc[i] += d * d;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for i in 0..ra.len() {
        let d = ra[i] as f64 - rb[i] as f64;
        s += d * d;
    }
    s
}

/// A buffer that several tasks write, each to its own disjoint part.
#[derive(Clone, Copy)]
pub struct Out {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `Out` hands out sub-slices only through the unsafe `part`, whose callers guarantee
// that parts used at the same time do not overlap.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    pub fn new(buf: &mut [f32]) -> Self {
        Out { ptr: buf.as_mut_ptr(), len: buf.len() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// # Safety
    /// No two live parts may overlap, and the buffer must outlive them.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len, "Out::part out of range");
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }


    /// A raw pointer to element `start`, checking that `extent` elements from it are in range.
    /// Writes through it follow the same no-overlap rule as [`Out::part`].
    pub fn ptr(&self, start: usize, extent: usize) -> *mut f32 {
        assert!(start + extent <= self.len, "Out::ptr out of range");
        // SAFETY: in range (checked above).
        unsafe { self.ptr.add(start) }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a per-thread scratch buffer of `len` values (contents arbitrary). Not reentrant.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

/// Splits `0..n` into `parts` near-equal ranges; range i.
#[inline]
pub fn split(n: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    (n * i / parts)..(n * (i + 1) / parts)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            worst = worst.max(((super::exp(x) as f64 - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(super::exp(-1e9), super::exp(-87.0));
        assert!(super::sigmoid(-200.0) < 1e-37 && super::sigmoid(200.0) == 1.0);
    }
}
