//! The kernel flags of every command that opens a backend: one flag per knob of the backends'
//! option structs ([`CpuOptions`], [`WgpuOptions`], [`VulkanOptions`]), parsed by the backends'
//! own `FromStr`. The defaults are the backends' defaults.

use crate::cli::BackendKind;
use mvdit_backend_cpu::CpuOptions;
use mvdit_backend_vulkan::{CoopKernel, CoopMatrices, VulkanOptions};
use mvdit_backend_wgpu::{Attention, BigTiles, GpuOptions, MatmulKernel, Precision, Subgroups, WgpuOptions};
use mvdit_model::{Error, Result};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct BackendFlags {
    /// wgpu, vulkan: matmul kernel: auto (tiled on GPUs, register-blocked on CPU adapters such
    /// as lavapipe), tiled or blocked. Attention follows it.
    #[arg(long, default_value = "auto", value_name = "auto|tiled|blocked")]
    pub matmul: MatmulKernel,
    /// wgpu, vulkan: tiled products on 64×64 tiles, on 128×128 tiles, or auto (128×128 for
    /// those that still fill at least 256 workgroups).
    #[arg(long, default_value = "64", value_name = "64|128|auto")]
    pub gpu_tile: BigTiles,
    /// wgpu, vulkan: tiled attention through materialised scores where they fit (scores), or
    /// always the workgroup-tiled kernels (tiles).
    #[arg(long, default_value = "scores", value_name = "scores|tiles")]
    pub gpu_attention: Attention,
    /// wgpu, vulkan: row kernels (norms, merges, RoPE) one subgroup per row: auto (on GPUs with
    /// subgroup arithmetic, off on CPU devices), on (an error without them) or off.
    #[arg(long, default_value = "auto", value_name = "auto|on|off")]
    pub gpu_subgroups: Subgroups,
    /// wgpu, vulkan: fill op outputs with NaN before their kernel writes them (a test aid: a
    /// kernel that leaves part of its output unwritten shows up).
    #[arg(long)]
    pub gpu_poison: bool,
    /// vulkan, --precision f16: products on cooperative-matrix units (tensor cores): auto (where
    /// the device has them), on (an error without them) or off (the tiled f16 kernel).
    #[arg(long, default_value = "auto", value_name = "auto|on|off")]
    pub coop: CoopMatrices,
    /// vulkan: the cooperative-matrix kernel: staged (blocks staged in workgroup memory) or
    /// direct (fragments loaded from storage buffers).
    #[arg(long, default_value = "staged", value_name = "staged|direct")]
    pub coop_kernel: CoopKernel,
    /// vulkan: build every command buffer anew instead of resubmitting repeated batches.
    #[arg(long)]
    pub no_vulkan_replay: bool,
    /// cpu: print each op's call count and total time at exit.
    #[arg(long)]
    pub cpu_profile: bool,
}

impl BackendFlags {
    /// Refuses a flag given for a backend it does not apply to.
    pub fn check(&self, backend: BackendKind) -> Result<()> {
        let d = BackendFlags::default();
        let gpu = backend != BackendKind::Cpu;
        let vulkan = backend == BackendKind::Vulkan;
        let given = [
            ("--matmul", self.matmul != d.matmul, gpu),
            ("--gpu-tile", self.gpu_tile != d.gpu_tile, gpu),
            ("--gpu-attention", self.gpu_attention != d.gpu_attention, gpu),
            ("--gpu-subgroups", self.gpu_subgroups != d.gpu_subgroups, gpu),
            ("--gpu-poison", self.gpu_poison, gpu),
            ("--coop", self.coop != d.coop, vulkan),
            ("--coop-kernel", self.coop_kernel != d.coop_kernel, vulkan),
            ("--no-vulkan-replay", self.no_vulkan_replay, vulkan),
            ("--cpu-profile", self.cpu_profile, !gpu),
        ];
        match given.iter().find(|(_, set, applies)| *set && !applies) {
            Some((flag, ..)) => Err(Error::new(format!("{flag} does not apply to --backend {}", format!("{backend:?}").to_lowercase()))),
            None => Ok(()),
        }
    }

    /// The CPU backend's options with `threads` threads (0 = all cores).
    pub fn cpu_options(&self, threads: usize) -> CpuOptions {
        CpuOptions { threads, profile: self.cpu_profile }
    }

    /// The kernel choices both GPU backends take.
    pub fn gpu_options(&self) -> GpuOptions {
        GpuOptions { matmul: self.matmul, tile: self.gpu_tile, attention: self.gpu_attention, subgroups: self.gpu_subgroups, poison: self.gpu_poison }
    }

    /// The wgpu backend's options for adapter `adapter`.
    pub fn wgpu_options(&self, adapter: Option<usize>, precision: Precision) -> WgpuOptions {
        WgpuOptions { adapter, precision, gpu: self.gpu_options() }
    }

    /// The Vulkan backend's options for device `device`.
    pub fn vulkan_options(&self, device: Option<usize>, precision: Precision) -> VulkanOptions {
        VulkanOptions { device, precision, gpu: self.gpu_options(), coop: self.coop, coop_kernel: self.coop_kernel, replay: !self.no_vulkan_replay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        flags: BackendFlags,
    }

    #[test]
    fn flags_become_options_and_bad_values_name_the_flag() {
        let cmd = Cmd::try_parse_from(["x", "--gpu-tile", "128", "--coop", "on", "--coop-kernel", "direct", "--no-vulkan-replay"]).unwrap();
        let vk = cmd.flags.vulkan_options(Some(1), Precision::F16);
        assert_eq!((vk.gpu.tile, vk.coop, vk.coop_kernel, vk.replay), (BigTiles::On, CoopMatrices::On, CoopKernel::Direct, false));
        assert!(cmd.flags.check(BackendKind::Vulkan).is_ok());
        assert!(cmd.flags.check(BackendKind::Wgpu).unwrap_err().to_string().contains("--coop"));
        let defaults = Cmd::try_parse_from(["x"]).unwrap().flags;
        assert_eq!(defaults.gpu_options(), GpuOptions::default());
        assert!(defaults.check(BackendKind::Cpu).is_ok());
        let err = Cmd::try_parse_from(["x", "--gpu-tile", "96"]).err().unwrap().to_string();
        assert!(err.contains("--gpu-tile") && err.contains("64, 128 or auto"), "{err}");
    }
}
