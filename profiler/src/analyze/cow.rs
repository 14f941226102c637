//! Copy-on-write: the write faults of traced threads, the ones on write-protected pages
//! (copy-on-write), and the pages those faults copied; per thread, per process and per GiB
//! moved. Data types and their report lines; no I/O, no BPF.
use std::{collections::BTreeMap, fmt::Write as _};

use probe_common::{Counter, CowCounts};
use serde::{Deserialize, Serialize};

use crate::{
    analyze::movement::per_gib,
    capture::session::counter,
    render::report::{fmt_bytes, fmt_ns},
};

/// Copy-on-write counts of one thread or process (`tid` 0), summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CowThread {
    /// Process.
    pub pid: u32,
    /// Thread (0: the whole process).
    pub tid: u32,
    /// User-mode write faults.
    pub write_faults: u64,
    /// Of those, outside traced calls.
    pub write_faults_outside: u64,
    /// Write faults on present, write-protected pages: copy-on-write.
    pub cow_faults: u64,
    /// Pages those faults copied (the rest reused a page no one else mapped any more).
    pub copies: u64,
    /// Time of the faults that copied, ns (entry to the TLB flush of the old page).
    #[serde(default)]
    pub copy_ns: u64,
}

impl CowThread {
    /// One thread's counts, summed over the per-CPU values of its entry.
    pub fn from_per_cpu(tid: u32, per_cpu: &[CowCounts]) -> Self {
        let mut t = Self {
            tid,
            ..Self::default()
        };
        for c in per_cpu {
            if c.pid != 0 {
                t.pid = c.pid;
            }
            t.write_faults += c.write_faults;
            t.write_faults_outside += c.write_faults_outside;
            t.cow_faults += c.cow_faults;
            t.copies += c.copies;
            t.copy_ns += c.copy_ns;
        }
        t
    }

    fn add(&mut self, o: &Self) {
        self.write_faults += o.write_faults;
        self.write_faults_outside += o.write_faults_outside;
        self.cow_faults += o.cow_faults;
        self.copies += o.copies;
        self.copy_ns += o.copy_ns;
    }
}

/// Per process: the sums of its threads (`tid` 0), by pid.
pub fn per_process(threads: &[CowThread]) -> Vec<CowThread> {
    let mut by: BTreeMap<u32, CowThread> = BTreeMap::new();
    for t in threads {
        by.entry(t.pid)
            .or_insert(CowThread {
                pid: t.pid,
                ..CowThread::default()
            })
            .add(t);
    }
    by.into_values().collect()
}

/// The run's totals from the kernel's counters (every traced thread, also those the per-thread
/// table had no room for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CowTotals {
    /// User-mode write faults.
    pub write_faults: u64,
    /// Of those, outside traced calls.
    pub write_faults_outside: u64,
    /// Copy-on-write faults.
    pub cow_faults: u64,
    /// Pages copied by them.
    pub copies: u64,
    /// Copy-on-write faults of threads the per-thread table had no room for.
    pub table_full: u64,
    /// Time of the faults that copied, ns: entry to the TLB flush of the old page after the
    /// copy (the few instructions after it are not in it).
    #[serde(default)]
    pub copy_ns: u64,
    /// Copies whose time is in `copy_ns`.
    #[serde(default)]
    pub copies_timed: u64,
}

impl CowTotals {
    /// Mean time of a fault that copied, ns (`None`: none timed).
    pub fn ns_per_copy(&self) -> Option<f64> {
        (self.copies_timed > 0).then(|| self.copy_ns as f64 / self.copies_timed as f64)
    }
}

impl CowTotals {
    /// The totals of a run's counters.
    pub fn from_counters(counters: &[u64]) -> Self {
        Self {
            write_faults: counter(counters, Counter::WriteFaults),
            write_faults_outside: counter(counters, Counter::WriteFaultsOutside),
            cow_faults: counter(counters, Counter::CowFaults),
            copies: counter(counters, Counter::CowCopies),
            table_full: counter(counters, Counter::CowTableFull),
            copy_ns: counter(counters, Counter::CowCopyNs),
            copies_timed: counter(counters, Counter::CowCopiesTimed),
        }
    }
}

/// Bytes of one page.
const PAGE: u64 = 4096;

