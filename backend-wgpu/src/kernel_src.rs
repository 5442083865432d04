//! How a kernel's complete WGSL is put together from its file under `shaders/`: the one rule,
//! used by this crate at run time (`shaders::full_source`) and by `mvdit-backend-vulkan`'s
//! build script (which includes this file by path, so it depends on nothing).
//!
//! A kernel `NAME` is the prelude followed by `shaders/NAME.wgsl`. Files written over an operand
//! type alias `IN` ([`TYPED`]) give two kernels: `NAME` (IN = f32) and `NAME_h` (IN = f16).
//! f16 kernels start with `enable f16;` (it must come first) and need SHADER_F16.

/// Files written over the operand type alias `IN`.
pub const TYPED: &[&str] = &["matmul_tiled"];

/// Files that are f16 kernels as they stand.
const HALF: &[&str] = &["to_f16"];

/// The file stem of kernel `name` and whether the kernel needs f16.
pub fn split(name: &str) -> (&str, bool) {
    match name.strip_suffix("_h") {
        Some(base) if TYPED.contains(&base) => (base, true),
        _ => (name, HALF.contains(&name)),
    }
}

/// Every kernel built from file `stem`, with whether it needs f16.
#[allow(dead_code)] // used by mvdit-backend-vulkan's build script
pub fn kernels_of(stem: &str) -> Vec<(String, bool)> {
    if TYPED.contains(&stem) {
        vec![(stem.to_string(), false), (format!("{stem}_h"), true)]
    } else {
        vec![(stem.to_string(), HALF.contains(&stem))]
    }
}

/// The complete WGSL of kernel `name`, given the prelude and its file's text.
pub fn assemble(name: &str, prelude: &str, body: &str) -> String {
    let (stem, half) = split(name);
    let mut src = String::new();
    if half {
        src.push_str("enable f16;\n");
    }
    src.push_str(prelude);
    if TYPED.contains(&stem) {
        src.push_str(if half { "alias IN = f16;\n" } else { "alias IN = f32;\n" });
    }
    src.push_str(body);
    src
}
