//! Compute pipelines from the build script's SPIR-V, and the on-disk pipeline cache.

use mvdit_backend_wgpu::gpu::PARAM_WORDS;
use mvdit_core::{BResult, BackendError};
use std::path::PathBuf;
use std::sync::Arc;
use vulkano::descriptor_set::layout::DescriptorSetLayout;
use vulkano::device::Device;
use vulkano::pipeline::cache::{PipelineCache, PipelineCacheCreateInfo};
use vulkano::pipeline::compute::ComputePipelineCreateInfo;
use vulkano::pipeline::layout::{PipelineDescriptorSetLayoutCreateInfo, PushConstantRange};
use vulkano::pipeline::{ComputePipeline, PipelineLayout, PipelineShaderStageCreateInfo};
use vulkano::shader::{ShaderModule, ShaderModuleCreateInfo, ShaderStages};

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// A built kernel: its pipeline, layout and the bindings its shader uses.
pub(crate) struct Kernel {
    pub name: &'static str,
    pub pipeline: Arc<ComputePipeline>,
    pub layout: Arc<PipelineLayout>,
    pub set_layout: Arc<DescriptorSetLayout>,
}

fn err(what: &str, e: impl std::error::Error + 'static) -> BackendError {
    BackendError::Device(format!("{what}: {}", crate::chain(&e)))
}

/// Builds kernel `name`. Every pipeline layout declares the full push-constant block,
/// so every dispatch pushes the same `[u32; PARAM_WORDS]` whatever its kernel reads of it.
pub(crate) fn build(device: &Arc<Device>, cache: Option<&Arc<PipelineCache>>, name: &str) -> BResult<Kernel> {
    let (name, bytes, _) = KERNELS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| BackendError::Device(format!("internal: no kernel `{name}`")))?;
    let words: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let what = format!("building kernel `{name}`");
    // SAFETY: the words are naga's SPIR-V output for a validated WGSL module (build.rs).
    let module = unsafe { ShaderModule::new(device.clone(), ShaderModuleCreateInfo::new(&words)) }.map_err(|e| err(&what, e))?;
    let entry = module.entry_point("main").ok_or_else(|| BackendError::Device(format!("{what}: no entry point `main`")))?;
    let stage = PipelineShaderStageCreateInfo::new(entry);
    let mut info = PipelineDescriptorSetLayoutCreateInfo::from_stages([&stage])
        .into_pipeline_layout_create_info(device.clone())
        .map_err(|e| BackendError::Device(format!("{what}: {e:?}")))?;
    info.push_constant_ranges = vec![PushConstantRange { stages: ShaderStages::COMPUTE, offset: 0, size: (PARAM_WORDS * 4) as u32 }];
    let layout = PipelineLayout::new(device.clone(), info).map_err(|e| err(&what, e))?;
    let set_layout = layout.set_layouts().first().cloned().ok_or_else(|| BackendError::Device(format!("{what}: the kernel binds no buffers")))?;
    let pipeline = ComputePipeline::new(device.clone(), cache.cloned(), ComputePipelineCreateInfo::stage_layout(stage, layout.clone())).map_err(|e| err(&what, e))?;
    Ok(Kernel { name, pipeline, layout, set_layout })
}

/// Where the pipeline cache of this device lives: `$XDG_CACHE_HOME/mvdit/` or `~/.cache/mvdit/`,
/// one file per device and driver version.
fn cache_path(device: &Device) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let p = device.physical_device().properties();
    let uuid: String = p.pipeline_cache_uuid.iter().map(|b| format!("{b:02x}")).collect();
    Some(base.join("mvdit").join(format!("vulkan-{:04x}-{:04x}-{uuid}.bin", p.vendor_id, p.device_id)))
}

/// True when `data` starts with the header (version one) of this device's pipeline caches.
fn header_matches(device: &Device, data: &[u8]) -> bool {
    let p = device.physical_device().properties();
    let word = |i: usize| data.get(i * 4..i * 4 + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    word(0).is_some_and(|len| len >= 32)
        && word(1) == Some(1)
        && word(2) == Some(p.vendor_id)
        && word(3) == Some(p.device_id)
        && data.get(16..32) == Some(&p.pipeline_cache_uuid[..])
}

/// The device's pipeline cache, seeded from disk when a file for this device and driver exists.
/// Any failure just means no cache: it only saves compilation time.
pub(crate) fn open_cache(device: &Arc<Device>) -> (Option<Arc<PipelineCache>>, Option<PathBuf>) {
    let path = cache_path(device);
    let initial = path.as_ref().and_then(|p| std::fs::read(p).ok()).filter(|d| header_matches(device, d)).unwrap_or_default();
    let info = PipelineCacheCreateInfo { initial_data: initial, ..Default::default() };
    // SAFETY: the data is empty or a cache this driver wrote for this device (header checked
    // above: version, vendor, device and the driver's pipelineCacheUUID).
    let cache = unsafe { PipelineCache::new(device.clone(), info) }.ok();
    (cache, path)
}

/// Writes the cache back (to a temporary file, then renamed, so readers never see half a file).
pub(crate) fn save_cache(cache: &PipelineCache, path: &PathBuf) {
    let Ok(data) = cache.get_data() else { return };
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    // One temporary name per save: devices dropped at once (test threads) must not share one.
    static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    if std::fs::write(&tmp, data).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::KERNELS;
    use std::collections::BTreeSet;
    use vulkano::shader::{reflect, spirv::Spirv};

    /// Bindings of the storage buffers a SPIR-V module declares (set 0).
    fn declared(words: &[u32]) -> BTreeSet<u32> {
        const OP_DECORATE: u32 = 71;
        const OP_VARIABLE: u32 = 59;
        const BINDING: u32 = 33;
        const STORAGE_BUFFER: u32 = 12;
        let (mut bindings, mut buffers) = (std::collections::HashMap::new(), BTreeSet::new());
        let mut at = 5;
        while at < words.len() {
            let (n, op) = ((words[at] >> 16) as usize, words[at] & 0xffff);
            let w = &words[at..at + n.max(1)];
            if op == OP_DECORATE && n == 4 && w[2] == BINDING {
                bindings.insert(w[1], w[3]);
            } else if op == OP_VARIABLE && n >= 4 && w[3] == STORAGE_BUFFER {
                buffers.insert(w[2]);
            }
            at += n.max(1);
        }
        buffers.iter().filter_map(|id| bindings.get(id).copied()).collect()
    }

    /// vulkano builds each pipeline's layout, and its barriers, from what its reflection sees a
    /// kernel access; a buffer touched only by instructions it does not know (cooperative-matrix
    /// loads and stores) would be left out, and the op layer would silently not bind it.
    #[test]
    fn reflection_sees_every_declared_buffer() {
        for (name, bytes, _) in KERNELS {
            let words: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let spirv = Spirv::new(&words).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let (_, info) = reflect::entry_points(&spirv).next().unwrap_or_else(|| panic!("{name}: no entry point"));
            let seen: BTreeSet<u32> = info.descriptor_binding_requirements.keys().map(|&(_, b)| b).collect();
            assert_eq!(seen, declared(&words), "{name}: bindings seen by reflection vs declared");
        }
    }
}
