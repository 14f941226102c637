//! What a profiler run cost: records lost, the profiler's own CPU time and peak memory, and,
//! with `--self-stats`, each kernel program's run count and time per run (the kernel's BPF
//! run-time statistics, switched on for this run only).
use std::{os::fd::OwnedFd, time::Duration};

/// Run-time statistics of one kernel program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// Program name in the probe object.
    pub name: String,
    /// Times it ran while statistics were on.
    pub runs: u64,
    /// Total time it ran, ns.
    pub run_ns: u64,
}

impl ProgramStats {
    /// Mean time per run, ns (0 when it never ran).
    pub fn ns_per_run(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.run_ns as f64 / self.runs as f64
        }
    }
}

/// Keeps the kernel's BPF run-time statistics on while alive (`BPF_ENABLE_STATS`); they go
/// off again when it is dropped.
pub struct StatsGuard(#[allow(dead_code)] OwnedFd);

/// Switches the kernel's BPF run-time statistics on until the guard is dropped.
pub fn enable_stats() -> Result<StatsGuard, SelfCostError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map(StatsGuard)
        .map_err(|e| SelfCostError::Stats(e.to_string()))
}

/// Why the cost could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum SelfCostError {
    /// `BPF_ENABLE_STATS` failed.
    #[error("cannot switch on BPF run-time statistics (BPF_ENABLE_STATS, kernel 5.8+): {0}")]
    Stats(String),
}

/// The profiler's own resource use so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnUsage {
    /// User + system CPU time of this process (not its children).
    pub cpu: Duration,
    /// Peak resident memory, KiB.
    pub max_rss_kib: u64,
}

/// This process's CPU time (`getrusage(RUSAGE_SELF)`) and peak memory: the high-water mark
/// of its resident memory since its exec (`VmHWM`), where `ru_maxrss` also keeps the size of
/// whatever process forked it, as it was at the exec.
pub fn own_usage() -> OwnUsage {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `rusage`; RUSAGE_SELF needs nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return OwnUsage::default();
    }
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    OwnUsage {
        cpu: tv(u.ru_utime) + tv(u.ru_stime),
        max_rss_kib: std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
            .unwrap_or(u.ru_maxrss.max(0) as u64),
    }
}

/// `VmHWM` in KiB from the text of `/proc/PID/status`.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_read_from_the_status_text() {
        let text = "Name:\tprofiler\nVmPeak:\t  900 kB\nVmHWM:\t   4242 kB\nVmRSS:\t 10 kB\n";
        assert_eq!(vm_hwm_kib(text), Some(4242));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
        assert!(own_usage().max_rss_kib > 0);
    }
    use crate::render::cost::report;

    #[test]
    fn report_lines_are_parseable() {
        let r = report(
            3,
            &OwnUsage {
                cpu: Duration::from_millis(12),
                max_rss_kib: 4096,
            },
            Some(&[ProgramStats {
                name: "call_enter".into(),
                runs: 4,
                run_ns: 500,
            }]),
        );
        assert!(
            r.contains("records_lost=3 cpu_ms=12.0 peak_rss_kib=4096"),
            "{r}"
        );
        assert!(
            r.contains("program call_enter: runs=4 ns_per_run=125.0"),
            "{r}"
        );
        assert_eq!(
            ProgramStats {
                name: String::new(),
                runs: 0,
                run_ns: 0
            }
            .ns_per_run(),
            0.0
        );
    }

    #[test]
    fn own_usage_is_measured() {
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(own_usage().max_rss_kib > 0);
    }
}
