//! The kernel files, embedded: cargo rebuilds this crate (and reruns the build scripts that
//! depend on it) whenever one changes.

/// Prepended to every kernel (`shaders/prelude.wgsl`).
pub const PRELUDE: &str = include_str!("../shaders/prelude.wgsl");

/// Every kernel file `shaders/NAME.wgsl` but the prelude: (NAME, text), sorted by name. A file
/// gives one or more kernels ([`crate::kernels_of`]).
pub const FILES: &[(&str, &str)] = &[
    ("adamw", include_str!("../shaders/adamw.wgsl")),
    ("attn_d", include_str!("../shaders/attn_d.wgsl")),
    ("attn_dkdv", include_str!("../shaders/attn_dkdv.wgsl")),
    ("attn_dkdv_t", include_str!("../shaders/attn_dkdv_t.wgsl")),
    ("attn_dq", include_str!("../shaders/attn_dq.wgsl")),
    ("attn_dq_t", include_str!("../shaders/attn_dq_t.wgsl")),
    ("attn_fwd", include_str!("../shaders/attn_fwd.wgsl")),
    ("attn_fwd_t", include_str!("../shaders/attn_fwd_t.wgsl")),
    ("attn_gather", include_str!("../shaders/attn_gather.wgsl")),
    ("attn_masked", include_str!("../shaders/attn_masked.wgsl")),
    ("attn_pds", include_str!("../shaders/attn_pds.wgsl")),
    ("attn_softmax", include_str!("../shaders/attn_softmax.wgsl")),
    ("colsum", include_str!("../shaders/colsum.wgsl")),
    ("concat", include_str!("../shaders/concat.wgsl")),
    ("elementwise", include_str!("../shaders/elementwise.wgsl")),
    ("fill", include_str!("../shaders/fill.wgsl")),
    ("group_norm", include_str!("../shaders/group_norm.wgsl")),
    ("im2col", include_str!("../shaders/im2col.wgsl")),
    ("matmul", include_str!("../shaders/matmul.wgsl")),
    ("matmul4", include_str!("../shaders/matmul4.wgsl")),
    ("matmul4_ak", include_str!("../shaders/matmul4_ak.wgsl")),
    ("matmul4_am", include_str!("../shaders/matmul4_am.wgsl")),
    ("matmul_coop", include_str!("../shaders/matmul_coop.wgsl")),
    ("matmul_coop_ws", include_str!("../shaders/matmul_coop_ws.wgsl")),
    ("matmul_out", include_str!("../shaders/matmul_out.wgsl")),
    ("matmul_tiled", include_str!("../shaders/matmul_tiled.wgsl")),
    ("matmul_tiled128", include_str!("../shaders/matmul_tiled128.wgsl")),
    ("mvsplit", include_str!("../shaders/mvsplit.wgsl")),
    ("mvsplit_dab", include_str!("../shaders/mvsplit_dab.wgsl")),
    ("mvsplit_ds", include_str!("../shaders/mvsplit_ds.wgsl")),
    ("mvsplit_dxdu", include_str!("../shaders/mvsplit_dxdu.wgsl")),
    ("patch", include_str!("../shaders/patch.wgsl")),
    ("reduce", include_str!("../shaders/reduce.wgsl")),
    ("resample", include_str!("../shaders/resample.wgsl")),
    ("residual", include_str!("../shaders/residual.wgsl")),
    ("residual_bwd", include_str!("../shaders/residual_bwd.wgsl")),
    ("residual_dl", include_str!("../shaders/residual_dl.wgsl")),
    ("rmsnorm", include_str!("../shaders/rmsnorm.wgsl")),
    ("rmsnorm_bwd", include_str!("../shaders/rmsnorm_bwd.wgsl")),
    ("rope", include_str!("../shaders/rope.wgsl")),
    ("rope_all", include_str!("../shaders/rope_all.wgsl")),
    ("rows", include_str!("../shaders/rows.wgsl")),
    ("segmean", include_str!("../shaders/segmean.wgsl")),
    ("silu", include_str!("../shaders/silu.wgsl")),
    ("slice", include_str!("../shaders/slice.wgsl")),
    ("swiglu", include_str!("../shaders/swiglu.wgsl")),
    ("to_f16_pad", include_str!("../shaders/to_f16_pad.wgsl")),
    ("transpose", include_str!("../shaders/transpose.wgsl")),
    ("unpack", include_str!("../shaders/unpack.wgsl")),
];

/// Pieces of source several kernel files share, `shaders/include/NAME.wgsl`: (NAME, text). A
/// kernel file takes one with a line `#include NAME` (WGSL has no include of its own), see
/// [`crate::expand`].
pub const INCLUDES: &[(&str, &str)] = &[
    ("attn_head", include_str!("../shaders/include/attn_head.wgsl")),
    ("attn_kv_tiles", include_str!("../shaders/include/attn_kv_tiles.wgsl")),
    ("attn_qkv", include_str!("../shaders/include/attn_qkv.wgsl")),
    ("matmul4_out", include_str!("../shaders/include/matmul4_out.wgsl")),
    ("matmul_params", include_str!("../shaders/include/matmul_params.wgsl")),
    ("matmul_store", include_str!("../shaders/include/matmul_store.wgsl")),
    ("mvsplit_merged", include_str!("../shaders/include/mvsplit_merged.wgsl")),
];

/// The text of kernel file `stem` (see [`FILES`]).
pub fn file(stem: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == stem).map(|&(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables list exactly the files on disk.
    #[test]
    fn every_file_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let stems = |d: &std::path::Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".wgsl").map(String::from))
                .filter(|n| n != "prelude")
                .collect();
            v.sort();
            v
        };
        assert_eq!(stems(&dir), FILES.iter().map(|f| f.0).collect::<Vec<_>>());
        assert_eq!(stems(&dir.join("include")), INCLUDES.iter().map(|f| f.0).collect::<Vec<_>>());
    }
}
