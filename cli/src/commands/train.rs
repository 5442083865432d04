//! `mvdit train`: the config (file or preset, then the flags that override it), then one
//! process (one device or split by depth over --devices) or one rank of `mpirun -np N`
//! (feature `mpi`).

use crate::backend_args::BackendArgs;
use crate::progress::Resume;
use mvdit_model::{Error, Result};
use mvdit_train::config::TrainConfig;
use mvdit_train::launch::{with_overrides, Split};
use mvdit_train::trainer::Placement;
use mvdit_train::{with_backend, with_devices};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training config (TOML or JSON); overrides --preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Built-in preset: digits, deep1000, tiny.
    #[arg(long, default_value = "digits")]
    pub preset: String,
    /// Run directory (config, checkpoints, metrics.jsonl, samples, loss.png).
    #[arg(long, default_value = "runs/digits")]
    pub out: PathBuf,
    /// Train on a folder of images (one sub-folder per class) instead of the digits, or on a
    /// shard folder written by `mvdit prepare` (latents with labels or captions; its shapes
    /// and conditioning come from its shards.json).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Total steps (overrides the config).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Continue from the latest checkpoint in --out (the newest that verifies). `--resume auto`:
    /// continue when --out holds a checkpoint, start a new run when it does not (one command
    /// for a job script that a scheduler may preempt and requeue).
    #[arg(long, num_args = 0..=1, default_missing_value = "latest", value_name = "auto")]
    pub resume: Option<Resume>,
    /// Fine-tune: start from this checkpoint's model weights (config field `init`), fresh optimiser.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// No progress bar (log lines only).
    #[arg(long)]
    pub quiet: bool,
    /// Data-parallel runs (`mpirun -np N mvdit train ...`, feature `mpi`): megabytes of
    /// gradients per all-reduce bucket.
    #[arg(long, default_value_t = mvdit_train::dist::DEFAULT_BUCKET_MB)]
    pub bucket_mb: f64,
    /// Data-parallel runs: seconds a rank waits for the others in one collective before it
    /// gives up on a dead or hung rank and ends the job (covers rank 0 writing a checkpoint).
    #[arg(long, default_value_t = mvdit_train::dist::DEFAULT_COLLECTIVE_TIMEOUT_S)]
    pub collective_timeout: f64,
    /// Depth split: the blocks divided evenly over these devices, e.g. 0,1 (wgpu adapter
    /// indices, see `mvdit devices`; on the CPU backend one `Cpu` instance per entry sharing
    /// --threads). Checkpoints are the same as an unsplit run's.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<usize>,
    /// Micro-batches per step (GPipe schedule over the --devices stages; without --devices,
    /// gradient accumulation on one device).
    #[arg(long, default_value_t = 1)]
    pub micro_batches: usize,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn train_command(a: TrainArgs) -> Result<()> {
    let TrainArgs { config, preset, out, data, steps, resume, init, quiet, bucket_mb, collective_timeout, devices, micro_batches, backend } = a;
    let resume = resume.unwrap_or(Resume::Fresh);
    let cfg = match &config {
        Some(path) => TrainConfig::read(path)?,
        None => mvdit_train::config::preset(&preset)?,
    };
    let cfg = with_overrides(cfg, data, steps, init)?;
    if !(bucket_mb > 0.0 && bucket_mb.is_finite()) {
        return Err(Error::new(format!("--bucket-mb must be a positive number, got {bucket_mb}")));
    }
    if !(collective_timeout > 0.0 && collective_timeout <= 1e9) {
        return Err(Error::new(format!("--collective-timeout must be a positive number of seconds, got {collective_timeout}")));
    }
    let split = Split { devices, micro_batches };
    let timeout = std::time::Duration::from_secs_f64(collective_timeout);
    train_on(cfg, &out, resume, quiet, Comms { bucket_elems: mvdit_train::dist::bucket_elems(bucket_mb), timeout }, split, backend)
}

