//! Which backend a job runs on, as typed options: [`BackendSpec`] names the backend
//! ([`BackendKind`]), its thread count or device, the matmul operand [`Precision`] and the knobs
//! of the backends' option structs ([`BackendFlags`] → [`CpuOptions`], [`WgpuOptions`],
//! [`VulkanOptions`]; the defaults are the backends' defaults). [`with_backend!`] and
//! [`with_devices!`] run a generic body on the backend a spec names. The command line's flags
//! (`--backend`, `--threads`, ...) and the Python and C bindings all build a `BackendSpec`.

use mvdit_backend_cpu::{Cpu, CpuOptions};
use mvdit_backend_vulkan::{CoopKernel, CoopMatrices, Vulkan, VulkanOptions};
use mvdit_backend_wgpu::{Attention, BigTiles, GpuOptions, MatmulKernel, Precision, Subgroups, Wgpu, WgpuOptions};
use mvdit_core::dtype::Dtype;
use mvdit_core::parse_choice;
use mvdit_model::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The three backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    #[default]
    Cpu,
    /// Any GPU wgpu reaches (Vulkan here; Mesa's software device in CI).
    Wgpu,
    /// Vulkan through vulkano: the same kernels as SPIR-V, batched command buffers.
    Vulkan,
}

impl BackendKind {
    pub const NAMES: [&'static str; 3] = ["cpu", "wgpu", "vulkan"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice(s, &[("cpu", BackendKind::Cpu), ("wgpu", BackendKind::Wgpu), ("vulkan", BackendKind::Vulkan)], "backend").map_err(Error::new)
    }
}

/// The dtype a model's weights are held in on the device (compute stays f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Weights {
    /// As the checkpoint stores them: 16 bits when every parameter is bf16 (or every one f16).
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

impl Weights {
    /// The dtype asked for; `None` for auto.
    pub fn dtype(self) -> Option<Dtype> {
        match self {
            Weights::Auto => None,
            Weights::F32 => Some(Dtype::F32),
            Weights::Bf16 => Some(Dtype::Bf16),
            Weights::F16 => Some(Dtype::F16),
        }
    }
}

impl FromStr for Weights {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice(s, &[("auto", Weights::Auto), ("f32", Weights::F32), ("bf16", Weights::Bf16), ("f16", Weights::F16)], "weights dtype").map_err(Error::new)
    }
}

/// The knobs of the backends' option structs, each for the backends it names; the defaults are
/// the backends' own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendFlags {
    /// wgpu, vulkan: matmul kernel.
    pub matmul: MatmulKernel,
    /// wgpu, vulkan: tile size of tiled products.
    pub gpu_tile: BigTiles,
    /// wgpu, vulkan: attention through materialised scores or the tiled kernels.
    pub gpu_attention: Attention,
    /// wgpu, vulkan: row kernels one subgroup per row.
    pub gpu_subgroups: Subgroups,
    /// wgpu, vulkan: fill op outputs with NaN before their kernel writes them (a test aid).
    pub gpu_poison: bool,
    /// vulkan, f16 precision: products on cooperative-matrix units.
    pub coop: CoopMatrices,
    /// vulkan: the cooperative-matrix kernel.
    pub coop_kernel: CoopKernel,
    /// vulkan: build every command buffer anew instead of resubmitting repeated batches.
    pub no_vulkan_replay: bool,
    /// cpu: print each op's call count and total time when the backend is dropped.
    pub cpu_profile: bool,
    /// wgpu, vulkan: the tune cache whose choices the backend takes (`mvdit tune`); `None`:
    /// the default one ([`crate::tune::default_path`]).
    pub tune_cache: Option<std::path::PathBuf>,
}

impl BackendFlags {
    /// Refuses a knob set for a backend it does not apply to (named as the command line spells it).
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
            ("--tune-cache", self.tune_cache.is_some(), gpu),
        ];
        match given.iter().find(|(_, set, applies)| *set && !applies) {
            Some((flag, ..)) => Err(Error::new(format!("{flag} does not apply to --backend {backend}"))),
            None => Ok(()),
        }
    }

    /// The kernel choices both GPU backends take.
    pub fn gpu_options(&self) -> GpuOptions {
        GpuOptions { matmul: self.matmul, tile: self.gpu_tile, attention: self.gpu_attention, subgroups: self.gpu_subgroups, poison: self.gpu_poison }
    }
}

/// A backend and its options: what a job opens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendSpec {
    pub kind: BackendKind,
    /// CPU threads (0 = all cores).
    pub threads: usize,
    /// GPU device index for wgpu or vulkan (`mvdit devices`); `None`: the most capable one.
    pub device: Option<usize>,
    /// wgpu, vulkan: storage precision of matmul operands (accumulation stays f32).
    pub precision: Precision,
    pub flags: BackendFlags,
}

