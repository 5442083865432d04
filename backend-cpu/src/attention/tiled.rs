//! Register-blocked attention for one (sample, head) when Dh is a multiple of 16 and L is past
//! the direct loops' limit (small: L = 65, Dh = 64). Per-head GEMMs at these sizes spend most of
//! their time packing and in edge kernels (~50 GFLOP/s); here the keys (and values) are packed
//! transposed once per head, and tiles of `R` query rows run through two micro-kernels:
//!
//! - [`logits`]: s[r, j] = a_r · b_j for a tile of rows a_r against the packed keys, 16 keys per
//!   vector; keys past the last full vector (L = 65 leaves one) by dot products, so no padded
//!   vector is computed.
//! - [`weighted`]: out[r, :] = Σ_i w(r, i) · b_i over rows b_i of Dh values, which gives P·V,
//!   dS·K (query tiles) and dSᵀ·Q, Pᵀ·dO (key tiles, w read down a column).
//!
//! Softmax and the dS formula run on the tile's rows in between, while they are in L1. Scratch
//! rows are L rounded up to 16 wide; the columns past L hold junk that is never read.
//!
//! AVX-512 intrinsics throughout: auto-vectorised array code kept the accumulators in memory or
//! in 4-lane registers here, and the short rows (65) left scalar remainder loops.

use super::shape::Shape;
use crate::simd::{level, with_scratch, Out};
use std::arch::x86_64::*;

/// Query (or key) rows per tile: 6 rows × 4 vectors of accumulators, plus the 4 vectors of the
/// shared row, fill 28 of the 32 registers.
const R: usize = 6;
/// Values per vector.
const V: usize = 16;

/// Most packed key values (Dh · keys in full vectors): every query tile streams through them,
/// so they should stay in L1 (48 KiB here). Measured at Dh = 64 against the GEMM path: faster
/// at L = 65, 129 and 193 (packed keys 16–48 KiB), slower at L = 257 (64 KiB).
const MAX_PACKED: usize = 12 * 1024;

/// Whether [`forward`] and [`backward`] take these shapes on this CPU (AVX-512 only: elsewhere
/// the GEMM path stays).
pub fn fits(sh: Shape) -> bool {
    sh.dh.is_multiple_of(V) && sh.dh * widths(sh.l).0 <= MAX_PACKED && level() == 3
}

/// Keys in full vectors (L rounded down to 16), and the row stride of the L-wide scratch rows
/// (L rounded up to 16).
fn widths(l: usize) -> (usize, usize) {
    (l / V * V, l.div_ceil(V) * V)
}

/// Runs `f::<RR>` for a tile of `rows` (1..=R) rows: each tile size gets its own copy with the
/// accumulators in registers.
macro_rules! tile {
    ($rows:expr, $f:ident($($arg:expr),*)) => {
        match $rows {
            6 => $f::<6>($($arg),*),
            5 => $f::<5>($($arg),*),
            4 => $f::<4>($($arg),*),
            3 => $f::<3>($($arg),*),
            2 => $f::<2>($($arg),*),
            _ => $f::<1>($($arg),*),
        }
    };
}

// --- vector helpers ------------------------------------------------------------------------------

/// e^x per lane with the arithmetic of `simd::exp` (Cephes, ~2 ulp), so both agree bit for bit.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp16(x: __m512) -> __m512 {
    const ROUND: f32 = 12_582_912.0;
    let c = _mm512_set1_ps;
    let x = _mm512_min_ps(_mm512_max_ps(x, c(-87.0)), c(88.0));
    let t = _mm512_add_ps(_mm512_mul_ps(x, c(std::f32::consts::LOG2_E)), c(ROUND));
    let n = _mm512_sub_ps(t, c(ROUND));
    let ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(ROUND.to_bits() as i32));
    let r = _mm512_fmadd_ps(n, c(2.121_944_4e-4), _mm512_fmadd_ps(n, c(-0.693_359_4), x));
    let mut p = c(1.987_569_1e-4);
    for k in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm512_fmadd_ps(p, r, c(k));
    }
    let y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, c(1.0)));
    let pow2 = _mm512_slli_epi32::<23>(_mm512_add_epi32(ni, _mm512_set1_epi32(127)));
    _mm512_mul_ps(y, _mm512_castsi512_ps(pow2))
}

