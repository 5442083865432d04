//! Finding and opening a Vulkan device: loader, instance, physical device, queue; and what an
//! opened device can run (f16 storage, subgroup arithmetic, cooperative-matrix fragments).

use mvdit_kernels::COOP_SHAPES;
use mvdit_core::{BResult, BackendError};
use std::sync::Arc;
use vulkano::device::physical::{PhysicalDevice, PhysicalDeviceType, SubgroupFeatures};
use vulkano::device::{Device, DeviceCreateInfo, DeviceExtensions, DeviceFeatures, Queue, QueueCreateInfo, QueueFlags};
use vulkano::instance::{Instance, InstanceCreateFlags, InstanceCreateInfo, InstanceExtensions};
use vulkano::shader::ShaderStages;
use vulkano::{Version, VulkanLibrary, VulkanObject};

const INSTALL_HINT: &str = "install a Vulkan driver and loader (for a software device on Debian/Ubuntu: \
     apt-get install mesa-vulkan-drivers libvulkan1)";

/// The Vulkan instance, or a `Device` error saying what is missing.
pub(crate) fn instance() -> BResult<Arc<Instance>> {
    let lib = VulkanLibrary::new().map_err(|e| BackendError::Device(format!("no Vulkan loader ({}): {INSTALL_HINT}", crate::chain(&e))))?;
    // Portability drivers (MoltenVK) are listed only when asked for.
    let portability = lib.supported_extensions().khr_portability_enumeration;
    let info = InstanceCreateInfo {
        application_name: Some("mvdit".into()),
        flags: if portability { InstanceCreateFlags::ENUMERATE_PORTABILITY } else { InstanceCreateFlags::empty() },
        enabled_extensions: InstanceExtensions { khr_portability_enumeration: portability, ..InstanceExtensions::empty() },
        ..Default::default()
    };
    Instance::new(lib, info).map_err(|e| BackendError::Device(format!("cannot create a Vulkan instance ({}): {INSTALL_HINT}", crate::chain(&e))))
}

/// The queue family to compute on: the first with compute support.
pub(crate) fn compute_family(pd: &PhysicalDevice) -> Option<u32> {
    pd.queue_family_properties().iter().position(|q| q.queue_flags.intersects(QueueFlags::COMPUTE)).map(|i| i as u32)
}

/// Devices this backend can run on: Vulkan 1.1 or newer (SPIR-V 1.3) with a compute queue.
fn usable(pd: &PhysicalDevice) -> bool {
    pd.api_version() >= Version::V1_1 && compute_family(pd).is_some()
}

/// Every physical device, in the order `open(Some(i))` indexes them.
fn physical_devices(inst: &Arc<Instance>) -> BResult<Vec<Arc<PhysicalDevice>>> {
    let all = inst.enumerate_physical_devices().map_err(|e| BackendError::Device(format!("listing Vulkan devices: {}", crate::chain(&e))))?;
    Ok(all.filter(|pd| usable(pd)).collect())
}

/// One line per usable device: name, type, driver, and the cooperative-matrix fragments
/// `--precision f16` would run on, if any.
pub(crate) fn describe(pd: &PhysicalDevice) -> String {
    let p = pd.properties();
    let driver = p.driver_info.clone().or_else(|| p.driver_name.clone()).unwrap_or_default();
    let coop = coop_fragment(pd).map(|s| format!(", f16 cooperative matrices {s}×{s}×{s}")).unwrap_or_default();
    format!("{} ({:?}, Vulkan {}, driver {}{coop})", p.device_name, p.device_type, pd.api_version(), driver.trim())
}

pub(crate) fn list() -> Vec<String> {
    match instance().and_then(|i| physical_devices(&i)) {
        Ok(pds) => pds.iter().map(|pd| describe(pd)).collect(),
        Err(_) => Vec::new(),
    }
}

fn preference(t: PhysicalDeviceType) -> u32 {
    match t {
        PhysicalDeviceType::DiscreteGpu => 0,
        PhysicalDeviceType::IntegratedGpu => 1,
        PhysicalDeviceType::VirtualGpu => 2,
        PhysicalDeviceType::Cpu => 3,
        _ => 4,
    }
}

/// Opens device `index` of [`list`], or the most capable kind (discrete, integrated, virtual,
/// CPU) when `None`.
pub(crate) fn open(index: Option<usize>) -> BResult<(Arc<Device>, Arc<Queue>)> {
    let inst = instance()?;
    let mut pds = physical_devices(&inst)?;
    if pds.is_empty() {
        return Err(BackendError::Device(format!("no Vulkan 1.1 device with a compute queue found: {INSTALL_HINT}")));
    }
    let pd = match index {
        None => {
            pds.sort_by_key(|pd| preference(pd.properties().device_type));
            pds.swap_remove(0)
        }
        Some(i) if i < pds.len() => pds.swap_remove(i),
        Some(i) => {
            let names: Vec<String> = pds.iter().map(|pd| pd.properties().device_name.clone()).collect();
            return Err(BackendError::Device(format!("Vulkan device index {i} out of range: {} devices found: {names:?}", pds.len())));
        }
    };
    let family = compute_family(&pd).ok_or_else(|| BackendError::Device("internal: device lost its compute queue".into()))?;
    let (enabled_extensions, enabled_features) = optional_features(&pd);
    let (device, mut queues) = Device::new(
        pd.clone(),
        DeviceCreateInfo {
            queue_create_infos: vec![QueueCreateInfo { queue_family_index: family, ..Default::default() }],
            enabled_extensions,
            enabled_features,
            ..Default::default()
        },
    )
    .map_err(|e| BackendError::Device(format!("cannot open Vulkan device `{}`: {}", pd.properties().device_name, crate::chain(&e))))?;
    let queue = queues.next().ok_or_else(|| BackendError::Device("the Vulkan driver returned no queue".into()))?;
    Ok((device, queue))
}

