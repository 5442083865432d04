//! The workgroup-memory tiled matmul and the f16-operand path.
//!
//! Which matmul runs is decided once per device ([`GpuDevice::matmul_plan`]; for wgpu by
//! `WgpuOptions`): GPUs (discrete,
//! integrated, virtual) get `matmul_tiled.wgsl`, whose 64×64 tiles are staged in workgroup
//! memory; CPU adapters such as Mesa's lavapipe keep the register-blocked kernels of `lib.rs`,
//! because there a workgroup barrier costs more than the memory traffic it saves (measured: a
//! 16×16 tiled shader reached 1 GFLOP/s on lavapipe, the register-blocked one 10).
//!
//! With f16 (`MatmulPlan::f16`) the operands are rounded to f16 and multiplied with f32
//! accumulation. The tiled kernels' `_h` builds round each f32 value as they stage it into
//! workgroup memory: one dispatch per product, as in f32. The cooperative-matrix kernels
//! (`matmul_coop_ws.wgsl` / `matmul_coop.wgsl`, tensor cores; Vulkan on devices that have them)
//! still take dense, zero-padded f16 copies (`to_f16_pad.wgsl`) and, unstaged, a last pass to C
//! (`matmul_out.wgsl`). Values are taken at scale 1: past f16's 65504 an operand becomes ±inf
//! and the result non-finite, and gradients too small for f16 are lifted by training's dynamic
//! loss scale (`mvdit_train::loss_scale`), as in PyTorch's mixed precision.

use crate::gpu::{Coop, GpuDevice, Grid};
use crate::tune::{GemmKey, MatmulChoice};
use crate::{check, u, GpuBackend, GpuTensor};
use mvdit_core::{BResult, Backend, BackendError};
use std::time::Instant;

