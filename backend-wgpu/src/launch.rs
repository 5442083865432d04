//! The op layer's shared launch helpers: output allocation, row-kernel launches, the matmul
//! dispatch, transposes, column and row reductions, segment means and the patch permutations.
//! Each op of the `Backend` impl (lib.rs) is a few of these calls.

use super::*;
use crate::gpu::Grid;

impl<D: GpuDevice> GpuBackend<D> {
    /// A tensor whose contents the op overwrites (every kernel writes all of its output).
    pub(crate) fn alloc(&self, shape: &[usize]) -> BResult<GpuTensor<D>> {
        let len = shape.iter().product();
        Ok(GpuTensor { buf: self.ctx.alloc_uninit(len)?, shape: shape.to_vec(), len })
    }

    /// The grid of the workgroup-tiled attention kernels (`attn_*_t.wgsl`: one workgroup per
    /// 64 rows of one (batch, head), private accumulators of 128 values), when the device's plan
    /// asks for tiled kernels and the shape fits them; `None` selects the per-row kernels.
    pub(crate) fn attn_tiles(&self, b: usize, l: usize, nh: usize, dh: usize) -> Option<Grid> {
        let plan = self.ctx.matmul_plan();
        let tx = l.div_ceil(64);
        let bh = b * nh;
        let max = self.ctx.max_groups() as usize;
        (plan.tiled_attention && l > 0 && dh > 0 && dh <= 128 && tx <= max && bh > 0 && bh <= max).then_some(Grid::Groups(tx as u32, bh as u32, 1))
    }

    /// Records row kernel `name` (a `mvdit_kernels::ROWS` file) over `rows` rows: its subgroup
    /// variant `NAME_sg` (one subgroup per row) when the device's [`RowPlan`] has subgroups,
    /// else `NAME` (one invocation per row).
    pub(crate) fn run_rows(&self, name: &str, params: &[u32], bufs: &[&D::Buffer], rows: usize) -> BResult<()> {
        match self.ctx.row_plan().rows_per_group() {
            Some(per) => self.ctx.run(&format!("{name}_sg"), params, bufs, Grid::Threads((rows as u64).div_ceil(per) * gpu::WG)),
            None => self.ctx.run(name, params, bufs, Grid::Threads(rows as u64)),
        }
    }

    pub(crate) fn opt<'a>(&'a self, t: Option<&'a GpuTensor<D>>) -> &'a D::Buffer {
        t.map_or(self.ctx.dummy(), |t| &t.buf)
    }

    /// C[m, n] = A · B (+ bias) with strided operands, each (buffer, row stride, column stride).
    /// Row-major B and C with n % 4 == 0 take a vec4 kernel; anything else the scalar one.
    pub(crate) fn matmul(&self, (m, n, k): (usize, usize, usize), a: (&D::Buffer, usize, usize), b: (&D::Buffer, usize, usize), bias: Option<&GpuTensor<D>>, c: &GpuTensor<D>) -> BResult<()> {
        if self.matmul_alt() {
            return self.matmul_tiled((m, n, k), a, b, bias, c);
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        let vec4 = k > 0 && b.2 == 1 && n.is_multiple_of(4) && b.1.is_multiple_of(4);
        // Each 8x8 workgroup covers 32 rows of C (and 32 columns, or 8 vec4 columns);
        // taller outputs take several dispatches.
        let max_groups = self.ctx.max_groups() as usize;
        let gx = if vec4 { (n / 4).div_ceil(8) } else { n.div_ceil(32) };
        check(gx <= max_groups, || format!("matmul: {n} output columns exceed the dispatch grid"))?;
        let rows_per_dispatch = max_groups * 32;
        let flags = u32::from(bias.is_some());
        let mut row0 = 0;
        while row0 < m {
            let rows = (m - row0).min(rows_per_dispatch);
            let grid = Grid::Groups(u(gx), u(rows.div_ceil(32)), 1);
            let bufs = [a.0, b.0, self.opt(bias), &c.buf];
            if vec4 && a.2 == 1 && k.is_multiple_of(4) && a.1.is_multiple_of(4) {
                // A rows contiguous along k: vec4 loads of A too, four k-steps per iteration.
                let params = [u(m), u(n), u(k), 0, u(a.1 / 4), 0, 0, u(b.1 / 4), flags, u(row0)];
                self.ctx.run("matmul4_ak", &params, &bufs, grid)?;
            } else if vec4 && a.1 == 1 && m.is_multiple_of(4) && a.2.is_multiple_of(4) {
                // A stored transposed: one vec4 holds the block's four rows at each k.
                let params = [u(m), u(n), u(k), 0, 0, u(a.2 / 4), 0, u(b.1 / 4), flags, u(row0)];
                self.ctx.run("matmul4_am", &params, &bufs, grid)?;
            } else if vec4 {
                let params = [u(m), u(n), u(k), 0, u(a.1), u(a.2), 0, u(b.1 / 4), flags, u(row0)];
                self.ctx.run("matmul4", &params, &bufs, grid)?;
            } else {
                let params = [u(m), u(n), u(k), 0, u(a.1), u(a.2), 0, u(b.1), u(b.2), flags, u(row0)];
                self.ctx.run("matmul", &params, &bufs, grid)?;
            }
            row0 += rows;
        }
        Ok(())
    }

    /// The copy of w: [m, k] that `linear`'s product y = x·wᵀ reads as its right operand: wᵀ
    /// made row-major (a cheap [m, k] transpose) when m % 4 == 0 and the register-blocked
    /// kernels run, so the vec4 kernel reads it contiguously; `None`: w is read strided.
    pub(crate) fn weight_t(&self, w: &GpuTensor<D>, m: usize, k: usize) -> BResult<Option<GpuTensor<D>>> {
        (m.is_multiple_of(4) && k > 0 && !self.matmul_alt()).then(|| self.transpose(w, m, k)).transpose()
    }

    /// The right operand (buffer, row stride, column stride) of y = x·wᵀ, given [`Self::weight_t`].
    pub(crate) fn weight_operand<'a>(w: &'a GpuTensor<D>, wt: Option<&'a GpuTensor<D>>, m: usize, k: usize) -> (&'a D::Buffer, usize, usize) {
        match wt {
            Some(t) => (&t.buf, m, 1),
            None => (&w.buf, 1, k),
        }
    }

