//! GPU backend through wgpu (Vulkan, Metal, DX12, OpenGL): every op of [`mvdit_core::Backend`]
//! as WGSL compute shaders, forward and backward, in f32 (matmul operands optionally f16, see `Precision`).
//!
//! Over 600 lines: the `Backend` impl is one block of ~440 lines, one short method per op
//! (shape checks, then launch helpers from launch.rs, matmul.rs, attn_gemm.rs, residual.rs;
//! the frozen networks' ops delegate to frozen.rs).
//!
//! * Tensors stay on the device (one STORAGE | COPY_SRC | COPY_DST buffer each). Ops only record
//!   dispatches into a pending command encoder, submitted every 256 dispatches; the host waits
//!   for the device only in [`Backend::download`] and [`Backend::sum_squares`] (the `mse` loss
//!   stays on the device as a `[1]` tensor).
//! * Pipelines are built on first use and cached by name; each dispatch reads its shapes and
//!   scalars from a 64-byte slot of a per-batch uniform buffer.
//! * Matmuls are register-blocked (4×4 outputs per invocation, no shared memory), with vec4
//!   kernels for row-major operands and strides for transposed ones. Row-wise ops (norms,
//!   MV-Split, RoPE+QK-norm, attention rows) use one invocation per row; attention keeps an
//!   online softmax per query and never stores [L, L]. Devices whose [`GpuDevice::row_plan`]
//!   asks for it (GPUs with subgroup arithmetic) run the norms and merges one subgroup per row.
//! * Grids are 2-D, so no dispatch exceeds `max_compute_workgroups_per_dimension`.
//! * A tensor larger than the device's `max_storage_buffer_binding_size` (128 MiB on lavapipe,
//!   often 2-4 GiB on discrete GPUs) or `max_buffer_size` is refused as
//!   [`BackendError::OutOfMemory`], as are allocations the device reports out of memory.
//! * Errors wgpu reports while recording or submitting come back as [`BackendError::Device`].
//! * wgpu pools buffers and caches bind groups (`pool.rs`): after the first step, steps of the
//!   same shapes allocate nothing on the device (`Wgpu::device_stats`).
//! * Devices that ask for it ([`GpuDevice::matmul_plan`]; wgpu on GPUs) get a workgroup-memory
//!   tiled matmul, optionally with f16 operands (`matmul.rs`).
//!
//! The op layer ([`GpuBackend`]) is generic over the device context ([`GpuDevice`]): `Wgpu` is
//! `GpuBackend<WgpuDevice>`, and `mvdit-backend-vulkan` runs the same ops and the same WGSL
//! kernels through vulkano. Without the default feature `wgpu` this crate is only that layer
//! (no wgpu dependency).

#[cfg(feature = "wgpu")]
mod ctx;
mod frozen;
mod attn_gemm;
mod launch;
pub mod gpu;
mod options;
mod packed;
mod matmul;
mod tune;
#[cfg(feature = "wgpu")]
mod pool;
mod residual;
#[cfg(feature = "wgpu")]
mod setup;

#[cfg(feature = "wgpu")]
pub use ctx::{WgpuBuffer, WgpuDevice};
pub use gpu::{BigTiles, Coop, GpuDevice, Grid, MatmulKernel, MatmulPlan, Precision, RowPlan, Subgroups};
pub use options::{Attention, GpuOptions};
pub use packed::GpuPacked;
use mvdit_core::ops::{AdamW, Conv2d, Heads};
use mvdit_core::{BResult, Backend, BackendError, LinearGrads, MvSplitGrads, ResidualGrads};
#[cfg(feature = "wgpu")]
pub use pool::DeviceStats;
#[cfg(feature = "wgpu")]
pub use setup::WgpuOptions;
pub use tune::{GemmKey, MatmulChoice};

/// An f32 tensor on the device: a storage buffer and its shape.
pub struct GpuTensor<D: GpuDevice> {
    buf: D::Buffer,
    shape: Vec<usize>,
    len: usize,
}

/// A tensor of the wgpu backend.
#[cfg(feature = "wgpu")]
pub type WgpuTensor = GpuTensor<WgpuDevice>;

impl<D: GpuDevice> std::fmt::Debug for GpuTensor<D>
where
    D::Buffer: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuTensor").field("buf", &self.buf).field("shape", &self.shape).finish()
    }
}

