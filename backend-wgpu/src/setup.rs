//! Opening the backend: adapter choice, options (precision, [`GpuOptions`]), embedding in an
//! application's device, and allocation statistics.

use crate::ctx::{instance, no_adapter_message, WgpuDevice};
use crate::gpu::{MatmulKernel, MatmulPlan, Precision, RowPlan};
use crate::options::{Attention, GpuOptions};
use crate::pool::DeviceStats;
use crate::Wgpu;
use mvdit_core::{BResult, BackendError, Capability};

/// How to open the backend; `Default` is what [`Wgpu::new`] uses.
#[derive(Clone, Debug, Default)]
pub struct WgpuOptions {
    /// Index into [`Wgpu::adapters`]; `None` = the default high-performance adapter.
    pub adapter: Option<usize>,
    /// Storage precision of matmul operands. Default f32.
    pub precision: Precision,
    /// The kernel choices both GPU backends take.
    pub gpu: GpuOptions,
}

impl WgpuDevice {
    /// Opens an adapter with `opts` (see [`Wgpu::with_options`]).
    pub(crate) fn open_with(opts: &WgpuOptions) -> BResult<Self> {
        let adapter = match opts.adapter {
            // The primary backends (Vulkan, Metal, DX12) first; OpenGL only where none has one.
            None => {
                let request = |backends| {
                    let want = wgpu::RequestAdapterOptions {
                        power_preference: wgpu::PowerPreference::HighPerformance,
                        force_fallback_adapter: false,
                        compatible_surface: None,
                        apply_limit_buckets: false,
                    };
                    pollster::block_on(instance(backends).request_adapter(&want))
                };
                request(wgpu::Backends::PRIMARY)
                    .or_else(|_| request(wgpu::Backends::all()))
                    .map_err(|e| BackendError::Device(no_adapter_message(&e.to_string())))?
            }
            Some(i) => {
                let inst = instance(wgpu::Backends::all());
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
        // f16 kernels need SHADER_F16, the subgroup row kernels SUBGROUP; ask for them whenever the
        // adapter has them (it costs nothing).
        let features = adapter.features() & (wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("mvdit"),
            required_features: features,
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| BackendError::Device(format!("cannot open adapter `{}`: {e}", info.name)))?;
        let name = format!("wgpu ({}, {:?})", info.name, info.backend);
        WgpuDevice::with_plan(device, queue, name, opts)
    }

    /// Runs on a device the application already opened (see [`Wgpu::from_device_with`]).
    pub(crate) fn from_device_with(device: wgpu::Device, queue: wgpu::Queue, opts: &WgpuOptions) -> BResult<Self> {
        WgpuDevice::with_plan(device, queue, "wgpu (external device)".into(), opts)
    }

    fn with_plan(device: wgpu::Device, queue: wgpu::Queue, name: String, opts: &WgpuOptions) -> BResult<Self> {
        let f16 = opts.precision == Precision::F16;
        if f16 && !device.features().contains(wgpu::Features::SHADER_F16) {
            let name = device.adapter_info().name;
            return Err(BackendError::Unsupported(Capability::F16, format!(
                "precision f16 needs the SHADER_F16 feature, which device `{name}` was not opened with (or its adapter lacks); use f32"
            )));
        }
        // Attention follows the same choice (tiled on GPUs), but f16 alone does not force it.
        let tiled_attention = opts.gpu.tiled(device.adapter_info().device_type == wgpu::DeviceType::Cpu);
        let tiled = f16 || tiled_attention;
        let kind = match (tiled, f16) {
            (_, true) => "tiled f16",
            (true, false) => "tiled f32",
            (false, false) => "blocked f32",
        };
        let info = device.adapter_info();
        let max_size = device.features().contains(wgpu::Features::SUBGROUP).then_some(info.subgroup_max_size);
        let rows = RowPlan::resolve(opts.gpu.subgroups, max_size, info.device_type == wgpu::DeviceType::Cpu, &info.name)?;
        let rows_kind = if rows.subgroup.is_some() { "subgroup" } else { "serial" };
        let name = format!("{name}, {kind} matmuls, {rows_kind} norms");
        let attn_scores = opts.gpu.attention == Attention::Scores;
        let plan = MatmulPlan { tiled, f16, coop: None, tiled_attention, attn_scores, big_tiles: opts.gpu.tile };
        Ok(WgpuDevice::new(device, queue, name, plan, rows, opts.gpu.poison))
    }
}

impl Wgpu {
    /// Opens an adapter with `opts`. No adapter gives [`BackendError::Device`] saying what to
    /// install; f16 on an adapter without SHADER_F16 is refused with the adapter's name.
    pub fn with_options(opts: WgpuOptions) -> BResult<Self> {
        Ok(Self::from_context(WgpuDevice::open_with(&opts)?))
    }

    /// Runs on a device the application already opened, with `opts` (its `adapter` is
    /// ignored). f32 needs no optional feature; f16 needs the device opened with SHADER_F16.
    pub fn from_device_with(device: wgpu::Device, queue: wgpu::Queue, opts: &WgpuOptions) -> BResult<Self> {
        Ok(Self::from_context(WgpuDevice::from_device_with(device, queue, opts)?))
    }

    /// Device allocations so far: after the first training or sampling step, further steps of
    /// the same shapes create no buffers, and after a transient of a few steps almost no bind
    /// groups (`tests/tests/wgpu_pool.rs` measures both).
    pub fn device_stats(&self) -> DeviceStats {
        self.context().stats()
    }

    /// Returns the pooled free buffers and cached bind groups to the device (for an
    /// application that is done with mvdit for a while; tensors still alive are untouched).
    pub fn release_pooled(&self) {
        self.context().trim();
    }

    /// Whether matmuls use the tiled kernel, and whether their operands are f16.
    pub fn matmul_plan(&self) -> (MatmulKernel, Precision) {
        use crate::gpu::GpuDevice;
        let plan = self.context().matmul_plan();
        let kind = if plan.tiled { MatmulKernel::Tiled } else { MatmulKernel::Blocked };
        (kind, if plan.f16 { Precision::F16 } else { Precision::F32 })
    }
}