/// What the fast paths need, where the device has it (each path is chosen later from what the
/// opened device has enabled): f16 arithmetic and 16-bit storage for f16 matmul operands;
/// VK_KHR_cooperative_matrix with the Vulkan memory model (naga's SPIR-V for cooperative
/// matrices declares it) for the tensor-core matmul.
fn optional_features(pd: &PhysicalDevice) -> (DeviceExtensions, DeviceFeatures) {
    let ext = pd.supported_extensions();
    let has = pd.supported_features();
    let mut extensions = DeviceExtensions { khr_portability_subset: ext.khr_portability_subset, ..DeviceExtensions::empty() };
    let mut features = DeviceFeatures::empty();
    // Both are core in Vulkan 1.2; older devices run f32 only.
    // naga's SPIR-V for f16 storage declares both 16-bit access capabilities.
    if pd.api_version() >= Version::V1_2 && has.shader_float16 && has.storage_buffer16_bit_access && has.uniform_and_storage_buffer16_bit_access {
        features.shader_float16 = true;
        features.storage_buffer16_bit_access = true;
        features.uniform_and_storage_buffer16_bit_access = true;
        if ext.khr_cooperative_matrix && has.cooperative_matrix && has.vulkan_memory_model && coop_fragment(pd).is_some() {
            extensions.khr_cooperative_matrix = true;
            features.cooperative_matrix = true;
            features.vulkan_memory_model = true;
        }
    }
    (extensions, features)
}

/// The fragment size S of a cooperative-matrix kernel this device runs (`matmul_coop.wgsl`,
/// [`COOP_SHAPES`]): the device lists S×S×S products with f16 A and B and f32 C and result at
/// subgroup scope, and its subgroups are as wide as the kernel's. The largest such S, or
/// `None`. vulkano has no wrapper for the query, so it goes through the raw entry point (only
/// called where the extension is supported).
pub(crate) fn coop_fragment(pd: &PhysicalDevice) -> Option<u32> {
    use ash::vk;
    if !pd.supported_extensions().khr_cooperative_matrix {
        return None;
    }
    let get = pd.instance().fns().khr_cooperative_matrix.get_physical_device_cooperative_matrix_properties_khr;
    let mut count = 0u32;
    // SAFETY: the extension is supported by this device; count-then-fill per the Vulkan spec.
    if unsafe { get(pd.handle(), &mut count, std::ptr::null_mut()) } != vk::Result::SUCCESS || count == 0 {
        return None;
    }
    let mut props = vec![vk::CooperativeMatrixPropertiesKHR::default(); count as usize];
    // SAFETY: `props` holds `count` initialised structures (sType set by Default).
    let r = unsafe { get(pd.handle(), &mut count, props.as_mut_ptr()) };
    if r != vk::Result::SUCCESS && r != vk::Result::INCOMPLETE {
        return None;
    }
    let (f16, f32) = (vk::ComponentTypeKHR::FLOAT16, vk::ComponentTypeKHR::FLOAT32);
    let listed = |s: u32| {
        props[..count as usize].iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (s, s, s)
                && (p.a_type, p.b_type, p.c_type, p.result_type) == (f16, f16, f32, f32)
                && p.scope == vk::ScopeKHR::SUBGROUP
                && p.saturating_accumulation == vk::FALSE
        })
    };
    let subgroup = pd.properties().subgroup_size?;
    COOP_SHAPES.iter().filter(|&&(_, s, sg)| sg == subgroup && listed(s)).map(|&(_, s, _)| s).max()
}

/// The largest subgroup size when compute shaders have subgroup arithmetic (what the `_sg`
/// kernels use; vulkano refuses their SPIR-V on other devices), else `None`.
pub(crate) fn subgroup_size(pd: &PhysicalDevice) -> Option<u32> {
    let p = pd.properties();
    let compute = p.subgroup_supported_stages.is_some_and(|s| s.contains(ShaderStages::COMPUTE));
    let arithmetic = p.subgroup_supported_operations.is_some_and(|o| o.contains(SubgroupFeatures::BASIC | SubgroupFeatures::ARITHMETIC));
    let size = p.subgroup_size.max(p.max_subgroup_size)?;
    (compute && arithmetic && size > 0).then_some(size)
}

/// Whether `device` was opened with what the f16 kernels need (naga's SPIR-V for f16 storage
/// declares Float16 and both 16-bit access capabilities).
pub(crate) fn f16_enabled(device: &Device) -> bool {
    let on = device.enabled_features();
    on.shader_float16 && on.storage_buffer16_bit_access && on.uniform_and_storage_buffer16_bit_access
}
