//! The workgroup-memory tiled matmul and the f16-operand path.
//!
//! Which matmul runs is decided once per device ([`GpuDevice::matmul_plan`]; for wgpu by
//! `WgpuOptions`): GPUs (discrete,
//! integrated, virtual) get `matmul_tiled.wgsl`, whose 64×64 tiles are staged in workgroup
//! memory; CPU adapters such as Mesa's lavapipe keep the register-blocked kernels of `lib.rs`,
//! because there a workgroup barrier costs more than the memory traffic it saves (measured: a
//! 16×16 tiled shader reached 1 GFLOP/s on lavapipe, the register-blocked one 10).
//!
//! With f16 (wgpu: `Precision::F16`) both operands are copied to f16 (`to_f16.wgsl`) and the tiled
//! kernel reads them as f16, accumulating in f32. Each operand is first multiplied by a power
//! of two (`absmax.wgsl`: its largest magnitude goes to 2^14) and the product divided by both
//! scales, so neither large activations overflow f16 nor small gradients (≈1e-5 for a mean
//! over 10^5 values) underflow it; powers of two make the scaling itself exact.

use crate::gpu::{GpuDevice, Grid};
use crate::{check, u, GpuBackend, GpuTensor};
use mvdit_core::BResult;

/// Output tile of the tiled kernel (rows and columns).
const TILE: usize = 64;
/// Values per thread of the max-magnitude reduction.
const ABSMAX_CHUNK: usize = 256;

/// A strided operand: (buffer, row stride, column stride), offsets 0.
type Operand<'a, B> = (&'a B, usize, usize);

/// Values spanned by a `rows`×`cols` operand with strides (rs, cs).
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

impl<D: GpuDevice> GpuBackend<D> {
    /// True when matmuls take this module's kernels instead of the register-blocked ones.
    pub(crate) fn matmul_alt(&self) -> bool {
        let plan = self.ctx.matmul_plan();
        plan.tiled || plan.f16
    }

    /// C[m, n] = A[m, k] · B[k, n] (+ bias) with the tiled kernel, f16 operands when the
    /// backend's precision is f16.
    pub(crate) fn matmul_tiled(&self, (m, n, k): (usize, usize, usize), a: Operand<D::Buffer>, b: Operand<D::Buffer>, bias: Option<&GpuTensor<D>>, c: &GpuTensor<D>) -> BResult<()> {
        if m == 0 || n == 0 {
            return Ok(());
        }
        let max_groups = self.ctx.max_groups() as usize;
        let gx = n.div_ceil(TILE);
        check(gx <= max_groups, || format!("matmul: {n} output columns exceed the dispatch grid"))?;
        // The f16 copies live until the dispatches below are recorded; their buffers return to
        // the pool when they drop, which is safe (see pool.rs).
        let half = if self.ctx.matmul_plan().f16 && k > 0 {
            let scales = self.alloc(&[2])?;
            let ah = self.to_f16(a.0, extent(m, k, a.1, a.2), &scales, 0)?;
            let bh = self.to_f16(b.0, extent(k, n, b.1, b.2), &scales, 1)?;
            Some((ah, bh, scales))
        } else {
            None
        };
        let (kernel, ab, bb, scales, flags) = match &half {
            Some((ah, bh, s)) => ("matmul_tiled_h", &ah.buf, &bh.buf, &s.buf, 4),
            None => ("matmul_tiled", a.0, b.0, self.ctx.dummy(), 0),
        };
        let flags = flags | u32::from(bias.is_some());
        let rows_per_dispatch = max_groups * TILE;
        let mut row0 = 0;
        while row0 < m {
            let rows = (m - row0).min(rows_per_dispatch);
            let params = [u(m), u(n), u(k), u(a.1), u(a.2), u(b.1), u(b.2), flags, u(row0)];
            let grid = Grid::Groups(u(gx), u(rows.div_ceil(TILE)), 1);
            self.ctx.run(kernel, &params, &[ab, bb, self.opt(bias), &c.buf, scales], grid)?;
            row0 += rows;
        }
        Ok(())
    }

    /// The first `n` values of `src`, times the power-of-two scale written to `scales[slot]`,
    /// as f16 (two per 32-bit word).
    fn to_f16(&self, src: &D::Buffer, n: usize, scales: &GpuTensor<D>, slot: u32) -> BResult<GpuTensor<D>> {
        // max |src| by chunked passes; the last (one thread) writes the scale instead.
        let mut part: Option<GpuTensor<D>> = None;
        let mut len = n;
        loop {
            let threads = len.div_ceil(ABSMAX_CHUNK).max(1);
            let last = threads == 1;
            let next = if last { None } else { Some(self.alloc(&[threads])?) };
            let input = part.as_ref().map_or(src, |p| &p.buf);
            let (dst, off) = match &next {
                Some(t) => (&t.buf, 0),
                None => (&scales.buf, slot),
            };
            self.ctx.run("absmax", &[u(len), u(ABSMAX_CHUNK), u(threads), off, u32::from(last)], &[input, dst], Grid::Threads(threads as u64))?;
            if last {
                break;
            }
            part = next;
            len = threads;
        }
        let pairs = n.div_ceil(2);
        let out = self.alloc(&[pairs.max(1)])?;
        self.ctx.run("to_f16", &[u(n), u(pairs), slot], &[src, &scales.buf, &out.buf], Grid::Threads(pairs as u64))?;
        Ok(out)
    }
}
