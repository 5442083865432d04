//! f32 GEMM through the `gemm` crate (AVX-512 kernels when the CPU has them), single-threaded
//! per call; [`run`] splits a set of GEMMs into row or column blocks over the team.

use crate::simd::{split, Out};
use crate::team::Team;

/// A row-major or transposed view: element (i, j) at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major [rows, cols].
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major [rows, cols] matrix, seen as [cols, rows].
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View { data, rs: 1, cs: cols }
    }
    /// Rows r0.. of this view.
    fn skip_rows(self, r0: usize) -> Self {
        View { data: &self.data[r0 * self.rs..], ..self }
    }
    /// Columns c0.. of this view.
    fn skip_cols(self, c0: usize) -> Self {
        View { data: &self.data[c0 * self.cs..], ..self }
    }
}

/// dst[m, n] (row-major, leading dimension `ldd`) = a[m, k] · b[k, n] (+ dst when `accumulate`),
/// on the calling thread.
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], ldd: usize, a: View, b: View, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * ldd + n, "matmul: destination too small");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * ldd..i * ldd + n].fill(0.0);
            }
        }
        return;
    }
    assert!(a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs, "matmul: lhs too small");
    // SAFETY: checked above; dst is exclusively borrowed.
    unsafe { matmul_ptr(m, n, k, dst.as_mut_ptr(), ldd, a, b, accumulate) }
}

/// [`matmul`] into a raw destination (strided blocks that other threads write around).
///
/// # Safety
/// dst must be valid for writes at every (i, j) < (m, n): `dst + i * ldd + j`, and no other
/// thread may touch those elements meanwhile.
/// Products with at most this many rows, and fewer rows than columns, run transposed.
const SWAP_ROWS: usize = 256;

#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_ptr(m: usize, n: usize, k: usize, dst: *mut f32, ldd: usize, a: View, b: View, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of the destination, the caller's promise.
                unsafe { std::ptr::write_bytes(dst.add(i * ldd), 0, n) };
            }
        }
        return;
    }
    assert!(a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs, "matmul: lhs too small");
    assert!(b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs, "matmul: rhs too small");
    if m < n && m <= SWAP_ROWS {
        // Few rows (a text encoder's tokens): the gemm crate computes the transposed product
        // tᵀ[n, m] = bᵀ·aᵀ into a row-major scratch ~3× faster (measured: 64×2048×1024 at 24 →
        // 66 GFLOP/s), and the transpose into dst is a small copy.
        let mut t = crate::tensor::take(n * m);
        // SAFETY: t is [n, m] row-major and ours; the reads are those of the product below.
        unsafe {
            gemm::gemm(n, m, k, t.as_mut_ptr(), 1, m as isize, false, b.data.as_ptr(), b.rs as isize, b.cs as isize, a.data.as_ptr(), a.rs as isize, a.cs as isize, 1.0, 1.0, false, false, false, gemm::Parallelism::None);
        }
        for i in 0..m {
            // SAFETY: row i of the destination, the caller's promise.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.add(i * ldd), n) };
            for (j, d) in row.iter_mut().enumerate() {
                *d = if accumulate { *d + t[j * m + i] } else { t[j * m + i] };
            }
        }
        crate::tensor::give(t);
        return;
    }
    // SAFETY: the asserts keep every read inside the slices; dst is the caller's promise.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ldd as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// One GEMM of a batch for [`run`]: dst = a·b, dst rows first set to `bias` when given (then
/// accumulated onto).
pub struct Job<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub dst: &'a mut [f32],
    pub ldd: usize,
    pub a: View<'a>,
    pub b: View<'a>,
    pub bias: Option<&'a [f32]>,
}

/// Below this many multiply-adds in total a batch runs on the calling thread.
const SERIAL_MACS: usize = 1 << 16;

/// Runs the GEMMs on the team, each cut into row blocks (column blocks when it has fewer rows
/// than columns) so every thread gets about the same work.
pub fn run(team: &Team, jobs: Vec<Job>) {
    let macs_of = |j: &Job| j.m * j.n * j.k.max(1);
    let total: usize = jobs.iter().map(macs_of).sum();
    let threads = team.threads();
    // (job, parts, part, work) for every block.
    let mut blocks = Vec::new();
    let mut dsts = Vec::with_capacity(jobs.len());
    let mut specs = Vec::with_capacity(jobs.len());
    for (ji, j) in jobs.into_iter().enumerate() {
        let macs = macs_of(&j);
        // Every job of a batch cut into one block per thread (tiny ones left whole): a share
        // by work (1 block per job when 3 equal jobs meet 2 threads) leaves one thread idle
        // for a third of the time.
        let parts = if threads == 1 || total < SERIAL_MACS || macs < SERIAL_MACS / 4 { 1 } else { threads.min(j.m.max(j.n)) };
        for p in 0..parts {
            blocks.push((ji, parts, p, macs / parts));
        }
        dsts.push(Out::new(j.dst));
        specs.push((j.m, j.n, j.k, j.ldd, j.a, j.b, j.bias));
    }
    // Largest blocks first: with tasks handed out in order, the threads then finish together.
    blocks.sort_by_key(|b| std::cmp::Reverse(b.3));
    let block = |bi: usize| {
        let (ji, parts, p, _) = blocks[bi];
        let (m, n, k, ldd, a, b, bias) = specs[ji];
        let by_rows = m >= n;
        let (r, c) = if by_rows { (split(m, parts, p), 0..n) } else { (0..m, split(n, parts, p)) };
        if r.is_empty() || c.is_empty() {
            return;
        }
        let (bm, bn) = (r.len(), c.len());
        let start = r.start * ldd + c.start;
        let dst = dsts[ji].ptr(start, (bm - 1) * ldd + bn);
        // SAFETY: blocks of one job cover disjoint rows (or columns) of its destination, and
        // different jobs have different destinations.
        unsafe {
            if let Some(bias) = bias {
                for i in 0..bm {
                    std::ptr::copy_nonoverlapping(bias[c.clone()].as_ptr(), dst.add(i * ldd), bn);
                }
            }
            matmul_ptr(bm, bn, k, dst, ldd, a.skip_rows(r.start), b.skip_cols(c.start), bias.is_some());
        }
    };
    team.run(blocks.len(), block);
}

