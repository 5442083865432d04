//! `mvdit devices`: the GPU devices `--backend wgpu|vulkan --device N` can use.

use mvdit_model::{Error, Result};

pub fn devices_command() -> Result<()> {
    let lists = [("wgpu", mvdit_backend_wgpu::Wgpu::adapters()), ("vulkan", mvdit_backend_vulkan::Vulkan::devices())];
    if lists.iter().all(|(_, names)| names.is_empty()) {
        return Err(Error::new("no GPU device found (install a Vulkan driver, e.g. mesa-vulkan-drivers)"));
    }
    for (backend, names) in lists {
        println!("--backend {backend}:");
        for (i, n) in names.iter().enumerate() {
            println!("  {i}: {n}");
        }
    }
    Ok(())
}
