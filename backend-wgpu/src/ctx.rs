//! The wgpu device context: buffers, the pipeline cache, and command batching.
//!
//! Every op records its dispatches into one pending command encoder; the encoder is submitted
//! when a batch fills up or when the host needs a value back (download, `sum_squares`), so the
//! host never waits for the GPU between ops. Each dispatch gets its shape/scalar block from a
//! slot of a per-batch uniform buffer, written once at submit time.
//!
//! Nothing is allocated per step once a step has run: tensor and readback buffers come from
//! [`crate::pool`], parameter buffers are recycled after their batch is submitted, and bind
//! groups are cached by (kernel, parameter slot, buffers), which repeat from step to step
//! because the pool hands the same buffers out at the same places.

use crate::gpu::{GpuDevice, Grid, MatmulPlan, RowPlan, PARAM_WORDS};
use crate::pool::{Counters, DeviceStats, Lease, Pool, Taken};
use mvdit_core::{BResult, BackendError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of one dispatch's parameter block.
pub(crate) const PARAM_BYTES: u64 = PARAM_WORDS as u64 * 4;
/// Dispatches per submitted batch.
const BATCH_SLOTS: u32 = 256;
/// Cached bind groups before the cache is emptied (each holds its buffers alive; a step of a
/// deep model with full tapes can bind tens of thousands of distinct buffer sets).
const BIND_CACHE_MAX: usize = 1 << 16;

pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

struct Batch {
    encoder: wgpu::CommandEncoder,
    params: Vec<u8>,
    params_buf: wgpu::Buffer,
    slots: u32,
}

/// What a dispatch binds: equal keys can share one bind group.
#[derive(PartialEq, Eq, Hash)]
struct BindKey {
    /// The kernel's address in `State::kernels` (kernels are never dropped).
    kernel: usize,
    params: wgpu::Buffer,
    offset: u64,
    bufs: Vec<wgpu::Buffer>,
}

#[derive(Default)]
struct State {
    batch: Option<Batch>,
    kernels: HashMap<String, Arc<Kernel>>,
    /// Parameter buffers of submitted batches, reused by later batches (queue writes are
    /// ordered after the earlier submissions that read them).
    params_free: Vec<wgpu::Buffer>,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
}

/// A buffer of the wgpu backend: pooled ones go back to the pool when dropped.
#[derive(Debug)]
pub struct WgpuBuffer {
    buf: wgpu::Buffer,
    _lease: Option<Lease>,
}

impl WgpuBuffer {
    /// The wgpu buffer (at least as large as the tensor; pooled buffers are rounded up).
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buf
    }
}

impl std::ops::Deref for WgpuBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buf
    }
}

/// The wgpu implementation of [`GpuDevice`] (`Wgpu` = `GpuBackend<WgpuDevice>`).
pub struct WgpuDevice {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    /// Most workgroups per grid dimension (65535 on most devices).
    pub max_groups: u32,
    /// Stride of the parameter slots (the device's uniform offset alignment, at least 64 bytes).
    slot_stride: u64,
    /// Bound in place of an absent optional operand (bias, gain).
    dummy: WgpuBuffer,
    state: Mutex<State>,
    name: String,
    counters: Arc<Counters>,
    /// Tensor buffers (STORAGE | COPY_SRC | COPY_DST).
    pool: Arc<Pool>,
    /// Readback buffers (MAP_READ | COPY_DST).
    staging: Arc<Pool>,
    /// Debug mode: every `alloc_uninit` buffer starts as NaN, so a kernel that leaves part of
    /// its output unwritten is caught by any parity test (recycled buffers hold stale values).
    poison: bool,
    plan: MatmulPlan,
    rows: RowPlan,
}

fn device_err(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Device(format!("{what}: {e}"))
}

/// Turns a popped error-scope result into a backend error; OOM keeps the requested size.
fn scope_result(err: Option<wgpu::Error>, what: &str, bytes: u64) -> BResult<()> {
    match err {
        None => Ok(()),
        Some(wgpu::Error::OutOfMemory { .. }) => Err(BackendError::OutOfMemory { bytes }),
        Some(e) => Err(device_err(what, e)),
    }
}

