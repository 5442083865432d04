//! The wgpu device context: buffers, the pipeline cache, and command batching.
//!
//! Every op records its dispatches into one pending command encoder; the encoder is submitted
//! when a batch fills up or when the host needs a value back (download, `sum_squares`), so the
//! host never waits for the GPU between ops. Each dispatch gets its shape/scalar block from a
//! slot of a per-batch uniform buffer, written once at submit time.

use crate::gpu::{GpuDevice, Grid, PARAM_WORDS};
use crate::shaders;
use mvdit_core::{BResult, BackendError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of one dispatch's parameter block (16 four-byte words).
pub(crate) const PARAM_BYTES: u64 = PARAM_WORDS as u64 * 4;
/// Dispatches per submitted batch.
const BATCH_SLOTS: u32 = 256;

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

#[derive(Default)]
struct State {
    batch: Option<Batch>,
    kernels: HashMap<String, Arc<Kernel>>,
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
    dummy: wgpu::Buffer,
    state: Mutex<State>,
    name: String,
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
    pub(crate) fn new(device: wgpu::Device, queue: wgpu::Queue, name: String) -> Self {
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
        WgpuDevice { device, queue, limits, max_groups, slot_stride, dummy, state: Mutex::new(State::default()), name }
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

    /// A new device buffer of `len` values; wgpu zero-fills buffers on first use.
    fn alloc_buf(&self, len: usize) -> BResult<wgpu::Buffer> {
        self.create(len, false)
    }

    fn upload_f32(&self, data: &[f32]) -> BResult<wgpu::Buffer> {
        let buf = self.create(data.len(), true)?;
        if !data.is_empty() {
            let mut view = buf.slice(..(data.len() as u64 * 4)).get_mapped_range_mut().map_err(|e| device_err("map for upload", e))?;
            view.copy_from_slice(bytemuck::cast_slice(data));
        }
        buf.unmap();
        Ok(buf)
    }

    /// A tensor buffer, mapped for writing when `mapped`; refusals become OutOfMemory.
    fn create(&self, len: usize, mapped: bool) -> BResult<wgpu::Buffer> {
        let bytes = self.bytes_for(len)?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: mapped,
        });
        scope_result(pollster::block_on(val.pop()), "create_buffer", bytes)?;
        scope_result(pollster::block_on(oom.pop()), "create_buffer", bytes)?;
        Ok(buf)
    }

    /// A read-only u32 storage buffer (row indices).
    fn upload_indices(&self, data: &[u32]) -> BResult<wgpu::Buffer> {
        let bytes = self.bytes_for(data.len())?;
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mvdit indices"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: true,
        });
        if !data.is_empty() {
            let mut view = buf.slice(..(data.len() as u64 * 4)).get_mapped_range_mut().map_err(|e| device_err("map for upload", e))?;
            view.copy_from_slice(bytemuck::cast_slice(data));
        }
        buf.unmap();
        Ok(buf)
    }

    /// Copies `t` back to the host: submits all pending work and waits for it.
    fn download_buf(&self, buf: &wgpu::Buffer, len: usize) -> BResult<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = len as u64 * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mvdit readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut st = self.lock();
            self.batch(&mut st).encoder.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
            self.submit(&mut st)?;
        }
        let slice = staging.slice(..);
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
        st.batch.get_or_insert_with(|| Batch {
            encoder: self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mvdit batch") }),
            params: Vec::with_capacity((BATCH_SLOTS as u64 * self.slot_stride) as usize),
            params_buf: self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("mvdit params"),
                size: BATCH_SLOTS as u64 * self.slot_stride,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            slots: 0,
        })
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
        let mut src = String::from(shaders::PRELUDE);
        src.push_str(shaders::source(name).ok_or_else(|| BackendError::Device(format!("internal: no shader `{name}`")))?);
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
    fn run_kernel(&self, name: &str, params: &[u32], bufs: &[&wgpu::Buffer], grid: Grid) -> BResult<()> {
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

        let mut entries = Vec::with_capacity(bufs.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &batch.params_buf,
                offset,
                size: wgpu::BufferSize::new(PARAM_BYTES),
            }),
        });
        for (i, b) in bufs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(name), layout: &kernel.layout, entries: &entries });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(device_err(&format!("binding kernel `{name}`"), e));
        }
        {
            let mut pass = batch.encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(name), timestamp_writes: None });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(gx, gy, gz);
        }
        Ok(())
    }
}

fn no_adapter_message(detail: &str) -> String {
    format!(
        "no GPU adapter available ({detail}). This build of wgpu uses the Vulkan backend: install a Vulkan driver \
         (for a software device on Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1), \
         or pick another adapter from Wgpu::adapters()"
    )
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

impl GpuDevice for WgpuDevice {
    type Buffer = wgpu::Buffer;
    type Device = wgpu::Device;
    type Queue = wgpu::Queue;

    /// Opens adapter `adapter_index` of [`GpuDevice::list`], or the default high-performance
    /// adapter when `None`. No adapter gives [`BackendError::Device`] saying what to install.
    fn open(adapter_index: Option<usize>) -> BResult<Self> {
        let inst = instance();
        let adapter = match adapter_index {
            None => pollster::block_on(inst.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            }))
            .map_err(|e| BackendError::Device(no_adapter_message(&e.to_string())))?,
            Some(i) => {
                let mut all = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
                if all.is_empty() {
                    return Err(BackendError::Device(no_adapter_message("wgpu found none")));
                }
                if i >= all.len() {
                    let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
                    return Err(BackendError::Device(format!("adapter index {i} out of range: {} adapters found: {names:?}", all.len())));
                }
                all.swap_remove(i)
            }
        };
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("mvdit"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| BackendError::Device(format!("cannot open adapter `{}`: {e}", info.name)))?;
        Ok(WgpuDevice::new(device, queue, format!("wgpu ({}, {:?})", info.name, info.backend)))
    }

    /// Needs no optional features.
    fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> BResult<Self> {
        Ok(WgpuDevice::new(device, queue, "wgpu (external device)".into()))
    }

    fn list() -> Vec<String> {
        let inst = instance();
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

    fn alloc(&self, len: usize) -> BResult<wgpu::Buffer> {
        self.alloc_buf(len)
    }

    fn upload(&self, data: &[f32]) -> BResult<wgpu::Buffer> {
        self.upload_f32(data)
    }

    fn upload_u32(&self, data: &[u32]) -> BResult<wgpu::Buffer> {
        self.upload_indices(data)
    }

    fn download(&self, buf: &wgpu::Buffer, len: usize) -> BResult<Vec<f32>> {
        self.download_buf(buf, len)
    }

    fn copy(&self, src: &wgpu::Buffer, src_off: usize, dst: &wgpu::Buffer, dst_off: usize, len: usize) -> BResult<()> {
        self.copy_buf(src, src_off, dst, dst_off, len)
    }

    fn dummy(&self) -> &wgpu::Buffer {
        &self.dummy
    }

    fn run(&self, name: &str, params: &[u32], bufs: &[&wgpu::Buffer], grid: Grid) -> BResult<()> {
        self.run_kernel(name, params, bufs, grid)
    }

    fn flush(&self) -> BResult<()> {
        self.flush_batch()
    }

    fn sync(&self) -> BResult<()> {
        self.sync_device()
    }
}
