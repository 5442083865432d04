//! Recycling of device buffers, so that a training or sampling step allocates nothing on the
//! device once the first step has run.
//!
//! A tensor's buffer is leased from a [`Pool`]; dropping the tensor returns the buffer to the
//! pool's free list of its *size class* (a request is rounded up by at most 25 % or 256 bytes, so
//! tensors of nearly equal sizes share buffers). A request takes the free buffer of its class
//! that was *created first*: the choice depends only on which buffers are free, not on the order
//! they were freed in, so a step that allocates like the last one gets the same buffers at the
//! same places, which lets the context reuse its bind groups. (Taking the most recently freed
//! one instead permutes the buffers from step to step whenever a tensor outlives its step, and
//! the bind-group cache then kept missing for many steps.)
//!
//! Why reuse is safe although the GPU may still be working on a freed buffer: every later use
//! of a recycled buffer is recorded into the same queue after the earlier ones, and wgpu orders
//! them with barriers. The one exception is a host write (`Queue::write_buffer`), which runs
//! before the commands of the *pending* (recorded, not yet submitted) batch; a buffer freed
//! while that batch was recorded may still be read by it. Each free-list entry therefore keeps
//! the number of the batch it was freed in, and a host write into a buffer freed during the
//! pending batch first submits that batch ([`Taken::flush_first`]).

use crate::gpu::size_class;
use mvdit_core::{BResult, BackendError};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Device-allocation counters (cumulative since the backend was created).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Buffers created on the device (tensors, staging, parameter blocks, indices).
    pub buffers_created: u64,
    /// Their total size in bytes.
    pub bytes_created: u64,
    /// Bind groups created (a cached one is reused when a dispatch binds the same buffers).
    pub bind_groups_created: u64,
    /// Tensor requests served from the pool instead of a new buffer.
    pub buffers_reused: u64,
    /// Kernel dispatches recorded.
    pub dispatches: u64,
}

/// Shared by the context and its pools.
#[derive(Default)]
pub(crate) struct Counters {
    buffers: AtomicU64,
    bytes: AtomicU64,
    pub bind_groups: AtomicU64,
    reused: AtomicU64,
    pub dispatches: AtomicU64,
    /// Batches submitted so far, i.e. the number of the batch being recorded.
    pub epoch: AtomicU64,
}

impl Counters {
    pub fn created(&self, bytes: u64) {
        self.buffers.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> DeviceStats {
        DeviceStats {
            buffers_created: self.buffers.load(Ordering::Relaxed),
            bytes_created: self.bytes.load(Ordering::Relaxed),
            bind_groups_created: self.bind_groups.load(Ordering::Relaxed),
            buffers_reused: self.reused.load(Ordering::Relaxed),
            dispatches: self.dispatches.load(Ordering::Relaxed),
        }
    }
}

/// class → creation serial → (buffer, number of the batch it was freed in).
type FreeLists = HashMap<u64, BTreeMap<u64, (wgpu::Buffer, u64)>>;

/// A free list of buffers of one usage, by size class.
pub(crate) struct Pool {
    usage: wgpu::BufferUsages,
    label: &'static str,
    free: Mutex<FreeLists>,
    counters: Arc<Counters>,
    serial: AtomicU64,
}

/// Gives its buffer back to the pool when dropped (held by the tensor that uses the buffer).
pub struct Lease {
    /// (creation serial, buffer)
    buf: Option<(u64, wgpu::Buffer)>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((serial, buf)) = self.buf.take() {
            let epoch = self.pool.counters.epoch.load(Ordering::Relaxed);
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            free.entry(buf.size()).or_default().insert(serial, (buf, epoch));
        }
    }
}

/// A buffer taken from a pool.
pub(crate) struct Taken {
    pub buf: wgpu::Buffer,
    pub lease: Lease,
    /// The pending batch may still use the buffer: submit it before writing from the host.
    pub flush_first: bool,
    /// Recycled (its contents are whatever its last tensor left).
    pub recycled: bool,
}

impl Pool {
    pub fn new(usage: wgpu::BufferUsages, label: &'static str, counters: Arc<Counters>) -> Arc<Self> {
        Arc::new(Pool { usage, label, free: Mutex::new(HashMap::new()), counters, serial: AtomicU64::new(0) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FreeLists> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer of at least `bytes` (≤ `max`, the device's binding limit).
    pub fn take(self: &Arc<Self>, device: &wgpu::Device, bytes: u64, max: u64) -> BResult<Taken> {
        let class = size_class(bytes, max);
        let epoch = self.counters.epoch.load(Ordering::Relaxed);
        let reuse = {
            let mut free = self.lock();
            // Always the first-created free buffer, also for host writes (which may then have to
            // submit the pending batch first): preferring a buffer no pending work uses made the
            // choice depend on batch boundaries and kept bind groups from repeating.
            free.get_mut(&class).and_then(|list| list.pop_first()).map(|(serial, (buf, freed))| (serial, buf, freed))
        };
        if let Some((serial, buf, freed)) = reuse {
            self.counters.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(Taken { lease: self.lease(serial, buf.clone()), buf, flush_first: freed >= epoch, recycled: true });
        }
        let buf = match self.create(device, class) {
            Err(BackendError::OutOfMemory { .. }) => {
                // Free buffers of other classes may be what the device is missing.
                self.trim();
                self.create(device, class)?
            }
            r => r?,
        };
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        Ok(Taken { lease: self.lease(serial, buf.clone()), buf, flush_first: false, recycled: false })
    }

    fn lease(self: &Arc<Self>, serial: u64, buf: wgpu::Buffer) -> Lease {
        Lease { buf: Some((serial, buf)), pool: self.clone() }
    }

    fn create(&self, device: &wgpu::Device, bytes: u64) -> BResult<wgpu::Buffer> {
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buf = device.create_buffer(&wgpu::BufferDescriptor { label: Some(self.label), size: bytes, usage: self.usage, mapped_at_creation: false });
        let (v, o) = (pollster::block_on(val.pop()), pollster::block_on(oom.pop()));
        match (v, o) {
            (_, Some(_)) | (Some(wgpu::Error::OutOfMemory { .. }), _) => return Err(BackendError::OutOfMemory { bytes }),
            (Some(e), None) => return Err(BackendError::Device(format!("create_buffer ({bytes} bytes): {e}"))),
            (None, None) => {}
        }
        self.counters.created(bytes);
        Ok(buf)
    }

    /// Drops every free buffer (their memory returns to the device once no bind group or
    /// pending batch holds them).
    pub fn trim(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use crate::gpu::size_class;

    #[test]
    fn size_classes_waste_at_most_a_quarter() {
        assert_eq!(size_class(4, 1 << 30), 256);
        assert_eq!(size_class(256, 1 << 30), 256);
        assert_eq!(size_class(257, 1 << 30), 512);
        for bytes in [1000u64, 4096, 4100, 65_537, 1 << 20, (1 << 20) + 4, 123_456_789] {
            let c = size_class(bytes, u64::MAX);
            assert!(c >= bytes && (c - bytes) * 4 <= bytes.max(256), "{bytes} → {c}");
        }
        // Never rounded past the binding limit.
        assert_eq!(size_class(1000, 1000), 1000);
    }
}
