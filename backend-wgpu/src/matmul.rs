//! The workgroup-memory tiled matmul and the f16-operand path.
//!
//! Which matmul runs is decided once per device ([`GpuDevice::matmul_plan`]; for wgpu by
//! `WgpuOptions`): GPUs (discrete,
//! integrated, virtual) get `matmul_tiled.wgsl`, whose 64×64 tiles are staged in workgroup
//! memory; CPU adapters such as Mesa's lavapipe keep the register-blocked kernels of `lib.rs`,
//! because there a workgroup barrier costs more than the memory traffic it saves (measured: a
//! 16×16 tiled shader reached 1 GFLOP/s on lavapipe, the register-blocked one 10).
//!
//! With f16 (`MatmulPlan::f16`) both operands are copied to dense, zero-padded f16 matrices
//! (`to_f16_pad.wgsl`), multiplied with f32 accumulation by a cooperative-matrix kernel
//! (`matmul_coop_ws.wgsl` / `matmul_coop.wgsl`, tensor cores; Vulkan on devices that have
//! them) or the tiled kernel read as f16, and cut back to C (`matmul_out.wgsl`). Each operand is first multiplied by a power
//! of two (`absmax.wgsl`: its largest magnitude goes to 2^14) and the product divided by both
//! scales, so neither large activations overflow f16 nor small gradients (≈1e-5 for a mean
//! over 10^5 values) underflow it; powers of two make the scaling itself exact.

use crate::gpu::{Coop, GpuDevice, Grid};
use crate::{check, u, GpuBackend, GpuTensor};
use mvdit_core::{BResult, BackendError};

/// Output tile of the tiled kernel (rows and columns).
const TILE: usize = 64;
/// Values per invocation (at least) of the max-magnitude reduction's first pass, and its most
/// workgroups (of 256; the second pass reduces their maxima in one workgroup).
const ABSMAX_PER_THREAD: usize = 16;
const ABSMAX_GROUPS: usize = 1024;

/// A strided operand: (buffer, row stride, column stride), offsets 0.
type Operand<'a, B> = (&'a B, usize, usize);

/// A batch of GEMMs over z = zb·nh + zh < count: operand X of GEMM z starts at
/// zb·x.0 + zh·x.1 (x = a, b, c), and C's rows are `c_rs` apart.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batch {
    pub count: usize,
    pub nh: usize,
    pub a: (usize, usize),
    pub b: (usize, usize),
    pub c: (usize, usize),
    pub c_rs: usize,
}