impl<D: GpuDevice> GpuTensor<D> {
    /// The underlying buffer (at least 4 bytes even for an empty tensor).
    pub fn buffer(&self) -> &D::Buffer {
        &self.buf
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn last(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }

    fn rows(&self) -> usize {
        self.len / self.last().max(1)
    }

    fn bld(&self, op: &str) -> BResult<(usize, usize, usize)> {
        match self.shape.as_slice() {
            [b, l, d] => Ok((*b, *l, *d)),
            s => Err(BackendError::Shape(format!("{op}: token tensor must be [B, L, D], got {s:?}"))),
        }
    }
}

/// The op layer over any [`GpuDevice`]: shape checks, kernel choice, parameters and grids for
/// every [`Backend`] op. `Wgpu` is this over wgpu; `mvdit-backend-vulkan` runs it over vulkano.
pub struct GpuBackend<D: GpuDevice> {
    ctx: D,
    /// AdamW's per-step scalars on the device, one buffer per weight-decay value (the decay
    /// groups), with what it holds: rewritten only when they change, so the update dispatches
    /// stay the same from step to step.
    adamw_scalars: std::sync::Mutex<Vec<AdamwScalars<D>>>,
    /// Per-shape matmul kernel choices (`tune.rs`).
    tuning: tune::Tuning,
    /// [1, 1]: the operand scales of the padded f16 products (`matmul.rs`), made once.
    unit_scales: std::sync::OnceLock<GpuTensor<D>>,
}

/// (weight-decay bits, the scalars the buffer holds, the buffer).
type AdamwScalars<D> = (u64, [f32; 4], GpuTensor<D>);

/// The wgpu backend.
#[cfg(feature = "wgpu")]
pub type Wgpu = GpuBackend<WgpuDevice>;

/// Rows per chunk of the column reductions (bias, gain, alpha/beta gradients).
const COL_CHUNK: usize = 256;
/// Values per thread of the scalar reductions (loss, sum of squares).
const RED_CHUNK: usize = 128;

fn check(ok: bool, what: impl FnOnce() -> String) -> BResult<()> {
    if ok {
        Ok(())
    } else {
        Err(BackendError::Shape(what()))
    }
}

fn same_shape<D: GpuDevice>(a: &GpuTensor<D>, b: &GpuTensor<D>, op: &str) -> BResult<()> {
    check(a.shape == b.shape, || format!("{op}: {:?} vs {:?}", a.shape, b.shape))
}

fn f(x: f32) -> u32 {
    x.to_bits()
}

fn u(x: usize) -> u32 {
    // Every index fits: tensors are capped at the storage binding size (< 2^32 bytes).
    x as u32
}

/// End of the first mean segment (`ops::segments`): one segment when either would be empty.
fn seg0_end(li: usize, l: usize) -> usize {
    if li == 0 || li >= l {
        l
    } else {
        li
    }
}

#[cfg(feature = "wgpu")]
impl Wgpu {
    /// Names of the adapters wgpu can see, in the order `new(Some(i))` indexes them.
    pub fn adapters() -> Vec<String> {
        WgpuDevice::list()
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.ctx.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.ctx.queue
    }
}

impl<D: GpuDevice> GpuBackend<D> {
    /// Opens device `index` of [`GpuBackend::devices`], or the preferred device when `None`
    /// (wgpu: the default high-performance adapter). No device gives
    /// [`BackendError::Device`] saying what to install.
    pub fn new(index: Option<usize>) -> BResult<Self> {
        Ok(Self::from_context(D::open(index)?))
    }

    /// Runs on a device the application already opened (needs no optional features).
    pub fn from_device(device: D::Device, queue: D::Queue) -> BResult<Self> {
        Ok(Self::from_context(D::from_device(device, queue)?))
    }

    /// The op layer over an opened device context.
    pub fn from_context(ctx: D) -> Self {
        GpuBackend { ctx, adamw_scalars: std::sync::Mutex::new(Vec::new()), tuning: tune::Tuning::default(), unit_scales: std::sync::OnceLock::new() }
    }

    /// The device context (device-specific queries such as profiles).
    pub fn context(&self) -> &D {
        &self.ctx
    }

    /// The devices `new(Some(i))` indexes, one line each.
    pub fn devices() -> Vec<String> {
        D::list()
    }

    /// Submits all recorded work without waiting for it.
    pub fn flush(&self) -> BResult<()> {
        self.ctx.flush()
    }

    /// Submits all recorded work and waits for the device to finish it (for timing).
    pub fn synchronize(&self) -> BResult<()> {
        self.ctx.sync()
    }
}

fn image_check(image: [usize; 4], p: usize, op: &str) -> BResult<()> {
    let [_, _, h, w] = image;
    check(p > 0 && h % p == 0 && w % p == 0, || format!("{op}: image {h}x{w} not divisible by patch {p}"))
}

impl<D: GpuDevice> Backend for GpuBackend<D> {
    type Tensor = GpuTensor<D>;
    type Packed = GpuPacked<D>;

    fn name(&self) -> String {
        self.ctx.name()
    }

    fn device_memory(&self) -> Option<u64> {
        self.ctx.memory_bytes()
    }