/// a · b for rows of a multiple of 16 values.
#[target_feature(enable = "avx512f")]
#[inline]
fn dot16(a: &[f32], b: &[f32]) -> f32 {
    assert!(a.len() == b.len() && a.len().is_multiple_of(V));
    let mut acc = _mm512_setzero_ps();
    for (x, y) in a.chunks_exact(V).zip(b.chunks_exact(V)) {
        // SAFETY: chunks of 16 values.
        acc = unsafe { _mm512_fmadd_ps(_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(y.as_ptr()), acc) };
    }
    _mm512_reduce_add_ps(acc)
}

/// dst[c * ldd + r] = src[r * lds + c] for a 16×16 block, in registers (4 shuffle stages).
///
/// # Safety
/// Both blocks must be in bounds.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn transpose16(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
    let mut r = [_mm512_setzero_ps(); 16];
    for (i, ri) in r.iter_mut().enumerate() {
        // SAFETY: the caller's promise.
        *ri = unsafe { _mm512_loadu_ps(src.add(i * lds)) };
    }
    // 32-bit, then 64-bit interleaves: u[4i + p] holds column 4L + p of rows 4i..4i+3 in lane L.
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let (pd, ps) = (_mm512_castps_pd, _mm512_castpd_ps);
    for i in 0..4 {
        let (a, b, c, d) = (pd(t[4 * i]), pd(t[4 * i + 2]), pd(t[4 * i + 1]), pd(t[4 * i + 3]));
        r[4 * i] = ps(_mm512_unpacklo_pd(a, b));
        r[4 * i + 1] = ps(_mm512_unpackhi_pd(a, b));
        r[4 * i + 2] = ps(_mm512_unpacklo_pd(c, d));
        r[4 * i + 3] = ps(_mm512_unpackhi_pd(c, d));
    }
    // 128-bit lanes: gather lane L of u[p], u[4 + p], u[8 + p], u[12 + p] into column 4L + p.
    for p in 0..4 {
        let a = _mm512_shuffle_f32x4::<0x88>(r[p], r[4 + p]);
        let b = _mm512_shuffle_f32x4::<0xdd>(r[p], r[4 + p]);
        let c = _mm512_shuffle_f32x4::<0x88>(r[8 + p], r[12 + p]);
        let d = _mm512_shuffle_f32x4::<0xdd>(r[8 + p], r[12 + p]);
        let cols = [(p, _mm512_shuffle_f32x4::<0x88>(a, c)), (4 + p, _mm512_shuffle_f32x4::<0x88>(b, d)), (8 + p, _mm512_shuffle_f32x4::<0xdd>(a, c)), (12 + p, _mm512_shuffle_f32x4::<0xdd>(b, d))];
        for (col, v) in cols {
            // SAFETY: the caller's promise.
            unsafe { _mm512_storeu_ps(dst.add(col * ldd), v) };
        }
    }
}

/// Packs the first `full` tokens (a multiple of 16) of head h of sample bi of x transposed:
/// t[e * full + j] = x[j, e]. t: [Dh, full].
#[target_feature(enable = "avx512f")]
#[inline]
fn pack_transposed(x: &[f32], t: &mut [f32], sh: Shape, bi: usize, h: usize, full: usize) {
    let head = head(x, sh, bi, h);
    assert!(t.len() >= sh.dh * full && full <= sh.l && full.is_multiple_of(V));
    for j in (0..full).step_by(V) {
        for e in (0..sh.dh).step_by(V) {
            // SAFETY: rows j..j + 16 < L of the head, columns e..e + 16 ≤ Dh; t rows e..e + 16,
            // columns j..j + 16 ≤ full (asserted).
            unsafe { transpose16(head.as_ptr().add(j * sh.d() + e), sh.d(), t.as_mut_ptr().add(e * full + j), full) };
        }
    }
}

// --- micro-kernels -------------------------------------------------------------------------------

