//! How a kernel's complete WGSL is put together from its file under `shaders/`: the one rule,
//! used by this crate at run time (`shaders::full_source`) and by `mvdit-backend-vulkan`'s
//! build script (which includes this file by path, so it depends on nothing).
//!
//! A kernel `NAME` is the prelude followed by `shaders/NAME.wgsl`. Files written over an operand
//! type alias `IN` ([`TYPED`]) give two kernels: `NAME` (IN = f32) and `NAME_h` (IN = f16).
//! f16 kernels start with `enable f16;` (it must come first) and need SHADER_F16. Cooperative-
//! matrix kernels ([`COOP`]) also enable `wgpu_cooperative_matrix`; only the Vulkan backend
//! builds them (they need VK_KHR_cooperative_matrix and the Vulkan memory model).
//!
//! Row kernels ([`ROWS`]: norms, residual merges, RoPE + QK-norm) are written once as
//! `fn row(r: u32, lane: u32, lanes: u32)`: the work of row `r` for lane `lane` of `lanes`, which
//! strides over the row and combines its partial sums with `row_sum`. The entry point is spliced
//! in at assembly: `NAME` runs one invocation per row ([`SERIAL_ROWS`], `row_sum` is the
//! identity), `NAME_sg` one subgroup per row ([`SUBGROUP_ROWS`], `row_sum` is `subgroupAdd`;
//! needs subgroup arithmetic in compute: wgpu's SUBGROUP feature).

/// Files written over the operand type alias `IN`.
pub const TYPED: &[&str] = &["matmul_tiled"];

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

/// Files that are cooperative-matrix kernels (f16 operands).
pub const COOP: &[&str] = &["matmul_coop"];

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
    #[allow(dead_code)] // used by mvdit-backend-vulkan's build script
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
    match name.strip_suffix("_h") {
        Some(base) if TYPED.contains(&base) => (base, Needs::F16),
        _ if name.strip_suffix("_sg").is_some_and(|b| ROWS.contains(&b)) => (&name[..name.len() - 3], Needs::Subgroup),
        _ if COOP.contains(&name) => (name, Needs::Coop),
        _ if HALF.contains(&name) => (name, Needs::F16),
        _ => (name, Needs::F32),
    }
}

/// Every kernel built from file `stem`, with what it needs.
#[allow(dead_code)] // used by mvdit-backend-vulkan's build script
pub fn kernels_of(stem: &str) -> Vec<(String, Needs)> {
    if TYPED.contains(&stem) {
        vec![(stem.to_string(), Needs::F32), (format!("{stem}_h"), Needs::F16)]
    } else if ROWS.contains(&stem) {
        vec![(stem.to_string(), Needs::F32), (format!("{stem}_sg"), Needs::Subgroup)]
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
    if TYPED.contains(&stem) {
        src.push_str(if half { "alias IN = f16;\n" } else { "alias IN = f32;\n" });
    }
    src.push_str(body);
    if ROWS.contains(&stem) {
        src.push_str(if needs == Needs::Subgroup { SUBGROUP_ROWS } else { SERIAL_ROWS });
    }
    src
}