impl BackendSpec {
    /// The CPU backend with `threads` threads (0 = all cores) and default options.
    pub fn cpu(threads: usize) -> Self {
        BackendSpec { threads, ..BackendSpec::default() }
    }

    /// The spec checked: the precision and flags apply to the backend.
    fn checked_precision(&self) -> Result<Precision> {
        if self.kind == BackendKind::Cpu && self.precision != Precision::F32 {
            return Err(Error::new("--precision applies to --backend wgpu or vulkan only"));
        }
        self.flags.check(self.kind)?;
        Ok(self.precision)
    }

    pub fn cpu_options(&self) -> Result<CpuOptions> {
        self.checked_precision()?;
        Ok(CpuOptions { threads: self.threads, profile: self.flags.cpu_profile })
    }

    pub fn wgpu_options(&self) -> Result<WgpuOptions> {
        Ok(WgpuOptions { adapter: self.device, precision: self.checked_precision()?, gpu: self.flags.gpu_options() })
    }

    /// The Vulkan backend's options for device `device`.
    pub fn vulkan_options(&self, device: Option<usize>) -> Result<VulkanOptions> {
        let f = &self.flags;
        Ok(VulkanOptions { device, precision: self.checked_precision()?, gpu: f.gpu_options(), coop: f.coop, coop_kernel: f.coop_kernel, replay: !f.no_vulkan_replay })
    }

    pub fn open_cpu(&self) -> Result<Cpu> {
        Ok(Cpu::with_options(self.cpu_options()?))
    }

    pub fn open_wgpu(&self) -> Result<Wgpu> {
        Ok(self.tuned(Wgpu::with_options(self.wgpu_options()?)?))
    }

    pub fn open_vulkan(&self) -> Result<Vulkan> {
        Ok(self.tuned(mvdit_backend_vulkan::open_with(&self.vulkan_options(self.device)?)?))
    }

    /// A GPU backend with the tune cache's choices for its device installed, unless a flag
    /// names the kernels itself (`--gpu-tile`, `--coop-kernel`): an explicit choice wins.
    fn tuned<D: mvdit_backend_wgpu::GpuDevice>(&self, be: mvdit_backend_wgpu::GpuBackend<D>) -> mvdit_backend_wgpu::GpuBackend<D> {
        let (f, d) = (&self.flags, BackendFlags::default());
        if f.gpu_tile == d.gpu_tile && f.coop_kernel == d.coop_kernel {
            crate::tune::apply_cache(&be, f.tune_cache.as_deref());
        }
        be
    }

    /// The CPU backend, for jobs that run only there (the experiment's many short runs).
    pub fn cpu_only(&self) -> Result<Cpu> {
        match self.kind {
            BackendKind::Cpu => self.open_cpu(),
            other => Err(Error::new(format!("this command runs on the CPU backend only (got --backend {other})"))),
        }
    }

    /// One CPU instance per depth stage, sharing the spec's threads.
    pub fn open_cpu_stages(&self, stages: usize) -> Result<Vec<Cpu>> {
        let mut opts = self.cpu_options()?;
        opts.threads = (opts.thread_count() / stages.max(1)).max(1);
        Ok((0..stages).map(|_| Cpu::with_options(opts)).collect())
    }

    /// One wgpu instance per listed adapter (an index may repeat: two instances on one adapter).
    pub fn open_wgpu_stages(&self, devices: &[usize]) -> Result<Vec<Wgpu>> {
        let opts = self.wgpu_options()?;
        devices
            .iter()
            .map(|&d| Wgpu::with_options(WgpuOptions { adapter: Some(d), ..opts.clone() }).map(|be| self.tuned(be)).map_err(|e| Error::new(format!("--devices: adapter {d}: {e}"))))
            .collect()
    }

    /// One Vulkan instance per listed device.
    pub fn open_vulkan_stages(&self, devices: &[usize]) -> Result<Vec<Vulkan>> {
        devices
            .iter()
            .map(|&d| mvdit_backend_vulkan::open_with(&self.vulkan_options(Some(d))?).map(|be| self.tuned(be)).map_err(|e| Error::new(format!("--devices: device {d}: {e}"))))
            .collect()
    }
}

