//! [`VulkanOptions`], and the kernel plans they give on a device.

use crate::open::{coop_fragment, f16_enabled, subgroup_size};
use mvdit_backend_wgpu::gpu::{Coop, MatmulPlan, Precision, RowPlan};
use mvdit_backend_wgpu::{Attention, GpuOptions};
use mvdit_core::{parse_choice, BResult, BackendError, Capability};
use std::str::FromStr;
use vulkano::device::physical::PhysicalDeviceType;
use vulkano::device::Device;

/// How to open the backend; `Default` is what `Vulkan::new` uses.
#[derive(Clone, Debug)]
pub struct VulkanOptions {
    /// Index into `Vulkan::devices()`; `None` (default) = the most capable device.
    pub device: Option<usize>,
    /// Storage precision of matmul operands. Default f32.
    pub precision: Precision,
    /// The kernel choices both GPU backends take.
    pub gpu: GpuOptions,
    /// With f16 precision, the products on cooperative-matrix units (`auto|on|off`). Default
    /// `Auto`: where the device was opened with them in a shape a kernel takes, else the tiled
    /// f16 kernel; `On` makes a device without them an error instead (for tests on a GPU).
    pub coop: CoopMatrices,
    /// Which cooperative-matrix kernel (`staged|direct`). Default `Staged`.
    pub coop_kernel: CoopKernel,
    /// Resubmit built command buffers when a batch repeats (the next step of the same shapes
    /// records the same commands on the same pooled buffers). Default on.
    pub replay: bool,
}

impl Default for VulkanOptions {
    fn default() -> Self {
        VulkanOptions { device: None, precision: Precision::F32, gpu: GpuOptions::default(), coop: CoopMatrices::Auto, coop_kernel: CoopKernel::Staged, replay: true }
    }
}

/// Whether f16 products run on cooperative-matrix units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CoopMatrices {
    /// Where the device has them.
    #[default]
    Auto,
    /// Required: an f16 device without them is an error.
    On,
    /// Never: the tiled f16 product.
    Off,
}

/// The cooperative-matrix product kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CoopKernel {
    /// `matmul_coop_ws`: four subgroups share a block staged in workgroup memory.
    #[default]
    Staged,
    /// `matmul_coop`: one subgroup per block, fragments loaded from storage buffers.
    Direct,
}

impl FromStr for CoopMatrices {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_choice(s, &[("auto", CoopMatrices::Auto), ("on", CoopMatrices::On), ("off", CoopMatrices::Off)], "cooperative-matrix choice")
    }
}

impl FromStr for CoopKernel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_choice(s, &[("staged", CoopKernel::Staged), ("direct", CoopKernel::Direct)], "cooperative-matrix kernel")
    }
}

/// Which kernels the op layer picks on `device`:
/// * matmuls as `opts.gpu` says ([`GpuOptions::tiled`]); attention follows them (the
///   workgroup-tiled `attn_*_t` kernels exactly when matmuls are tiled);
/// * with f16 precision, the padded f16 matmul, its product on cooperative-matrix units as
///   `opts.coop` says, where the device was opened with them in a shape a `matmul_coop` kernel
///   takes (fragment size and subgroup width, see [`coop_fragment`]).
pub(crate) fn matmul_plan(device: &Device, opts: &VulkanOptions) -> BResult<MatmulPlan> {
    let props = device.physical_device().properties();
    let tiled = opts.gpu.tiled(props.device_type == PhysicalDeviceType::Cpu);
    let name = &props.device_name;
    let f16 = opts.precision == Precision::F16;
    if f16 && !f16_enabled(device) {
        return Err(BackendError::Unsupported(Capability::F16, format!(
            "precision f16 needs shaderFloat16 and (uniformAndS|s)torageBuffer16BitAccess (Vulkan 1.2), which device `{name}` lacks or was opened without; use f32"
        )));
    }
    let ready = device.enabled_features().cooperative_matrix && props.cooperative_matrix_supported_stages.is_some_and(|s| s.intersects(vulkano::shader::ShaderStages::COMPUTE));
    let staged = opts.coop_kernel == CoopKernel::Staged;
    let fragment = if ready && f16 { coop_fragment(device.physical_device()).map(|fragment| Coop { fragment, staged }) } else { None };
    let coop = match opts.coop {
        CoopMatrices::Auto => fragment,
        CoopMatrices::Off => None,
        // f32 precision has no f16 products to put there.
        CoopMatrices::On if !f16 || fragment.is_some() => fragment,
        CoopMatrices::On => {
            return Err(BackendError::Unsupported(Capability::CooperativeMatrices, format!(
                "cooperative matrices required (coop on): device `{name}` was not opened with f16 cooperative matrices of a shape a kernel takes (16×16×16 on 32-wide subgroups, 8×8×8 on 8-wide)"
            )))
        }
    };
    Ok(MatmulPlan { tiled, f16, coop, tiled_attention: tiled, attn_scores: opts.gpu.attention == Attention::Scores, big_tiles: opts.gpu.tile })
}

/// Subgroup row kernels on GPUs that support them, serial ones on CPU devices, unless
/// `opts.gpu.subgroups` says otherwise (see [`RowPlan::resolve`]).
pub(crate) fn row_plan(device: &Device, opts: &VulkanOptions) -> BResult<RowPlan> {
    let pd = device.physical_device();
    let p = pd.properties();
    RowPlan::resolve(opts.gpu.subgroups, subgroup_size(pd), p.device_type == PhysicalDeviceType::Cpu, &p.device_name)
}