    fn half_products(&self) -> bool {
        self.ctx.matmul_plan().f16
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> BResult<GpuTensor<D>> {
        check(data.len() == shape.iter().product::<usize>(), || format!("upload: {} values for shape {shape:?}", data.len()))?;
        Ok(GpuTensor { buf: self.ctx.upload(data)?, shape: shape.to_vec(), len: data.len() })
    }

    fn download(&self, t: &GpuTensor<D>) -> BResult<Vec<f32>> {
        self.ctx.download(&t.buf, t.len)
    }

    fn upload_packed(&self, bits: &[u16], dtype: mvdit_core::dtype::Dtype, shape: &[usize]) -> BResult<GpuPacked<D>> {
        self.upload_packed_bits(bits, dtype, shape)
    }

    fn unpack(&self, p: &GpuPacked<D>) -> BResult<GpuTensor<D>> {
        self.unpack_gpu(p)
    }

    fn shape<'a>(&self, t: &'a GpuTensor<D>) -> &'a [usize] {
        &t.shape
    }

    fn zeros(&self, shape: &[usize]) -> BResult<GpuTensor<D>> {
        let len = shape.iter().product();
        Ok(GpuTensor { buf: self.ctx.alloc(len)?, shape: shape.to_vec(), len })
    }

    fn reshape(&self, mut t: GpuTensor<D>, shape: &[usize]) -> BResult<GpuTensor<D>> {
        check(t.len == shape.iter().product::<usize>(), || format!("reshape: {:?} to {shape:?}", t.shape))?;
        t.shape = shape.to_vec();
        Ok(t)
    }

    fn patchify(&self, x: &GpuTensor<D>, p: usize) -> BResult<GpuTensor<D>> {
        let image = <[usize; 4]>::try_from(x.shape.as_slice()).map_err(|_| BackendError::Shape(format!("patchify: {:?}", x.shape)))?;
        image_check(image, p, "patchify")?;
        let [b, c, h, w] = image;
        self.patch_op(x, &[b, (h / p) * (w / p), c * p * p], image, p, false, false)
    }

    fn patchify_backward(&self, d_rows: &GpuTensor<D>, image: [usize; 4], p: usize) -> BResult<GpuTensor<D>> {
        image_check(image, p, "patchify_backward")?;
        check(d_rows.len == image.iter().product::<usize>(), || format!("patchify_backward: {:?} for {image:?}", d_rows.shape))?;
        self.patch_op(d_rows, &image, image, p, false, true)
    }

    fn unpatchify(&self, rows: &GpuTensor<D>, image: [usize; 4], p: usize) -> BResult<GpuTensor<D>> {
        image_check(image, p, "unpatchify")?;
        check(rows.len == image.iter().product::<usize>(), || format!("unpatchify: {:?} for {image:?}", rows.shape))?;
        self.patch_op(rows, &image, image, p, true, true)
    }

    fn unpatchify_backward(&self, dx: &GpuTensor<D>, p: usize) -> BResult<GpuTensor<D>> {
        let image = <[usize; 4]>::try_from(dx.shape.as_slice()).map_err(|_| BackendError::Shape(format!("unpatchify_backward: {:?}", dx.shape)))?;
        image_check(image, p, "unpatchify_backward")?;
        let [b, c, h, w] = image;
        self.patch_op(dx, &[b, (h / p) * (w / p), p * p * c], image, p, true, false)
    }

    fn concat_tokens(&self, a: &GpuTensor<D>, b: &GpuTensor<D>) -> BResult<GpuTensor<D>> {
        let ((ba, la, da), (bb, lb, db)) = (a.bld("concat_tokens")?, b.bld("concat_tokens")?);
        check(ba == bb && da == db, || format!("concat_tokens: {:?} + {:?}", a.shape, b.shape))?;
        let out = self.alloc(&[ba, la + lb, da])?;
        self.ctx.run("concat", &[u(out.len), u(la), u(lb), u(da)], &[&a.buf, &b.buf, &out.buf], Grid::Threads(out.len as u64))?;
        Ok(out)
    }

    fn split_tokens(&self, x: &GpuTensor<D>, la: usize) -> BResult<(GpuTensor<D>, GpuTensor<D>)> {
        let (b, l, d) = x.bld("split_tokens")?;
        check(la <= l, || format!("split_tokens: {la} of {:?}", x.shape))?;
        let first = self.alloc(&[b, la, d])?;
        let rest = self.alloc(&[b, l - la, d])?;
        for (out, off, lo) in [(&first, 0, la), (&rest, la, l - la)] {
            self.ctx.run("slice", &[u(out.len), u(l), u(off), u(lo), u(d)], &[&x.buf, &out.buf], Grid::Threads(out.len as u64))?;
        }
        Ok((first, rest))
    }

