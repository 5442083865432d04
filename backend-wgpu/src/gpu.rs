//! The device side of a GPU backend, as the op layer ([`crate::GpuBackend`]) sees it.
//!
//! The op layer decides shapes, kernels, parameter blocks and grids; a [`GpuDevice`] only owns
//! buffers and runs named kernels. The WGSL files of `mvdit-kernels` are the kernels' one
//! source: wgpu compiles them at run time ([`crate::WgpuDevice`]), `mvdit-backend-vulkan`
//! translates them to SPIR-V at build time. Every kernel reads up to 20 four-byte parameter
//! words (`prm`) and binds its buffers at bindings 1.. of group 0, in the order `run` gets them.

use mvdit_core::{parse_choice, BResult, BackendError, Capability};
use std::str::FromStr;

/// Size class of a request: at least 256 bytes, then multiples of an eighth of the next power
/// of two (at most 25 % or 256 bytes of waste), never above `max` unless the request itself is.
pub fn size_class(bytes: u64, max: u64) -> u64 {
    let step = (bytes.next_power_of_two() / 8).max(256);
    let class = bytes.div_ceil(step) * step;
    if class > max {
        bytes
    } else {
        class
    }
}

/// Most parameter words a kernel reads (an 80-byte block; Vulkan guarantees 128 bytes of push
/// constants).
pub const PARAM_WORDS: usize = 20;

/// Threads per workgroup of the 1-D kernels (the `64u` of `flat_id` in `prelude.wgsl`).
pub const WG: u64 = 64;

/// How a dispatch is sized.
#[derive(Clone, Copy, Debug)]
pub enum Grid {
    /// `n` threads of a 64-wide 1-D kernel, laid out on a 2-D grid of workgroups.
    Threads(u64),
    /// Explicit workgroup counts.
    Groups(u32, u32, u32),
}

impl Grid {
    /// Workgroup counts for a device allowing `max_groups` per dimension; `None` when the
    /// grid cannot be launched. A `Threads` grid is spread over x then y (see `flat_id`).
    pub fn groups(self, max_groups: u32) -> Option<(u32, u32, u32)> {
        match self {
            Grid::Groups(x, y, z) => Some((x, y, z)),
            Grid::Threads(n) => {
                let groups = n.div_ceil(WG);
                let max = u64::from(max_groups);
                let x = groups.clamp(1, max);
                let y = groups.div_ceil(x);
                (y <= max).then_some((x as u32, y as u32, 1))
            }
        }
    }
}

/// Which matmul kernels run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Tiled on GPUs, register-blocked on CPU adapters (see [`crate::GpuOptions::tiled`]).
    #[default]
    Auto,
    /// Workgroup-memory tiles (fast where barriers are cheap: real GPUs).
    Tiled,
    /// Register-blocked, no workgroup memory (fast on CPU adapters such as lavapipe).
    Blocked,
}

/// Storage precision of matmul operands. Tensors, accumulation and every other op stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// The reference path.
    #[default]
    F32,
    /// Matmul operands copied to f16 (with per-operand power-of-two scaling), f32 accumulation;
    /// needs f16 shader support (wgpu: SHADER_F16). The product runs on cooperative-matrix
    /// units where the Vulkan backend finds them, else in the tiled kernel.
    F16,
}

impl FromStr for MatmulKernel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_choice(s, &[("auto", MatmulKernel::Auto), ("tiled", MatmulKernel::Tiled), ("blocked", MatmulKernel::Blocked)], "matmul kernel")
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_choice(s, &[("f32", Precision::F32), ("f16", Precision::F16)], "precision")
    }
}

/// A cooperative-matrix product kernel (`matmul_coop*.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coop {
    /// S of its S×S×S f16 fragments: 16 on 32-wide subgroups, 8 on 8-wide ones (see
    /// [`mvdit_kernels::COOP_SHAPES`]).
    pub fragment: u32,
    /// `matmul_coop_ws` (four subgroups share a block staged in workgroup memory) instead of
    /// `matmul_coop` (one subgroup per block, fragments loaded from storage buffers).
    pub staged: bool,
}

impl Coop {
    /// The kernel's name, `None` for a fragment size no kernel takes.
    pub fn kernel(self) -> Option<String> {
        mvdit_kernels::coop_name(if self.staged { "matmul_coop_ws" } else { "matmul_coop" }, self.fragment)
    }

    /// Rows and columns of the product one workgroup computes (4×4 fragments per subgroup).
    pub fn block(self) -> usize {
        (if self.staged { 8 } else { 4 }) * self.fragment as usize
    }
}

