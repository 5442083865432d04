//! [`Comm`] over MPI (feature `mpi`). One thread owns MPI: it initialises it, runs every
//! collective in the order the training thread queued them, and finalises it. Gradient buckets
//! therefore travel while the training thread goes on with backward (MPI itself needs no
//! progress thread for that: the communication thread is blocked inside the all-reduce).

use super::{Comm, Deadline, Pending};
use mpi::collective::SystemOperation;
use mpi::traits::*;
use mvdit_model::{Error, Result};
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

enum Job {
    SumF32(Vec<f32>, Sender<Result<Vec<f32>>>),
    SumF64(Vec<f64>, Sender<Result<Vec<f64>>>),
    Broadcast(Vec<u8>, Sender<Result<Vec<u8>>>),
}

/// The MPI world of this process (every rank `mpirun` started).
pub struct MpiComm {
    rank: usize,
    size: usize,
    deadline: Deadline,
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl MpiComm {
    /// Initialises MPI on its own thread; a collective that other ranks do not join within
    /// `timeout` is an error (see [`Deadline`]).
    pub fn init(timeout: std::time::Duration) -> Result<Self> {
        let (jobs, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel::<Result<(usize, usize)>>();
        let thread = std::thread::Builder::new()
            .name("mpi".into())
            .spawn(move || {
                // Serialized: only this thread calls MPI (MPI_Abort from the training thread is
                // the one exception, and it ends the process).
                let Some((universe, _)) = mpi::initialize_with_threading(mpi::Threading::Serialized) else {
                    let _ = ready_tx.send(Err(Error::new("MPI could not be initialised (already initialised?)")));
                    return;
                };
                let world = universe.world();
                let _ = ready_tx.send(Ok((world.rank() as usize, world.size() as usize)));
                for job in rx {
                    match job {
                        Job::SumF32(send, reply) => {
                            let mut recv = vec![0.0f32; send.len()];
                            world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
                            let _ = reply.send(Ok(recv));
                        }
                        Job::SumF64(send, reply) => {
                            let mut recv = vec![0.0f64; send.len()];
                            world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
                            let _ = reply.send(Ok(recv));
                        }
                        Job::Broadcast(bytes, reply) => {
                            let root = world.process_at_rank(0);
                            let mut len = bytes.len() as u64;
                            root.broadcast_into(&mut len);
                            let mut buf = if world.rank() == 0 { bytes } else { vec![0u8; len as usize] };
                            // MPI counts are i32: send big checkpoints in pieces.
                            for chunk in buf.chunks_mut(1 << 30) {
                                root.broadcast_into(chunk);
                            }
                            let _ = reply.send(Ok(buf));
                        }
                    }
                }
                drop(universe); // MPI_Finalize, on the thread that initialised
            })
            .map_err(|e| Error::new(format!("cannot start the MPI thread: {e}")))?;
        let (rank, size) = ready_rx.recv().map_err(|_| Error::new("the MPI thread ended during initialisation"))??;
        Ok(MpiComm { rank, size, deadline: Deadline { timeout, rank, size }, jobs: Some(jobs), thread: Some(thread) })
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs.as_ref().expect("jobs open until drop").send(job).map_err(|_| Error::new("the MPI thread has stopped"))
    }
}

impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn start_sum(&self, buf: Vec<f32>) -> Result<Pending> {
        let (tx, rx) = channel();
        self.send(Job::SumF32(buf, tx))?;
        Ok(Pending::waiting(rx, self.deadline))
    }
    fn sum_f64(&self, buf: Vec<f64>) -> Result<Vec<f64>> {
        let (tx, rx) = channel();
        self.send(Job::SumF64(buf, tx))?;
        self.deadline.wait(&rx, "all-reduce of losses and flags")
    }
    fn broadcast(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let (tx, rx) = channel();
        self.send(Job::Broadcast(bytes, tx))?;
        self.deadline.wait(&rx, "broadcast from rank 0")
    }
    fn abort(&self, code: i32) -> ! {
        // MPI_Abort asks the launcher to end every rank; should it hang (the MPI thread is
        // blocked in a collective with a dead rank), this process still ends.
        let _ = std::thread::Builder::new().spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(10));
            std::process::exit(code)
        });
        // SAFETY: MPI is initialised (init succeeded) and not finalised (the thread runs until
        // drop); MPI_Abort does not return.
        unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
        }
        std::process::exit(code)
    }
}

impl Drop for MpiComm {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