/// How the ranks of a data-parallel run communicate.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
struct Comms {
    bucket_elems: usize,
    timeout: std::time::Duration,
}

/// Trains `cfg` in one process (the model on one device or split by depth over --devices), or
/// as one rank of `mpirun -np N` (feature `mpi`).
fn train_on(cfg: TrainConfig, out: &Path, resume: Resume, quiet: bool, comms: Comms, split: Split, backend: BackendArgs) -> Result<()> {
    let spec = backend.spec()?;
    split.check(&spec)?;
    if mvdit_train::dist::under_mpi_launcher() {
        return train_mpi(cfg, out, resume, quiet, comms, split, backend);
    }
    let micro_batches = split.micro_batches;
    if split.devices.is_empty() {
        return with_backend!(spec, |be| crate::progress::run_train(Placement { devices: vec![&be], micro_batches }, out, cfg, resume, quiet));
    }
    with_devices!(spec, split.devices, |bes| crate::progress::run_train(Placement { devices: bes, micro_batches }, out, cfg, resume, quiet))
}

/// One rank of `mpirun -np R mvdit train`: data parallelism over the ranks, each rank holding
/// the whole model on one device or, with --devices, a depth-split pipeline over several.
#[cfg(feature = "mpi")]
fn train_mpi(cfg: TrainConfig, out: &Path, resume: Resume, quiet: bool, comms: Comms, split: Split, mut backend: BackendArgs) -> Result<()> {
    use mvdit_train::dist::Comm;
    let comm = mvdit_train::dist::mpi::MpiComm::init(comms.timeout)?;
    let bucket_elems = comms.bucket_elems;
    // One rank per GPU: without --device, rank k on a node takes that node's adapter k.
    if backend.backend == crate::backend_args::BackendArg::Wgpu && backend.device.is_none() && split.devices.is_empty() {
        backend.device = mvdit_train::dist::local_rank();
    }
    let spec = backend.spec()?;
    let dist = mvdit_train::dist::Dist { comm: &comm, bucket_elems };
    let micro_batches = split.micro_batches;
    let run = || -> Result<Option<i32>> {
        if split.devices.is_empty() {
            return with_backend!(spec, |be| crate::progress::run_train_dist(Placement { devices: vec![&be], micro_batches }, out, cfg, resume, quiet, &dist));
        }
        with_devices!(spec, split.devices, |bes| crate::progress::run_train_dist(Placement { devices: bes, micro_batches }, out, cfg, resume, quiet, &dist))
    };
    match run() {
        Ok(stopped) => {
            drop(comm); // MPI_Finalize before exiting
            match stopped {
                Some(code) => std::process::exit(code),
                None => Ok(()),
            }
        }
        Err(e) => {
            // Without MPI_Abort the other ranks would wait for this one forever.
            eprintln!("error (rank {}): {e}", comm.rank());
            comm.abort(1)
        }
    }
}

#[cfg(not(feature = "mpi"))]
fn train_mpi(cfg: TrainConfig, out: &Path, resume: Resume, quiet: bool, _: Comms, split: Split, backend: BackendArgs) -> Result<()> {
    let spec = backend.spec()?;
    match mvdit_train::dist::launcher_size() {
        Some(size) if size > 1 => Err(Error::new(format!(
            "started by mpirun as one of {size} ranks, but this mvdit was built without MPI; rebuild with \
             `cargo build --release -p mvdit-cli --features mpi` (needs openmpi-bin libopenmpi-dev libclang-dev)"
        ))),
        // `mpirun -np 1`: one process is all there is.
        _ if split.devices.is_empty() => {
            with_backend!(spec, |be| crate::progress::run_train(Placement { devices: vec![&be], micro_batches: split.micro_batches }, out, cfg, resume, quiet))
        }
        _ => with_devices!(spec, split.devices, |bes| crate::progress::run_train(Placement { devices: bes, micro_batches: split.micro_batches }, out, cfg, resume, quiet)),
    }
}
