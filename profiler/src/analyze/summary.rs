//! Summary mode in user space: the kernel's per-CPU sums per process and call, added up over
//! CPUs, and the terminal table made from them (means from sums, percentiles from the
//! histograms). Pure: the loader reads the map, this only computes (the table is in
//! `render::summary`).
use std::collections::BTreeMap;

use probe_common::{CallSummary, HIST_BUCKETS, SplitBy, StageSplit, SummaryKey};

/// Adds `b` into `a`, field by field.
pub fn merge(a: &mut CallSummary, b: &CallSummary) {
    a.calls += b.calls;
    a.data_calls += b.data_calls;
    a.marker_calls += b.marker_calls;
    a.bytes += b.bytes;
    a.total_ns += b.total_ns;
    a.wait_ns += b.wait_ns;
    a.copy_ns += b.copy_ns;
    a.blocked_ns += b.blocked_ns;
    a.runq_ns += b.runq_ns;
    a.wait_blocked_ns += b.wait_blocked_ns;
    a.wait_runq_ns += b.wait_runq_ns;
    a.errors += b.errors;
    for (x, y) in [
        (&mut a.hist_total, &b.hist_total),
        (&mut a.hist_wait, &b.hist_wait),
        (&mut a.hist_copy, &b.hist_copy),
    ] {
        for (p, q) in x.iter_mut().zip(y) {
            *p += q;
        }
    }
}

/// Adds one call that moved `bytes`, already split into stages in user space, the way the
/// kernel does in summary mode. `failed` says whether it returned an error.
pub fn add_call(s: &mut CallSummary, st: &StageSplit, bytes: u64, failed: bool) {
    let mut one = CallSummary {
        calls: 1,
        data_calls: u64::from(bytes > 0),
        marker_calls: u64::from(st.by == SplitBy::Marker),
        bytes,
        total_ns: st.total_ns,
        wait_ns: st.wait_ns,
        copy_ns: st.copy_ns,
        blocked_ns: st.blocked_ns,
        runq_ns: st.runq_ns,
        wait_blocked_ns: st.wait_blocked_ns,
        wait_runq_ns: st.wait_runq_ns,
        errors: u64::from(failed),
        ..CallSummary::default()
    };
    one.hist_total[probe_common::hist_bucket(st.total_ns)] = 1;
    one.hist_wait[probe_common::hist_bucket(st.wait_ns)] = 1;
    one.hist_copy[probe_common::hist_bucket(st.copy_ns)] = 1;
    merge(s, &one);
}

/// Per-CPU values of each key, added up.
pub fn fold(per_cpu: impl IntoIterator<Item = (SummaryKey, Vec<CallSummary>)>) -> Summaries {
    let mut out = Summaries::new();
    for (k, values) in per_cpu {
        let e = out.entry(k).or_default();
        for v in &values {
            merge(e, v);
        }
    }
    out
}

/// Sums per process and call.
pub type Summaries = BTreeMap<SummaryKey, CallSummary>;

/// The upper bound of the nearest-rank percentile `p` of a summary histogram: the largest
/// value its bucket can hold (0 for an empty histogram).
pub fn hist_percentile(hist: &[u64; HIST_BUCKETS], p: f64) -> u64 {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return 0;
    }
    let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in hist.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return probe_common::hist_bucket_end(i) - 1;
        }
    }
    u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::summary::table;
    use probe_common::CallRecord;

    fn rec(start: u64, end: u64, first_copy: u64, ret: i64) -> CallRecord {
        CallRecord {
            nr: libc::SYS_recvfrom as u32,
            start_ns: start,
            end_ns: end,
            first_copy_ns: first_copy,
            ret,
            ..Default::default()
        }
    }

    #[test]
    fn adding_calls_sums_stages_and_buckets() {
        let mut s = CallSummary::default();
        for r in [rec(0, 1000, 600, 10), rec(0, 300, 0, -11)] {
            let bytes = r.ret.max(0) as u64;
            let st = probe_common::split_stages(&r, bytes > 0);
            add_call(&mut s, &st, bytes, r.ret < 0);
        }
        assert_eq!(
            (s.calls, s.data_calls, s.marker_calls, s.bytes),
            (2, 1, 1, 10)
        );
        assert_eq!((s.total_ns, s.wait_ns, s.copy_ns), (1300, 900, 400));
        assert_eq!(s.errors, 1);
        assert_eq!(s.hist_total.iter().sum::<u64>(), 2);
        assert_eq!(s.hist_total[probe_common::hist_bucket(1000)], 1);
    }

    #[test]
    fn folding_adds_cpus_and_percentiles_bound_from_above() {
        let mut a = CallSummary {
            calls: 3,
            ..CallSummary::default()
        };
        a.hist_total[probe_common::hist_bucket(1000)] = 3; // 960..1023
        let mut b = CallSummary {
            calls: 1,
            ..CallSummary::default()
        };
        b.hist_total[probe_common::hist_bucket(1 << 20)] = 1; // 2^20..2^20+2^17-1
        let key = SummaryKey {
            pid: 7,
            nr: 45,
            fd_class: probe_common::fd_class::FILE,
        };
        let sums = fold([(key, vec![a, b])]);
        let s = &sums[&key];
        assert_eq!(s.calls, 4);
        assert_eq!(hist_percentile(&s.hist_total, 50.0), 1023);
        assert_eq!(
            hist_percentile(&s.hist_total, 99.0),
            (1 << 20) + (1 << 17) - 1
        );
        assert_eq!(hist_percentile(&[0; HIST_BUCKETS], 50.0), 0);
        let t = table(&sums);
        assert!(t.contains("recvfrom: 4 calls"), "{t}");
        assert!(!t.contains("not counted"), "{t}");
        let mmsg = SummaryKey {
            pid: 7,
            nr: libc::SYS_recvmmsg as u32,
            fd_class: probe_common::fd_class::UDP,
        };
        let t = table(&fold([(mmsg, vec![a])]));
        assert!(t.contains("recvmmsg: 3 calls, 0 B"), "{t}");
        assert!(
            t.contains("bytes not counted in summary mode: use --mode per-call"),
            "{t}"
        );
        assert_eq!(table(&Summaries::new()), "no traced calls\n");
    }
}
