//! The WGSL kernels of mvdit's GPU backends (`shaders/`, their one source) and the one rule that
//! assembles a kernel's complete source from its file. `mvdit-backend-wgpu` compiles them at run
//! time; `mvdit-backend-vulkan`'s build script translates them to SPIR-V.
//!
//! A kernel `NAME` is the prelude followed by `shaders/NAME.wgsl`, its `#include` lines expanded
//! first ([`expand`]). Files written over an operand type alias `IN` ([`TYPED`]) give two
//! kernels: `NAME` (IN = f32) and `NAME_h` (IN = f16). f16 kernels start with `enable f16;` (it
//! must come first) and need SHADER_F16. Cooperative-matrix kernels ([`COOP`]) also enable
//! `wgpu_cooperative_matrix` and get their fragment shape spliced in; only the Vulkan backend
//! builds them (they need VK_KHR_cooperative_matrix and the Vulkan memory model).
//!
//! Row kernels ([`ROWS`]: norms, residual merges, RoPE + QK-norm) are written once as
//! `fn row(r: u32, lane: u32, lanes: u32)`: the work of row `r` for lane `lane` of `lanes`, which
//! strides over the row and combines its partial sums with `row_sum`. The entry point is spliced
//! in at assembly: `NAME` runs one invocation per row ([`SERIAL_ROWS`], `row_sum` is the
//! identity), `NAME_sg` one subgroup per row ([`SUBGROUP_ROWS`], `row_sum` is `subgroupAdd`;
//! needs subgroup arithmetic in compute: wgpu's SUBGROUP feature).

mod assembly;
mod files;

pub use assembly::*;
pub use files::{file, FILES, INCLUDES, PRELUDE};

/// The complete WGSL of kernel `name`; `None` for a name no file gives.
pub fn full_source(name: &str) -> Option<String> {
    let (stem, _) = split(name);
    // The pieces are fixed at compile time; `every_kernel_assembles` covers every expansion.
    let body = expand(file(stem)?).ok()?;
    Some(assemble(name, PRELUDE, &body))
}

/// Every kernel the files give, with what it needs, in file order.
pub fn kernels() -> Vec<(String, Needs)> {
    FILES.iter().flat_map(|&(stem, _)| kernels_of(stem)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_assembles() {
        for (name, _) in kernels() {
            let src = full_source(&name).unwrap_or_else(|| panic!("{name}"));
            assert!(!src.contains("#include"), "{name}");
        }
        assert_eq!(full_source("no_such_kernel"), None);
    }
}