impl WgpuDevice {
    pub(crate) fn new(device: wgpu::Device, queue: wgpu::Queue, name: String, plan: MatmulPlan, rows: RowPlan, poison: bool) -> Self {
        let limits = device.limits();
        let align = u64::from(limits.min_uniform_buffer_offset_alignment);
        let slot_stride = PARAM_BYTES.div_ceil(align) * align;
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mvdit dummy operand"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let max_groups = limits.max_compute_workgroups_per_dimension;
        let counters = Arc::new(Counters::default());
        counters.created(16);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let pool = Pool::new(usage, "mvdit tensor", counters.clone());
        let staging = Pool::new(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, "mvdit readback", counters.clone());
        let dummy = WgpuBuffer { buf: dummy, _lease: None };
        let state = Mutex::new(State::default());
        WgpuDevice { device, queue, limits, max_groups, slot_stride, dummy, state, name, counters, pool, staging, poison, plan, rows }
    }

    /// Device-allocation counters.
    pub fn stats(&self) -> DeviceStats {
        self.counters.snapshot()
    }

    /// Releases the pooled free buffers and cached bind groups (memory in use stays in use).
    pub fn trim(&self) {
        self.lock().bind_groups.clear();
        self.pool.trim();
        self.staging.trim();
    }

    /// Largest buffer a tensor may use (the device's binding and buffer limits).
    fn max_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while recording leaves nothing half-updated that later calls could trip on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of an f32 buffer of `len` values (never zero: empty tensors get one value).
    fn bytes_for(&self, len: usize) -> BResult<u64> {
        let bytes = (len.max(1) as u64).checked_mul(4).ok_or(BackendError::OutOfMemory { bytes: u64::MAX })?;
        let max_bind = self.limits.max_storage_buffer_binding_size;
        if bytes > self.limits.max_buffer_size || bytes > max_bind {
            // The device cannot hold (or bind) a tensor this large: a smaller batch is the remedy.
            return Err(BackendError::OutOfMemory { bytes });
        }
        Ok(bytes)
    }

    /// A zero-filled buffer of `len` values (a recycled one is cleared on the device, in order
    /// with the recorded work; new buffers come zeroed from wgpu).
    fn alloc_zeroed(&self, len: usize) -> BResult<WgpuBuffer> {
        let (buf, recycled) = self.create(len, false)?;
        if recycled {
            let mut st = self.lock();
            self.batch(&mut st).encoder.clear_buffer(&buf, 0, None);
        }
        Ok(buf)
    }

    /// A buffer with unspecified contents (NaN in poison mode).
    fn alloc_any(&self, len: usize) -> BResult<WgpuBuffer> {
        let buf = self.create(len, false)?.0;
        if self.poison {
            let words = buf.size() / 4;
            self.run_kernel("fill", &[words as u32, f32::NAN.to_bits()], &[&buf], Grid::Threads(words))?;
        }
        Ok(buf)
    }

