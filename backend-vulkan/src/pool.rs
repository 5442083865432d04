//! Recycling of device buffers, as in the wgpu backend (`backend-wgpu/src/pool.rs`): dropping a
//! tensor returns its buffer to the free list of its size class, and a request takes the free
//! buffer of its class that was *created first*, so a step that allocates like the last one
//! gets the same buffers in the same places. Its descriptor sets are then the same as the last
//! step's, and so are its command buffers, which the device reuses instead of building them
//! again (`device.rs`).
//!
//! Reuse is safe although the GPU may still work on a freed buffer: every use of a buffer is a
//! command on the one queue, recorded after the earlier ones; within a command buffer vulkano
//! puts barriers between dependent commands, and each submission waits for the one before it
//! (a semaphore, which orders all memory accesses).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use vulkano::buffer::Subbuffer;

/// A device buffer and its identity. Pooled buffers go back to their pool when dropped.
pub struct VulkanBuffer {
    buf: Subbuffer<[f32]>,
    /// Unique per buffer ever created (descriptor-set and command-buffer caches key on it).
    id: u64,
    pool: Option<Arc<Pool>>,
}

impl VulkanBuffer {
    /// A buffer that is not pooled (staging, the dummy binding).
    pub(crate) fn unpooled(buf: Subbuffer<[f32]>) -> Self {
        VulkanBuffer { buf, id: next_id(), pool: None }
    }

    /// The vulkano buffer (at least as large as the tensor: pooled buffers are rounded up).
    pub fn raw(&self) -> &Subbuffer<[f32]> {
        &self.buf
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Values the buffer holds.
    pub fn len(&self) -> u64 {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }
}

impl Drop for VulkanBuffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(self.id, self.buf.clone());
        }
    }
}

impl std::fmt::Debug for VulkanBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VulkanBuffer#{}({} values)", self.id, self.buf.len())
    }
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Size class in values → id → buffer (ids grow with creation, so the first entry of a class
/// is its oldest buffer).
type FreeLists = BTreeMap<u64, BTreeMap<u64, Subbuffer<[f32]>>>;

/// Free buffers by size class.
#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<FreeLists>,
    reused: AtomicU64,
}

impl Pool {
    /// The oldest free buffer of `class` values, if any.
    pub fn take(self: &Arc<Self>, class: u64) -> Option<VulkanBuffer> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let list = free.get_mut(&class)?;
        let (id, buf) = list.pop_first()?;
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(VulkanBuffer { buf, id, pool: Some(self.clone()) })
    }

    /// A new buffer that will return to this pool.
    pub fn lease(self: &Arc<Self>, buf: Subbuffer<[f32]>) -> VulkanBuffer {
        VulkanBuffer { buf, id: next_id(), pool: Some(self.clone()) }
    }

    fn give_back(&self, id: u64, buf: Subbuffer<[f32]>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.entry(buf.len()).or_default().insert(id, buf);
    }

    /// Requests served from the free lists so far.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }
}