/// Which matmul kernels the op layer uses on a device (see `matmul.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatmulPlan {
    /// The workgroup-memory tiled kernel (`matmul_tiled`) instead of the register-blocked ones.
    pub tiled: bool,
    /// Operands rounded to f16, f32 accumulation (`matmul_tiled_h`, rounding as it stages; with
    /// `coop`, padded copies by `to_f16_pad` first; needs f16 shaders).
    pub f16: bool,
    /// With `f16`: the product on cooperative-matrix units instead of `matmul_tiled_h`.
    pub coop: Option<Coop>,
    /// GPU attention: through materialised scores and the matmul kernel (`attn_gemm.rs`) while
    /// the scores fit, else the workgroup-tiled kernels (`attn_fwd_t`, `attn_dq_t`,
    /// `attn_dkdv_t`), instead of one invocation per row (those stay for Dh > 128 on long
    /// sequences and for CPU adapters).
    pub tiled_attention: bool,
    /// With `tiled_attention`: materialised scores (`attn_gemm.rs`) where they fit; false keeps
    /// the workgroup-tiled kernels for every shape (`Attention::Tiles` in
    /// [`crate::GpuOptions`]).
    pub attn_scores: bool,
    /// With `tiled`: which products take the 128×128-tile kernel (`matmul_tiled128`, `_h` for
    /// f16 operands without cooperative matrices) instead of the 64×64 one (see [`BigTiles`]).
    pub big_tiles: BigTiles,
}

/// Which tiled products the 128×128-tile matmul kernel takes; parsed from the tile size the
/// command line names (`64`, `128`, `auto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BigTiles {
    /// None: the 64×64 kernel everywhere (`64`, the default, as measured on the H200).
    #[default]
    Off,
    /// All of them (`128`).
    On,
    /// Those that still give at least [`BigTiles::MIN_GROUPS`] workgroups (`auto`): large
    /// products, while small ones keep enough workgroups to fill the device.
    Auto,
}

impl FromStr for BigTiles {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_choice(s, &[("64", BigTiles::Off), ("128", BigTiles::On), ("auto", BigTiles::Auto)], "tile size")
    }
}

impl BigTiles {
    pub const MIN_GROUPS: usize = 256;

    /// Whether an m×n product over `count` batch entries takes the 128×128 tiles.
    pub fn take(self, m: usize, n: usize, count: usize) -> bool {
        match self {
            BigTiles::Off => false,
            BigTiles::On => true,
            BigTiles::Auto => m.div_ceil(128) * n.div_ceil(128) * count >= Self::MIN_GROUPS,
        }
    }
}

/// Which row kernels (RMSNorm, residual and MV-Split merges, RoPE + QK-norm; forward and
/// backward) the op layer uses on a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowPlan {
    /// The device's largest subgroup size when the subgroup kernels run (`NAME_sg`: one subgroup
    /// per row, lanes striding over it, `subgroupAdd` for the sums); `None`: one invocation per
    /// row (`NAME`, serial loops).
    pub subgroup: Option<u32>,
}

/// Whether the row kernels use subgroups: `Auto` means on for GPUs that support them, off for
/// CPU devices (see [`RowPlan::resolve`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Subgroups {
    #[default]
    Auto,
    On,
    Off,
}

impl FromStr for Subgroups {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_choice(s, &[("auto", Subgroups::Auto), ("on", Subgroups::On), ("off", Subgroups::Off)], "subgroup choice")
    }
}

impl RowPlan {
    /// The plan for device `name`: `max_size` is its largest subgroup size when compute shaders
    /// have subgroup arithmetic (`None` otherwise), `cpu` whether it is a CPU device. `choice`
    /// `Auto` picks subgroups on GPUs only: on lavapipe (subgroups of 8 emulated in SIMD
    /// registers) they measured slower than the serial loops (docs/benchmarks.md). Forcing them
    /// on a device without them is an error.
    pub fn resolve(choice: Subgroups, max_size: Option<u32>, cpu: bool, name: &str) -> BResult<RowPlan> {
        let subgroup = match (choice, max_size) {
            (Subgroups::Off, _) | (Subgroups::Auto, None) => None,
            (Subgroups::Auto, Some(n)) => (!cpu).then_some(n),
            (Subgroups::On, Some(n)) => Some(n),
            (Subgroups::On, None) => {
                return Err(BackendError::Unsupported(Capability::Subgroups, format!("subgroup row kernels asked for, but device `{name}` has no subgroup arithmetic in compute shaders")))
            }
        };
        Ok(RowPlan { subgroup })
    }

    /// Rows per 64-invocation workgroup of the subgroup kernels (one per subgroup of the widest
    /// size, at least one).
    pub fn rows_per_group(&self) -> Option<u64> {
        self.subgroup.map(|n| (WG / u64::from(n.max(1))).max(1))
    }
}

