//! [`GpuOptions`]: the kernel choices both GPU backends take (wgpu's `WgpuOptions` and the
//! Vulkan backend's `VulkanOptions` embed it). Each knob parses from the word the command line
//! uses (`FromStr`), with an error that lists the accepted words.

use crate::gpu::{BigTiles, MatmulKernel, Subgroups};
use mvdit_core::parse_choice;
use std::str::FromStr;

/// Kernel choices of a GPU backend; `Default` is what `Wgpu::new` / `Vulkan::new` use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// Matmul kernel (`auto|tiled|blocked`). Default `Auto`: workgroup-tiled on GPUs,
    /// register-blocked on CPU devices such as lavapipe, where barriers are slow. Attention
    /// follows it (the tiled attention kernels exactly when matmuls are tiled).
    pub matmul: MatmulKernel,
    /// Which tiled products take the 128×128-tile kernel (`64|128|auto`). Default `Off` (64):
    /// none, the 64×64 kernel everywhere, as measured on the H200 (see [`BigTiles`]).
    pub tile: BigTiles,
    /// Tiled GPU attention through materialised scores where they fit, or always the
    /// workgroup-tiled kernels (`scores|tiles`). Default `Scores`.
    pub attention: Attention,
    /// Row kernels (norms, merges, RoPE) one subgroup per row (`auto|on|off`). Default `Auto`:
    /// on GPUs with subgroup arithmetic, off on CPU devices (see [`crate::RowPlan::resolve`]).
    pub subgroups: Subgroups,
    /// Test aid: op outputs the kernel is meant to overwrite start as NaN instead of whatever
    /// a recycled buffer held, so a kernel that leaves part of its output unwritten fails the
    /// parity tests. Default off.
    pub poison: bool,
}

impl GpuOptions {
    /// Whether matmuls take the workgroup-tiled kernels on a device (`cpu`: a CPU device).
    pub fn tiled(&self, cpu: bool) -> bool {
        match self.matmul {
            MatmulKernel::Tiled => true,
            MatmulKernel::Blocked => false,
            MatmulKernel::Auto => !cpu,
        }
    }
}

/// How tiled GPU attention runs (see `MatmulPlan::attn_scores`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Attention {
    /// Materialised scores (S = Q·Kᵀ) and the matmul kernels while the scores fit, else the
    /// workgroup-tiled kernels.
    #[default]
    Scores,
    /// The workgroup-tiled kernels for every shape (for comparisons and their tests).
    Tiles,
}

impl FromStr for Attention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_choice(s, &[("scores", Attention::Scores), ("tiles", Attention::Tiles)], "attention path")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_parse_and_name_what_they_accept() {
        assert_eq!("tiles".parse::<Attention>(), Ok(Attention::Tiles));
        assert!("flash".parse::<Attention>().unwrap_err().contains("scores or tiles"));
        assert_eq!("128".parse::<BigTiles>(), Ok(BigTiles::On));
        assert_eq!("64".parse::<BigTiles>(), Ok(BigTiles::Off));
        assert!("96".parse::<BigTiles>().unwrap_err().contains("64, 128 or auto"));
        let blocked = GpuOptions { matmul: MatmulKernel::Blocked, ..GpuOptions::default() };
        assert!(GpuOptions::default().tiled(false) && !GpuOptions::default().tiled(true) && !blocked.tiled(false));
    }
}
