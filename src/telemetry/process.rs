//! Process metrics under the standard Prometheus names (`process_*`), read from `/proc/self`
//! at each scrape. Written here rather than pulled in: the crate that does this builds with
//! bindgen on macOS, and on Linux it is a few file reads.

use metrics::{Unit, describe_counter, describe_gauge};

const CPU_SECONDS: &str = "process_cpu_seconds_total";
const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
const VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
const OPEN_FDS: &str = "process_open_fds";
const MAX_FDS: &str = "process_max_fds";
const THREADS: &str = "process_threads";
const START_TIME: &str = "process_start_time_seconds";

pub fn describe() {
    describe_counter!(CPU_SECONDS, Unit::Seconds, "User and system CPU time this process spent, in whole seconds.");
    describe_gauge!(RESIDENT_MEMORY, Unit::Bytes, "Resident memory size.");
    describe_gauge!(VIRTUAL_MEMORY, Unit::Bytes, "Virtual memory size.");
    describe_gauge!(OPEN_FDS, "Open file descriptors.");
    describe_gauge!(MAX_FDS, "The limit on open file descriptors (soft limit).");
    describe_gauge!(THREADS, "Operating system threads of this process.");
    describe_gauge!(START_TIME, Unit::Seconds, "When this process started, in seconds since the Unix epoch.");
}

/// Records the current values; what cannot be read (another OS, a restricted /proc) is left out.
pub fn collect() {
    #[cfg(target_os = "linux")]
    linux::collect();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs;

    /// The unit of the CPU times in `/proc/<pid>/stat` (`USER_HZ`): 100 on every
    /// architecture Linux runs Rust on.
    const TICKS_PER_SECOND: f64 = 100.0;

    pub fn collect() {
        if let Some(stat) = Stat::read() {
            metrics::counter!(super::CPU_SECONDS).absolute(((stat.utime + stat.stime) as f64 / TICKS_PER_SECOND) as u64);
            metrics::gauge!(super::VIRTUAL_MEMORY).set(stat.vsize as f64);
            metrics::gauge!(super::THREADS).set(stat.threads as f64);
            if let Some(boot) = boot_time() {
                metrics::gauge!(super::START_TIME).set(boot + stat.start_ticks as f64 / TICKS_PER_SECOND);
            }
        }
        if let Some(kib) = status_kib("VmRSS:") {
            metrics::gauge!(super::RESIDENT_MEMORY).set(kib * 1024.0);
        }
        if let Ok(fds) = fs::read_dir("/proc/self/fd") {
            metrics::gauge!(super::OPEN_FDS).set(fds.count() as f64);
        }
        if let Some(max) = max_open_files() {
            metrics::gauge!(super::MAX_FDS).set(max);
        }
    }

    struct Stat {
        utime: u64,
        stime: u64,
        threads: u64,
        start_ticks: u64,
        vsize: u64,
    }

    impl Stat {
        /// `/proc/self/stat` (proc(5)); the command name may hold spaces and parentheses,
        /// so fields are counted from its closing parenthesis (field 2).
        fn read() -> Option<Stat> {
            let text = fs::read_to_string("/proc/self/stat").ok()?;
            let fields: Vec<&str> = text.get(text.rfind(')')? + 1..)?.split_whitespace().collect();
            // fields[0] is field 3 (state), so field n is fields[n - 3].
            let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
            Some(Stat { utime: field(14)?, stime: field(15)?, threads: field(20)?, start_ticks: field(22)?, vsize: field(23)? })
        }
    }

    /// Boot time in seconds since the epoch (`btime` in `/proc/stat`).
    fn boot_time() -> Option<f64> {
        let text = fs::read_to_string("/proc/stat").ok()?;
        text.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
    }

    /// A `kB` value of `/proc/self/status`.
    fn status_kib(key: &str) -> Option<f64> {
        let text = fs::read_to_string("/proc/self/status").ok()?;
        text.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
    }

    /// The soft limit of "Max open files" in `/proc/self/limits`.
    fn max_open_files() -> Option<f64> {
        let text = fs::read_to_string("/proc/self/limits").ok()?;
        text.lines().find_map(|l| l.strip_prefix("Max open files"))?.split_whitespace().next()?.parse().ok()
    }
}
