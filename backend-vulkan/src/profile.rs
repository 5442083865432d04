//! Per-kernel GPU time from timestamp queries.
//!
//! While profiling, each command buffer starts with a timestamp and every recorded command
//! (dispatch, fill, copy) is followed by one, all at the bottom of the pipe: command i's time is
//! `ts[i+1] − ts[i]`, so waits on barriers count towards the command that waited and the times
//! add up to the command buffer's GPU time. Each submission is waited for, so profiling slows a
//! run down; its numbers are for comparing kernels, not for timing steps.
//!
//! Each dispatch also counts the bytes of the buffers it binds, read-only and written (from the
//! shader's reflection; pooled buffers are up to a quarter larger than their tensors, so these
//! are the bound sizes, not the bytes touched), and the barriers it needs: a dispatch that
//! binds a buffer written since the last barrier of its command buffer waits on one (the rule
//! by which vulkano inserts them; copies and fills are not counted).

use mvdit_core::{BResult, BackendError};
use std::collections::HashMap;
use std::sync::Arc;
use vulkano::command_buffer::{AutoCommandBufferBuilder, PrimaryAutoCommandBuffer};
use vulkano::device::{Device, Queue};
use vulkano::query::{QueryPool, QueryPoolCreateInfo, QueryResultFlags, QueryType};
use vulkano::sync::PipelineStage;

/// GPU time of one kernel (or `(fill)`, `(copy)`, `(upload)`, `(download)`) over a run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: String,
    pub calls: u64,
    /// Total GPU time in milliseconds.
    pub total_ms: f64,
    /// Bytes of the read-only and of the written buffers its dispatches bound, in total.
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Barriers its dispatches waited on.
    pub barriers: u64,
}

/// Bytes and barriers of one kernel's dispatches.
#[derive(Clone, Copy, Default)]
struct Traffic {
    read: u64,
    written: u64,
    barriers: u64,
}

pub(crate) struct Profiler {
    pool: Arc<QueryPool>,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    /// Timestamp bits the queue writes (the rest are garbage).
    mask: u64,
    /// Label of query i + 1 of the current command buffer.
    labels: Vec<&'static str>,
    totals: HashMap<&'static str, (u64, f64)>,
    traffic: HashMap<&'static str, Traffic>,
    /// Buffers written since the last barrier of the command buffer being recorded.
    pending: std::collections::HashSet<u64>,
}

fn err(what: &str, e: impl std::error::Error + 'static) -> BackendError {
    BackendError::Device(format!("profiling: {what}: {}", crate::chain(&e)))
}

impl Profiler {
    /// A profiler for command buffers of up to `commands` commands; an error when the queue
    /// writes no timestamps.
    pub fn new(device: &Arc<Device>, queue: &Queue, commands: u32) -> BResult<Self> {
        let pd = device.physical_device();
        let family = &pd.queue_family_properties()[queue.queue_family_index() as usize];
        let bits = family.timestamp_valid_bits.ok_or_else(|| BackendError::Device("profiling: this queue has no timestamp support".into()))?;
        let pool = QueryPool::new(device.clone(), QueryPoolCreateInfo { query_count: commands + 1, ..QueryPoolCreateInfo::query_type(QueryType::Timestamp) })
            .map_err(|e| err("query pool", e))?;
        let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        Ok(Profiler { pool, period_ns: f64::from(pd.properties().timestamp_period), mask, labels: Vec::new(), totals: HashMap::new(), traffic: HashMap::new(), pending: Default::default() })
    }

    /// Resets the queries and writes the start timestamp (first thing in a command buffer).
    pub fn begin(&mut self, b: &mut AutoCommandBufferBuilder<PrimaryAutoCommandBuffer>) -> BResult<()> {
        self.labels.clear();
        self.pending.clear();
        let n = self.pool.query_count();
        // SAFETY: the previous command buffer using this pool was waited for (see `collect`).
        unsafe {
            b.reset_query_pool(self.pool.clone(), 0..n).map_err(|e| err("reset", e))?;
            b.write_timestamp(self.pool.clone(), 0, PipelineStage::BottomOfPipe).map_err(|e| err("timestamp", e))?;
        }
        Ok(())
    }

    /// Writes the timestamp that ends the command just recorded.
    pub fn mark(&mut self, b: &mut AutoCommandBufferBuilder<PrimaryAutoCommandBuffer>, label: &'static str) -> BResult<()> {
        let q = self.labels.len() as u32 + 1;
        if q >= self.pool.query_count() {
            return Err(BackendError::Device("profiling: more commands than queries (internal)".into()));
        }
        // SAFETY: query q was reset by `begin` in this command buffer and is written once.
        unsafe { b.write_timestamp(self.pool.clone(), q, PipelineStage::BottomOfPipe) }.map_err(|e| err("timestamp", e))?;
        self.labels.push(label);
        Ok(())
    }

    /// Counts one dispatch of `kernel` binding `io`: (buffer id, bytes, whether it writes it).
    pub fn dispatch(&mut self, kernel: &'static str, io: &[(u64, u64, bool)]) {
        let t = self.traffic.entry(kernel).or_default();
        if io.iter().any(|(id, ..)| self.pending.contains(id)) {
            t.barriers += 1;
            self.pending.clear();
        }
        for &(id, bytes, written) in io {
            if written {
                t.written += bytes;
                self.pending.insert(id);
            } else {
                t.read += bytes;
            }
        }
    }

    /// Adds the finished command buffer's times to the totals (call after waiting for it).
    pub fn collect(&mut self) -> BResult<()> {
        if self.labels.is_empty() {
            return Ok(());
        }
        let n = self.labels.len() as u32 + 1;
        let mut ts = vec![0u64; n as usize];
        self.pool.get_results(0..n, &mut ts, QueryResultFlags::WAIT).map_err(|e| err("reading timestamps", e))?;
        for (i, label) in self.labels.drain(..).enumerate() {
            let ticks = (ts[i + 1] & self.mask).wrapping_sub(ts[i] & self.mask) & self.mask;
            let e = self.totals.entry(label).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += ticks as f64 * self.period_ns;
        }
        Ok(())
    }

    /// Totals so far, longest first.
    pub fn report(&self) -> Vec<KernelTime> {
        let mut v: Vec<KernelTime> =
            self.totals
                .iter()
                .map(|(k, (calls, ns))| {
                    let t = self.traffic.get(k).copied().unwrap_or_default();
                    KernelTime { kernel: (*k).to_string(), calls: *calls, total_ms: ns / 1e6, bytes_read: t.read, bytes_written: t.written, barriers: t.barriers }
                })
                .collect();
        v.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then_with(|| a.kernel.cmp(&b.kernel)));
        v
    }
}