/// s[r * lds + j] = Σ_e a[r][e] · bt[e * ldb + j] for j < C·16 (bt: one block of packed keys).
#[target_feature(enable = "avx512f")]
#[inline]
fn logits_block<const RR: usize, const C: usize>(a: &[&[f32]; RR], bt: &[f32], ldb: usize, s: &mut [f32], lds: usize) {
    let dh = a[0].len();
    assert!(a.iter().all(|r| r.len() == dh) && dh > 0 && bt.len() >= (dh - 1) * ldb + C * V && s.len() >= (RR - 1) * lds + C * V);
    let mut acc = [[_mm512_setzero_ps(); C]; RR];
    for e in 0..dh {
        // SAFETY: e < dh: inside a[r] and bt (asserted).
        unsafe {
            let b = bt.as_ptr().add(e * ldb);
            let mut bv = [_mm512_setzero_ps(); C];
            for c in 0..C {
                bv[c] = _mm512_loadu_ps(b.add(c * V));
            }
            for r in 0..RR {
                let ar = _mm512_set1_ps(*a[r].get_unchecked(e));
                for c in 0..C {
                    acc[r][c] = _mm512_fmadd_ps(ar, bv[c], acc[r][c]);
                }
            }
        }
    }
    for r in 0..RR {
        for c in 0..C {
            // SAFETY: inside s (asserted).
            unsafe { _mm512_storeu_ps(s.as_mut_ptr().add(r * lds + c * V), acc[r][c]) };
        }
    }
}

/// Logits of a tile: s[r * lds + j] = a[r] · key j for j < L. kt: the first `full` keys packed
/// transposed ([Dh, full]); `key(j)` gives the rest, one row of Dh each.
#[target_feature(enable = "avx512f")]
#[inline]
fn logits<'a, const RR: usize>(a: &[&[f32]; RR], kt: &[f32], full: usize, l: usize, key: impl Fn(usize) -> &'a [f32], s: &mut [f32], lds: usize) {
    let mut j = 0;
    while j + 4 * V <= full {
        logits_block::<RR, 4>(a, &kt[j..], full, &mut s[j..], lds);
        j += 4 * V;
    }
    match (full - j) / V {
        3 => logits_block::<RR, 3>(a, &kt[j..], full, &mut s[j..], lds),
        2 => logits_block::<RR, 2>(a, &kt[j..], full, &mut s[j..], lds),
        1 => logits_block::<RR, 1>(a, &kt[j..], full, &mut s[j..], lds),
        _ => {}
    }
    for j in full..l {
        let kj = key(j);
        for r in 0..RR {
            s[r * lds + j] = dot16(a[r], kj);
        }
    }
}

/// A weight matrix read as w(r, i) = data[r * rs + i * cs].
#[derive(Clone, Copy)]
struct Weights<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// out[r][c * 16 + x] = Σ_{i < n} w(r, i) · b[i * ldb + c * 16 + x] (b: one block of C·16 columns).
#[target_feature(enable = "avx512f")]
#[inline]
fn weighted_block<const RR: usize, const C: usize>(w: Weights, n: usize, b: &[f32], ldb: usize, out: &mut [&mut [f32]; RR]) {
    if n == 0 {
        return;
    }
    assert!(w.data.len() > (RR - 1) * w.rs + (n - 1) * w.cs && b.len() >= (n - 1) * ldb + C * V && out.iter().all(|o| o.len() >= C * V));
    let mut acc = [[_mm512_setzero_ps(); C]; RR];
    for i in 0..n {
        // SAFETY: r < RR and i < n: inside w and b (asserted).
        unsafe {
            let bi = b.as_ptr().add(i * ldb);
            let mut bv = [_mm512_setzero_ps(); C];
            for c in 0..C {
                bv[c] = _mm512_loadu_ps(bi.add(c * V));
            }
            for r in 0..RR {
                let wr = _mm512_set1_ps(*w.data.get_unchecked(r * w.rs + i * w.cs));
                for c in 0..C {
                    acc[r][c] = _mm512_fmadd_ps(wr, bv[c], acc[r][c]);
                }
            }
        }
    }
    for r in 0..RR {
        for c in 0..C {
            // SAFETY: inside out[r] (asserted).
            unsafe { _mm512_storeu_ps(out[r].as_mut_ptr().add(c * V), acc[r][c]) };
        }
    }
}