/// The copy-on-write block of the report: totals per GiB of `bytes` moved, then one line per
/// process and thread with copy-on-write faults. Empty when there were no write faults.
pub fn render(totals: &CowTotals, threads: &[CowThread], bytes: u64) -> String {
    let mut out = String::new();
    if totals.write_faults == 0 {
        return out;
    }
    let _ = writeln!(
        out,
        "copy-on-write: {} write faults ({} outside traced calls), {} on write-protected pages, \
         {} pages copied ({})",
        totals.write_faults,
        totals.write_faults_outside,
        totals.cow_faults,
        totals.copies,
        fmt_bytes(totals.copies * PAGE)
    );
    if let (Some(faults), Some(copies)) = (
        per_gib(totals.cow_faults as f64, bytes),
        per_gib(totals.copies as f64, bytes),
    ) {
        let _ = writeln!(
            out,
            "  per GiB moved: {faults:.0} copy-on-write faults, {copies:.0} pages copied"
        );
    }
    match totals.ns_per_copy() {
        Some(mean) => {
            let _ = writeln!(
                out,
                "  time in the faults that copied: {} in all, {} each ({} of {} copies timed, \
                 fault entry → TLB flush of the old page){}",
                fmt_ns(totals.copy_ns as f64),
                fmt_ns(mean),
                totals.copies_timed,
                totals.copies,
                per_gib(totals.copy_ns as f64, bytes).map_or(String::new(), |ns| format!(
                    "; {} per GiB moved",
                    fmt_ns(ns)
                ))
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  time in those faults: not measured (no TLB flush seen after a copy)"
            );
        }
    }
    if totals.table_full > 0 {
        let _ = writeln!(
            out,
            "  {} faults of threads beyond the per-thread table are in the totals only",
            totals.table_full
        );
    }
    let procs = per_process(threads);
    for p in procs.iter().filter(|p| p.cow_faults > 0) {
        let _ = writeln!(
            out,
            "  pid {}: {} copy-on-write faults, {} pages copied in {}",
            p.pid,
            p.cow_faults,
            p.copies,
            fmt_ns(p.copy_ns as f64)
        );
        for t in threads
            .iter()
            .filter(|t| t.pid == p.pid && t.cow_faults > 0 && t.tid != p.pid)
        {
            let _ = writeln!(
                out,
                "    tid {}: {} copy-on-write faults, {} pages copied in {}",
                t.tid,
                t.cow_faults,
                t.copies,
                fmt_ns(t.copy_ns as f64)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pid: u32, cow: u64, copies: u64) -> CowCounts {
        CowCounts {
            pid,
            write_faults: cow + 1,
            cow_faults: cow,
            copies,
            ..CowCounts::default()
        }
    }

    #[test]
    fn threads_sum_over_cpus_and_into_processes() {
        let a = CowThread::from_per_cpu(11, &[counts(10, 3, 3), CowCounts::default()]);
        assert_eq!(
            (a.pid, a.cow_faults, a.copies, a.write_faults),
            (10, 3, 3, 4)
        );
        let b = CowThread::from_per_cpu(12, &[counts(10, 2, 0), counts(10, 1, 1)]);
        let c = CowThread::from_per_cpu(20, &[counts(20, 5, 0)]);
        let p = per_process(&[a, b, c]);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].pid, p[0].tid, p[0].cow_faults, p[0].copies),
            (10, 0, 6, 4)
        );
        assert_eq!((p[1].pid, p[1].cow_faults), (20, 5));
    }

    #[test]
    fn render_gives_per_gib_and_per_process_lines() {
        let totals = CowTotals {
            write_faults: 300,
            cow_faults: 262_144,
            copies: 131_072,
            ..CowTotals::default()
        };
        let threads = [
            CowThread::from_per_cpu(10, &[counts(10, 131_072, 131_072)]),
            CowThread::from_per_cpu(11, &[counts(11, 131_072, 0)]),
        ];
        let r = render(&totals, &threads, 1 << 30);
        assert!(
            r.contains("262144 copy-on-write faults, 131072 pages copied"),
            "{r}"
        );
        assert!(
            r.contains("pid 10: 131072 copy-on-write faults, 131072 pages copied"),
            "{r}"
        );
        assert!(
            r.contains("pid 11: 131072 copy-on-write faults, 0 pages copied in"),
            "{r}"
        );
        assert!(r.contains("time in those faults: not measured"), "{r}");
        let timed = CowTotals {
            copy_ns: 2_000_000,
            copies_timed: 1000,
            ..totals
        };
        let r = render(&timed, &threads, 1 << 30);
        assert!(
            r.contains("2.00ms in all, 2.0µs each (1000 of 131072 copies timed"),
            "{r}"
        );
        assert_eq!(render(&CowTotals::default(), &[], 0), "");
    }
}
