//! Translates every WGSL kernel of `backend-wgpu/src/shaders/` (the one source of the kernels)
//! to SPIR-V with naga, and writes `kernels.rs` listing them by name.
//!
//! Two changes on the way, both textual and checked:
//! * the kernel is assembled by the wgpu backend's own rule (`kernel_src.rs`: prelude, operand
//!   type alias, `enable` directives), f16 and cooperative-matrix kernels included (they are
//!   built into pipelines only on devices that run them);
//! * the parameter block `@group(0) @binding(0) var<uniform> prm: P;` becomes a push-constant
//!   block (`var<immediate> prm: P;`), so a dispatch carries its shapes in the command buffer
//!   instead of a uniform-buffer slot.
//!
//! naga's bounds-check and loop-bound polyfills are off: they cost ~2x per dispatch on lavapipe,
//! and the op layer checks every shape before it records a dispatch.

#[path = "../backend-wgpu/src/kernel_src.rs"]
#[allow(dead_code)]
mod kernel_src;

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
    naga::back::spv::write_vec(&module, &info, &opts, Some(&pipe)).map_err(|e| format!("{name}: SPIR-V output: {e}"))
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../backend-wgpu/src/shaders");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed={}", dir.display());
    let prelude = fs::read_to_string(dir.join("prelude.wgsl")).unwrap_or_else(|e| panic!("reading {}/prelude.wgsl: {e}", dir.display()));

    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|n| n != "prelude")
        .collect();
    names.sort();

    let mut table = String::from(
        "/// Every kernel of `backend-wgpu/src/shaders/`: (name, SPIR-V words as little-endian bytes,\n/// what it needs: \"f32\", \"f16\" or \"coop\").\npub(crate) const KERNELS: &[(&str, &[u8], &str)] = &[\n",
    );
    for stem in &names {
        let path = dir.join(format!("{stem}.wgsl"));
        println!("cargo:rerun-if-changed={}", path.display());
        let body = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if body.matches(UNIFORM_DECL).count() != 1 {
            panic!("{}: expected exactly one `{UNIFORM_DECL}` (the parameter block) to turn into push constants", path.display());
        }
        for (name, needs) in kernel_src::kernels_of(stem) {
            let src = kernel_src::assemble(&name, &prelude, &body.replace(UNIFORM_DECL, PUSH_DECL));
            let words = compile(&name, &src).unwrap_or_else(|e| panic!("kernel {name} ({}): {e}", path.display()));
            let spv = out.join(format!("{name}.spv"));
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            fs::write(&spv, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", spv.display()));
            writeln!(table, "    ({name:?}, include_bytes!({:?}), {:?}),", path_str(&spv), needs.as_str()).unwrap();
        }
    }
    table.push_str("];\n");
    fs::write(out.join("kernels.rs"), table).expect("writing kernels.rs");
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