    /// [rows, cols] → [cols, rows].
    pub(crate) fn transpose(&self, t: &GpuTensor<D>, rows: usize, cols: usize) -> BResult<GpuTensor<D>> {
        let out = self.alloc(&[cols, rows])?;
        self.ctx.run("transpose", &[u(out.len), u(rows), u(cols)], &[&t.buf, &out.buf], Grid::Threads(out.len as u64))?;
        Ok(out)
    }

    /// Column sums of `src` seen as [rows, cols] (mode 0) or of dy⊙x⊙rstd[row] (mode 1) → [cols].
    pub(crate) fn colsum(&self, src: &D::Buffer, rows: usize, cols: usize, mode: u32, b: Option<&D::Buffer>, c: Option<&D::Buffer>) -> BResult<GpuTensor<D>> {
        let dummy = self.ctx.dummy();
        let chunks = rows.div_ceil(COL_CHUNK).max(1);
        let first = self.alloc(&[chunks, cols])?;
        let n = chunks * cols;
        let params = [u(rows), u(cols), u(COL_CHUNK), mode, u(n), 0, 0];
        self.ctx.run("colsum", &params, &[src, b.unwrap_or(dummy), c.unwrap_or(dummy), &first.buf], Grid::Threads(n as u64))?;
        self.sum_rows(first, cols)
    }

    /// Sums a [chunks, cols] partial-sum tensor down to [cols].
    pub(crate) fn sum_rows(&self, mut part: GpuTensor<D>, cols: usize) -> BResult<GpuTensor<D>> {
        let dummy = self.ctx.dummy();
        let mut rows = part.len / cols.max(1);
        while rows > 1 {
            let chunks = rows.div_ceil(COL_CHUNK);
            let next = self.alloc(&[chunks, cols])?;
            let n = chunks * cols;
            let params = [u(rows), u(cols), u(COL_CHUNK), 0, u(n), 0, 0];
            self.ctx.run("colsum", &params, &[&part.buf, dummy, dummy, &next.buf], Grid::Threads(n as u64))?;
            part = next;
            rows = chunks;
        }
        part.shape = vec![cols];
        Ok(part)
    }

    /// Reduces a vector of partial sums to one value (times `scale`), as a [1] tensor.
    pub(crate) fn sum_all(&self, mut part: GpuTensor<D>, scale: f32) -> BResult<GpuTensor<D>> {
        let dummy = self.ctx.dummy();
        loop {
            let n = part.len;
            let threads = n.div_ceil(RED_CHUNK).max(1);
            if n == 1 && scale == 1.0 {
                part.shape = vec![1];
                return Ok(part);
            }
            let next = self.alloc(&[threads])?;
            let s = if threads == 1 { scale } else { 1.0 };
            self.ctx.run("reduce", &[u(n), u(RED_CHUNK), 2, f(s), 0, u(threads)], &[&part.buf, dummy, &next.buf], Grid::Threads(threads as u64))?;
            part = next;
            if threads == 1 {
                part.shape = vec![1];
                return Ok(part);
            }
        }
    }

    /// Segment means of [B, L, D] `src` into `dst` at value offset `off`, as [B, 2, D].
    pub(crate) fn segmean(&self, src: &GpuTensor<D>, dst: &GpuTensor<D>, off: usize, (b, l, d): (usize, usize, usize), s0: usize) -> BResult<()> {
        let n = b * 2 * d;
        self.ctx.run("segmean", &[u(n), u(l), u(d), u(s0), u(off)], &[&src.buf, &dst.buf], Grid::Threads(n as u64))
    }

    /// [M(x) | M(u)], each [B, 2, D].
    pub(crate) fn mv_means(&self, x: &GpuTensor<D>, uu: &GpuTensor<D>, bld: (usize, usize, usize), s0: usize) -> BResult<GpuTensor<D>> {
        let (b, _, d) = bld;
        let means = self.alloc(&[2, b, 2, d])?;
        self.segmean(x, &means, 0, bld, s0)?;
        self.segmean(uu, &means, b * 2 * d, bld, s0)?;
        Ok(means)
    }

    pub(crate) fn patch_op(&self, src: &GpuTensor<D>, out_shape: &[usize], image: [usize; 4], p: usize, channel_last: bool, to_image: bool) -> BResult<GpuTensor<D>> {
        let [_, c, h, w] = image;
        let (gw, li) = (w / p, (h / p) * (w / p));
        let out = self.alloc(out_shape)?;
        let params = [u(out.len), u(c), u(h), u(w), u(p), u(gw), u(li), u32::from(channel_last), u32::from(to_image)];
        self.ctx.run("patch", &params, &[&src.buf, &out.buf], Grid::Threads(out.len as u64))?;
        Ok(out)
    }

    pub(crate) fn head_dim(&self, d: usize, nh: usize, op: &str) -> BResult<usize> {
        check(nh > 0 && d.is_multiple_of(nh), || format!("{op}: D={d} with {nh} heads"))?;
        Ok(d / nh)
    }
}