/// Runs `$body` with `$be` bound to the backend a [`BackendSpec`] names (in a function that
/// returns `mvdit_model::Result`).
#[macro_export]
macro_rules! with_backend {
    ($spec:expr, |$be:ident| $body:expr) => {{
        let spec: &$crate::backends::BackendSpec = &$spec;
        match spec.kind {
            $crate::backends::BackendKind::Cpu => {
                let $be = spec.open_cpu()?;
                $body
            }
            $crate::backends::BackendKind::Wgpu => {
                let $be = spec.open_wgpu()?;
                $body
            }
            $crate::backends::BackendKind::Vulkan => {
                let $be = spec.open_vulkan()?;
                $body
            }
        }
    }};
}

/// Runs `$body` with `$bes` bound to one backend instance per entry of `$devices` (the depth
/// stages): wgpu adapters or Vulkan devices by index, or on the CPU one instance per entry.
#[macro_export]
macro_rules! with_devices {
    ($spec:expr, $devices:expr, |$bes:ident| $body:expr) => {{
        let spec: &$crate::backends::BackendSpec = &$spec;
        let devices: &[usize] = &$devices;
        match spec.kind {
            $crate::backends::BackendKind::Cpu => {
                let owned = spec.open_cpu_stages(devices.len())?;
                let $bes: Vec<&_> = owned.iter().collect();
                $body
            }
            $crate::backends::BackendKind::Wgpu => {
                let owned = spec.open_wgpu_stages(devices)?;
                let $bes: Vec<&_> = owned.iter().collect();
                $body
            }
            $crate::backends::BackendKind::Vulkan => {
                let owned = spec.open_vulkan_stages(devices)?;
                let $bes: Vec<&_> = owned.iter().collect();
                $body
            }
        }
    }};
}

/// A job built on whichever backend a spec names: a type generic over the backend, once the
/// backend is chosen at run time (`TextToImage`, `ClassSampler`; what the bindings hold).
pub enum OnBackend<C, W, V> {
    Cpu(C),
    Wgpu(W),
    Vulkan(V),
}

/// Opens the backend a [`BackendSpec`] names, binds it to `$be` and wraps `$body` (the job
/// built on it) in the matching [`OnBackend`] variant.
#[macro_export]
macro_rules! open_on_backend {
    ($spec:expr, |$be:ident| $body:expr) => {{
        let spec: &$crate::backends::BackendSpec = &$spec;
        match spec.kind {
            $crate::backends::BackendKind::Cpu => {
                let $be = spec.open_cpu()?;
                $crate::backends::OnBackend::Cpu($body)
            }
            $crate::backends::BackendKind::Wgpu => {
                let $be = spec.open_wgpu()?;
                $crate::backends::OnBackend::Wgpu($body)
            }
            $crate::backends::BackendKind::Vulkan => {
                let $be = spec.open_vulkan()?;
                $crate::backends::OnBackend::Vulkan($body)
            }
        }
    }};
}

/// `$body` with `$job` bound to what an [`OnBackend`] holds, whichever backend it is on.
#[macro_export]
macro_rules! on_backend {
    ($held:expr, |$job:ident| $body:expr) => {
        match $held {
            $crate::backends::OnBackend::Cpu($job) => $body,
            $crate::backends::OnBackend::Wgpu($job) => $body,
            $crate::backends::OnBackend::Vulkan($job) => $body,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for k in [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Vulkan] {
            assert_eq!(k.name().parse::<BackendKind>().unwrap(), k);
        }
        assert!("cuda".parse::<BackendKind>().unwrap_err().to_string().contains("cpu, wgpu or vulkan"));
        assert_eq!("bf16".parse::<Weights>().unwrap().dtype(), Some(Dtype::Bf16));
        assert_eq!("auto".parse::<Weights>().unwrap().dtype(), None);
        assert!("f8".parse::<Weights>().is_err());
    }

    #[test]
    fn knobs_for_another_backend_are_refused_by_name() {
        let spec = BackendSpec { flags: BackendFlags { coop: CoopMatrices::On, ..BackendFlags::default() }, ..BackendSpec::default() };
        assert!(spec.cpu_options().unwrap_err().to_string().contains("--coop does not apply to --backend cpu"));
        let f16 = BackendSpec { precision: Precision::F16, ..BackendSpec::cpu(1) };
        assert!(f16.cpu_options().unwrap_err().to_string().contains("--precision"));
        let vk = BackendSpec { kind: BackendKind::Vulkan, precision: Precision::F16, flags: BackendFlags { coop_kernel: CoopKernel::Direct, no_vulkan_replay: true, ..BackendFlags::default() }, ..BackendSpec::default() };
        let o = vk.vulkan_options(Some(1)).unwrap();
        assert_eq!((o.device, o.coop_kernel, o.replay), (Some(1), CoopKernel::Direct, false));
        assert_eq!(BackendSpec::cpu(3).open_cpu_stages(2).unwrap().len(), 2);
    }
}