    fn upload_f32(&self, data: &[f32]) -> BResult<WgpuBuffer> {
        let buf = self.create(data.len(), true)?.0;
        if !data.is_empty() {
            self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    /// A pooled buffer of `len` values; with `host_write`, one the host may write right away
    /// (the pending batch is submitted first when it could still read the buffer's old
    /// contents, see pool.rs). → (buffer, whether it was recycled).
    fn create(&self, len: usize, host_write: bool) -> BResult<(WgpuBuffer, bool)> {
        let bytes = self.bytes_for(len)?;
        let Taken { buf, lease, flush_first, recycled } = self.pool.take(&self.device, bytes, self.max_bytes())?;
        if host_write && flush_first {
            self.flush_batch()?;
        }
        Ok((WgpuBuffer { buf, _lease: Some(lease) }, recycled))
    }

    /// A u32 storage buffer (row indices).
    fn upload_indices(&self, data: &[u32]) -> BResult<WgpuBuffer> {
        let buf = self.create(data.len(), true)?.0;
        if !data.is_empty() {
            self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    /// Copies `t` back to the host: submits all pending work and waits for it.
    fn download_buf(&self, buf: &wgpu::Buffer, len: usize) -> BResult<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = len as u64 * 4;
        // The staging buffer goes back to its pool when `_lease` drops, after the unmap below.
        let Taken { buf: staging, lease: _lease, .. } = self.staging.take(&self.device, bytes, u64::MAX)?;
        {
            let mut st = self.lock();
            self.batch(&mut st).encoder.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
            self.submit(&mut st)?;
        }
        let slice = staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| device_err("waiting for the device", e))?;
        rx.recv()
            .map_err(|e| device_err("readback", e))?
            .map_err(|e| device_err("mapping the readback buffer", e))?;
        let out = {
            let view = slice.get_mapped_range().map_err(|e| device_err("readback view", e))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Records a buffer-to-buffer copy (offsets and size in f32 values).
    fn copy_buf(&self, src: &wgpu::Buffer, src_off: usize, dst: &wgpu::Buffer, dst_off: usize, len: usize) -> BResult<()> {
        if len == 0 {
            return Ok(());
        }
        let mut st = self.lock();
        self.batch(&mut st).encoder.copy_buffer_to_buffer(src, src_off as u64 * 4, dst, dst_off as u64 * 4, len as u64 * 4);
        Ok(())
    }

    fn batch<'s>(&self, st: &'s mut State) -> &'s mut Batch {
        if st.batch.is_none() {
            let size = BATCH_SLOTS as u64 * self.slot_stride;
            let params_buf = st.params_free.pop().unwrap_or_else(|| {
                self.counters.created(size);
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("mvdit params"),
                    size,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            st.batch = Some(Batch {
                encoder: self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mvdit batch") }),
                params: Vec::with_capacity(size as usize),
                params_buf,
                slots: 0,
            });
        }
        st.batch.as_mut().expect("batch was just created")
    }

    /// Submits the pending batch, if any (does not wait for it).
    fn submit(&self, st: &mut State) -> BResult<()> {
        let Some(batch) = st.batch.take() else { return Ok(()) };
        if !batch.params.is_empty() {
            self.queue.write_buffer(&batch.params_buf, 0, &batch.params);
        }
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let cmd = batch.encoder.finish();
        self.queue.submit([cmd]);
        st.params_free.push(batch.params_buf);
        self.counters.epoch.fetch_add(1, Ordering::Relaxed);
        scope_result(pollster::block_on(val.pop()), "submitting work", 0)?;
        scope_result(pollster::block_on(oom.pop()), "submitting work", 0)?;
        // Frees what finished batches held, without waiting.
        let _ = self.device.poll(wgpu::PollType::Poll);
        Ok(())
    }

    /// Submits everything recorded so far.
    fn flush_batch(&self) -> BResult<()> {
        let mut st = self.lock();
        self.submit(&mut st)
    }

    /// Submits and waits until the device is idle.
    fn sync_device(&self) -> BResult<()> {
        self.flush_batch()?;
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| device_err("waiting for the device", e))?;
        Ok(())
    }

    fn kernel(&self, st: &mut State, name: &str) -> BResult<Arc<Kernel>> {
        if let Some(k) = st.kernels.get(name) {
            return Ok(k.clone());
        }
        let src = mvdit_kernels::full_source(name).ok_or_else(|| BackendError::Device(format!("internal: no shader `{name}`")))?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(device_err(&format!("building kernel `{name}`"), e));
        }
        let layout = pipeline.get_bind_group_layout(0);
        let k = Arc::new(Kernel { pipeline, layout });
        st.kernels.insert(name.to_string(), k.clone());
        Ok(k)
    }

    /// Builds (and caches) a kernel ahead of use.
    #[cfg(test)]
    pub fn prepare(&self, name: &str) -> BResult<()> {
        let mut st = self.lock();
        self.kernel(&mut st, name).map(|_| ())
    }

    /// Records one dispatch of kernel `name`: binding 0 = `params` (up to 16 words),
    /// bindings 1.. = `bufs` in order.
    fn run_kernel(&self, name: &str, params: &[u32], bufs: &[&WgpuBuffer], grid: Grid) -> BResult<()> {
        assert!(params.len() * 4 <= PARAM_BYTES as usize, "kernel `{name}`: too many parameters");
        let Some((gx, gy, gz)) = grid.groups(self.max_groups) else {
            return Err(BackendError::Shape(format!("kernel `{name}`: {grid:?} exceeds the dispatch grid")));
        };
        if gx == 0 || gy == 0 || gz == 0 {
            return Ok(());
        }
        let mut st = self.lock();
        let kernel = self.kernel(&mut st, name)?;
        if st.batch.as_ref().is_some_and(|b| b.slots >= BATCH_SLOTS) {
            self.submit(&mut st)?;
        }
        let stride = self.slot_stride;
        let batch = self.batch(&mut st);
        let offset = batch.slots as u64 * stride;
        batch.params.resize(offset as usize, 0);
        let mut block = [0u32; (PARAM_BYTES / 4) as usize];
        block[..params.len()].copy_from_slice(params);
        batch.params.extend_from_slice(bytemuck::cast_slice(&block));
        batch.slots += 1;

        let key = BindKey {
            kernel: Arc::as_ptr(&kernel) as usize,
            params: batch.params_buf.clone(),
            offset,
            bufs: bufs.iter().map(|b| b.buf.clone()).collect(),
        };
        self.counters.dispatches.fetch_add(1, Ordering::Relaxed);
        let bind_group = match st.bind_groups.get(&key) {
            Some(bg) => bg.clone(),
            None => {
                let mut entries = Vec::with_capacity(bufs.len() + 1);
                entries.push(wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &key.params,
                        offset,
                        size: wgpu::BufferSize::new(PARAM_BYTES),
                    }),
                });
                for (i, b) in bufs.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.buf.as_entire_binding() });
                }
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(name), layout: &kernel.layout, entries: &entries });
                if let Some(e) = pollster::block_on(scope.pop()) {
                    return Err(device_err(&format!("binding kernel `{name}`"), e));
                }
                self.counters.bind_groups.fetch_add(1, Ordering::Relaxed);
                if st.bind_groups.len() >= BIND_CACHE_MAX {
                    st.bind_groups.clear();
                }
                st.bind_groups.insert(key, bg.clone());
                bg
            }
        };
        let batch = st.batch.as_mut().expect("batch recorded above");
        {
            let mut pass = batch.encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(name), timestamp_writes: None });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(gx, gy, gz);
        }
        Ok(())
    }
}

