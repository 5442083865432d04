//! A run directory while a run uses it: the OS lock that keeps a second run out (released by the
//! OS when the process ends, so a killed run leaves no stale lock), what a run that fails to open
//! removes again, and the checkpoint a resume starts from (the newest that verifies), opened on
//! every rank.

use crate::checkpoints::list_checkpoints;
use crate::dist::Dist;
use crate::observe::Progress;
use mvdit_model::{Error, Result, WeightFile};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file in a run directory; it holds the PID of the run that locked it.
pub const LOCK_NAME: &str = ".lock";

/// Rank 0's hold on its run directory: the locked file, and what this run created, which is
/// removed again unless [`Claim::keep`] is called (a run that cannot open leaves nothing behind).
pub struct Claim {
    /// Created by this claim, in order.
    created: Vec<PathBuf>,
    kept: bool,
    /// Closed (unlocked) after `created` is removed: declared last, dropped last.
    _lock: Option<File>,
}


/// Creates `dir` and its missing parents, recording the topmost one created.
fn create_dir(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let top = dir.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).last().map(Path::to_path_buf);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    created.extend(top);
    Ok(())
}

impl Claim {
    /// Creates `run` (with `checkpoints/` and `samples/`) and locks it. Another live run's lock
    /// is an error naming its PID; a file system without locks runs unlocked, with the warning
    /// returned beside the claim.
    pub fn take(run: &Path) -> Result<(Claim, Option<String>)> {
        let mut claim = Claim { created: Vec::new(), kept: false, _lock: None };
        create_dir(run, &mut claim.created)?;
        let path = run.join(LOCK_NAME);
        let fresh = !path.exists();
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| Error::io(&path, "open", e))?;
        let warning = match file.try_lock() {
            Ok(()) => {
                if fresh {
                    claim.created.push(path.clone());
                }
                // The holder's PID for the message of a run refused; the lock itself is the OS's.
                let pid = format!("{}\n", std::process::id());
                file.set_len(0).and_then(|_| file.write_all(pid.as_bytes())).map_err(|e| Error::io(&path, "write", e))?;
                claim._lock = Some(file);
                None
            }
            Err(TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
                let holder = pid.map_or("another process".to_string(), |p| format!("PID {p}"));
                return Err(Error::new(format!("{}: in use by another mvdit run ({holder}); wait for it to end, stop it, or use another --out", run.display())));
            }
            Err(TryLockError::Error(e)) => Some(format!("warning: {}: cannot lock ({e}); nothing keeps a second run out of this directory", path.display())),
        };
        create_dir(&run.join("checkpoints"), &mut claim.created)?;
        create_dir(&run.join("samples"), &mut claim.created)?;
        Ok((claim, warning))
    }

    /// The run opened: what it created stays.
    pub fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for p in self.created.iter().rev() {
            let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
        }
    }
}

/// `--resume auto`: whether rank 0 finds a checkpoint in `run` (every rank gets its answer).
pub fn resume_auto(run: &Path, dist: &Dist) -> Result<bool> {
    dist.any(dist.is_root() && !list_checkpoints(run).is_empty())
}

/// The newest checkpoint of `run` whose checksums verify. One that does not (a flipped bit, a
/// truncated file) is renamed aside to `NAME.corrupt`, with a warning, and the one before it
/// tried. Without verification ([`mvdit_model::checksum::set_verify`]) the newest.
pub fn newest_sound_checkpoint(run: &Path, progress: &mut dyn Progress) -> Result<(u64, PathBuf)> {
    let all = list_checkpoints(run);
    let mut first_error = None;
    for (step, path) in all.into_iter().rev() {
        if !mvdit_model::checksum::verifying() {
            return Ok((step, path));
        }
        match WeightFile::open(&path).and_then(|w| w.verify()) {
            Ok(()) => return Ok((step, path)),
            Err(e) => {
                let aside = PathBuf::from(format!("{}.corrupt", path.display()));
                let moved = std::fs::rename(&path, &aside).map(|_| format!("moved to {}", aside.display())).unwrap_or_else(|m| format!("cannot move it aside: {m}"));
                progress.message(&format!("warning: checkpoint of step {step} fails verification ({e}); {moved}; trying the one before"));
                first_error.get_or_insert(e);
            }
        }
    }
    Err(match first_error {
        Some(e) => Error::new(format!("{}: no checkpoint verifies (the newest: {e})", run.display())),
        None => Error::new(format!("{}: --resume but no checkpoint in {}", run.display(), crate::checkpoints::checkpoint_dir(run).display())),
    })
}

