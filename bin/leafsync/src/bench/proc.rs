//! What the benchmarks read about their own process from `/proc`: CPU time in clock ticks
//! (per process or per thread) and the peak resident set.

use crate::error::CliError;

/// Clock ticks per second of the CPU times in `/proc/*/stat` (`USER_HZ`, 100 on every Linux
/// architecture leafsync builds for).
pub(crate) const USER_HZ: f64 = 100.0;

/// CPU time (user + system) so far, in clock ticks, of what `/proc/<path>/stat` describes:
/// `self` for the whole process (every thread), `thread-self` for the calling thread.
pub(crate) fn cpu_ticks(path: &str) -> Result<u64, CliError> {
    cpu_split(path).map(|t| t.user + t.system)
}

/// CPU time so far in clock ticks, user and system apart (see [`cpu_ticks`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTicks {
    pub(crate) user: u64,
    pub(crate) system: u64,
}

impl CpuTicks {
    /// CPU seconds (user + system) since `earlier`.
    pub(crate) fn seconds_since(self, earlier: Self) -> f64 {
        (self.user + self.system).saturating_sub(earlier.user + earlier.system) as f64 / USER_HZ
    }

    /// System (kernel) seconds since `earlier`.
    pub(crate) fn system_s_since(self, earlier: Self) -> f64 {
        self.system.saturating_sub(earlier.system) as f64 / USER_HZ
    }
}

/// [`CpuTicks`] of what `/proc/<path>/stat` describes.
pub(crate) fn cpu_split(path: &str) -> Result<CpuTicks, CliError> {
    let file = format!("/proc/{path}/stat");
    let stat = std::fs::read_to_string(&file)
        .map_err(|source| CliError::Io { path: file.clone().into(), source })?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (field(11), field(12)) {
        (Some(user), Some(system)) => Ok(CpuTicks { user, system }),
        _ => Err(CliError::Invalid { what: file, reason: "no utime/stime fields".into() }),
    }
}

/// The process's peak resident set so far (`VmHWM` of `/proc/self/status`), MiB; `None` if
/// unreadable.
pub(crate) fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Starts the peak resident set over from the current one: hands back to the system every page
/// jemalloc holds free (`arena.<all>.purge`), then writes 5 to `/proc/self/clear_refs` (Linux
/// ≥ 4.0), which resets `VmHWM`. Returns whether the reset took.
///
/// Without the purge, what the step before freed stayed resident for jemalloc's decay (~10 s)
/// and became the new peak: a snap/1 sync, which starts right after the floor's leaves are
/// freed, read 1,275–1,542 MiB at 4M accounts, the resident set at its start, where its heap
/// profile showed ~330 MB live.
pub(crate) fn reset_peak_rss() -> bool {
    // SAFETY: a purge reads and writes no value (null pointers, length 0); the name is a
    // NUL-terminated string. `4096` is `MALLCTL_ARENAS_ALL`.
    let purged = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if purged != 0 {
        tracing::warn!(error = purged, "jemalloc did not purge: the peak may include freed memory");
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU seconds consumed so far by the calling thread (`libc::CLOCK_THREAD_CPUTIME_ID`) or the
/// whole process with every RocksDB thread (`libc::CLOCK_PROCESS_CPUTIME_ID`); 0 if unavailable.
pub(crate) fn cpu_s(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Minor page faults of the whole process so far (`getrusage`); 0 if unavailable. On this
/// project's VM a fault on a page the process never had costs microseconds (docs/benchmarks.md,
/// "where a block's page faults are"), so the block benchmarks count them.
pub(crate) fn minor_faults() -> u64 {
    // SAFETY: `rusage` is plain data for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_minflt).unwrap_or(0)
}
