//! `--backend`, `--threads`, `--device`, `--precision` and one flag per knob of the backends'
//! option structs, parsed into the library's [`BackendSpec`] (the knobs' values by the
//! backends' own `FromStr`; the defaults are the backends' defaults).

use clap::ValueEnum;
use mvdit_backend_vulkan::{CoopKernel, CoopMatrices};
use mvdit_backend_wgpu::{Attention, BigTiles, MatmulKernel, Precision, Subgroups};
use mvdit_model::Result;
use mvdit_train::backends::{BackendFlags, BackendKind, BackendSpec, Weights};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Cpu,
    /// Any GPU wgpu reaches (Vulkan here; Mesa's software device in CI).
    Wgpu,
    /// Vulkan through vulkano: the same kernels as SPIR-V, batched command buffers.
    Vulkan,
}

impl From<BackendArg> for BackendKind {
    fn from(b: BackendArg) -> BackendKind {
        match b {
            BackendArg::Cpu => BackendKind::Cpu,
            BackendArg::Wgpu => BackendKind::Wgpu,
            BackendArg::Vulkan => BackendKind::Vulkan,
        }
    }
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

impl From<WeightsArg> for Weights {
    fn from(w: WeightsArg) -> Weights {
        match w {
            WeightsArg::Auto => Weights::Auto,
            WeightsArg::F32 => Weights::F32,
            WeightsArg::Bf16 => Weights::Bf16,
            WeightsArg::F16 => Weights::F16,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    F32,
    F16,
}

#[derive(clap::Args, Clone, Debug)]
pub struct BackendArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendArg,
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
    pub flags: FlagArgs,
}

impl BackendArgs {
    /// The backend these flags choose, its flags checked against it.
    pub fn spec(&self) -> Result<BackendSpec> {
        let precision = match self.precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F16 => Precision::F16,
        };
        let spec = BackendSpec { kind: self.backend.into(), threads: self.threads, device: self.device, precision, flags: self.flags.clone().into() };
        if spec.kind == BackendKind::Cpu {
            spec.cpu_options()?;
        } else {
            spec.wgpu_options()?;
        }
        Ok(spec)
    }

    pub fn kind(&self) -> BackendKind {
        self.backend.into()
    }
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct FlagArgs {
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
    /// wgpu, vulkan: the tune cache (`mvdit tune`) whose per-shape matmul kernels to use;
    /// default: `$XDG_CACHE_HOME/mvdit/tune.json` (or `~/.cache/mvdit/tune.json`) if it exists.
    #[arg(long, value_name = "PATH")]
    pub tune_cache: Option<std::path::PathBuf>,
}

impl From<FlagArgs> for BackendFlags {
    fn from(f: FlagArgs) -> BackendFlags {
        BackendFlags {
            matmul: f.matmul,
            gpu_tile: f.gpu_tile,
            gpu_attention: f.gpu_attention,
            gpu_subgroups: f.gpu_subgroups,
            gpu_poison: f.gpu_poison,
            coop: f.coop,
            coop_kernel: f.coop_kernel,
            no_vulkan_replay: f.no_vulkan_replay,
            cpu_profile: f.cpu_profile,
            tune_cache: f.tune_cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        backend: BackendArgs,
    }

    #[test]
    fn flags_become_a_spec_and_bad_values_name_the_flag() {
        let cmd = Cmd::try_parse_from(["x", "--backend", "vulkan", "--precision", "f16", "--gpu-tile", "128", "--coop", "on", "--coop-kernel", "direct", "--no-vulkan-replay"]).unwrap();
        let vk = cmd.backend.spec().unwrap().vulkan_options(Some(1)).unwrap();
        assert_eq!((vk.gpu.tile, vk.coop, vk.coop_kernel, vk.replay), (BigTiles::On, CoopMatrices::On, CoopKernel::Direct, false));
        let wgpu = Cmd::try_parse_from(["x", "--backend", "wgpu", "--coop", "on"]).unwrap();
        assert!(wgpu.backend.spec().unwrap_err().to_string().contains("--coop"));
        let defaults = Cmd::try_parse_from(["x"]).unwrap().backend.spec().unwrap();
        assert_eq!(defaults, BackendSpec::default());
        let err = Cmd::try_parse_from(["x", "--gpu-tile", "96"]).err().unwrap().to_string();
        assert!(err.contains("--gpu-tile") && err.contains("64, 128 or auto"), "{err}");
    }
}
