//! Vulkan backend through vulkano: the ops of [`mvdit_core::Backend`] as SPIR-V compute
//! kernels, forward and backward, in f32.
//!
//! There is one source of truth for the kernels and one for the op sequencing, shared with the
//! wgpu backend:
//! * the op layer is `mvdit_backend_wgpu::GpuBackend` (shape checks, which kernel, parameter
//!   blocks, grids), generic over a [`GpuDevice`]; [`Vulkan`] is `GpuBackend<VulkanDevice>`;
//! * the kernels are the WGSL files of `mvdit-kernels`, translated to SPIR-V by naga
//!   in this crate's build script, with the parameter block turned into push constants.
//!
//! What this crate adds is the device side ([`VulkanDevice`]):
//! * tensors are device-local buffers sub-allocated by vulkano's `StandardMemoryAllocator` and
//!   recycled through a size-class pool ([`VulkanBuffer`]); host-visible staging buffers exist
//!   only inside `upload`, `write` and `download`;
//! * pipelines are built on first use, cached by name, and come from a `VkPipelineCache` that is
//!   saved to `$XDG_CACHE_HOME/mvdit/` (or `~/.cache/mvdit/`) so a second start skips the
//!   driver's compilation;
//! * dispatches are recorded into one command buffer (vulkano inserts the barriers between
//!   dependent dispatches) and submitted every [`BATCH_COMMANDS`] commands, each submission
//!   ordered after the previous one by a semaphore; the host waits only in `download` and
//!   `sum_squares`. Descriptor sets are cached, and a batch that repeats an earlier one (the
//!   next training step of the same shapes, on the same pooled buffers) resubmits the command
//!   buffer built then ([`ReplayStats`]);
//! * with [`VulkanDevice::set_profiling`], every command is followed by a timestamp query and
//!   [`VulkanDevice::profile`] returns the GPU time per kernel (`mvdit bench --profile`).
//!
//! Tensors larger than the device's `maxStorageBufferRange` are refused as
//! `BackendError::OutOfMemory`, as are allocations the driver refuses. No Vulkan loader, no
//! device with a compute queue, or a bad device index is a `BackendError::Device` saying what to
//! install or choose.
//!
//! Fast paths chosen from what the device reports ([`VulkanOptions`]): with f16 precision the
//! matmul operands are stored as f16 and, on devices with VK_KHR_cooperative_matrix (16×16×16
//! f16 matrices on 32-wide subgroups, or 8×8×8 on 8-wide ones), multiplied on the tensor cores
//! (`matmul_coop_ws.wgsl`, or `matmul_coop.wgsl` with [`CoopKernel::Direct`]).
//! The row kernels (norms, merges) run one subgroup per row on GPUs with subgroup arithmetic
//! (`RowPlan`; [`GpuOptions::subgroups`]).

mod device;
mod open;
mod options;
mod pipelines;
mod pool;
mod profile;

pub use device::{ReplayStats, VulkanDevice, BATCH_COMMANDS};
pub use options::{CoopKernel, CoopMatrices, VulkanOptions};
pub use pool::VulkanBuffer;
pub use mvdit_backend_wgpu::{Attention, BigTiles, GpuBackend, GpuDevice, GpuOptions, GpuTensor, MatmulKernel, Precision, Subgroups};
pub use profile::KernelTime;

/// The Vulkan backend: `Vulkan::new(index)`, `Vulkan::devices()`,
/// `Vulkan::from_device(device, queue)` (an application's own vulkano device and a queue with
/// compute support).
pub type Vulkan = GpuBackend<VulkanDevice>;

/// Opens the backend with options (precision, kernel choices); `Vulkan::new(index)` is
/// `open_with(&VulkanOptions { device: index, ..Default::default() })`.
pub fn open_with(opts: &VulkanOptions) -> mvdit_core::BResult<Vulkan> {
    Ok(Vulkan::from_context(VulkanDevice::open_with(opts)?))
}

/// A tensor of the Vulkan backend.
pub type VulkanTensor = GpuTensor<VulkanDevice>;

/// An error and its sources, for messages. vulkano's `Validated` wrapper only says "a
/// (non-)validation error occurred"; the useful text is in its source.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.ends_with("validation error occurred") {
            parts.push(text);
        }
        cur = c.source();
    }
    if parts.is_empty() {
        format!("{e:?}")
    } else {
        parts.join(": ")
    }
}

/// Names of every kernel compiled into this crate.
pub fn kernel_names() -> impl Iterator<Item = &'static str> {
    pipelines::KERNELS.iter().map(|(n, _, _)| *n)
}