    fn linear(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>) -> BResult<GpuTensor<D>> {
        let (m, k) = match w.shape.as_slice() {
            [m, k] => (*m, *k),
            s => return Err(BackendError::Shape(format!("linear weight must be 2-D, got {s:?}"))),
        };
        check(x.last() == k, || format!("linear: x {:?} with weight {:?}", x.shape, w.shape))?;
        if let Some(b) = b {
            check(b.shape == [m], || format!("linear: bias {:?} for weight {:?}", b.shape, w.shape))?;
        }
        let n = x.rows();
        let mut shape = x.shape.clone();
        *shape.last_mut().ok_or_else(|| BackendError::Shape("linear: x has no shape".into()))? = m;
        let y = self.alloc(&shape)?;
        // y[n, m] = x[n, k] · wᵀ.
        let wt = self.weight_t(w, m, k)?;
        self.matmul((n, m, k), (&x.buf, k, 1), Self::weight_operand(w, wt.as_ref(), m, k), b, &y)?;
        Ok(y)
    }

    fn linear_backward(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, dy: &GpuTensor<D>, need_dx: bool, need_db: bool) -> BResult<LinearGrads<GpuTensor<D>>> {
        let (m, k) = match w.shape.as_slice() {
            [m, k] => (*m, *k),
            s => return Err(BackendError::Shape(format!("linear_backward: weight must be 2-D, got {s:?}"))),
        };
        check(dy.last() == m && x.last() == k && x.rows() == dy.rows(), || {
            format!("linear_backward: x {:?}, w {:?}, dy {:?}", x.shape, w.shape, dy.shape)
        })?;
        let n = x.rows();
        let dx = if need_dx {
            let dx = self.alloc(&x.shape)?;
            // dx[n, k] = dy[n, m] · w[m, k]
            self.matmul((n, k, m), (&dy.buf, m, 1), (&w.buf, k, 1), None, &dx)?;
            Some(dx)
        } else {
            None
        };
        let dw = self.alloc(&w.shape)?;
        // dw[m, k] = dyᵀ[m, n] · x[n, k]
        self.matmul((m, k, n), (&dy.buf, 1, m), (&x.buf, k, 1), None, &dw)?;
        let db = if need_db { Some(self.colsum(&dy.buf, n, m, 0, None, None)?) } else { None };
        Ok(LinearGrads { dx, dw, db })
    }

    fn rmsnorm(&self, x: &GpuTensor<D>, gain: Option<&GpuTensor<D>>, eps: f64) -> BResult<(GpuTensor<D>, GpuTensor<D>)> {
        let d = x.last();
        if let Some(g) = gain {
            check(g.shape == [d], || format!("rmsnorm: gain {:?} for {:?}", g.shape, x.shape))?;
        }
        let rows = x.rows();
        let y = self.alloc(&x.shape)?;
        let rstd = self.alloc(&[rows])?;
        let params = [u(rows), u(d), f(eps as f32), u32::from(gain.is_some())];
        self.run_rows("rmsnorm", &params, &[&x.buf, self.opt(gain), &y.buf, &rstd.buf], rows)?;
        Ok((y, rstd))
    }

    fn rmsnorm_backward(&self, x: &GpuTensor<D>, gain: Option<&GpuTensor<D>>, rstd: &GpuTensor<D>, dy: &GpuTensor<D>) -> BResult<(GpuTensor<D>, Option<GpuTensor<D>>)> {
        same_shape(x, dy, "rmsnorm_backward")?;
        let (d, rows) = (x.last(), x.rows());
        check(rstd.len == rows, || format!("rmsnorm_backward: rstd {:?} for {:?}", rstd.shape, x.shape))?;
        if let Some(g) = gain {
            check(g.shape == [d], || format!("rmsnorm_backward: gain {:?} for {:?}", g.shape, x.shape))?;
        }
        let dx = self.alloc(&x.shape)?;
        let params = [u(rows), u(d), u32::from(gain.is_some())];
        self.run_rows("rmsnorm_bwd", &params, &[&x.buf, self.opt(gain), &rstd.buf, &dy.buf, &dx.buf], rows)?;
        let dg = match gain {
            Some(_) => Some(self.colsum(&dy.buf, rows, d, 1, Some(&x.buf), Some(&rstd.buf))?),
            None => None,
        };
        Ok((dx, dg))
    }

    fn mvsplit(&self, x: &GpuTensor<D>, uu: &GpuTensor<D>, alpha: &GpuTensor<D>, beta: &GpuTensor<D>, eps: f64, li: usize) -> BResult<(GpuTensor<D>, GpuTensor<D>)> {
        same_shape(x, uu, "mvsplit")?;
        let (b, l, d) = x.bld("mvsplit")?;
        check(alpha.shape == [d] && beta.shape == [d], || format!("mvsplit: alpha {:?}, beta {:?} for D={d}", alpha.shape, beta.shape))?;
        let s0 = seg0_end(li, l);
        let means = self.mv_means(x, uu, (b, l, d), s0)?;
        let z = self.alloc(&x.shape)?;
        let rstd = self.alloc(&[b * l])?;
        let params = [u(b * l), u(l), u(d), u(s0), f(eps as f32), u(b * 2 * d)];
        self.run_rows("mvsplit", &params, &[&x.buf, &uu.buf, &alpha.buf, &beta.buf, &means.buf, &z.buf, &rstd.buf], b * l)?;
        Ok((z, rstd))
    }

