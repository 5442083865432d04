use crate::files::INCLUDES;
use std::fmt::Write as _;

/// `body` with every `#include NAME` line replaced by the piece `NAME` of [`INCLUDES`]; a name
/// that is not there is an error naming it.
pub fn expand(body: &str) -> Result<String, String> {
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        match line.strip_prefix("#include ") {
            Some(name) => {
                let name = name.trim();
                let text = INCLUDES.iter().find(|(n, _)| *n == name).map(|&(_, text)| text).ok_or_else(|| format!("`#include {name}`: no such piece"))?;
                out.push_str(text.trim_end());
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

/// Files written over `fn operand(x: f32) -> f32`, the value a matmul takes for an operand
/// element: `x` itself, or in the `NAME_h` build `x` rounded to f16 ([`TO_F16`]).
pub const TYPED: &[&str] = &["matmul_tiled", "matmul_tiled128"];

/// `to_f16(x)`, in every f16 kernel: x rounded to the nearest f16, and ±infinity past f16's
/// largest finite value 65504 (IEEE overflow, spelled out so that no device clamps instead): an
/// overflowing operand shows as a non-finite result, which training's loss scaling catches.
pub const TO_F16: &str = "
fn to_f16(x: f32) -> f16 {
    if (abs(x) > 65504.0) { return f16(sign(x) * 65504.0) * 2.0h; }
    return f16(x);
}
";

/// Files written as `fn row(..)` over the rows of `prm.rows` (see the module docs).
pub const ROWS: &[&str] = &["mvsplit", "mvsplit_ds", "residual", "residual_bwd", "rmsnorm", "rmsnorm_bwd", "rope"];

/// Entry of `NAME`: invocation `r` of a 1-D grid does all of row `r`.
pub const SERIAL_ROWS: &str = "
fn row_sum(v: f32) -> f32 { return v; }

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = flat_id(wid, nwg, lid);
    if (r < prm.rows) { row(r, 0u, 1u); }
}
";

/// Entry of `NAME_sg`: each 64-invocation workgroup of the (2-D) grid takes the next
/// ceil(rows / workgroups) rows, one subgroup per row in turn. Lanes are counted and ranked with
/// subgroup scans rather than read from `subgroup_size`, so a partly filled subgroup (a device
/// whose subgroups are wider than 64) still covers every element. `k` and `r` are uniform per
/// subgroup, so every lane reaches `row_sum` together.
pub const SUBGROUP_ROWS: &str = "
fn row_sum(v: f32) -> f32 { return subgroupAdd(v); }

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) nsg: u32) {
    let lanes = subgroupAdd(1u);
    let lane = subgroupExclusiveAdd(1u);
    let groups = nwg.x * nwg.y;
    let per = (prm.rows - 1u) / groups + 1u;
    let r0 = (wid.y * nwg.x + wid.x) * per;
    for (var k = sg; k < per && r0 + k < prm.rows; k = k + nsg) { row(r0 + k, lane, lanes); }
}
";

/// Files that are f16 kernels as they stand.
const HALF: &[&str] = &["to_f16_pad"];

/// Files that are cooperative-matrix kernels (f16 operands), written over a fragment size `S`,
/// the fragment types `FA`, `FB` (S×S f16, uses A and B) and `FC` (S×S f32 accumulator), and the
/// subgroup width `SG` (one subgroup per workgroup). Each gives one kernel per entry of
/// [`COOP_SHAPES`].
pub const COOP: &[&str] = &["matmul_coop", "matmul_coop_ws"];

/// (name suffix, S, SG) of the cooperative-matrix kernels: 16×16×16 on 32-wide subgroups (NVIDIA
/// tensor cores), 8×8×8 on 8-wide ones (Mesa's lavapipe on AVX2 hosts, where the kernel's logic
/// runs in software).
pub const COOP_SHAPES: [(&str, u32, u32); 2] = [("", 16, 32), ("8", 8, 8)];

/// The cooperative-matrix kernel name built from `stem` for fragment size `s`.
pub fn coop_name(stem: &str, s: u32) -> Option<String> {
    COOP_SHAPES.iter().find(|c| c.1 == s).map(|(suffix, ..)| format!("{stem}{suffix}"))
}

/// (file stem, S, SG) when `name` is a cooperative-matrix kernel.
fn coop_shape(name: &str) -> Option<(&str, u32, u32)> {
    COOP_SHAPES.iter().find_map(|&(suffix, s, sg)| {
        let stem = name.strip_suffix(suffix)?;
        COOP.contains(&stem).then_some((stem, s, sg))
    })
}