/// out[r] = Σ_{i < n} w(r, i) · b_i, rows b_i of out[r].len() (a multiple of 16) values at
/// stride ldb, in column blocks of up to 64.
#[target_feature(enable = "avx512f")]
#[inline]
fn weighted<const RR: usize>(w: Weights, n: usize, b: &[f32], ldb: usize, out: &mut [&mut [f32]; RR]) {
    let dh = out[0].len();
    let mut c = 0;
    while c < dh {
        let mut cols: [&mut [f32]; RR] = std::array::from_fn(|_| &mut [][..]);
        for (dst, row) in cols.iter_mut().zip(out.iter_mut()) {
            *dst = &mut row[c..];
        }
        match ((dh - c) / V).min(4) {
            4 => weighted_block::<RR, 4>(w, n, &b[c..], ldb, &mut cols),
            3 => weighted_block::<RR, 3>(w, n, &b[c..], ldb, &mut cols),
            2 => weighted_block::<RR, 2>(w, n, &b[c..], ldb, &mut cols),
            _ => weighted_block::<RR, 1>(w, n, &b[c..], ldb, &mut cols),
        }
        c += 4 * V;
    }
}

// --- rows of a head ------------------------------------------------------------------------------

/// Head h of sample bi from token 0: rows of Dh values at stride D.
fn head(x: &[f32], sh: Shape, bi: usize, h: usize) -> &[f32] {
    &x[sh.at(bi, 0, h)..][..(sh.l - 1) * sh.d() + sh.dh]
}

/// Rows i0.. (RR of them) of head h of sample bi of x, Dh values each.
#[inline(always)]
fn head_rows<const RR: usize>(x: &[f32], sh: Shape, bi: usize, h: usize, i0: usize) -> [&[f32]; RR] {
    std::array::from_fn(|r| &x[sh.at(bi, i0 + r, h)..][..sh.dh])
}

/// The same rows of an output, mutable.
///
/// # Safety
/// The rows must be this task's alone while the slices live.
#[inline(always)]
unsafe fn out_rows<'a, const RR: usize>(x: Out, sh: Shape, bi: usize, h: usize, i0: usize) -> [&'a mut [f32]; RR] {
    // SAFETY: in range (`Out::ptr` checks), rows i0 + r are distinct, exclusive by the caller's promise.
    std::array::from_fn(|r| unsafe { std::slice::from_raw_parts_mut(x.ptr(sh.at(bi, i0 + r, h), sh.dh), sh.dh) })
}

/// Mask of the lanes of the last vector of a row of l values.
fn tail_mask(l: usize) -> __mmask16 {
    ((1u32 << (l - (l - 1) / V * V)) - 1) as __mmask16
}

// --- forward -------------------------------------------------------------------------------------

/// o: [B, L, D] and lse (this head's row of L values), overwritten, for one (sample, head).
#[allow(clippy::too_many_arguments)]
pub fn forward(q: &[f32], k: &[f32], v: &[f32], o: Out, lse: &mut [f32], sh: Shape, bi: usize, h: usize) {
    let (full, lds) = widths(sh.l);
    with_scratch(sh.dh * full + R * lds, |scr| {
        let (kt, s) = scr.split_at_mut(sh.dh * full);
        // SAFETY: `fits` checked the CPU for AVX-512.
        unsafe { forward_head(q, k, v, o, lse, kt, s, sh, bi, h) };
    });
}

/// [`forward`] of one (sample, head); kt: Dh·full values, s: R·lds.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
fn forward_head(q: &[f32], k: &[f32], v: &[f32], o: Out, lse: &mut [f32], kt: &mut [f32], s: &mut [f32], sh: Shape, bi: usize, h: usize) {
    let (full, _) = widths(sh.l);
    pack_transposed(k, kt, sh, bi, h, full);
    let mut i0 = 0;
    while i0 < sh.l {
        let rows = (sh.l - i0).min(R);
        tile!(rows, forward_tile(q, k, v, o, &mut lse[i0..i0 + rows], kt, s, sh, bi, h, i0));
        i0 += rows;
    }
}

/// Rows i0..i0 + RR of one (sample, head): logits, softmax (lse), o = P·V.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
#[inline]
fn forward_tile<const RR: usize>(q: &[f32], k: &[f32], v: &[f32], o: Out, lse: &mut [f32], kt: &[f32], s: &mut [f32], sh: Shape, bi: usize, h: usize, i0: usize) {
    let (l, dh) = (sh.l, sh.dh);
    let (full, lds) = widths(l);
    logits(&head_rows::<RR>(q, sh, bi, h, i0), kt, full, l, |j| &k[sh.at(bi, j, h)..][..dh], s, lds);
    for r in 0..RR {
        lse[r] = softmax_row(&mut s[r * lds..(r + 1) * lds], l, 1.0 / (dh as f32).sqrt());
    }
    // SAFETY: rows i0.. of head h of sample bi: this task's alone.
    let mut out = unsafe { out_rows::<RR>(o, sh, bi, h, i0) };
    weighted(Weights { data: s, rs: lds, cs: 1 }, l, head(v, sh, bi, h), sh.d(), &mut out);
}