impl Batch {
    /// One GEMM writing a dense C with `n` columns.
    fn one(n: usize) -> Self {
        Batch { count: 1, nh: 1, a: (0, 0), b: (0, 0), c: (0, 0), c_rs: n }
    }
}

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

    /// C[m, n] = A[m, k] · B[k, n] (+ bias) with the tiled kernel, or the padded f16 path when
    /// the backend's precision is f16.
    pub(crate) fn matmul_tiled(&self, (m, n, k): (usize, usize, usize), a: Operand<D::Buffer>, b: Operand<D::Buffer>, bias: Option<&GpuTensor<D>>, c: &GpuTensor<D>) -> BResult<()> {
        if m == 0 || n == 0 {
            return Ok(());
        }
        if self.ctx.matmul_plan().f16 {
            return self.matmul_f16((m, n, k), a, b, bias, &c.buf, &Batch::one(n));
        }
        let flags = u32::from(bias.is_some());
        let strides = [u(a.1), u(a.2), u(b.1), u(b.2)];
        let batch = Batch::one(n);
        self.tiled_dispatch(self.tiled_kernel(m, n, &batch, false), (m, n, k), [a.0, b.0, self.opt(bias), &c.buf], strides, flags, &batch)
    }

    /// Batched C_z = A_z · B_z for z < `batch.count` (attention's score and output products):
    /// `a`, `b` strided as in [`Self::matmul_tiled`], the batch offsets and C's row stride in
    /// `batch`; f16 operands when the backend's precision is f16.
    pub(crate) fn matmul_batched(&self, (m, n, k): (usize, usize, usize), a: Operand<D::Buffer>, b: Operand<D::Buffer>, c: &D::Buffer, batch: &Batch) -> BResult<()> {
        if m == 0 || n == 0 || batch.count == 0 {
            return Ok(());
        }
        if self.ctx.matmul_plan().f16 {
            return self.matmul_f16((m, n, k), a, b, None, c, batch);
        }
        let dummy = self.ctx.dummy();
        self.tiled_dispatch(self.tiled_kernel(m, n, batch, false), (m, n, k), [a.0, b.0, dummy, c], [u(a.1), u(a.2), u(b.1), u(b.2)], 0, batch)
    }

    /// The tiled kernel for an m×n product over `batch` (operands f32, or f16 with `half`) and
    /// its tile size.
    fn tiled_kernel(&self, m: usize, n: usize, batch: &Batch, half: bool) -> (&'static str, usize) {
        match (self.ctx.matmul_plan().big_tiles.take(m, n, batch.count), half) {
            (true, false) => ("matmul_tiled128", 128),
            (true, true) => ("matmul_tiled128_h", 128),
            (false, false) => ("matmul_tiled", TILE),
            (false, true) => ("matmul_tiled_h", TILE),
        }
    }

    /// The tiled kernel `kernel` (square tiles of C of `tile` rows) over all rows of C (as many
    /// dispatches as the grid limit needs) and every z of `batch`; `strides` = [a_rs, a_cs,
    /// b_rs, b_cs].
    #[allow(clippy::too_many_arguments)]
    fn tiled_dispatch(&self, (kernel, tile): (&str, usize), (m, n, k): (usize, usize, usize), bufs: [&D::Buffer; 4], strides: [u32; 4], flags: u32, batch: &Batch) -> BResult<()> {
        let max_groups = self.ctx.max_groups() as usize;
        let gx = n.div_ceil(tile);
        check(gx <= max_groups && batch.count <= max_groups, || format!("matmul: {n} output columns or a batch of {} exceed the dispatch grid", batch.count))?;
        let [a_rs, a_cs, b_rs, b_cs] = strides;
        let Batch { nh, a: (a_sb, a_sh), b: (b_sb, b_sh), c: (c_sb, c_sh), c_rs, .. } = *batch;
        let rows_per_dispatch = max_groups * tile;
        let mut row0 = 0;
        while row0 < m {
            let rows = (m - row0).min(rows_per_dispatch);
            let params = [u(m), u(n), u(k), a_rs, a_cs, b_rs, b_cs, flags, u(row0), u(nh), u(a_sb), u(a_sh), u(b_sb), u(b_sh), u(c_sb), u(c_sh), u(c_rs)];
            self.ctx.run(kernel, &params, &bufs, Grid::Groups(u(gx), u(rows.div_ceil(tile)), u(batch.count)))?;
            row0 += rows;
        }
        Ok(())
    }

    /// C_z = A_z · B_z (+ bias) for each z of `batch`, with f16 operands: each operand scaled by
    /// a power of two (one scale for the whole batch) and copied to dense, zero-padded f16
    /// matrices (rows and columns of C to multiples of [`TILE`], k to 16; z-major), the
    /// products Cp_z [m_p, n_p] taken on cooperative-matrix units (`matmul_coop`) or by the
    /// tiled kernel, then C = Cp / scales (+ bias) cut to [m, n] (`matmul_out`); the staged
    /// cooperative kernel (`matmul_coop_ws`) writes C itself by the same rule. The padding
    /// lets the cooperative kernels load whole fragments without bounds checks.
    #[allow(clippy::too_many_arguments)]
    fn matmul_f16(&self, (m, n, k): (usize, usize, usize), a: Operand<D::Buffer>, b: Operand<D::Buffer>, bias: Option<&GpuTensor<D>>, c: &D::Buffer, batch: &Batch) -> BResult<()> {
        let (mp, np, kp) = (m.next_multiple_of(TILE), n.next_multiple_of(TILE), k.next_multiple_of(16).max(16));
        let z = batch.count;
        let max_groups = self.ctx.max_groups() as usize;
        check(np / TILE <= max_groups && z <= max_groups, || format!("matmul: {n} output columns or a batch of {z} exceed the dispatch grid"))?;
        // The f16 copies live until the dispatches below are recorded; their buffers return to
        // the pool when they drop, which is safe (see pool.rs).
        let scales = self.alloc(&[2])?;
        let ah = self.to_f16_pad(a, (m, k), (mp, kp), (batch, batch.a), &scales, 0)?;
        let bh = self.to_f16_pad(b, (k, n), (kp, np), (batch, batch.b), &scales, 1)?;
        // The output rule's parameters (`store_c`: m, n, bias flag, then C's batch layout).
        let Batch { nh, c: (c_sb, c_sh), c_rs, .. } = *batch;
        let out = [u(m), u(n), u32::from(bias.is_some()), u(nh), u(c_sb), u(c_sh), u(c_rs)];
        let coop = self.ctx.matmul_plan().coop;
        if let Some(coop @ Coop { staged: true, .. }) = coop {
            return self.coop_product(coop, (mp, np, kp), z, &out, &[&ah.buf, &bh.buf, &scales.buf, self.opt(bias), c]);
        }
        let cp = self.alloc(&[z, mp, np])?;
        match coop {
            Some(coop) => self.coop_product(coop, (mp, np, kp), z, &[], &[&ah.buf, &bh.buf, &cp.buf])?,
            None => {
                let dense = Batch { count: z, nh: 1, a: (mp * kp, 0), b: (kp * np, 0), c: (mp * np, 0), c_rs: np };
                self.tiled_dispatch(self.tiled_kernel(mp, np, &dense, true), (mp, np, kp), [&ah.buf, &bh.buf, self.ctx.dummy(), &cp.buf], [u(kp), 1, u(np), 1], 0, &dense)?;
            }
        }
        let params = [&[u(mp), u(np), u(z)][..], &out].concat();
        self.ctx.run("matmul_out", &params, &[&cp.buf, &scales.buf, self.opt(bias), c], Grid::Threads((z * m * n) as u64))
    }

    /// The cooperative-matrix kernel `coop` over each of `z` padded products (m_p, n_p, k_p),
    /// with the parameters [m_p, n_p, k_p, row0] followed by `extra`, in as many dispatches as
    /// the grid limit needs.
    fn coop_product(&self, coop: Coop, (mp, np, kp): (usize, usize, usize), z: usize, extra: &[u32], bufs: &[&D::Buffer]) -> BResult<()> {
        let kernel = coop.kernel().ok_or_else(|| BackendError::Device(format!("no cooperative-matrix kernel takes {0}×{0} fragments", coop.fragment)))?;
        // A workgroup's block of the product; the kernels leave out what lies past m_p, n_p.
        let block = coop.block();
        let max_groups = self.ctx.max_groups() as usize;
        check(np.div_ceil(block) <= max_groups, || format!("matmul: {np} padded output columns exceed the dispatch grid"))?;
        let mut row0 = 0;
        while row0 < mp {
            let rows = (mp - row0).min(max_groups * block);
            let grid = Grid::Groups(u(np.div_ceil(block)), u(rows.div_ceil(block)), u(z));
            self.ctx.run(&kernel, &[&[u(mp), u(np), u(kp), u(row0)][..], extra].concat(), bufs, grid)?;
            row0 += rows;
        }
        Ok(())
    }

    /// Operand `src` (`rows`×`cols`, strides (rs, cs); one per z of `batch`, at the batch
    /// offsets `(sb, sh)`) times the power-of-two scale written to `scales[slot]`, as dense
    /// row-major f16 matrices of `padded` = (rows_p, cols_p), z-major, zeros outside the
    /// operand (two f16 per 32-bit word).
    #[allow(clippy::too_many_arguments)]
    fn to_f16_pad(&self, (src, rs, cs): Operand<D::Buffer>, (rows, cols): (usize, usize), (rows_p, cols_p): (usize, usize), (batch, (sb, sh)): (&Batch, (usize, usize)), scales: &GpuTensor<D>, slot: u32) -> BResult<GpuTensor<D>> {
        // Values spanned by the whole batch: the last sample's last head plus one operand.
        let z = batch.count;
        let span = if z == 0 { 0 } else { ((z - 1) / batch.nh) * sb + (batch.nh - 1).min(z - 1) * sh + extent(rows, cols, rs, cs) };
        self.absmax(src, span, scales, slot)?;
        let pairs = z * rows_p * cols_p / 2;
        let out = self.alloc(&[pairs])?;
        let params = [u(rows), u(cols), u(rs), u(cs), u(rows_p), u(cols_p), slot, u(batch.nh), u(sb), u(sh), u(z)];
        self.ctx.run("to_f16_pad", &params, &[src, &scales.buf, &out.buf], Grid::Threads(pairs as u64))?;
        Ok(out)
    }

    /// Writes to `scales[slot]` the power of two that takes max |src[..n]| to 2^14 (1 when all
    /// are zero): workgroup maxima, then one workgroup over those (one pass for small n).
    fn absmax(&self, src: &D::Buffer, n: usize, scales: &GpuTensor<D>, slot: u32) -> BResult<()> {
        let groups = n.div_ceil(256 * ABSMAX_PER_THREAD).clamp(1, ABSMAX_GROUPS);
        let one = Grid::Groups(1, 1, 1);
        if groups == 1 {
            return self.ctx.run("absmax", &[u(n), 1, slot, 1], &[src, &scales.buf], one);
        }
        let part = self.alloc(&[groups])?;
        self.ctx.run("absmax", &[u(n), u(groups), 0, 0], &[src, &part.buf], Grid::Groups(u(groups), 1, 1))?;
        self.ctx.run("absmax", &[u(groups), 1, slot, 1], &[&part.buf, &scales.buf], one)
    }
}
