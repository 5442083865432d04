//! Data-parallel training: ranks, their shard of each global batch, and bucketed gradient sums.
//!
//! Every rank holds a replica and draws the whole step's random numbers from the shared RNG
//! stream (skipping the noise of other ranks' samples), so rank r trains on exactly the samples,
//! labels, t and noise that one process with the global batch would use for samples
//! `shard(B, r, R)`, and all replicas keep the same RNG state. The global loss is the
//! sample-weighted mean of the shards' losses; each rank scales its gradients by n_r / B and the
//! ranks sum them ([`GradReducer`]), so every replica sees the gradient of the global batch and
//! applies the same clipped AdamW update.
//!
//! The transport is a [`Comm`]: [`Single`] (one process, no communication) or, with the `mpi`
//! feature, [`mpi::MpiComm`] under `mpirun`.

#[cfg(feature = "mpi")]
pub mod mpi;

use mvdit_core::Backend;
use mvdit_model::{Error, GradHook, Result};
use std::ops::Range;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// A group of ranks that sum buffers. Every rank must make the same calls in the same order.
pub trait Comm {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Starts an element-wise sum of `buf` over all ranks; the result arrives through
    /// [`Pending::wait`] (the transport may work on it while the caller computes).
    fn start_sum(&self, buf: Vec<f32>) -> Result<Pending>;
    /// Element-wise sum over all ranks, in f64 (losses, flags).
    fn sum_f64(&self, buf: Vec<f64>) -> Result<Vec<f64>>;
    /// Rank 0's `bytes`, on every rank (the others pass anything).
    fn broadcast(&self, bytes: Vec<u8>) -> Result<Vec<u8>>;
    /// Ends every rank of the job after an error on this one (a rank that just exited would
    /// leave the others waiting in a collective).
    fn abort(&self, code: i32) -> !;
}

/// A sum in flight.
pub struct Pending(PendingInner);

enum PendingInner {
    Done(Vec<f32>),
    Waiting(Receiver<Result<Vec<f32>>>, Deadline),
}

impl Pending {
    pub fn done(v: Vec<f32>) -> Self {
        Pending(PendingInner::Done(v))
    }

    /// A sum whose result arrives on `rx` within `deadline`.
    pub fn waiting(rx: Receiver<Result<Vec<f32>>>, deadline: Deadline) -> Self {
        Pending(PendingInner::Waiting(rx, deadline))
    }

    pub fn wait(self) -> Result<Vec<f32>> {
        match self.0 {
            PendingInner::Done(v) => Ok(v),
            PendingInner::Waiting(rx, deadline) => deadline.wait(&rx, "gradient all-reduce"),
        }
    }
}

/// A rank waits at most 15 minutes for the others in one collective (the others may be writing
/// a checkpoint meanwhile); then it ends the job instead of waiting for a dead rank forever.
pub const DEFAULT_COLLECTIVE_TIMEOUT_S: f64 = 900.0;

/// How long this rank (`rank` of `size`) waits for the others in a collective.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub timeout: Duration,
    pub rank: usize,
    pub size: usize,
}

impl Deadline {
    /// The result of collective `what` from `rx`, or the error of a rank that did not join.
    pub fn wait<T>(&self, rx: &Receiver<Result<T>>, what: &str) -> Result<T> {
        match rx.recv_timeout(self.timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(Error::new(format!(
                "rank {} of {}: the other ranks did not join the {what} within {} s (--collective-timeout): a rank died or hangs; \
                 ending the job (the last complete checkpoint is intact; continue with --resume)",
                self.rank,
                self.size,
                self.timeout.as_secs_f64()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(Error::new("the MPI thread has stopped")),
        }
    }
}

/// One process: every collective is the identity.
pub struct Single;

impl Comm for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn start_sum(&self, buf: Vec<f32>) -> Result<Pending> {
        Ok(Pending::done(buf))
    }
    fn sum_f64(&self, buf: Vec<f64>) -> Result<Vec<f64>> {
        Ok(buf)
    }
    fn broadcast(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        Ok(bytes)
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// How a data-parallel run communicates.
pub struct Dist<'a> {
    pub comm: &'a dyn Comm,
    /// Gradient values per all-reduce bucket.
    pub bucket_elems: usize,
}

/// 25 MB of f32 per bucket (PyTorch DDP's default): large enough that per-message latency does
/// not matter, small enough that the first buckets travel while backward is still running.
pub const DEFAULT_BUCKET_MB: f64 = 25.0;

impl<'a> Dist<'a> {
    pub fn single() -> Dist<'static> {
        Dist { comm: &Single, bucket_elems: bucket_elems(DEFAULT_BUCKET_MB) }
    }

    pub fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    /// True on every rank when `flag` is true on any.
    pub fn any(&self, flag: bool) -> Result<bool> {
        if self.comm.size() == 1 {
            return Ok(flag);
        }
        Ok(self.comm.sum_f64(vec![flag as u8 as f64])?[0] > 0.0)
    }
}

/// f32 values in `mb` megabytes (at least one).
pub fn bucket_elems(mb: f64) -> usize {
    ((mb * 1e6 / 4.0) as usize).max(1)
}

/// Samples of a global batch of `b` that rank `rank` of `size` trains on: contiguous, sizes
/// differing by at most one, in rank order.
pub fn shard(b: usize, rank: usize, size: usize) -> Range<usize> {
    b * rank / size..b * (rank + 1) / size
}

/// Collects gradients as backward finishes them, scales them by this rank's share of the batch,
/// packs them into buckets and starts each bucket's sum as soon as it is full, so communication
/// overlaps the rest of backward. [`Self::finish`] waits for every bucket and returns the summed
/// gradients by index.
pub struct GradReducer<'a, B: Backend> {
    be: &'a B,
    comm: &'a dyn Comm,
    cap: usize,
    weight: f32,
    bucket: Vec<f32>,
    /// (index, offset in the bucket, length) of the current bucket's tensors.
    items: Vec<(usize, usize, usize)>,
    in_flight: Vec<(Pending, Vec<(usize, usize, usize)>)>,
    slots: usize,
}

impl<'a, B: Backend> GradReducer<'a, B> {
    /// `slots`: gradient indices are 0..slots; `weight`: n_rank / B.
    pub fn new(be: &'a B, comm: &'a dyn Comm, bucket_elems: usize, weight: f32, slots: usize) -> Self {
        GradReducer { be, comm, cap: bucket_elems.max(1), weight, bucket: Vec::new(), items: Vec::new(), in_flight: Vec::new(), slots }
    }