/// Turns the first l logits of a row (row.len() = l rounded up to 16) into probabilities
/// exp(s·scale − lse) and returns lse (as `softmax_rows` does).
#[target_feature(enable = "avx512f")]
#[inline]
fn softmax_row(row: &mut [f32], l: usize, scale: f32) -> f32 {
    let nv = row.len() / V;
    assert!(l > 0 && nv == l.div_ceil(V));
    let (p, mask) = (row.as_mut_ptr(), tail_mask(l));
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    // SAFETY: nv vectors of the row (asserted).
    let at = |c: usize| unsafe { p.add(c * V) };
    let mut mx = ninf;
    for c in 0..nv - 1 {
        // SAFETY: see `at`.
        mx = _mm512_max_ps(mx, unsafe { _mm512_loadu_ps(at(c)) });
    }
    // SAFETY: see `at`.
    mx = _mm512_max_ps(mx, unsafe { _mm512_mask_loadu_ps(ninf, mask, at(nv - 1)) });
    let m = _mm512_reduce_max_ps(mx) * scale; // scale > 0
    let (vs, vm) = (_mm512_set1_ps(scale), _mm512_set1_ps(m));
    let mut sum = _mm512_setzero_ps();
    for c in 0..nv {
        // SAFETY: see `at`.
        let e = exp16(_mm512_sub_ps(_mm512_mul_ps(unsafe { _mm512_loadu_ps(at(c)) }, vs), vm));
        let e = if c + 1 == nv { _mm512_maskz_mov_ps(mask, e) } else { e };
        sum = _mm512_add_ps(sum, e);
        // SAFETY: see `at`.
        unsafe { _mm512_storeu_ps(at(c), e) };
    }
    let sum = _mm512_reduce_add_ps(sum);
    let inv = _mm512_set1_ps(1.0 / sum);
    for c in 0..nv {
        // SAFETY: see `at`.
        unsafe { _mm512_storeu_ps(at(c), _mm512_mul_ps(_mm512_loadu_ps(at(c)), inv)) };
    }
    m + sum.ln()
}

// --- backward ------------------------------------------------------------------------------------

/// Gradients dq, dk, dv: [B, L, D] (overwritten) of one (sample, head); P is rebuilt from lse
/// (this head's row of L values).
#[allow(clippy::too_many_arguments)]
pub fn backward(q: &[f32], k: &[f32], v: &[f32], o: &[f32], lse: &[f32], d_o: &[f32], outs: [Out; 3], sh: Shape, bi: usize, h: usize) {
    let (full, lds) = widths(sh.l);
    with_scratch(2 * sh.dh * full + 2 * sh.l * lds, |scr| {
        let (kt, rest) = scr.split_at_mut(sh.dh * full);
        let (vt, rest) = rest.split_at_mut(sh.dh * full);
        let (p, ds) = rest.split_at_mut(sh.l * lds);
        // SAFETY: `fits` checked the CPU for AVX-512.
        unsafe { backward_head(q, k, v, o, lse, d_o, outs, kt, vt, p, ds, sh, bi, h) };
    });
}

/// [`backward`] of one (sample, head). kt, vt: Dh·full values; p, ds: L·lds (P and dS rows).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
fn backward_head(q: &[f32], k: &[f32], v: &[f32], o: &[f32], lse: &[f32], d_o: &[f32], outs: [Out; 3], kt: &mut [f32], vt: &mut [f32], p: &mut [f32], ds: &mut [f32], sh: Shape, bi: usize, h: usize) {
    let (full, _) = widths(sh.l);
    pack_transposed(k, kt, sh, bi, h, full);
    pack_transposed(v, vt, sh, bi, h, full);
    let [dq, dk, dv] = outs;
    let mut i0 = 0;
    while i0 < sh.l {
        let rows = (sh.l - i0).min(R);
        tile!(rows, query_tile(q, k, v, o, lse, d_o, dq, kt, vt, p, ds, sh, bi, h, i0));
        i0 += rows;
    }
    let mut j0 = 0;
    while j0 < sh.l {
        let rows = (sh.l - j0).min(R);
        tile!(rows, key_tile(q, d_o, dk, dv, p, ds, sh, bi, h, j0));
        j0 += rows;
    }
}

