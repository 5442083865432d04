//! WGSL sources, compiled on first use and cached by name.

/// Prepended to every kernel.
pub(crate) const PRELUDE: &str = include_str!("shaders/prelude.wgsl");

/// The source of kernel `name` (file `shaders/NAME.wgsl`).
pub(crate) fn source(name: &str) -> Option<&'static str> {
    Some(match name {
        "adamw" => include_str!("shaders/adamw.wgsl"),
        "attn_d" => include_str!("shaders/attn_d.wgsl"),
        "attn_dkdv" => include_str!("shaders/attn_dkdv.wgsl"),
        "attn_dq" => include_str!("shaders/attn_dq.wgsl"),
        "attn_fwd" => include_str!("shaders/attn_fwd.wgsl"),
        "attn_fwd_t" => include_str!("shaders/attn_fwd_t.wgsl"),
        "attn_softmax" => include_str!("shaders/attn_softmax.wgsl"),
        "attn_pds" => include_str!("shaders/attn_pds.wgsl"),
        "attn_dq_t" => include_str!("shaders/attn_dq_t.wgsl"),
        "attn_dkdv_t" => include_str!("shaders/attn_dkdv_t.wgsl"),
        "colsum" => include_str!("shaders/colsum.wgsl"),
        "concat" => include_str!("shaders/concat.wgsl"),
        "elementwise" => include_str!("shaders/elementwise.wgsl"),
        "matmul" => include_str!("shaders/matmul.wgsl"),
        "matmul4" => include_str!("shaders/matmul4.wgsl"),
        "matmul4_ak" => include_str!("shaders/matmul4_ak.wgsl"),
        "matmul4_am" => include_str!("shaders/matmul4_am.wgsl"),
        "mvsplit" => include_str!("shaders/mvsplit.wgsl"),
        "mvsplit_dab" => include_str!("shaders/mvsplit_dab.wgsl"),
        "mvsplit_ds" => include_str!("shaders/mvsplit_ds.wgsl"),
        "mvsplit_dxdu" => include_str!("shaders/mvsplit_dxdu.wgsl"),
        "patch" => include_str!("shaders/patch.wgsl"),
        "reduce" => include_str!("shaders/reduce.wgsl"),
        "rmsnorm" => include_str!("shaders/rmsnorm.wgsl"),
        "rmsnorm_bwd" => include_str!("shaders/rmsnorm_bwd.wgsl"),
        "rope" => include_str!("shaders/rope.wgsl"),
        "rows" => include_str!("shaders/rows.wgsl"),
        "segmean" => include_str!("shaders/segmean.wgsl"),
        "slice" => include_str!("shaders/slice.wgsl"),
        "swiglu" => include_str!("shaders/swiglu.wgsl"),
        "transpose" => include_str!("shaders/transpose.wgsl"),
        "residual" => include_str!("shaders/residual.wgsl"),
        "residual_bwd" => include_str!("shaders/residual_bwd.wgsl"),
        "residual_dl" => include_str!("shaders/residual_dl.wgsl"),
        "fill" => include_str!("shaders/fill.wgsl"),
        "matmul_tiled" => include_str!("shaders/matmul_tiled.wgsl"),
        "matmul_tiled128" => include_str!("shaders/matmul_tiled128.wgsl"),
        "absmax" => include_str!("shaders/absmax.wgsl"),
        "to_f16_pad" => include_str!("shaders/to_f16_pad.wgsl"),
        "matmul_out" => include_str!("shaders/matmul_out.wgsl"),
        _ => return None,
    })
}

/// The shared piece `name` (file `shaders/include/NAME.wgsl`, see [`crate::kernel_src::INCLUDES`]).
fn include(name: &str) -> Option<&'static str> {
    Some(match name {
        "attn_head" => include_str!("shaders/include/attn_head.wgsl"),
        "attn_qkv" => include_str!("shaders/include/attn_qkv.wgsl"),
        "attn_kv_tiles" => include_str!("shaders/include/attn_kv_tiles.wgsl"),
        "matmul4_out" => include_str!("shaders/include/matmul4_out.wgsl"),
        "matmul_params" => include_str!("shaders/include/matmul_params.wgsl"),
        "matmul_store" => include_str!("shaders/include/matmul_store.wgsl"),
        "mvsplit_merged" => include_str!("shaders/include/mvsplit_merged.wgsl"),
        _ => return None,
    })
}

/// The complete WGSL of kernel `name` (see [`crate::kernel_src`]); `None` for an unknown name.
pub(crate) fn full_source(name: &str) -> Option<String> {
    let (stem, _) = crate::kernel_src::split(name);
    // The pieces are fixed at compile time; the compile-all test covers every expansion.
    let body = crate::kernel_src::expand(source(stem)?, include).ok()?;
    Some(crate::kernel_src::assemble(name, PRELUDE, &body))
}

/// Kernels that need SHADER_F16.
#[cfg(test)]
pub(crate) const F16: &[&str] = &["matmul_tiled_h", "matmul_tiled128_h", "to_f16_pad"];

/// Every kernel name, for the compile-all test.
#[cfg(test)]
pub(crate) const ALL: &[&str] = &["adamw", "attn_d", "attn_dkdv", "attn_dq", "attn_fwd", "attn_fwd_t", "attn_dq_t", "attn_dkdv_t", "attn_softmax", "attn_pds", "colsum", "concat", "elementwise", "matmul", "matmul4", "matmul4_ak", "matmul4_am", "mvsplit", "mvsplit_dab", "mvsplit_ds", "mvsplit_dxdu", "patch", "reduce", "rmsnorm", "rmsnorm_bwd", "rope", "rows", "segmean", "slice", "swiglu", "transpose", "residual", "residual_bwd", "residual_dl", "fill", "matmul_tiled", "matmul_tiled128", "absmax", "matmul_out"];