/// A device that holds f32 buffers and runs the kernels of `mvdit-kernels` by name.
///
/// Work is recorded, not run: `run` and `copy` may return before the device has started, and
/// the device must execute recorded work in order (each dispatch sees the writes of the ones
/// before it). Only `download` and `sync` wait.
pub trait GpuDevice: Sized {
    /// One device buffer (f32 values, or u32 row indices from `upload_u32`).
    type Buffer;
    /// What an application hands to `from_device` (with `Queue`): its own opened device.
    type Device;
    type Queue;

    /// Opens device `index` of [`GpuDevice::list`], or the preferred device when `None`.
    /// No driver, no device or a bad index is a `BackendError::Device` saying what to do.
    fn open(index: Option<usize>) -> BResult<Self>;
    /// Runs on a device the application already opened.
    fn from_device(device: Self::Device, queue: Self::Queue) -> BResult<Self>;
    /// The devices `open(Some(i))` indexes, one line each (name and type).
    fn list() -> Vec<String>;
    /// The backend name reported by `Backend::name`.
    fn name(&self) -> String;
    /// Most workgroups per grid dimension.
    fn max_groups(&self) -> u32;

    /// Bytes of the device's own memory (its largest device-local heap), where the API says.
    fn memory_bytes(&self) -> Option<u64> {
        None
    }

    /// A zero-filled buffer of `len` f32 values (at least one, so empty tensors bind too).
    fn alloc(&self, len: usize) -> BResult<Self::Buffer>;
    /// A buffer of `len` values that the caller overwrites entirely (op outputs): a device that
    /// recycles buffers may skip zeroing it. Default: [`GpuDevice::alloc`].
    fn alloc_uninit(&self, len: usize) -> BResult<Self::Buffer> {
        self.alloc(len)
    }
    /// The matmul kernels to use. Default: register-blocked, f32.
    fn matmul_plan(&self) -> MatmulPlan {
        MatmulPlan::default()
    }
    /// The row kernels to use. Default: one invocation per row.
    fn row_plan(&self) -> RowPlan {
        RowPlan::default()
    }
    fn upload(&self, data: &[f32]) -> BResult<Self::Buffer>;
    /// A read-only buffer of row indices.
    fn upload_u32(&self, data: &[u32]) -> BResult<Self::Buffer>;
    /// The first `len` values of `buf`, after all recorded work.
    fn download(&self, buf: &Self::Buffer, len: usize) -> BResult<Vec<f32>>;
    /// Overwrites the first `data.len()` values of `buf`, after all work recorded so far.
    fn write(&self, buf: &Self::Buffer, data: &[f32]) -> BResult<()>;
    /// Records a buffer-to-buffer copy (offsets and size in f32 values).
    fn copy(&self, src: &Self::Buffer, src_off: usize, dst: &Self::Buffer, dst_off: usize, len: usize) -> BResult<()>;
    /// Bound in place of an absent optional operand (bias, gain).
    fn dummy(&self) -> &Self::Buffer;
    /// Records one dispatch of kernel `name`: `params` (at most [`PARAM_WORDS`]) as its `prm`
    /// block, `bufs` at bindings 1.. in order.
    fn run(&self, name: &str, params: &[u32], bufs: &[&Self::Buffer], grid: Grid) -> BResult<()>;
    /// Submits everything recorded so far without waiting.
    fn flush(&self) -> BResult<()>;
    /// Submits and waits until the device has finished it.
    fn sync(&self) -> BResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_plan_choice() {
        assert_eq!(RowPlan::resolve(Subgroups::Off, Some(32), false, "gpu").unwrap().subgroup, None);
        assert_eq!(RowPlan::resolve(Subgroups::On, Some(8), true, "cpu").unwrap().subgroup, Some(8));
        assert!(matches!(RowPlan::resolve(Subgroups::On, None, false, "old"), Err(BackendError::Unsupported(Capability::Subgroups, m)) if m.contains("old")));
        assert_eq!(RowPlan::resolve(Subgroups::Auto, Some(32), false, "gpu").unwrap().subgroup, Some(32));
        assert_eq!(RowPlan::resolve(Subgroups::Auto, Some(8), true, "cpu").unwrap().subgroup, None);
        assert_eq!(RowPlan::resolve(Subgroups::Auto, None, false, "old").unwrap().subgroup, None);
        assert!("sometimes".parse::<Subgroups>().is_err());
        // Wider subgroups than a workgroup: one (partly filled) subgroup, one row per workgroup.
        assert_eq!(RowPlan { subgroup: Some(128) }.rows_per_group(), Some(1));
        assert_eq!(RowPlan { subgroup: Some(8) }.rows_per_group(), Some(8));
        assert_eq!(RowPlan::default().rows_per_group(), None);
    }
}
