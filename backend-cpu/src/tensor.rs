//! Host tensors: a flat f32 buffer with its shape, and the buffer pool they come from.
//!
//! Dropped tensors give their buffer back to a process-wide pool keyed by length, and new
//! tensors of that length take it again: a training step allocates the same sizes over and
//! over, so after the first step no buffer is zeroed or page-faulted in again (buffers above
//! glibc's 32 MiB mmap threshold would otherwise fault in every page on every allocation). The
//! pool holds at most [`POOL_CAP`] bytes; what does not fit is freed.

use mvdit_core::{BResult, BackendError};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Most bytes the pool keeps.
pub const POOL_CAP: usize = 512 << 20;
/// Buffers shorter than this go straight to the allocator.
const POOL_MIN: usize = 1024;

struct Pool {
    free: BTreeMap<usize, Vec<Vec<f32>>>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { free: BTreeMap::new(), bytes: 0 });

/// A buffer of `len` values with arbitrary (initialised) contents.
pub fn take(len: usize) -> Vec<f32> {
    if len >= POOL_MIN {
        let mut p = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = p.free.get_mut(&len).and_then(Vec::pop) {
            p.bytes -= len * 4;
            return v;
        }
    }
    vec![0.0; len]
}

pub(crate) fn give(v: Vec<f32>) {
    let len = v.len();
    if len >= POOL_MIN {
        let mut p = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if p.bytes + len * 4 <= POOL_CAP {
            p.bytes += len * 4;
            p.free.entry(len).or_default().push(v);
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct CpuTensor {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

impl Clone for CpuTensor {
    fn clone(&self) -> Self {
        let mut data = take(self.data.len());
        data.copy_from_slice(&self.data);
        CpuTensor { data, shape: self.shape.clone() }
    }
}

impl Drop for CpuTensor {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.data));
    }
}

impl CpuTensor {
    pub fn new(data: Vec<f32>, shape: &[usize]) -> Self {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        CpuTensor { data, shape: shape.to_vec() }
    }

    pub fn zeros(shape: &[usize]) -> Self {
        let mut t = Self::uninit(shape);
        t.data.fill(0.0);
        t
    }

    /// A tensor whose values are arbitrary (a reused buffer): the caller overwrites all of them.
    pub fn uninit(shape: &[usize]) -> Self {
        CpuTensor { data: take(shape.iter().product()), shape: shape.to_vec() }
    }

    /// Last dimension (feature size of a token tensor).
    pub fn last(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }

    /// Rows when the last dimension is features.
    pub fn rows(&self) -> usize {
        self.data.len() / self.last().max(1)
    }

    /// [B, L, D] of a token tensor; a shape error for any other rank.
    pub fn bld(&self) -> BResult<(usize, usize, usize)> {
        match self.shape.as_slice() {
            [b, l, d] => Ok((*b, *l, *d)),
            s => Err(BackendError::Shape(format!("token tensor must be [B, L, D], got {s:?}"))),
        }
    }
}