pub(crate) fn no_adapter_message(detail: &str) -> String {
    format!(
        "no GPU adapter available ({detail}). This build of wgpu uses the Vulkan backend: install a Vulkan driver \
         (for a software device on Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1), \
         or pick another adapter from Wgpu::adapters()"
    )
}

/// An instance over `backends` (all built in: Vulkan, Metal, DX12, OpenGL), unless wgpu's own
/// `WGPU_BACKEND` says otherwise.
pub(crate) fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc.with_env())
}

impl GpuDevice for WgpuDevice {
    type Buffer = WgpuBuffer;
    type Device = wgpu::Device;
    type Queue = wgpu::Queue;

    /// Opens adapter `adapter_index` of [`GpuDevice::list`] with the default options
    /// (`WgpuOptions`), or the default high-performance adapter when `None`. No adapter gives
    /// [`BackendError::Device`] saying what to install.
    fn open(adapter_index: Option<usize>) -> BResult<Self> {
        WgpuDevice::open_with(&crate::WgpuOptions { adapter: adapter_index, ..Default::default() })
    }

    /// Needs no optional features; f32, tiled matmuls unless the device is a CPU adapter.
    fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> BResult<Self> {
        WgpuDevice::from_device_with(device, queue, &crate::WgpuOptions::default())
    }

    fn list() -> Vec<String> {
        let inst = instance(wgpu::Backends::all());
        pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect()
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn max_groups(&self) -> u32 {
        self.max_groups
    }

    fn alloc(&self, len: usize) -> BResult<WgpuBuffer> {
        self.alloc_zeroed(len)
    }

    fn alloc_uninit(&self, len: usize) -> BResult<WgpuBuffer> {
        self.alloc_any(len)
    }

    fn matmul_plan(&self) -> MatmulPlan {
        self.plan
    }

    fn row_plan(&self) -> RowPlan {
        self.rows
    }

    fn upload(&self, data: &[f32]) -> BResult<WgpuBuffer> {
        self.upload_f32(data)
    }

    fn upload_u32(&self, data: &[u32]) -> BResult<WgpuBuffer> {
        self.upload_indices(data)
    }

    fn download(&self, buf: &WgpuBuffer, len: usize) -> BResult<Vec<f32>> {
        self.download_buf(&buf.buf, len)
    }

    /// A host write runs before the pending batch, which may still use `buf`: it goes first.
    fn write(&self, buf: &WgpuBuffer, data: &[f32]) -> BResult<()> {
        if data.len() as u64 * 4 > buf.buf.size() {
            return Err(BackendError::Shape(format!("write: {} values into a {}-byte buffer", data.len(), buf.buf.size())));
        }
        self.flush_batch()?;
        self.queue.write_buffer(&buf.buf, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    fn copy(&self, src: &WgpuBuffer, src_off: usize, dst: &WgpuBuffer, dst_off: usize, len: usize) -> BResult<()> {
        self.copy_buf(&src.buf, src_off, &dst.buf, dst_off, len)
    }

    fn dummy(&self) -> &WgpuBuffer {
        &self.dummy
    }

    fn run(&self, name: &str, params: &[u32], bufs: &[&WgpuBuffer], grid: Grid) -> BResult<()> {
        self.run_kernel(name, params, bufs, grid)
    }

    fn flush(&self) -> BResult<()> {
        self.flush_batch()
    }

    fn sync(&self) -> BResult<()> {
        self.sync_device()
    }
}