/// What a kernel needs from the device beyond f32 compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    F32,
    /// f16 arithmetic and 16-bit storage.
    F16,
    /// f16 and cooperative matrices.
    Coop,
    /// Subgroup arithmetic in compute shaders (the `NAME_sg` row kernels).
    Subgroup,
}

impl Needs {
    pub fn as_str(self) -> &'static str {
        match self {
            Needs::F32 => "f32",
            Needs::F16 => "f16",
            Needs::Coop => "coop",
            Needs::Subgroup => "subgroup",
        }
    }
}

/// The file stem of kernel `name` and what the kernel needs.
pub fn split(name: &str) -> (&str, Needs) {
    if let Some((stem, ..)) = coop_shape(name) {
        return (stem, Needs::Coop);
    }
    match name.strip_suffix("_h") {
        Some(base) if TYPED.contains(&base) => (base, Needs::F16),
        _ if name.strip_suffix("_sg").is_some_and(|b| ROWS.contains(&b)) => (&name[..name.len() - 3], Needs::Subgroup),
        _ if HALF.contains(&name) => (name, Needs::F16),
        _ => (name, Needs::F32),
    }
}

/// Every kernel built from file `stem`, with what it needs.
pub fn kernels_of(stem: &str) -> Vec<(String, Needs)> {
    if TYPED.contains(&stem) {
        vec![(stem.to_string(), Needs::F32), (format!("{stem}_h"), Needs::F16)]
    } else if ROWS.contains(&stem) {
        vec![(stem.to_string(), Needs::F32), (format!("{stem}_sg"), Needs::Subgroup)]
    } else if COOP.contains(&stem) {
        COOP_SHAPES.iter().map(|(suffix, ..)| (format!("{stem}{suffix}"), Needs::Coop)).collect()
    } else {
        vec![(stem.to_string(), split(stem).1)]
    }
}

/// The complete WGSL of kernel `name`, given the prelude and its file's text.
pub fn assemble(name: &str, prelude: &str, body: &str) -> String {
    let (stem, needs) = split(name);
    let half = matches!(needs, Needs::F16 | Needs::Coop);
    let mut src = String::new();
    if half {
        src.push_str("enable f16;\n");
    }
    if needs == Needs::Coop {
        src.push_str("enable wgpu_cooperative_matrix;\n");
    }
    src.push_str(prelude);
    if half {
        src.push_str(TO_F16);
    }
    if let Some((_, s, sg)) = coop_shape(name) {
        let _ = write!(
            src,
            "alias FA = coop_mat{s}x{s}<f16, A>;\nalias FB = coop_mat{s}x{s}<f16, B>;\nalias FC = coop_mat{s}x{s}<f32, C>;\nconst S: u32 = {s}u;\nconst SG: u32 = {sg}u;\n"
        );
    }
    if TYPED.contains(&stem) {
        src.push_str(if half { "fn operand(x: f32) -> f32 { return f32(to_f16(x)); }\n" } else { "fn operand(x: f32) -> f32 { return x; }\n" });
    }
    src.push_str(body);
    if ROWS.contains(&stem) {
        src.push_str(if needs == Needs::Subgroup { SUBGROUP_ROWS } else { SERIAL_ROWS });
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_name_splits_back_to_its_file() {
        for stem in ["matmul_tiled", "rmsnorm", "matmul_coop", "to_f16_pad", "adamw"] {
            for (name, needs) in kernels_of(stem) {
                assert_eq!(split(&name), (stem, needs), "{name}");
            }
        }
        assert_eq!(kernels_of("matmul_coop").iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["matmul_coop", "matmul_coop8"]);
    }

    #[test]
    fn includes_are_expanded_and_unknown_ones_named() {
        let piece = crate::files::INCLUDES.iter().find(|(n, _)| *n == "attn_head").unwrap().1.trim_end();
        assert_eq!(expand("a\n#include attn_head\nb").unwrap(), format!("a\n{piece}\nb\n"));
        assert!(expand("#include nothing").unwrap_err().contains("nothing"));
    }

    #[test]
    fn coop_kernels_get_their_fragment_shape() {
        assert_eq!(coop_name("matmul_coop", 16).as_deref(), Some("matmul_coop"));
        assert_eq!(coop_name("matmul_coop", 8).as_deref(), Some("matmul_coop8"));
        assert_eq!(coop_name("matmul_coop", 32), None);
        let src = assemble("matmul_coop8", "", "");
        assert!(src.starts_with("enable f16;\nenable wgpu_cooperative_matrix;\n"), "{src}");
        assert!(src.contains("alias FA = coop_mat8x8<f16, A>;") && src.contains("const SG: u32 = 8u;"), "{src}");
        assert!(assemble("matmul_coop", "", "").contains("alias FC = coop_mat16x16<f32, C>;"));
    }
}