    /// Adds one gradient (its index and tensor).
    pub fn add(&mut self, index: usize, g: &B::Tensor) -> Result<()> {
        if index >= self.slots {
            return Err(Error::new(format!("internal: gradient index {index} outside 0..{}", self.slots)));
        }
        let values = self.be.download(g)?;
        let offset = self.bucket.len();
        self.bucket.extend(values.iter().map(|v| v * self.weight));
        self.items.push((index, offset, values.len()));
        if self.bucket.len() >= self.cap {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.bucket);
        let pending = self.comm.start_sum(buf)?;
        self.in_flight.push((pending, std::mem::take(&mut self.items)));
        Ok(())
    }

    /// Buckets sent so far (including a partly filled one after [`Self::finish`]).
    pub fn buckets(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends the last bucket and waits for all: the summed gradients, by index.
    pub fn finish(mut self) -> Result<Vec<Option<Vec<f32>>>> {
        self.flush()?;
        let mut out: Vec<Option<Vec<f32>>> = (0..self.slots).map(|_| None).collect();
        for (pending, items) in self.in_flight {
            let summed = pending.wait()?;
            for (index, offset, len) in items {
                out[index] = Some(summed[offset..offset + len].to_vec());
            }
        }
        Ok(out)
    }

    /// [`Self::finish`], each summed gradient uploaded in place of its tensor in `tensors`
    /// (slot order, every slot given, each keeping its shape).
    pub fn finish_into<'t>(self, tensors: impl IntoIterator<Item = &'t mut B::Tensor>) -> Result<()>
    where
        B::Tensor: 't,
    {
        let be = self.be;
        let mut summed = self.finish()?;
        for (i, t) in tensors.into_iter().enumerate() {
            let v = summed.get_mut(i).and_then(Option::take).ok_or_else(|| Error::new(format!("internal: gradient {i} was not all-reduced")))?;
            *t = be.upload(&v, &be.shape(t).to_vec())?;
        }
        Ok(())
    }
}

impl<B: Backend> GradHook<B::Tensor> for GradReducer<'_, B> {
    fn ready(&mut self, grads: &[(usize, &B::Tensor)]) -> Result<()> {
        for &(i, g) in grads {
            self.add(i, g)?;
        }
        Ok(())
    }
}

/// Whether an MPI launcher started this process: `mpirun` (Open MPI), a PMI launcher (MPICH's
/// `mpiexec`) or a PMIx one (`srun --mpi=pmix`). MPI itself then says the rank and size.
pub fn under_mpi_launcher() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|k| std::env::var_os(k).is_some())
}

/// The number of ranks the launcher started, where its environment says.
pub fn launcher_size() -> Option<usize> {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    var("OMPI_COMM_WORLD_SIZE").or_else(|| var("PMI_SIZE")).or_else(|| std::env::var_os("PMIX_RANK").and_then(|_| var("SLURM_NTASKS")))
}

/// This process's index among the ranks on its node (to pick its GPU), when the launcher says.
pub fn local_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"].iter().find_map(|k| std::env::var(k).ok()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvdit_backend_cpu::Cpu;

    #[test]
    fn shards_tile_the_batch_in_rank_order() {
        for (b, size) in [(8, 3), (7, 2), (4, 4), (16, 1)] {
            let parts: Vec<_> = (0..size).map(|r| shard(b, r, size)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[size - 1].end, b);
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
            assert!(parts.iter().all(|p| p.len() == b / size || p.len() == b / size + 1));
        }
    }

    #[test]
    fn reducer_buckets_scale_and_return_every_gradient() {
        let be = Cpu::new(1);
        let a = be.upload(&[1.0, 2.0, 3.0], &[3]).unwrap();
        let b = be.upload(&[4.0, 5.0], &[2]).unwrap();
        let c = be.upload(&[6.0], &[1]).unwrap();
        let mut r = GradReducer::new(&be, &Single, 4, 0.5, 4);
        r.ready(&[(3, &a)]).unwrap();
        r.ready(&[(0, &b), (1, &c)]).unwrap();
        assert_eq!(r.buckets(), 1, "the first bucket went out when it reached 4 values");
        let out = r.finish().unwrap();
        assert_eq!(out[3].as_deref(), Some(&[0.5, 1.0, 1.5][..]));
        assert_eq!(out[0].as_deref(), Some(&[2.0, 2.5][..]));
        assert_eq!(out[1].as_deref(), Some(&[3.0][..]));
        assert!(out[2].is_none());
        let mut r = GradReducer::new(&be, &Single, 4, 1.0, 2);
        assert!(r.add(2, &a).unwrap_err().0.contains("outside"));
    }
}