    fn mvsplit_backward(
        &self,
        x: &GpuTensor<D>,
        uu: &GpuTensor<D>,
        alpha: &GpuTensor<D>,
        beta: &GpuTensor<D>,
        rstd: &GpuTensor<D>,
        dz: &GpuTensor<D>,
        li: usize,
    ) -> BResult<MvSplitGrads<GpuTensor<D>>> {
        same_shape(x, uu, "mvsplit_backward")?;
        same_shape(x, dz, "mvsplit_backward")?;
        let (b, l, d) = x.bld("mvsplit_backward")?;
        check(alpha.shape == [d] && beta.shape == [d], || format!("mvsplit_backward: alpha {:?}, beta {:?} for D={d}", alpha.shape, beta.shape))?;
        check(rstd.len == b * l, || format!("mvsplit_backward: rstd {:?} for {:?}", rstd.shape, x.shape))?;
        let s0 = seg0_end(li, l);
        let rows = b * l;
        let means = self.mv_means(x, uu, (b, l, d), s0)?;
        let mu_off = u(b * 2 * d);
        let ds = self.alloc(&x.shape)?;
        self.run_rows(
            "mvsplit_ds",
            &[u(rows), u(l), u(d), u(s0), mu_off],
            &[&x.buf, &uu.buf, &alpha.buf, &beta.buf, &means.buf, &rstd.buf, &dz.buf, &ds.buf],
            rows,
        )?;
        let mds = self.alloc(&[b, 2, d])?;
        self.segmean(&ds, &mds, 0, (b, l, d), s0)?;
        let dx = self.alloc(&x.shape)?;
        let du = self.alloc(&x.shape)?;
        self.ctx.run(
            "mvsplit_dxdu",
            &[u(x.len), u(l), u(d), u(s0)],
            &[&ds.buf, &alpha.buf, &beta.buf, &mds.buf, &dx.buf, &du.buf],
            Grid::Threads(x.len as u64),
        )?;
        let chunks = rows.div_ceil(COL_CHUNK).max(1);
        let part = self.alloc(&[chunks, 2 * d])?;
        let n = chunks * 2 * d;
        self.ctx.run(
            "mvsplit_dab",
            &[u(n), u(rows), u(l), u(d), u(s0), u(COL_CHUNK), mu_off],
            &[&ds.buf, &uu.buf, &means.buf, &part.buf],
            Grid::Threads(n as u64),
        )?;
        let sums = self.sum_rows(part, 2 * d)?;
        let dalpha = self.alloc(&[d])?;
        let dbeta = self.alloc(&[d])?;
        self.ctx.copy(&sums.buf, 0, &dalpha.buf, 0, d)?;
        self.ctx.copy(&sums.buf, d, &dbeta.buf, 0, d)?;
        Ok(MvSplitGrads { dx, du, dalpha, dbeta })
    }

    fn residual_rmsnorm(&self, x: &GpuTensor<D>, uu: &GpuTensor<D>, lambda: Option<&GpuTensor<D>>, eps: f64) -> BResult<(GpuTensor<D>, GpuTensor<D>)> {
        self.residual_forward(x, uu, lambda, eps)
    }

    fn residual_rmsnorm_backward(&self, x: &GpuTensor<D>, uu: &GpuTensor<D>, lambda: Option<&GpuTensor<D>>, rstd: &GpuTensor<D>, dz: &GpuTensor<D>) -> BResult<ResidualGrads<GpuTensor<D>>> {
        self.residual_backward(x, uu, lambda, rstd, dz)
    }

    fn rope_qknorm(&self, x: &GpuTensor<D>, cos: &GpuTensor<D>, sin: &GpuTensor<D>, nh: usize, li: usize, eps: f64) -> BResult<(GpuTensor<D>, GpuTensor<D>)> {
        let (b, l, d) = x.bld("rope_qknorm")?;
        let dh = self.head_dim(d, nh, "rope_qknorm")?;
        check(li <= l && cos.len == li * (dh / 2) && sin.len == cos.len, || format!("rope tables {:?} for li={li}, dh={dh}", cos.shape))?;
        let rows = b * l * nh;
        let y = self.alloc(&x.shape)?;
        let rstd = self.alloc(&[rows])?;
        let params = [u(rows), u(l), u(nh), u(dh), u(li), f(eps as f32), 0];
        self.run_rows("rope", &params, &[&x.buf, &cos.buf, &sin.buf, self.ctx.dummy(), &y.buf, &rstd.buf], rows)?;
        Ok((y, rstd))
    }