/// The products of a linear layer's backward: x: [n, k], and per weight i, W_i: [m_i, k] and
/// dy_i: [n, m_i] (`ws[i]`, `dys[i]`, `ms[i]`).
pub struct Grads<'a> {
    pub x: &'a [f32],
    pub k: usize,
    pub ws: Vec<&'a [f32]>,
    pub dys: Vec<&'a [f32]>,
    pub ms: Vec<usize>,
}

impl Grads<'_> {
    fn n(&self) -> usize {
        self.x.len() / self.k.max(1)
    }
    /// Σ_i m_i·k: the values of all dW_i.
    fn dw_len(&self) -> usize {
        self.ms.iter().sum::<usize>() * self.k
    }
    /// Multiply-adds of dx and every dW_i.
    fn macs(&self) -> usize {
        2 * self.n() * self.dw_len()
    }
}

/// How many row blocks [`grads`] cuts the rows into (its `partial` holds `parts − 1` copies of
/// every dW_i).
pub fn grad_parts(team: &Team, g: &Grads) -> usize {
    if team.threads() == 1 || g.macs() < SERIAL_MACS {
        1
    } else {
        team.threads().min(g.n())
    }
}

/// dx = Σ_i dy_i·W_i (added onto dx when `accumulate`; skipped without dx) and dw_i = dy_iᵀ·x,
/// split by rows of x over the team: block p computes its rows of dx and its rows' share of
/// every dW_i (block 0 into `dws`, block p > 0 into part p − 1 of `partial`, laid out as the
/// dws one after another), so a thread reads only its own rows of x and the dy_i, which it
/// mostly has in cache from the ops before (a split of each dW by its own rows would read all
/// of them on every thread). The caller adds the partial sums onto the dws.
pub fn grads(team: &Team, g: &Grads, dx: Option<(&mut [f32], bool)>, dws: &mut [&mut [f32]], partial: &mut [f32]) {
    let (k, n, parts) = (g.k, g.n(), grad_parts(team, g));
    assert!(dws.len() == g.ms.len() && dws.iter().zip(&g.ms).all(|(w, &m)| w.len() == m * k) && partial.len() >= (parts - 1) * g.dw_len());
    let dx = dx.map(|(d, acc)| (Out::new(d), acc));
    let dwo: Vec<Out> = dws.iter_mut().map(|w| Out::new(w)).collect();
    let po = Out::new(partial);
    team.run(parts, |p| {
        let r = split(n, parts, p);
        if r.is_empty() {
            return;
        }
        let dy = |i: usize| &g.dys[i][r.start * g.ms[i]..r.end * g.ms[i]];
        if let Some((dx, acc)) = dx {
            let d = dx.ptr(r.start * k, r.len() * k);
            for (i, w) in g.ws.iter().enumerate() {
                // SAFETY: rows r of dx are this block's alone.
                unsafe { matmul_ptr(r.len(), k, g.ms[i], d, k, View::rows(dy(i), g.ms[i]), View::rows(w, k), acc || i > 0) };
            }
        }
        let mut at = (p.max(1) - 1) * g.dw_len();
        for (i, &m) in g.ms.iter().enumerate() {
            let d = if p == 0 { dwo[i].ptr(0, m * k) } else { po.ptr(at, m * k) };
            // SAFETY: the dws are block 0's, part p − 1 of partial is block p's.
            unsafe { matmul_ptr(m, k, r.len(), d, k, View::transposed(dy(i), m), View::rows(&g.x[r.start * k..r.end * k], k), false) };
            at += m * k;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_for_plain_and_transposed_views() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect(); // [n, k]
        let mut c = vec![1.0f32; m * n];
        matmul(m, n, k, &mut c, n, View::rows(&a, k), View::transposed(&bt, k), true);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|t| a[i * k + t] * bt[j * k + t]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn split_batches_match_serial_products() {
        let team = Team::new(2);
        for (m, n, k) in [(300, 70, 64), (40, 500, 33), (1, 1, 1), (64, 64, 272)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let mut want = vec![0.0f32; m * n];
            matmul(m, n, k, &mut want, n, View::rows(&a, k), View::rows(&b, n), false);
            let (mut got, mut got2) = (vec![7.0f32; m * n], vec![7.0f32; m * n]);
            let job = |dst, bias| Job { m, n, k, dst, ldd: n, a: View::rows(&a, k), b: View::rows(&b, n), bias };
            run(&team, vec![job(&mut got, None), job(&mut got2, Some(&bias))]);
            for i in 0..m * n {
                assert!((got[i] - want[i]).abs() < 1e-4 && (got2[i] - want[i] - bias[i % n]).abs() < 1e-3, "{m}x{n}x{k} at {i}");
            }
        }
    }
}
