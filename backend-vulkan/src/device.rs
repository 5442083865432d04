//! [`VulkanDevice`]: buffers, kernels and command submission for the shared op layer.
//!
//! Over 600 lines: the device state and its one `GpuDevice` impl (upload, download, dispatch
//! recording, submission, replay, profiling hooks) share private fields and invariants that
//! are easiest to check in one place; buffers (pool.rs), pipelines, profiles and options live
//! in their own modules.

use crate::pipelines::{self, Kernel, KERNELS};
use crate::profile::{KernelTime, Profiler};
use crate::open::{self, f16_enabled, subgroup_size};
use crate::options::{matmul_plan, row_plan, VulkanOptions};
use crate::pool::{Pool, VulkanBuffer};
use mvdit_backend_wgpu::gpu::{Coop, GpuDevice, Grid, MatmulPlan, RowPlan, PARAM_WORDS};
use mvdit_core::{BResult, BackendError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use vulkano::buffer::{AllocateBufferError, Buffer, BufferCreateInfo, BufferUsage, Subbuffer};
use vulkano::command_buffer::allocator::StandardCommandBufferAllocator;
use vulkano::command_buffer::{AutoCommandBufferBuilder, CommandBufferExecFuture, CommandBufferUsage, CopyBufferInfo, PrimaryAutoCommandBuffer};
use vulkano::descriptor_set::allocator::StandardDescriptorSetAllocator;
use vulkano::descriptor_set::{DescriptorSet, WriteDescriptorSet};
use vulkano::device::{Device, DeviceOwned, Queue, QueueFlags};
use vulkano::memory::allocator::{AllocationCreateInfo, MemoryTypeFilter, StandardMemoryAllocator};
use vulkano::pipeline::cache::PipelineCache;
use vulkano::pipeline::PipelineBindPoint;
use vulkano::sync::future::FenceSignalFuture;
use vulkano::sync::{self, GpuFuture};
use vulkano::Validated;

/// Commands (dispatches, fills, copies) per submitted command buffer.
pub const BATCH_COMMANDS: u32 = 512;

/// Descriptor sets kept for reuse (the cache starts over past this).
const SETS_KEPT: usize = 8192;
/// Built command buffers kept for replay (the cache starts over past this).
const COMMAND_BUFFERS_KEPT: usize = 512;

type Builder = AutoCommandBufferBuilder<PrimaryAutoCommandBuffer>;

/// A recorded command. Commands are kept in this form and turned into a Vulkan command buffer
/// at submit time, in one go: vulkano's command-buffer builders may not move between threads,
/// and the backend may.
enum Cmd {
    /// Every word of the buffer set to the value (0, or NaN bits when poisoning).
    Fill(Subbuffer<[u32]>, u32),
    Copy { src: Subbuffer<[f32]>, dst: Subbuffer<[f32]>, label: &'static str },
    Dispatch { kernel: Arc<Kernel>, set: Arc<DescriptorSet>, params: [u32; PARAM_WORDS], groups: [u32; 3] },
}
/// The last submission: it waits (semaphore) for the one before it while that one is in
/// flight, and signals a fence.
type Flight = FenceSignalFuture<CommandBufferExecFuture<Box<dyn GpuFuture + Send + Sync>>>;

struct State {
    /// Commands recorded since the last submission.
    pending: Vec<Cmd>,
    /// What the pending commands are, word by word (kernel, descriptor set, parameters, grid;
    /// buffer ids and ranges of fills and copies): equal keys record equal command buffers.
    key: Vec<u64>,
    /// False once a pending command touches a buffer outside the pool (staging): such a batch
    /// is never repeated, so it is not kept.
    replayable: bool,
    /// Descriptor sets by kernel and buffer ids.
    sets: HashMap<(&'static str, Vec<u64>), Arc<DescriptorSet>>,
    /// Built command buffers by key, resubmitted when a batch repeats (the next step of the
    /// same shapes records the same commands on the same pooled buffers).
    built: HashMap<Vec<u64>, Arc<PrimaryAutoCommandBuffer>>,
    /// Command buffers built and replayed so far.
    counts: ReplayStats,
    flight: Option<Flight>,
    kernels: HashMap<&'static str, Arc<Kernel>>,
    profiler: Option<Profiler>,
}

/// Command buffers submitted: built from recorded commands or replayed from an earlier batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub built: u64,
    pub replayed: u64,
    /// Tensor buffers served from the pool instead of created.
    pub buffers_reused: u64,
}

/// The vulkano implementation of [`GpuDevice`] (`Vulkan` = `GpuBackend<VulkanDevice>`).
pub struct VulkanDevice {
    device: Arc<Device>,
    queue: Arc<Queue>,
    mem: Arc<StandardMemoryAllocator>,
    sets: Arc<StandardDescriptorSetAllocator>,
    cmds: Arc<StandardCommandBufferAllocator>,
    cache: Option<Arc<PipelineCache>>,
    cache_path: Option<PathBuf>,
    /// Bound in place of an absent optional operand.
    dummy: VulkanBuffer,
    pool: Arc<Pool>,
    /// Reuse of built command buffers ([`VulkanOptions::replay`]).
    replay: bool,
    max_groups: u32,
    /// Largest buffer a kernel may bind (`maxStorageBufferRange`).
    max_bytes: u64,
    /// Which matmul kernels the op layer picks (tiled on GPUs; see [`matmul_plan`]).
    plan: MatmulPlan,
    /// Uninitialised outputs are filled with NaN (`GpuOptions::poison`, a test aid).
    poison: bool,
    /// Which row kernels the op layer picks (subgroups on GPUs that have them; see [`row_plan`]).
    rows: RowPlan,
    name: String,
    state: Mutex<State>,
}

fn err(what: &str, e: impl std::error::Error + 'static) -> BackendError {
    BackendError::Device(format!("{what}: {}", crate::chain(&e)))
}

fn alloc_err(e: Validated<AllocateBufferError>, bytes: u64) -> BackendError {
    match e {
        Validated::Error(AllocateBufferError::AllocateMemory(_)) => BackendError::OutOfMemory { bytes },
        e => err("allocating a buffer", e),
    }
}

impl VulkanDevice {
    fn with_queue(device: Arc<Device>, queue: Arc<Queue>, opts: &VulkanOptions) -> BResult<Self> {
        if queue.device() != &device {
            return Err(BackendError::Device("the queue belongs to another device".into()));
        }
        let family = &device.physical_device().queue_family_properties()[queue.queue_family_index() as usize];
        if !family.queue_flags.intersects(QueueFlags::COMPUTE) {
            return Err(BackendError::Device("the queue has no compute support".into()));
        }
        let props = device.physical_device().properties();
        let [gx, gy, _] = props.max_compute_work_group_count;
        let mem = Arc::new(StandardMemoryAllocator::new_default(device.clone()));
        let sets = Arc::new(StandardDescriptorSetAllocator::new(device.clone(), Default::default()));
        let cmds = Arc::new(StandardCommandBufferAllocator::new(device.clone(), Default::default()));
        let (cache, cache_path) = pipelines::open_cache(&device);
        let dummy = Buffer::new_slice::<f32>(
            mem.clone(),
            BufferCreateInfo { usage: BufferUsage::STORAGE_BUFFER, ..Default::default() },
            AllocationCreateInfo { memory_type_filter: MemoryTypeFilter::PREFER_DEVICE, ..Default::default() },
            4,
        )
        .map_err(|e| alloc_err(e, 16))?;
        let plan = matmul_plan(&device, opts)?;
        let kind: String = match (plan.tiled, plan.f16, plan.coop) {
            (_, true, Some(c)) => format!("f16 cooperative-matrix ({0}×{0}×{0}, {1})", c.fragment, if c.staged { "staged" } else { "direct" }),
            (_, true, None) => "f16 tiled".into(),
            (true, false, _) => "tiled".into(),
            (false, false, _) => "register-blocked".into(),
        };
        let rows = row_plan(&device, opts)?;
        let rows_kind = if rows.subgroup.is_some() { "subgroup" } else { "serial" };
        let name = format!("vulkan ({}), {kind} matmuls, {rows_kind} norms", open::describe(device.physical_device()));
        Ok(VulkanDevice {
            plan,
            rows,
            poison: opts.gpu.poison,
            max_groups: gx.min(gy),
            max_bytes: u64::from(props.max_storage_buffer_range),
            device,
            queue,
            mem,
            sets,
            cmds,
            cache,
            cache_path,
            dummy: VulkanBuffer::unpooled(dummy),
            pool: Arc::new(Pool::default()),
            replay: opts.replay,
            name,
            state: Mutex::new(State {
                pending: Vec::new(),
                key: Vec::new(),
                replayable: true,
                sets: HashMap::new(),
                built: HashMap::new(),
                counts: ReplayStats::default(),
                flight: None,
                kernels: HashMap::new(),
                profiler: None,
            }),
        })
    }

    /// Opens a device with `opts` (see [`crate::open_with`]).
    pub fn open_with(opts: &VulkanOptions) -> BResult<Self> {
        let (device, queue) = open::open(opts.device)?;
        Self::with_queue(device, queue, opts)
    }

    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Command buffers built and replayed, and pooled buffers reused, so far.
    pub fn replay_stats(&self) -> ReplayStats {
        let st = self.lock();
        ReplayStats { buffers_reused: self.pool.reused(), ..st.counts }
    }

    /// Turns per-kernel GPU timing on (clearing earlier totals) or off. Fails when the queue
    /// writes no timestamps.
    pub fn set_profiling(&self, on: bool) -> BResult<()> {
        let mut st = self.lock();
        self.submit(&mut st)?;
        self.wait(&mut st)?;
        st.profiler = if on { Some(Profiler::new(&self.device, &self.queue, BATCH_COMMANDS + 1)?) } else { None };
        Ok(())
    }

    /// GPU time per kernel since profiling was turned on, longest first (after waiting for all
    /// recorded work). Empty when profiling is off.
    pub fn profile(&self) -> BResult<Vec<KernelTime>> {
        let mut st = self.lock();
        self.submit(&mut st)?;
        self.wait(&mut st)?;
        Ok(st.profiler.as_ref().map(Profiler::report).unwrap_or_default())
    }

    /// Builds every kernel this device runs now (a fresh pipeline cache is filled in one go);
    /// returns their names. f16 and cooperative-matrix kernels count only where the device was
    /// opened with what they need.
    pub fn prepare_all(&self) -> BResult<Vec<&'static str>> {
        let f16 = f16_enabled(&self.device);
        let mut st = self.lock();
        let mut built = Vec::new();
        for &(name, _, needs) in KERNELS {
            let runs = match needs {
                "f16" => f16,
                "coop" => self.plan.coop.and_then(Coop::kernel).as_deref() == Some(name),
                "subgroup" => subgroup_size(self.device.physical_device()).is_some(),
                _ => true,
            };
            if runs {
                self.kernel(&mut st, name)?;
                built.push(name);
            }
        }
        Ok(built)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while recording leaves nothing half-updated that later calls could trip on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kernel(&self, st: &mut State, name: &str) -> BResult<Arc<Kernel>> {
        if let Some(k) = st.kernels.get(name) {
            return Ok(k.clone());
        }
        let (static_name, _, _) = KERNELS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| BackendError::Device(format!("internal: no kernel `{name}`")))?;
        let k = Arc::new(pipelines::build(&self.device, self.cache.as_ref(), static_name)?);
        st.kernels.insert(static_name, k.clone());
        Ok(k)
    }

    /// Bytes of an f32 buffer of `len` values (at least one value).
    fn bytes_for(&self, len: usize) -> BResult<u64> {
        let bytes = (len.max(1) as u64).checked_mul(4).ok_or(BackendError::OutOfMemory { bytes: u64::MAX })?;
        if bytes > self.max_bytes {
            // A kernel could not bind it: a smaller batch is the remedy.
            return Err(BackendError::OutOfMemory { bytes });
        }
        Ok(bytes)
    }

    fn buffer(&self, len: usize, usage: BufferUsage, filter: MemoryTypeFilter) -> BResult<Subbuffer<[f32]>> {
        let bytes = self.bytes_for(len)?;
        Buffer::new_slice::<f32>(
            self.mem.clone(),
            BufferCreateInfo { usage, ..Default::default() },
            AllocationCreateInfo { memory_type_filter: filter, ..Default::default() },
            len.max(1) as u64,
        )
        .map_err(|e| alloc_err(e, bytes))
    }

    /// A tensor buffer of at least `len` values from the pool (its size class), or a new one.
    fn device_buffer(&self, len: usize) -> BResult<VulkanBuffer> {
        let bytes = self.bytes_for(len)?;
        let class = mvdit_backend_wgpu::gpu::size_class(bytes, self.max_bytes) / 4;
        if let Some(buf) = self.pool.take(class) {
            return Ok(buf);
        }
        let usage = BufferUsage::STORAGE_BUFFER | BufferUsage::TRANSFER_SRC | BufferUsage::TRANSFER_DST;
        Ok(self.pool.lease(self.buffer(class as usize, usage, MemoryTypeFilter::PREFER_DEVICE)?))
    }

    /// Records a command whose key words are `key`; submits when a command buffer's worth is
    /// pending. `pooled` = false (a copy to or from a staging buffer) makes a batch that is
    /// never repeated; such commands and pooled ones go to separate command buffers, so the
    /// uploads and downloads of a step do not keep its other batches from being replayed.
    fn record(&self, st: &mut State, cmd: Cmd, key: &[u64], pooled: bool) -> BResult<()> {
        if !st.pending.is_empty() && st.replayable != pooled {
            self.submit(st)?;
        }
        st.pending.push(cmd);
        st.key.extend_from_slice(key);
        st.replayable = pooled;
        if st.pending.len() >= BATCH_COMMANDS as usize {
            self.submit(st)?;
        }
        Ok(())
    }

    /// Records setting every word of `buf` to `value`.
    fn fill(&self, st: &mut State, buf: &VulkanBuffer, value: u32) -> BResult<()> {
        let key = [2, buf.id(), u64::from(value)];
        self.record(st, Cmd::Fill(buf.raw().clone().reinterpret::<[u32]>(), value), &key, true)
    }

    /// Records copying `data` into the start of `buf` through a new staging buffer (`label`
    /// names the copy in profiles); the command keeps the staging buffer alive until it has run.
    fn stage_into(&self, buf: &VulkanBuffer, data: &[f32], label: &'static str) -> BResult<()> {
        if data.is_empty() {
            return Ok(());
        }
        let staging = self.buffer(data.len(), BufferUsage::TRANSFER_SRC, MemoryTypeFilter::PREFER_HOST | MemoryTypeFilter::HOST_SEQUENTIAL_WRITE)?;
        staging.write().map_err(|e| err("writing a staging buffer", e))?.copy_from_slice(data);
        let mut st = self.lock();
        let dst = buf.raw().clone().slice(0..data.len() as u64);
        self.record(&mut st, Cmd::Copy { src: staging, dst, label }, &[], false)
    }

    /// The pending commands as one command buffer (vulkano inserts the barriers between
    /// dependent commands).
    /// `keep`: the command buffer will be kept for replay.
    fn build(&self, st: &mut State, keep: bool) -> BResult<Arc<PrimaryAutoCommandBuffer>> {
        // A kept command buffer may be replayed while its last submission still runs (two
        // equal batches in one step).
        let usage = if keep { CommandBufferUsage::SimultaneousUse } else { CommandBufferUsage::OneTimeSubmit };
        let mut b: Builder = AutoCommandBufferBuilder::primary(self.cmds.clone(), self.queue.queue_family_index(), usage)
            .map_err(|e| err("beginning a command buffer", e))?;
        if let Some(p) = st.profiler.as_mut() {
            p.begin(&mut b)?;
        }
        for cmd in st.pending.drain(..) {
            let label = match cmd {
                Cmd::Fill(buf, value) => {
                    b.fill_buffer(buf, value).map_err(|e| err("recording a fill", e))?;
                    "(fill)"
                }
                Cmd::Copy { src, dst, label } => {
                    b.copy_buffer(CopyBufferInfo::buffers(src, dst)).map_err(|e| err(&format!("recording {label}"), e))?;
                    label
                }
                Cmd::Dispatch { kernel, set, params, groups } => {
                    let what = format!("recording kernel `{}`", kernel.name);
                    b.bind_pipeline_compute(kernel.pipeline.clone())
                        .and_then(|b| b.bind_descriptor_sets(PipelineBindPoint::Compute, kernel.layout.clone(), 0, set))
                        .and_then(|b| b.push_constants(kernel.layout.clone(), 0, params))
                        .map_err(|e| err(&what, e))?;
                    // SAFETY: the op layer sized the grid and checked every shape against the
                    // buffers the kernel indexes (its kernels are tested against the reference ops).
                    unsafe { b.dispatch(groups) }.map_err(|e| err(&what, e))?;
                    kernel.name
                }
            };
            if let Some(p) = st.profiler.as_mut() {
                p.mark(&mut b, label)?;
            }
        }
        b.build().map_err(|e| err("finishing a command buffer", e))
    }

    /// Submits the pending commands after the previous submission (a semaphore orders them and
    /// makes the earlier writes visible). Does not wait, except when profiling.
    fn submit(&self, st: &mut State) -> BResult<()> {
        if st.pending.is_empty() {
            return Ok(());
        }
        let key = std::mem::take(&mut st.key);
        let replayable = std::mem::replace(&mut st.replayable, true);
        let keep = st.profiler.is_none() && self.replay && replayable;
        let cb = match st.built.get(&key).filter(|_| keep) {
            Some(cb) => {
                st.pending.clear();
                st.counts.replayed += 1;
                cb.clone()
            }
            None => {
                let cb = self.build(st, keep)?;
                st.counts.built += 1;
                if keep {
                    if st.built.len() >= COMMAND_BUFFERS_KEPT {
                        st.built.clear();
                    }
                    st.built.insert(key, cb.clone());
                }
                cb
            }
        };
        let prev: Box<dyn GpuFuture + Send + Sync> = match st.flight.take() {
            Some(mut f) => {
                // Frees what finished submissions held (buffers, descriptor sets).
                f.cleanup_finished();
                if f.queue().is_some() {
                    f.then_signal_semaphore().boxed_send_sync()
                } else {
                    // Everything before has finished (and was waited for).
                    sync::now(self.device.clone()).boxed_send_sync()
                }
            }
            None => sync::now(self.device.clone()).boxed_send_sync(),
        };
        let flight = prev
            .then_execute(self.queue.clone(), cb)
            .map_err(|e| err("submitting work", e))?
            .then_signal_fence_and_flush()
            .map_err(|e| err("submitting work", e))?;
        st.flight = Some(flight);
        if st.profiler.is_some() {
            self.wait(st)?;
            if let Some(p) = st.profiler.as_mut() {
                p.collect()?;
            }
        }
        Ok(())
    }

    /// Waits for every submission.
    fn wait(&self, st: &mut State) -> BResult<()> {
        if let Some(f) = st.flight.take() {
            f.wait(None).map_err(|e| err("waiting for the device", e))?;
        }
        Ok(())
    }
}

impl Drop for VulkanDevice {
    fn drop(&mut self) {
        let mut st = self.lock();
        // Nothing may still run on buffers about to be freed.
        let _ = self.submit(&mut st);
        let _ = self.wait(&mut st);
        if let (Some(cache), Some(path)) = (&self.cache, &self.cache_path) {
            pipelines::save_cache(cache, path);
        }
    }
}

impl GpuDevice for VulkanDevice {
    type Buffer = VulkanBuffer;
    type Device = Arc<Device>;
    type Queue = Arc<Queue>;

    fn open(index: Option<usize>) -> BResult<Self> {
        Self::open_with(&VulkanOptions { device: index, ..Default::default() })
    }

    /// Needs no optional features or extensions (f32); the queue must support compute.
    fn from_device(device: Arc<Device>, queue: Arc<Queue>) -> BResult<Self> {
        Self::with_queue(device, queue, &VulkanOptions::default())
    }

    fn list() -> Vec<String> {
        open::list()
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn max_groups(&self) -> u32 {
        self.max_groups
    }

    /// Discrete GPUs only: elsewhere (integrated, lavapipe) the "device-local" heap is host
    /// memory, better judged by what the host has available.
    fn memory_bytes(&self) -> Option<u64> {
        let physical = self.device.physical_device();
        if physical.properties().device_type != vulkano::device::physical::PhysicalDeviceType::DiscreteGpu {
            return None;
        }
        let heaps = &physical.memory_properties().memory_heaps;
        heaps.iter().filter(|h| h.flags.intersects(vulkano::memory::MemoryHeapFlags::DEVICE_LOCAL)).map(|h| h.size).max()
    }

    /// Device memory is not zeroed by Vulkan: a fill is recorded with the allocation.
    fn alloc(&self, len: usize) -> BResult<VulkanBuffer> {
        let buf = self.device_buffer(len)?;
        let mut st = self.lock();
        self.fill(&mut st, &buf, 0)?;
        Ok(buf)
    }

    /// Op outputs are written whole by their kernel: no fill, except that with
    /// `GpuOptions::poison` they start as NaN, so a kernel that leaves part of its output
    /// unwritten fails the parity tests (GPU memory is not zero the way fresh pages are).
    fn alloc_uninit(&self, len: usize) -> BResult<VulkanBuffer> {
        let buf = self.device_buffer(len)?;
        if self.poison {
            let mut st = self.lock();
            self.fill(&mut st, &buf, f32::NAN.to_bits())?;
        }
        Ok(buf)
    }

    fn matmul_plan(&self) -> MatmulPlan {
        self.plan
    }

    fn row_plan(&self) -> RowPlan {
        self.rows
    }

    fn upload(&self, data: &[f32]) -> BResult<VulkanBuffer> {
        let buf = self.device_buffer(data.len())?;
        self.stage_into(&buf, data, "(upload)")?;
        Ok(buf)
    }

    fn write(&self, buf: &VulkanBuffer, data: &[f32]) -> BResult<()> {
        if data.len() as u64 > buf.len() {
            return Err(BackendError::Shape(format!("write: {} values into a {}-value buffer", data.len(), buf.len())));
        }
        self.stage_into(buf, data, "(write)")
    }

    fn upload_u32(&self, data: &[u32]) -> BResult<VulkanBuffer> {
        // Kernels read the indices as u32: the bits go up unchanged.
        let bits: Vec<f32> = data.iter().map(|&i| f32::from_bits(i)).collect();
        self.upload(&bits)
    }

    fn download(&self, buf: &VulkanBuffer, len: usize) -> BResult<Vec<f32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        if len as u64 > buf.len() {
            return Err(BackendError::Shape(format!("download: {len} values of a {}-value buffer", buf.len())));
        }
        let staging = self.buffer(len, BufferUsage::TRANSFER_DST, MemoryTypeFilter::PREFER_HOST | MemoryTypeFilter::HOST_RANDOM_ACCESS)?;
        {
            let mut st = self.lock();
            self.record(&mut st, Cmd::Copy { src: buf.raw().clone().slice(0..len as u64), dst: staging.clone(), label: "(download)" }, &[], false)?;
            self.submit(&mut st)?;
            self.wait(&mut st)?;
        }
        let view = staging.read().map_err(|e| err("reading back", e))?;
        Ok(view.to_vec())
    }

    fn copy(&self, src: &VulkanBuffer, src_off: usize, dst: &VulkanBuffer, dst_off: usize, len: usize) -> BResult<()> {
        if len == 0 {
            return Ok(());
        }
        let (s0, d0, n) = (src_off as u64, dst_off as u64, len as u64);
        if s0 + n > src.len() || d0 + n > dst.len() {
            return Err(BackendError::Shape(format!("copy: {len} values from {src_off} of {} to {dst_off} of {}", src.len(), dst.len())));
        }
        let mut st = self.lock();
        let key = [3, src.id(), s0, dst.id(), d0, n];
        self.record(&mut st, Cmd::Copy { src: src.raw().clone().slice(s0..s0 + n), dst: dst.raw().clone().slice(d0..d0 + n), label: "(copy)" }, &key, true)
    }

    fn dummy(&self) -> &VulkanBuffer {
        &self.dummy
    }

    fn run(&self, name: &str, params: &[u32], bufs: &[&VulkanBuffer], grid: Grid) -> BResult<()> {
        if params.len() > PARAM_WORDS {
            return Err(BackendError::Device(format!("internal: kernel `{name}` given {} parameter words", params.len())));
        }
        let Some((gx, gy, gz)) = grid.groups(self.max_groups) else {
            return Err(BackendError::Shape(format!("kernel `{name}`: {grid:?} exceeds the dispatch grid")));
        };
        if gx == 0 || gy == 0 || gz == 0 {
            return Ok(());
        }
        let mut block = [0u32; PARAM_WORDS];
        block[..params.len()].copy_from_slice(params);
        let mut st = self.lock();
        let k = self.kernel(&mut st, name)?;
        // Only the bindings the shader uses are in its layout.
        let used: Vec<(u32, &VulkanBuffer)> =
            bufs.iter().enumerate().map(|(i, b)| (i as u32 + 1, *b)).filter(|(binding, _)| k.set_layout.bindings().contains_key(binding)).collect();
        if let Some(p) = st.profiler.as_mut() {
            let reqs = vulkano::pipeline::Pipeline::descriptor_binding_requirements(&*k.pipeline);
            let writes = |binding: u32| reqs.get(&(0, binding)).is_some_and(|r| r.descriptors.values().any(|d| !d.memory_write.is_empty()));
            let io: Vec<(u64, u64, bool)> = used.iter().map(|&(binding, b)| (b.id(), b.raw().size(), writes(binding))).collect();
            p.dispatch(k.name, &io);
        }
        let set_key = (k.name, used.iter().map(|(_, b)| b.id()).collect::<Vec<u64>>());
        let set = match st.sets.get(&set_key) {
            Some(set) => set.clone(),
            None => {
                let writes = used.iter().map(|&(binding, b)| WriteDescriptorSet::buffer(binding, b.raw().clone()));
                let set = DescriptorSet::new(self.sets.clone(), k.set_layout.clone(), writes, []).map_err(|e| err(&format!("recording kernel `{name}`"), e))?;
                if st.sets.len() >= SETS_KEPT {
                    st.sets.clear();
                }
                st.sets.insert(set_key, set.clone());
                set
            }
        };
        let mut key = vec![1, k.name.as_ptr() as u64, Arc::as_ptr(&set) as u64, u64::from(gx), u64::from(gy), u64::from(gz)];
        key.extend(block.iter().map(|&w| u64::from(w)));
        self.record(&mut st, Cmd::Dispatch { kernel: k, set, params: block, groups: [gx, gy, gz] }, &key, true)
    }

    fn flush(&self) -> BResult<()> {
        let mut st = self.lock();
        self.submit(&mut st)
    }

    fn sync(&self) -> BResult<()> {
        let mut st = self.lock();
        self.submit(&mut st)?;
        self.wait(&mut st)
    }
}