    fn rope_qknorm_backward(&self, x: &GpuTensor<D>, cos: &GpuTensor<D>, sin: &GpuTensor<D>, rstd: &GpuTensor<D>, dy: &GpuTensor<D>, nh: usize, li: usize) -> BResult<GpuTensor<D>> {
        same_shape(x, dy, "rope_qknorm_backward")?;
        let (b, l, d) = x.bld("rope_qknorm_backward")?;
        let dh = self.head_dim(d, nh, "rope_qknorm_backward")?;
        check(li <= l && cos.len == li * (dh / 2) && sin.len == cos.len, || format!("rope tables {:?} for li={li}, dh={dh}", cos.shape))?;
        let rows = b * l * nh;
        check(rstd.len == rows, || format!("rope_qknorm_backward: rstd {:?} for {rows} rows", rstd.shape))?;
        let dx = self.alloc(&x.shape)?;
        // One kernel for both directions: in mode 1 it only reads its rstd binding.
        let params = [u(rows), u(l), u(nh), u(dh), u(li), 0, 1];
        self.run_rows("rope", &params, &[&x.buf, &cos.buf, &sin.buf, &dy.buf, &dx.buf, &rstd.buf], rows)?;
        Ok(dx)
    }

    fn attention(&self, q: &GpuTensor<D>, k: &GpuTensor<D>, v: &GpuTensor<D>, nh: usize) -> BResult<(GpuTensor<D>, GpuTensor<D>)> {
        same_shape(q, k, "attention")?;
        same_shape(q, v, "attention")?;
        let (b, l, d) = q.bld("attention")?;
        let dh = self.head_dim(d, nh, "attention")?;
        let rows = b * nh * l;
        let o = self.alloc(&q.shape)?;
        let lse = self.alloc(&[b, nh, l])?;
        let scale = 1.0 / (dh as f32).sqrt();
        let dims = attn_gemm::Dims { b, l, nh, dh };
        if self.attn_by_gemm(dims) {
            self.attention_by_gemm((q, k, v), dims, scale, (&o, &lse))?;
            return Ok((o, lse));
        }
        let params = [u(rows), u(l), u(nh), u(dh), f(scale)];
        match self.attn_tiles(b, l, nh, dh) {
            Some(grid) => self.ctx.run("attn_fwd_t", &params, &[&q.buf, &k.buf, &v.buf, &o.buf, &lse.buf], grid)?,
            None => self.ctx.run("attn_fwd", &params, &[&q.buf, &k.buf, &v.buf, &o.buf, &lse.buf], Grid::Threads(rows as u64))?,
        }
        Ok((o, lse))
    }

    fn attention_backward(
        &self,
        q: &GpuTensor<D>,
        k: &GpuTensor<D>,
        v: &GpuTensor<D>,
        o: &GpuTensor<D>,
        lse: &GpuTensor<D>,
        d_o: &GpuTensor<D>,
        nh: usize,
    ) -> BResult<(GpuTensor<D>, GpuTensor<D>, GpuTensor<D>)> {
        for (t, what) in [(k, "k"), (v, "v"), (o, "o"), (d_o, "d_o")] {
            same_shape(q, t, &format!("attention_backward ({what})"))?;
        }
        let (b, l, d) = q.bld("attention_backward")?;
        let dh = self.head_dim(d, nh, "attention_backward")?;
        let rows = b * nh * l;
        check(lse.len == rows, || format!("attention_backward: lse {:?} for {rows} rows", lse.shape))?;
        let scale = 1.0 / (dh as f32).sqrt();
        let params = [u(rows), u(l), u(nh), u(dh), f(scale)];
        let dd = self.alloc(&[b, nh, l])?;
        self.ctx.run("attn_d", &params[..4], &[&o.buf, &d_o.buf, &dd.buf], Grid::Threads(rows as u64))?;
        let dq = self.alloc(&q.shape)?;
        let dk = self.alloc(&q.shape)?;
        let dv = self.alloc(&q.shape)?;
        let dims = attn_gemm::Dims { b, l, nh, dh };
        if self.attn_by_gemm(dims) {
            self.attention_backward_by_gemm((q, k, v), (lse, &dd, d_o), dims, scale, (&dq, &dk, &dv))?;
            return Ok((dq, dk, dv));
        }
        let tiles = self.attn_tiles(b, l, nh, dh);
        let (dq_kernel, dkdv_kernel, grid) = match tiles {
            Some(grid) => ("attn_dq_t", "attn_dkdv_t", grid),
            None => ("attn_dq", "attn_dkdv", Grid::Threads(rows as u64)),
        };
        self.ctx.run(dq_kernel, &params, &[&q.buf, &k.buf, &v.buf, &lse.buf, &dd.buf, &d_o.buf, &dq.buf], grid)?;
        self.ctx.run(dkdv_kernel, &params, &[&q.buf, &k.buf, &v.buf, &lse.buf, &dd.buf, &d_o.buf, &dk.buf, &dv.buf], grid)?;
        Ok((dq, dk, dv))
    }

