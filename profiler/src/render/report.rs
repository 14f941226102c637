//! The terminal report: the stage table per call kind.
use std::fmt::Write as _;

use crate::{analyze::stats::CallStats, capture::traced::TracedCall};

pub use workloads::clock::{fmt_bytes, fmt_ns};

/// The stage table: one block per call label, one row per stage.
pub fn stage_table(calls: &[TracedCall]) -> String {
    stage_table_of(&calls.iter().collect())
}

/// The stage table from streaming statistics (bounded memory, for runs of any length).
pub fn stage_table_of(stats: &CallStats) -> String {
    let groups = stats.by_label();
    let mut out = String::new();
    if groups.is_empty() {
        out.push_str("no traced calls\n");
        return out;
    }
    for (label, st) in groups {
        let sum = st.summary();
        let wait_blocked = st.wait_blocked.distribution();
        let wait_runq = st.wait_runq.distribution();
        let wait_cpu = st.wait_oncpu.distribution();
        let _ = writeln!(
            out,
            "{label}: {} calls, {} ({} moved data, {} split at a copy marker)",
            sum.calls,
            fmt_bytes(sum.bytes),
            sum.data_calls,
            sum.marker_calls
        );
        let _ = writeln!(
            out,
            "  {:<18} {:>9} {:>9} {:>9} {:>7}",
            "stage", "mean", "p50", "p99", "share"
        );
        let total = sum.total.sum.max(1) as f64;
        // Without a copy marker the copy is the call's time on CPU: say so.
        let copy_name = if sum.marker_calls == 0 && sum.data_calls > 0 {
            "copy (on cpu)*"
        } else {
            "copy"
        };
        for (stage, d) in [
            ("total", &sum.total),
            ("wait", &sum.wait),
            ("  blocked", &wait_blocked),
            ("  run queue", &wait_runq),
            ("  on cpu", &wait_cpu),
            (copy_name, &sum.copy),
        ] {
            let _ = writeln!(
                out,
                "  {:<18} {:>9} {:>9} {:>9} {:>6.1}%",
                stage,
                fmt_ns(d.mean),
                fmt_ns(d.p50 as f64),
                fmt_ns(d.p99 as f64),
                100.0 * d.sum as f64 / total
            );
        }
        if copy_name != "copy" {
            let _ = writeln!(
                out,
                "  * no copy marker on this path: wait is time asleep, copy is time on CPU (an upper bound)"
            );
        }
        if sum.runq.sum > wait_runq.sum {
            let _ = writeln!(
                out,
                "  (run queue in all stages: mean {})",
                fmt_ns(sum.runq.mean)
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fdkind::FdKind;
    use probe_common::CallRecord;

    #[test]
    fn units_are_human() {
        assert_eq!(fmt_ns(812.0), "812ns");
        assert_eq!(fmt_ns(14_200.0), "14.2µs");
        assert_eq!(fmt_ns(5_030_000.0), "5.03ms");
        assert_eq!(fmt_bytes(65536), "64.0 KiB");
        assert_eq!(fmt_bytes(3), "3 B");
    }

    #[test]
    fn table_has_a_block_per_label() {
        let rec = CallRecord {
            nr: libc::SYS_recvfrom as u32,
            start_ns: 0,
            end_ns: 5_000_000,
            first_copy_ns: 4_990_000,
            ret: 65536,
            ..Default::default()
        };
        let calls = vec![TracedCall::new(rec, |_, _| FdKind::Socket); 3];
        let t = stage_table(&calls);
        assert!(t.contains("recvfrom socket: 3 calls"), "{t}");
        assert!(t.contains("192.0 KiB"), "{t}");
        assert!(t.contains("4.99ms"), "{t}");
        assert_eq!(stage_table(&[]), "no traced calls\n");
    }
}
