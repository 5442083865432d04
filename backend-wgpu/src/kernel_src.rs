//! How a kernel's complete WGSL is put together from its file under `shaders/`: the one rule,
//! used by this crate at run time (`shaders::full_source`) and by `mvdit-backend-vulkan`'s
//! build script (which includes this file by path, so it depends on nothing).
//!
//! A kernel `NAME` is the prelude followed by `shaders/NAME.wgsl`. Files written over an operand
//! type alias `IN` ([`TYPED`]) give two kernels: `NAME` (IN = f32) and `NAME_h` (IN = f16).
//! f16 kernels start with `enable f16;` (it must come first) and need SHADER_F16. Cooperative-
//! matrix kernels ([`COOP`]) also enable `wgpu_cooperative_matrix`; only the Vulkan backend
//! builds them (they need VK_KHR_cooperative_matrix and the Vulkan memory model).

/// Files written over the operand type alias `IN`.
pub const TYPED: &[&str] = &["matmul_tiled"];

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
}

impl Needs {
    #[allow(dead_code)] // used by mvdit-backend-vulkan's build script
    pub fn as_str(self) -> &'static str {
        match self {
            Needs::F32 => "f32",
            Needs::F16 => "f16",
            Needs::Coop => "coop",
        }
    }
}

/// The file stem of kernel `name` and what the kernel needs.
pub fn split(name: &str) -> (&str, Needs) {
    match name.strip_suffix("_h") {
        Some(base) if TYPED.contains(&base) => (base, Needs::F16),
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
    } else {
        vec![(stem.to_string(), split(stem).1)]
    }
}

/// The complete WGSL of kernel `name`, given the prelude and its file's text.
pub fn assemble(name: &str, prelude: &str, body: &str) -> String {
    let (stem, needs) = split(name);
    let half = needs != Needs::F32;
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
    src
}
