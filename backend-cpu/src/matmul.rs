//! f32 GEMM through the `gemm` crate (AVX-512 kernels when the CPU has them).

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
}

/// dst[m, n] (row-major, leading dimension `ldd`) = a[m, k] · b[k, n] (+ dst when `accumulate`).
/// `threads` > 1 lets gemm split the work over the rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], ldd: usize, a: View, b: View, accumulate: bool, threads: usize) {
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
    assert!(b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs, "matmul: rhs too small");
    let par = if threads > 1 && m * n * k >= 1 << 15 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the asserts above keep every strided access inside the slices; dst is exclusively borrowed.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
            par,
        );
    }
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
        matmul(m, n, k, &mut c, n, View::rows(&a, k), View::transposed(&bt, k), true, 1);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|t| a[i * k + t] * bt[j * k + t]).sum::<f32>();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
    }
}
