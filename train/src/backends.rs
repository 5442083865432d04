//! Which backend a command opens, and how: `--backend`, `--threads`, `--device`,
//! `--precision` and one flag per knob of the backends' option structs ([`CpuOptions`],
//! [`WgpuOptions`], [`VulkanOptions`], parsed by the backends' own `FromStr`; the defaults are
//! the backends' defaults), and the macros that run a command's body on the chosen backend.

use clap::ValueEnum;
use mvdit_backend_cpu::{Cpu, CpuOptions};
use mvdit_backend_vulkan::{CoopKernel, CoopMatrices, VulkanOptions};
use mvdit_backend_wgpu::{Attention, BigTiles, GpuOptions, MatmulKernel, Precision, Subgroups, WgpuOptions};
use mvdit_core::dtype::Dtype;
use mvdit_model::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    Cpu,
    /// Any GPU wgpu reaches (Vulkan here; Mesa's software device in CI).
    Wgpu,
    /// Vulkan through vulkano: the same kernels as SPIR-V, batched command buffers.
    Vulkan,
}

#[derive(clap::Args, Clone, Debug)]
pub struct BackendArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// CPU threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// GPU device index for wgpu or vulkan (see `mvdit devices`); default: the most capable one.
    #[arg(long)]
    pub device: Option<usize>,
    /// wgpu, vulkan: storage precision of matmul operands (f16 needs f16 shader support;
    /// accumulation and everything else stay f32, the reference). On Vulkan devices with
    /// cooperative matrices, f16 matmuls run on the tensor cores.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    #[command(flatten)]
    pub flags: BackendFlags,
}

/// `--weights`: the dtype a model's weights are held in on the device (compute stays f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum WeightsArg {
    /// As the checkpoint stores them: 16 bits when every parameter is bf16 (or every one f16).
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

impl WeightsArg {
    /// The dtype asked for; `None` for auto.
    pub fn dtype(self) -> Option<Dtype> {
        match self {
            WeightsArg::Auto => None,
            WeightsArg::F32 => Some(Dtype::F32),
            WeightsArg::Bf16 => Some(Dtype::Bf16),
            WeightsArg::F16 => Some(Dtype::F16),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    F32,
    F16,
}

impl BackendArgs {
    /// The GPU precision; refuses the flags that do not apply to the backend.
    pub(crate) fn kernel_choice(&self) -> Result<Precision> {
        if self.backend == BackendKind::Cpu && self.precision != PrecisionArg::F32 {
            return Err(Error::new("--precision applies to --backend wgpu or vulkan only"));
        }
        self.flags.check(self.backend)?;
        Ok(match self.precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F16 => Precision::F16,
        })
    }

    /// The CPU backend's options with `threads` threads.
    pub(crate) fn cpu_options(&self, threads: usize) -> Result<CpuOptions> {
        self.kernel_choice()?;
        Ok(self.flags.cpu_options(threads))
    }

    /// The wgpu backend's options.
    pub(crate) fn wgpu_options(&self) -> Result<WgpuOptions> {
        Ok(self.flags.wgpu_options(self.device, self.kernel_choice()?))
    }

    /// The Vulkan backend's options for device `device`.
    pub(crate) fn vulkan_options(&self, device: Option<usize>) -> Result<VulkanOptions> {
        Ok(self.flags.vulkan_options(device, self.kernel_choice()?))
    }
}

/// Runs `$body` with `$be` bound to the backend the arguments choose.
macro_rules! with_backend {
    ($args:expr, |$be:ident| $body:expr) => {
        match $args.backend {
            $crate::backends::BackendKind::Cpu => {
                let $be = ::mvdit_backend_cpu::Cpu::with_options($args.cpu_options($args.threads)?);
                $body
            }
            $crate::backends::BackendKind::Wgpu => {
                let $be = mvdit_backend_wgpu::Wgpu::with_options($args.wgpu_options()?)?;
                $body
            }
            $crate::backends::BackendKind::Vulkan => {
                let $be = mvdit_backend_vulkan::open_with(&$args.vulkan_options($args.device)?)?;
                $body
            }
        }
    };
}
pub(crate) use with_backend;

/// Runs `$body` with `$bes` bound to one backend instance per entry of `$devices` (`--devices`):
/// wgpu adapters by index (an index may repeat: two instances on one adapter), or on the CPU
/// backend one `Cpu` instance per entry, sharing --threads.
macro_rules! with_devices {
    ($args:expr, $devices:expr, |$bes:ident| $body:expr) => {
        match $args.backend {
            $crate::backends::BackendKind::Cpu => {
                // The stages share the cores: each instance gets its part of --threads.
                let mut opts = $args.cpu_options($args.threads)?;
                opts.threads = (opts.thread_count() / $devices.len()).max(1);
                let owned: Vec<::mvdit_backend_cpu::Cpu> = $devices.iter().map(|_| ::mvdit_backend_cpu::Cpu::with_options(opts)).collect();
                let $bes: Vec<&::mvdit_backend_cpu::Cpu> = owned.iter().collect();
                $body
            }
            $crate::backends::BackendKind::Wgpu => {
                let opts = $args.wgpu_options()?;
                let owned = $devices
                    .iter()
                    .map(|&d| {
                        let o = mvdit_backend_wgpu::WgpuOptions { adapter: Some(d), ..opts.clone() };
                        mvdit_backend_wgpu::Wgpu::with_options(o).map_err(|e| ::mvdit_model::Error::new(format!("--devices: adapter {d}: {e}")))
                    })
                    .collect::<::mvdit_model::Result<Vec<_>>>()?;
                let $bes: Vec<&_> = owned.iter().collect();
                $body
            }
            $crate::backends::BackendKind::Vulkan => {
                let owned = $devices
                    .iter()
                    .map(|&d| {
                        let opts = $args.vulkan_options(Some(d))?;
                        mvdit_backend_vulkan::open_with(&opts).map_err(|e| ::mvdit_model::Error::new(format!("--devices: device {d}: {e}")))
                    })
                    .collect::<::mvdit_model::Result<Vec<_>>>()?;
                let $bes: Vec<&_> = owned.iter().collect();
                $body
            }
        }
    };
}
pub(crate) use with_devices;

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

/// The CPU backend, for commands that run only there (the experiment's many short runs).
pub(crate) fn make_cpu(args: &BackendArgs) -> Result<Cpu> {
    match args.backend {
        BackendKind::Cpu => Ok(Cpu::with_options(args.cpu_options(args.threads)?)),
        other => Err(Error::new(format!("this command runs on the CPU backend only (got --backend {other:?})"))),
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