    fn swiglu(&self, gv: &GpuTensor<D>) -> BResult<GpuTensor<D>> {
        check(gv.last().is_multiple_of(2), || format!("swiglu: odd feature size {:?}", gv.shape))?;
        let m = gv.last() / 2;
        let mut shape = gv.shape.clone();
        *shape.last_mut().ok_or_else(|| BackendError::Shape("swiglu: gv has no shape".into()))? = m;
        let y = self.alloc(&shape)?;
        self.ctx.run("swiglu", &[u(y.len), u(m), 0], &[&gv.buf, self.ctx.dummy(), &y.buf], Grid::Threads(y.len as u64))?;
        Ok(y)
    }

    fn swiglu_backward(&self, gv: &GpuTensor<D>, dy: &GpuTensor<D>) -> BResult<GpuTensor<D>> {
        let rows_match = gv.shape[..gv.shape.len() - 1] == dy.shape[..dy.shape.len().saturating_sub(1)];
        check(gv.last().is_multiple_of(2) && rows_match && dy.len * 2 == gv.len && dy.last() * 2 == gv.last(), || {
            format!("swiglu_backward: gv {:?}, dy {:?}", gv.shape, dy.shape)
        })?;
        let m = gv.last() / 2;
        let dgv = self.alloc(&gv.shape)?;
        self.ctx.run("swiglu", &[u(dy.len), u(m), 1], &[&gv.buf, &dy.buf, &dgv.buf], Grid::Threads(dy.len as u64))?;
        Ok(dgv)
    }

    fn conv2d(&self, x: &GpuTensor<D>, w: &GpuTensor<D>, b: Option<&GpuTensor<D>>, conv: Conv2d) -> BResult<GpuTensor<D>> {
        self.conv2d_gpu(x, w, b, conv)
    }

    fn group_norm(&self, x: &GpuTensor<D>, gamma: &GpuTensor<D>, beta: &GpuTensor<D>, groups: usize, eps: f64) -> BResult<GpuTensor<D>> {
        self.group_norm_gpu(x, gamma, beta, groups, eps)
    }

    fn silu(&self, x: &GpuTensor<D>) -> BResult<GpuTensor<D>> {
        self.silu_gpu(x)
    }

    fn upsample_nearest(&self, x: &GpuTensor<D>, r: usize) -> BResult<GpuTensor<D>> {
        self.resample(x, r, frozen::Resample::Upsample)
    }

    fn pixel_unshuffle(&self, x: &GpuTensor<D>, r: usize) -> BResult<GpuTensor<D>> {
        self.resample(x, r, frozen::Resample::Unshuffle)
    }

    fn pixel_shuffle(&self, x: &GpuTensor<D>, r: usize) -> BResult<GpuTensor<D>> {
        self.resample(x, r, frozen::Resample::Shuffle)
    }

    fn attention_masked(&self, q: &GpuTensor<D>, k: &GpuTensor<D>, v: &GpuTensor<D>, heads: Heads, causal: bool, key_mask: Option<&GpuTensor<D>>) -> BResult<GpuTensor<D>> {
        self.attention_masked_gpu(q, k, v, heads, causal, key_mask)
    }

    fn rope(&self, x: &GpuTensor<D>, cos: &GpuTensor<D>, sin: &GpuTensor<D>, nh: usize) -> BResult<GpuTensor<D>> {
        self.rope_gpu(x, cos, sin, nh)
    }

    fn mse(&self, pred: &GpuTensor<D>, target: &GpuTensor<D>) -> BResult<(GpuTensor<D>, GpuTensor<D>)> {
        same_shape(pred, target, "mse")?;
        let n = pred.len;
        check(n > 0, || "mse: empty tensors".into())?;
        let threads = n.div_ceil(RED_CHUNK);
        let part = self.alloc(&[threads])?;
        let inv_n = 1.0 / n as f32;
        let first_scale = if threads == 1 { inv_n } else { 1.0 };
        self.ctx.run("reduce", &[u(n), u(RED_CHUNK), 1, f(first_scale), 0, u(threads)], &[&pred.buf, &target.buf, &part.buf], Grid::Threads(threads as u64))?;
        let loss = if threads == 1 {
            self.reshape(part, &[1])?
        } else {
            self.sum_all(part, inv_n)?
        };
        let grad = self.alloc(&pred.shape)?;
        let c = 2.0f32 / n as f32;
        self.ctx.run("elementwise", &[u(n), 1, f(c), 0], &[&pred.buf, &target.buf, &grad.buf], Grid::Threads(n as u64))?;
        Ok((loss, grad))
    }

    fn axpby(&self, a: f32, x: &GpuTensor<D>, b: f32, y: &GpuTensor<D>) -> BResult<GpuTensor<D>> {
        same_shape(x, y, "axpby")?;
        let out = self.alloc(&x.shape)?;
        self.ctx.run("elementwise", &[u(x.len), 0, f(a), f(b)], &[&x.buf, &y.buf, &out.buf], Grid::Threads(x.len as u64))?;
        Ok(out)
    }

