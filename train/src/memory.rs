//! The memory a process may count on: the device's own, or the host's available memory
//! shared by the processes of a run on the host. Defaults that scale with memory (the
//! activation budget of training, the weight budget of sampling) start here.

/// The memory one training process may count on: `device` bytes where the backend knows its
/// device's memory, else the host's available memory shared by the processes of this run on
/// the host (MPI's local rank count); None where neither is known.
pub fn available_memory(device: Option<u64>) -> Option<usize> {
    if let Some(d) = device {
        return Some(d as usize);
    }
    let host = host_available_bytes()?;
    Some(host / local_processes())
}

/// The host's available memory (MemAvailable), where /proc says.
pub fn host_available_bytes() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse::<usize>().ok()?;
    Some(kb * 1024)
}

/// Processes of this run on this host: Open MPI's or MPICH's local size, else 1.
fn local_processes() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"].iter().find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok()).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_says_its_own_memory_and_the_host_is_read_from_proc() {
        assert_eq!(available_memory(Some(80 << 30)), Some(80 << 30));
        let host = host_available_bytes().expect("this test runs on Linux");
        assert!(host > 0 && available_memory(None).is_some_and(|b| b <= host));
    }
}