/// Query rows i0..i0 + RR: P and dS = P ⊙ (dO·Vᵀ − rowsum(dO ⊙ O)) · scale into their rows of
/// p and ds, then dq = dS·K.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
#[inline]
fn query_tile<const RR: usize>(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &[f32],
    lse: &[f32],
    d_o: &[f32],
    dq: Out,
    kt: &[f32],
    vt: &[f32],
    p: &mut [f32],
    ds: &mut [f32],
    sh: Shape,
    bi: usize,
    h: usize,
    i0: usize,
) {
    let (l, dh) = (sh.l, sh.dh);
    let (full, lds) = widths(l);
    let (pt, dst) = (&mut p[i0 * lds..(i0 + RR) * lds], &mut ds[i0 * lds..(i0 + RR) * lds]);
    let doa = head_rows::<RR>(d_o, sh, bi, h, i0);
    logits(&head_rows::<RR>(q, sh, bi, h, i0), kt, full, l, |j| &k[sh.at(bi, j, h)..][..dh], pt, lds);
    logits(&doa, vt, full, l, |j| &v[sh.at(bi, j, h)..][..dh], dst, lds);
    let oa = head_rows::<RR>(o, sh, bi, h, i0);
    for r in 0..RR {
        let rows = (&mut pt[r * lds..(r + 1) * lds], &mut dst[r * lds..(r + 1) * lds]);
        probs_and_grads(rows, lse[i0 + r], dot16(doa[r], oa[r]), 1.0 / (dh as f32).sqrt());
    }
    // SAFETY: rows i0.. of head h of sample bi: this task's alone.
    let mut out = unsafe { out_rows::<RR>(dq, sh, bi, h, i0) };
    weighted(Weights { data: dst, rs: lds, cs: 1 }, l, head(k, sh, bi, h), sh.d(), &mut out);
}

/// One row, in place: p = exp(s·scale − lse), ds = p ⊙ (dp − di) · scale (s in p, dp in ds;
/// whole vectors, junk past L included).
#[target_feature(enable = "avx512f")]
#[inline]
fn probs_and_grads((p, ds): (&mut [f32], &mut [f32]), lse: f32, di: f32, scale: f32) {
    assert!(p.len() == ds.len() && p.len().is_multiple_of(V));
    let (vs, vm, vd) = (_mm512_set1_ps(scale), _mm512_set1_ps(lse), _mm512_set1_ps(di));
    for (pc, dc) in p.chunks_exact_mut(V).zip(ds.chunks_exact_mut(V)) {
        // SAFETY: chunks of 16 values.
        unsafe {
            let e = exp16(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(pc.as_ptr()), vs), vm));
            let g = _mm512_mul_ps(_mm512_mul_ps(e, _mm512_sub_ps(_mm512_loadu_ps(dc.as_ptr()), vd)), vs);
            _mm512_storeu_ps(pc.as_mut_ptr(), e);
            _mm512_storeu_ps(dc.as_mut_ptr(), g);
        }
    }
}

/// Key rows j0..j0 + RR: dk = dSᵀ·Q and dv = Pᵀ·dO (columns j0.. of p and ds, all rows).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
#[inline]
fn key_tile<const RR: usize>(q: &[f32], d_o: &[f32], dk: Out, dv: Out, p: &[f32], ds: &[f32], sh: Shape, bi: usize, h: usize, j0: usize) {
    let (_, lds) = widths(sh.l);
    // SAFETY: rows j0.. of head h of sample bi: this task's alone (one output at a time).
    let mut out = unsafe { out_rows::<RR>(dk, sh, bi, h, j0) };
    weighted(Weights { data: &ds[j0..], rs: 1, cs: lds }, sh.l, head(q, sh, bi, h), sh.d(), &mut out);
    // SAFETY: as above.
    let mut out = unsafe { out_rows::<RR>(dv, sh, bi, h, j0) };
    weighted(Weights { data: &p[j0..], rs: 1, cs: lds }, sh.l, head(d_o, sh, bi, h), sh.d(), &mut out);
}