    fn sum_squares(&self, ts: &[&GpuTensor<D>]) -> BResult<f64> {
        let total: usize = ts.iter().map(|t| t.len.div_ceil(RED_CHUNK)).sum();
        if total == 0 {
            return Ok(0.0);
        }
        let part = self.alloc(&[total])?;
        let mut off = 0;
        for t in ts.iter().filter(|t| t.len > 0) {
            let threads = t.len.div_ceil(RED_CHUNK);
            self.ctx.run("reduce", &[u(t.len), u(RED_CHUNK), 0, f(1.0), u(off), u(threads)], &[&t.buf, self.ctx.dummy(), &part.buf], Grid::Threads(threads as u64))?;
            off += threads;
        }
        let sum = self.sum_all(part, 1.0)?;
        Ok(f64::from(self.download(&sum)?[0]))
    }

    fn adamw(&self, opt: &AdamW, step: u64, grad_scale: f64, p: &mut GpuTensor<D>, g: &GpuTensor<D>, m: &mut GpuTensor<D>, v: &mut GpuTensor<D>) -> BResult<()> {
        same_shape(p, g, "adamw")?;
        same_shape(p, m, "adamw")?;
        same_shape(p, v, "adamw")?;
        // The same scalars as ops::adamw_step, folded on the host (f64, then f32).
        let bc1 = 1.0 - opt.beta1.powf(step as f64);
        let bc2 = 1.0 - opt.beta2.powf(step as f64);
        let (b1, b2) = (opt.beta1 as f32, opt.beta2 as f32);
        let params = [
            u(p.len),
            f(b1),
            f(b2),
            f((1.0 - opt.beta1) as f32), // 1 − β in f64: in f32 it is off by ~5e-5 relative
            f((1.0 - opt.beta2) as f32),
            f(opt.eps as f32),
        ];
        let scalars = [(1.0 - opt.lr * opt.weight_decay) as f32, (opt.lr / bc1) as f32, bc2.sqrt() as f32, grad_scale as f32];
        let mut held = self.adamw_scalars.lock().unwrap_or_else(|e| e.into_inner());
        let group = opt.weight_decay.to_bits();
        let at = match held.iter().position(|(wd, _, _)| *wd == group) {
            Some(i) => i,
            None => {
                held.push((group, [f32::NAN; 4], self.alloc(&[4])?));
                held.len() - 1
            }
        };
        let (_, now, buf) = &mut held[at];
        if now.map(f32::to_bits) != scalars.map(f32::to_bits) {
            self.ctx.write(&buf.buf, &scalars)?;
            *now = scalars;
        }
        self.ctx.run("adamw", &params, &[&g.buf, &p.buf, &m.buf, &v.buf, &buf.buf], Grid::Threads(p.len as u64))
    }

    fn gather_rows(&self, table: &GpuTensor<D>, idx: &[u32]) -> BResult<GpuTensor<D>> {
        let e = table.last();
        let vocab = table.rows();
        if let Some(&bad) = idx.iter().find(|&&i| i as usize >= vocab) {
            return Err(BackendError::Shape(format!("gather_rows: index {bad} of {vocab} rows")));
        }
        let out = self.alloc(&[idx.len(), e])?;
        let ib = self.ctx.upload_u32(idx)?;
        self.ctx.run("rows", &[u(out.len), u(e), u(idx.len()), 0], &[&table.buf, &ib, &out.buf], Grid::Threads(out.len as u64))?;
        Ok(out)
    }

    fn scatter_add_rows(&self, dy: &GpuTensor<D>, idx: &[u32], vocab: usize) -> BResult<GpuTensor<D>> {
        let e = dy.last();
        check(dy.rows() == idx.len(), || format!("scatter_add_rows: {:?} for {} indices", dy.shape, idx.len()))?;
        if let Some(&bad) = idx.iter().find(|&&i| i as usize >= vocab) {
            return Err(BackendError::Shape(format!("scatter_add_rows: index {bad} of {vocab} rows")));
        }
        let out = self.alloc(&[vocab, e])?;
        let ib = self.ctx.upload_u32(idx)?;
        self.ctx.run("rows", &[u(out.len), u(e), u(idx.len()), 1], &[&dy.buf, &ib, &out.buf], Grid::Threads(out.len as u64))?;
        Ok(out)
    }
}

#[cfg(all(test, feature = "wgpu"))]
mod tests {
    use super::*;

    /// Every kernel compiles (without an adapter: the skip rule of `mvdit_tests::gpu_or_skip`).
    #[test]
    fn all_kernels_compile() {
        let be = mvdit_tests::gpu!(Wgpu::new(None));
        use mvdit_kernels::Needs;
        let features = be.device().features();
        for (name, needs) in mvdit_kernels::kernels() {
            let runs = match needs {
                Needs::F32 => true,
                Needs::F16 => features.contains(wgpu::Features::SHADER_F16),
                Needs::Subgroup => features.contains(wgpu::Features::SUBGROUP),
                // Built by the Vulkan backend only.
                Needs::Coop => false,
            };
            if runs {
                be.ctx.prepare(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
}
