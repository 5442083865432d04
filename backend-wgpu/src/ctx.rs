//! The device context: buffers, the pipeline cache, and command batching.
//!
//! Every op records its dispatches into one pending command encoder; the encoder is submitted
//! when a batch fills up or when the host needs a value back (download, `sum_squares`), so the
//! host never waits for the GPU between ops. Each dispatch gets its shape/scalar block from a
//! slot of a per-batch uniform buffer, written once at submit time.
//!
//! Nothing is allocated per step once a step has run: tensor and readback buffers come from
//! [`crate::pool`], parameter buffers are recycled after their batch is submitted, and bind
//! groups are cached by (kernel, parameter slot, buffers), which repeat from step to step
//! because the pool hands the same buffers out in the same order.

use crate::pool::{Counters, DeviceStats, Pool, Taken};
use crate::shaders;
use crate::WgpuTensor;
use mvdit_core::{BResult, BackendError};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of one dispatch's parameter block (16 four-byte words).
pub(crate) const PARAM_BYTES: u64 = 64;
/// Dispatches per submitted batch.
const BATCH_SLOTS: u32 = 256;
/// Threads per workgroup of the 1-D kernels.
const WG: u64 = 64;
/// Cached bind groups before the cache is emptied (each holds its buffers alive; a step of a
/// deep model with full tapes can bind tens of thousands of distinct buffer sets).
const BIND_CACHE_MAX: usize = 1 << 16;

/// How a dispatch is sized.
pub(crate) enum Grid {
    /// `n` threads of a 64-wide 1-D kernel, laid out on a 2-D grid of workgroups.
    Threads(u64),
    /// Explicit workgroup counts.
    Groups(u32, u32, u32),
}

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

pub(crate) struct Ctx {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    /// Most workgroups per grid dimension (65535 on most devices).
    pub max_groups: u32,
    /// Stride of the parameter slots (the device's uniform offset alignment, at least 64 bytes).
    slot_stride: u64,
    /// Bound in place of an absent optional operand (bias, gain).
    dummy: wgpu::Buffer,
    state: Mutex<State>,
    counters: Arc<Counters>,
    /// Tensor buffers (STORAGE | COPY_SRC | COPY_DST).
    pool: Arc<Pool>,
    /// Readback buffers (MAP_READ | COPY_DST).
    staging: Arc<Pool>,
    /// Debug mode: every non-`zeros` allocation starts as NaN, so a kernel that leaves part of
    /// its output unwritten is caught by any parity test (recycled buffers hold stale values).
    pub poison: bool,
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

impl Ctx {
    pub fn new(device: wgpu::Device, queue: wgpu::Queue) -> Self {
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
        Ctx { device, queue, limits, max_groups, slot_stride, dummy, state: Mutex::new(State::default()), counters, pool, staging, poison: false }
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

    pub fn dummy(&self) -> &wgpu::Buffer {
        &self.dummy
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

    /// A device tensor with unspecified contents (pooled buffers are not cleared: every kernel
    /// writes all of its output). NaN-filled in poison mode.
    pub fn alloc(&self, shape: &[usize]) -> BResult<WgpuTensor> {
        let t = self.create(shape, false)?.0;
        if self.poison {
            let words = t.buf.size() / 4;
            self.run("fill", &[words as u32, f32::NAN.to_bits()], &[&t.buf], Grid::Threads(words))?;
        }
        Ok(t)
    }

    /// A device tensor of zeros (cleared on the device, in order with the recorded work).
    pub fn zeros(&self, shape: &[usize]) -> BResult<WgpuTensor> {
        let (t, recycled) = self.create(shape, false)?;
        if recycled || self.poison {
            let mut st = self.lock();
            self.batch(&mut st).encoder.clear_buffer(&t.buf, 0, None);
        }
        Ok(t)
    }

    pub fn upload(&self, data: &[f32], shape: &[usize]) -> BResult<WgpuTensor> {
        let t = self.create(shape, true)?.0;
        if !data.is_empty() {
            self.queue.write_buffer(&t.buf, 0, bytemuck::cast_slice(data));
        }
        Ok(t)
    }

    /// A pooled tensor buffer; with `host_write`, one the host may write right away (the
    /// pending batch is submitted first when it could still read the buffer's old contents,
    /// see pool.rs).
    /// → (tensor, whether the buffer was recycled).
    fn create(&self, shape: &[usize], host_write: bool) -> BResult<(WgpuTensor, bool)> {
        let len: usize = shape.iter().product();
        let bytes = self.bytes_for(len)?;
        let Taken { buf, lease, flush_first, recycled } = self.pool.take(&self.device, bytes, self.max_bytes())?;
        if host_write && flush_first {
            self.flush()?;
        }
        Ok((WgpuTensor { buf, shape: shape.to_vec(), len, _lease: lease }, recycled))
    }

    /// A u32 storage buffer (row indices), as a tensor of `data.len()` values.
    pub fn upload_u32(&self, data: &[u32]) -> BResult<WgpuTensor> {
        let t = self.create(&[data.len()], true)?.0;
        if !data.is_empty() {
            self.queue.write_buffer(&t.buf, 0, bytemuck::cast_slice(data));
        }
        Ok(t)
    }

    /// Copies `t` back to the host: submits all pending work and waits for it.
    pub fn download(&self, t: &WgpuTensor) -> BResult<Vec<f32>> {
        if t.len == 0 {
            return Ok(Vec::new());
        }
        let bytes = t.len as u64 * 4;
        // The staging buffer goes back to its pool when `_lease` drops, after the unmap below.
        let Taken { buf: staging, lease: _lease, .. } = self.staging.take(&self.device, bytes, u64::MAX)?;
        {
            let mut st = self.lock();
            self.batch(&mut st).encoder.copy_buffer_to_buffer(&t.buf, 0, &staging, 0, bytes);
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
    pub fn copy(&self, src: &wgpu::Buffer, src_off: usize, dst: &wgpu::Buffer, dst_off: usize, len: usize) -> BResult<()> {
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
    pub fn flush(&self) -> BResult<()> {
        let mut st = self.lock();
        self.submit(&mut st)
    }

    /// Submits and waits until the device is idle.
    pub fn sync(&self) -> BResult<()> {
        self.flush()?;
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| device_err("waiting for the device", e))?;
        Ok(())
    }

    fn kernel(&self, st: &mut State, name: &str) -> BResult<Arc<Kernel>> {
        if let Some(k) = st.kernels.get(name) {
            return Ok(k.clone());
        }
        let src = shaders::full_source(name).ok_or_else(|| BackendError::Device(format!("internal: no shader `{name}`")))?;
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
    pub fn run(&self, name: &str, params: &[u32], bufs: &[&wgpu::Buffer], grid: Grid) -> BResult<()> {
        assert!(params.len() * 4 <= PARAM_BYTES as usize, "kernel `{name}`: too many parameters");
        let (gx, gy, gz) = match grid {
            Grid::Groups(x, y, z) => (x, y, z),
            Grid::Threads(n) => {
                let groups = n.div_ceil(WG);
                let max = u64::from(self.max_groups);
                let x = groups.clamp(1, max);
                let y = groups.div_ceil(x);
                if y > max {
                    return Err(BackendError::Shape(format!("kernel `{name}`: {n} threads exceed the dispatch grid")));
                }
                (x as u32, y as u32, 1)
            }
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
            bufs: bufs.iter().map(|&b| b.clone()).collect(),
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
                    entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
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
