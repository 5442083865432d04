//! Translates every WGSL kernel of `mvdit-kernels` (the one source of the kernels) to SPIR-V
//! with naga, and writes `kernels.rs` listing them by name. Cargo reruns it when that crate
//! (its shader files included) changes.
//!
//! Two changes on the way, both textual and checked:
//! * the kernel is assembled by the kernels crate's rule (`mvdit_kernels::full_source`: prelude,
//!   operand type alias, `enable` directives), f16 and cooperative-matrix kernels included (they
//!   are built into pipelines only on devices that run them);
//! * the parameter block `@group(0) @binding(0) var<uniform> prm: P;` becomes a push-constant
//!   block (`var<immediate> prm: P;`), so a dispatch carries its shapes in the command buffer
//!   instead of a uniform-buffer slot.
//!
//! naga's bounds-check and loop-bound polyfills are off: they cost ~2x per dispatch on lavapipe,
//! and the op layer checks every shape before it records a dispatch. ArrayStride decorations on
//! workgroup-only arrays are dropped from naga's output (current SPIR-V validation forbids them).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

const UNIFORM_DECL: &str = "@group(0) @binding(0) var<uniform> prm: P;";
const PUSH_DECL: &str = "var<immediate> prm: P;";

fn compile(name: &str, src: &str) -> Result<Vec<u32>, String> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string(src))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| e.emit_to_string(src))?;
    let mut opts = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
    opts.flags.remove(naga::back::spv::WriterFlags::DEBUG | naga::back::spv::WriterFlags::ADJUST_COORDINATE_SPACE);
    opts.bounds_check_policies = naga::proc::BoundsCheckPolicies {
        index: naga::proc::BoundsCheckPolicy::Unchecked,
        buffer: naga::proc::BoundsCheckPolicy::Unchecked,
        image_load: naga::proc::BoundsCheckPolicy::Unchecked,
        binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
    };
    opts.force_loop_bounding = false;
    // Compute kernels have no f16 inputs or outputs; the capability would need a device feature.
    opts.use_storage_input_output_16 = false;
    opts.zero_initialize_workgroup_memory = naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None;
    let pipe = naga::back::spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into() };
    let words = naga::back::spv::write_vec(&module, &info, &opts, Some(&pipe)).map_err(|e| format!("{name}: SPIR-V output: {e}"))?;
    Ok(strip_workgroup_array_strides(words))
}

/// Drops the ArrayStride decorations naga puts on arrays that only workgroup variables use:
/// current SPIR-V validation forbids explicit layout in the Workgroup storage class
/// (VUID-StandaloneSpirv-None-10684) unless a layout extension is enabled. Arrays used in any
/// other way (block members, other storage classes, array elements) keep theirs.
fn strip_workgroup_array_strides(words: Vec<u32>) -> Vec<u32> {
    const OP_DECORATE: u32 = 71;
    const OP_TYPE_POINTER: u32 = 32;
    const OP_TYPE_ARRAY: u32 = 28;
    const OP_TYPE_RUNTIME_ARRAY: u32 = 29;
    const OP_TYPE_STRUCT: u32 = 30;
    const ARRAY_STRIDE: u32 = 6;
    const WORKGROUP: u32 = 4;
    let insts = |w: &[u32]| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = 5;
        while at < w.len() {
            let n = (w[at] >> 16) as usize;
            if n == 0 || at + n > w.len() {
                break;
            }
            out.push((at, n));
            at += n;
        }
        out
    };
    let list = insts(&words);
    if words.len() < 5 || list.last().map_or(5, |&(at, n)| at + n) != words.len() {
        return words; // not a stream this understands: leave it as naga wrote it
    }
    let (mut workgroup, mut elsewhere) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for &(at, n) in &list {
        let op = words[at] & 0xffff;
        let operands = &words[at + 1..at + n];
        match op {
            OP_TYPE_POINTER if operands.len() == 3 => {
                if operands[1] == WORKGROUP {
                    workgroup.insert(operands[2]);
                } else {
                    elsewhere.insert(operands[2]);
                }
            }
            OP_TYPE_STRUCT => elsewhere.extend(operands[1..].iter().copied()),
            OP_TYPE_ARRAY | OP_TYPE_RUNTIME_ARRAY if operands.len() >= 2 => {
                elsewhere.insert(operands[1]);
            }
            _ => {}
        }
    }
    let strip: std::collections::HashSet<u32> = workgroup.difference(&elsewhere).copied().collect();
    let mut out = words[..5.min(words.len())].to_vec();
    for &(at, n) in &list {
        let inst = &words[at..at + n];
        let is_stride = inst[0] & 0xffff == OP_DECORATE && n >= 3 && inst[2] == ARRAY_STRIDE && strip.contains(&inst[1]);
        if !is_stride {
            out.extend_from_slice(inst);
        }
    }
    out
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    if mvdit_kernels::PRELUDE.contains(UNIFORM_DECL) {
        panic!("the prelude declares `{UNIFORM_DECL}`; only kernel files may");
    }
    let mut table = String::from(
        "/// Every kernel of `mvdit-kernels`: (name, SPIR-V words as little-endian bytes,\n/// what it needs: \"f32\", \"f16\", \"coop\" or \"subgroup\").\npub(crate) const KERNELS: &[(&str, &[u8], &str)] = &[\n",
    );
    for (name, needs) in mvdit_kernels::kernels() {
        let src = mvdit_kernels::full_source(&name).unwrap_or_else(|| panic!("kernel {name}: no source"));
        if src.matches(UNIFORM_DECL).count() != 1 {
            panic!("kernel {name}: expected exactly one `{UNIFORM_DECL}` (the parameter block) to turn into push constants");
        }
        let words = compile(&name, &src.replace(UNIFORM_DECL, PUSH_DECL)).unwrap_or_else(|e| panic!("kernel {name}: {e}"));
        let spv = out.join(format!("{name}.spv"));
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        fs::write(&spv, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", spv.display()));
        writeln!(table, "    ({name:?}, include_bytes!({:?}), {:?}),", path_str(&spv), needs.as_str()).unwrap();
    }
    table.push_str("];\n");
    fs::write(out.join("kernels.rs"), table).expect("writing kernels.rs");
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