/// The checkpoint `path` (rank 0's choice) opened on every rank through memory maps. Rank 0
/// sends the path and its fingerprint (every shard's stored checksum); a rank that opens the
/// same checkpoint at that path (a shared file system) reads it there. Otherwise every file of
/// the checkpoint travels from rank 0 in turn, one file at a time (at most one shard,
/// `checkpoint_shard_mb`, in memory), and those ranks read a copy in a temporary folder,
/// returned for removal once the state is restored.
pub(crate) fn open_on_every_rank(path: Option<PathBuf>, dist: &Dist) -> Result<(mvdit_model::WeightFile, Option<PathBuf>)> {
    use mvdit_model::WeightFile;
    let mine = match &path {
        Some(p) => Some(WeightFile::open(p)?),
        None => None,
    };
    if dist.comm.size() == 1 {
        return Ok((mine.ok_or_else(|| Error::new("internal: rank 0 has no checkpoint"))?, None));
    }
    let fingerprint = |w: &WeightFile| format!("{:?}", w.checksums());
    let sent = match (&path, &mine) {
        (Some(p), Some(w)) => format!("{}\n{}", p.display(), fingerprint(w)),
        _ => String::new(),
    };
    let got = String::from_utf8_lossy(&dist.comm.broadcast(sent.into_bytes())?).to_string();
    let (shared_path, want) = got.split_once('\n').ok_or_else(|| Error::new("rank 0 sent no checkpoint path"))?;
    let shared_path = PathBuf::from(shared_path);
    let here = match mine {
        Some(w) => Some(w),
        None => WeightFile::open(&shared_path).ok().filter(|w| fingerprint(w) == want),
    };
    if !dist.any(here.is_none())? {
        return Ok((here.expect("every rank opened it"), None));
    }
    // Some rank cannot read it: rank 0 sends the files, one at a time.
    let files: Vec<PathBuf> = match &path {
        Some(p) if p.is_dir() => {
            let mut f: Vec<PathBuf> = std::fs::read_dir(p).map_err(|e| Error::io(p, "list", e))?.flatten().map(|e| e.path()).collect();
            f.sort();
            f
        }
        Some(p) => vec![p.clone()],
        None => vec![],
    };
    let count = dist.comm.broadcast(files.len().to_string().into_bytes())?;
    let count: usize = String::from_utf8_lossy(&count).parse().map_err(|_| Error::new("rank 0 sent a malformed file count"))?;
    let target = here.is_none().then(|| std::env::temp_dir().join(format!("mvdit-resume-{}", std::process::id())));
    if let Some(t) = &target {
        std::fs::create_dir_all(t).map_err(|e| Error::io(t, "create", e))?;
    }
    for i in 0..count {
        let (name, bytes) = match files.get(i) {
            Some(f) => (f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(), std::fs::read(f).map_err(|e| Error::io(f, "read", e))?),
            None => (String::new(), vec![]),
        };
        let name = String::from_utf8_lossy(&dist.comm.broadcast(name.into_bytes())?).to_string();
        let bytes = dist.comm.broadcast(bytes)?;
        if let Some(t) = &target {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(Error::new(format!("rank 0 sent a checkpoint file of bad name {name:?}")));
            }
            mvdit_model::tensorfile::write_atomic(&t.join(&name), &bytes)?;
        }
    }
    match (here, target) {
        (Some(w), _) => Ok((w, None)),
        // A file checkpoint is the one file copied; a sharded one is the folder of them.
        (None, Some(t)) => {
            let file = shared_path.extension().is_some_and(|x| x == "safetensors");
            let w = WeightFile::open(&if file { t.join(shared_path.file_name().unwrap_or_default()) } else { t.clone() });
            Ok((w.map_err(|e| e.context("the copy of rank 0's checkpoint"))?, Some(t)))
        }
        (None, None) => Err(Error::new("internal: no checkpoint to read")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_naming_the_pid_and_a_failed_open_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("a/run");
        let (mut first, warning) = Claim::take(&run).unwrap();
        assert!(warning.is_none());
        assert!(run.join("checkpoints").is_dir() && run.join("samples").is_dir());
        let e = Claim::take(&run).err().unwrap().to_string();
        assert!(e.contains(&format!("in use by another mvdit run (PID {})", std::process::id())), "{e}");
        first.keep();
        drop(first);
        // Unlocked once the holder is gone; a claim that is not kept removes what it made.
        let (again, _) = Claim::take(&run).unwrap();
        drop(again);
        assert!(run.join("checkpoints").is_dir(), "a kept run's directory stays");
        let fresh = dir.path().join("b/c");
        drop(Claim::take(&fresh).unwrap());
        assert!(!dir.path().join("b").exists(), "the folders a failed open created are gone");
    }
}