/// Output tile of the tiled kernel (rows and columns).
const TILE: usize = 64;

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
        self.tiled_dispatch(self.tiled_kernel((m, n, k), &batch, false), (m, n, k), [a.0, b.0, self.opt(bias), &c.buf], strides, flags, &batch)
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
        self.tiled_dispatch(self.tiled_kernel((m, n, k), batch, false), (m, n, k), [a.0, b.0, dummy, c], [u(a.1), u(a.2), u(b.1), u(b.2)], 0, batch)
    }

    /// The tiled kernel for an m×n×k product over `batch` (operands f32, or f16 with `half`)
    /// and its tile size: the tuned choice for the shape, else the plan's tile rule.
    fn tiled_kernel(&self, (m, n, k): (usize, usize, usize), batch: &Batch, half: bool) -> (&'static str, usize) {
        let big = match self.tuning.choice(self.gemm_key((m, n, k), batch)) {
            Some(MatmulChoice::Tiled128) => true,
            Some(MatmulChoice::Tiled64) => false,
            _ => self.ctx.matmul_plan().big_tiles.take(m, n, batch.count),
        };
        match (big, half) {
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

    /// C_z = A_z · B_z (+ bias) for each z of `batch`, with f16 operands. Without
    /// cooperative matrices: the tiled kernel's `_h` build, rounding as it stages. With them:
    /// the operands copied to dense, zero-padded f16 matrices (rows and columns of C to
    /// multiples of [`TILE`], k to 16; z-major), the products Cp_z [m_p, n_p] taken on
    /// cooperative-matrix units (`matmul_coop`), then C = Cp (+ bias) cut to [m, n]
    /// (`matmul_out`); the staged kernel (`matmul_coop_ws`) writes C itself by the same rule. The
    /// padding lets the cooperative kernels load whole fragments without bounds checks.
    #[allow(clippy::too_many_arguments)]
    fn matmul_f16(&self, (m, n, k): (usize, usize, usize), a: Operand<D::Buffer>, b: Operand<D::Buffer>, bias: Option<&GpuTensor<D>>, c: &D::Buffer, batch: &Batch) -> BResult<()> {
        // The device's cooperative kernel, or the tuned one of its fragment size, unless the
        // shape is tuned to a tiled kernel.
        let coop = self.ctx.matmul_plan().coop.and_then(|plan| match self.tuning.choice(self.gemm_key((m, n, k), batch)) {
            Some(choice) => choice.coop(plan.fragment),
            None => Some(plan),
        });
        let Some(coop) = coop else {
            let strides = [u(a.1), u(a.2), u(b.1), u(b.2)];
            return self.tiled_dispatch(self.tiled_kernel((m, n, k), batch, true), (m, n, k), [a.0, b.0, self.opt(bias), c], strides, u32::from(bias.is_some()), batch);
        };
        let (mp, np, kp) = (m.next_multiple_of(TILE), n.next_multiple_of(TILE), k.next_multiple_of(16).max(16));
        let z = batch.count;
        let max_groups = self.ctx.max_groups() as usize;
        check(np / TILE <= max_groups && z <= max_groups, || format!("matmul: {n} output columns or a batch of {z} exceed the dispatch grid"))?;
        // The kernels' operand scales (`store_c` divides by their product): 1, see the module docs.
        let scales = match self.unit_scales.get() {
            Some(s) => s,
            None => {
                let s = self.upload(&[1.0, 1.0], &[2])?;
                self.unit_scales.get_or_init(|| s)
            }
        };
        // The f16 copies live until the dispatches below are recorded; their buffers return to
        // the pool when they drop, which is safe (see pool.rs).
        let ah = self.to_f16_pad(a, (m, k), (mp, kp), (batch, batch.a), scales, 0)?;
        let bh = self.to_f16_pad(b, (k, n), (kp, np), (batch, batch.b), scales, 1)?;
        // The output rule's parameters (`store_c`: m, n, bias flag, then C's batch layout).
        let Batch { nh, c: (c_sb, c_sh), c_rs, .. } = *batch;
        let out = [u(m), u(n), u32::from(bias.is_some()), u(nh), u(c_sb), u(c_sh), u(c_rs)];
        if coop.staged {
            return self.coop_product(coop, (mp, np, kp), z, &out, &[&ah.buf, &bh.buf, &scales.buf, self.opt(bias), c]);
        }
        let cp = self.alloc(&[z, mp, np])?;
        self.coop_product(coop, (mp, np, kp), z, &[], &[&ah.buf, &bh.buf, &cp.buf])?;
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
    /// offsets `(sb, sh)`) times `scales[slot]`, as dense row-major f16 matrices of `padded` =
    /// (rows_p, cols_p), z-major, zeros outside the operand (two f16 per 32-bit word).
    #[allow(clippy::too_many_arguments)]
    fn to_f16_pad(&self, (src, rs, cs): Operand<D::Buffer>, (rows, cols): (usize, usize), (rows_p, cols_p): (usize, usize), (batch, (sb, sh)): (&Batch, (usize, usize)), scales: &GpuTensor<D>, slot: u32) -> BResult<GpuTensor<D>> {
        let pairs = batch.count * rows_p * cols_p / 2;
        let out = self.alloc(&[pairs])?;
        let params = [u(rows), u(cols), u(rs), u(cs), u(rows_p), u(cols_p), slot, u(batch.nh), u(sb), u(sh), u(batch.count)];
        self.ctx.run("to_f16_pad", &params, &[src, &scales.buf, &out.buf], Grid::Threads(pairs as u64))?;
        Ok(out)
    }
}

/// Tuning support: the key of a product, and one product timed with a forced kernel.
impl<D: GpuDevice> GpuBackend<D> {
    /// The key of an m×n×k product over `batch` on this backend.
    pub(crate) fn gemm_key(&self, (m, n, k): (usize, usize, usize), batch: &Batch) -> GemmKey {
        GemmKey { m, n, k, batch: batch.count, f16: self.ctx.matmul_plan().f16 }
    }

    /// Times `choice` on a product of shape `key` (dense row-major operands of values in
    /// [-1, 1)): the median of `reps` runs after one warm-up, in seconds, and C (all z).
    pub fn time_gemm(&self, key: GemmKey, choice: MatmulChoice, reps: usize) -> BResult<(f64, Vec<f32>)> {
        let GemmKey { m, n, k, batch: z, .. } = key;
        let a = self.ctx.upload(&mvdit_core::rng::values(z * m * k, 1, 1.0))?;
        let b = self.ctx.upload(&mvdit_core::rng::values(z * k * n, 2, 1.0))?;
        let c = self.ctx.alloc(z * m * n)?;
        let batch = Batch { count: z, nh: 1, a: (m * k, 0), b: (k * n, 0), c: (m * n, 0), c_rs: n };
        let old = self.tuning.put(key, Some(choice));
        let run = || -> BResult<f64> {
            let t = Instant::now();
            self.matmul_batched((m, n, k), (&a, k, 1), (&b, n, 1), &c, &batch)?;
            self.ctx.sync()?;
            Ok(t.elapsed().as_secs_f64())
        };
        let times: BResult<Vec<f64>> = (0..reps.max(1) + 1).map(|_| run()).collect();
        self.tuning.put(key, old);
        let mut times = times?;
        times.remove(0);
        times.sort_by(f64::total_cmp);
        let out = self.ctx.download(&c, z * m * n)?;
        Ok((times[times.len() / 2], out))
    }
}
