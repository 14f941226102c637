//! Copy-on-write: the write faults of traced threads, the ones on write-protected pages
//! (copy-on-write), the pages those faults copied and their time; per thread and per process.
//! Data only: no I/O, no BPF, no text.
use std::collections::BTreeMap;

use probe_common::{Counter, CowCounts};
use serde::{Deserialize, Serialize};

use crate::capture::session::counter;

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

/// One CPU's counts of a thread for tests: `cow` copy-on-write faults among `cow + 1` write
/// faults, `copies` pages copied.
#[cfg(test)]
pub(crate) fn counts(pid: u32, cow: u64, copies: u64) -> CowCounts {
    CowCounts {
        pid,
        write_faults: cow + 1,
        cow_faults: cow,
        copies,
        ..CowCounts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
