//! The copy-on-write block of the report: write faults, copy-on-write faults, pages copied and
//! their time, per GiB moved and per process and thread.
use std::fmt::Write as _;

use crate::{
    analyze::{
        cow::{CowThread, CowTotals, per_process},
        movement::per_gib,
    },
    render::report::{fmt_bytes, fmt_ns},
};

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
    use crate::analyze::cow::counts;

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
