//! [`CpuOptions`]: how the CPU backend is opened.

/// How to open the CPU backend; `Default` is what `Cpu::default()` uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuOptions {
    /// Size of the thread team; 0 (default) = all cores.
    pub threads: usize,
    /// Time every op and print each op's call count and total time when the backend is
    /// dropped. Default off.
    pub profile: bool,
}

impl CpuOptions {
    /// The size of the thread team these options give: `threads`, or every core for 0.
    pub fn thread_count(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_means_every_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(CpuOptions { threads: 0, profile: false }.thread_count(), cores);
        assert_eq!(CpuOptions { threads: 3, profile: false }.thread_count(), 3);
    }
}
