//! Finding and opening a Vulkan device: loader, instance, physical device, queue.

use mvdit_core::{BResult, BackendError};
use std::sync::Arc;
use vulkano::device::physical::{PhysicalDevice, PhysicalDeviceType};
use vulkano::device::{Device, DeviceCreateInfo, DeviceExtensions, Queue, QueueCreateInfo, QueueFlags};
use vulkano::instance::{Instance, InstanceCreateFlags, InstanceCreateInfo, InstanceExtensions};
use vulkano::{Version, VulkanLibrary};

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

/// One line per usable device: name, type, driver.
pub(crate) fn describe(pd: &PhysicalDevice) -> String {
    let p = pd.properties();
    let driver = p.driver_info.clone().or_else(|| p.driver_name.clone()).unwrap_or_default();
    format!("{} ({:?}, Vulkan {}, driver {})", p.device_name, p.device_type, pd.api_version(), driver.trim())
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
    let supported = pd.supported_extensions();
    let extensions = DeviceExtensions { khr_portability_subset: supported.khr_portability_subset, ..DeviceExtensions::empty() };
    let (device, mut queues) = Device::new(
        pd.clone(),
        DeviceCreateInfo {
            queue_create_infos: vec![QueueCreateInfo { queue_family_index: family, ..Default::default() }],
            enabled_extensions: extensions,
            ..Default::default()
        },
    )
    .map_err(|e| BackendError::Device(format!("cannot open Vulkan device `{}`: {}", pd.properties().device_name, crate::chain(&e))))?;
    let queue = queues.next().ok_or_else(|| BackendError::Device("the Vulkan driver returned no queue".into()))?;
    Ok((device, queue))
}
