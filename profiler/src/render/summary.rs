//! The summary-mode table: the kernel's sums per call name (`--show calls`).
use std::{collections::BTreeMap, fmt::Write as _};

use probe_common::{CallSummary, HIST_BUCKETS};

use crate::{
    analyze::summary::{Summaries, hist_percentile, merge},
    render::report::{fmt_bytes, fmt_ns},
    syscalls,
};

/// The summary-mode table: one block per call name (all processes together), means exact,
/// p50/p99 as upper bounds from the histograms.
pub fn table(sums: &Summaries) -> String {
    let mut by_call: BTreeMap<String, CallSummary> = BTreeMap::new();
    for (k, v) in sums {
        merge(by_call.entry(syscalls::name_of(k.nr)).or_default(), v);
    }
    let mut out = String::new();
    if by_call.is_empty() {
        out.push_str("no traced calls\n");
        return out;
    }
    for (name, s) in by_call {
        let _ = writeln!(
            out,
            "{name}: {} calls, {} ({} moved data, {} split at a copy marker)",
            s.calls,
            fmt_bytes(s.bytes),
            s.data_calls,
            s.marker_calls
        );
        if syscalls::by_name(&name).is_some_and(|c| c.returns_messages()) {
            // Its return value counts messages; its bytes come from the socket hooks, which
            // only per-call runs attach.
            let _ = writeln!(
                out,
                "  bytes not counted in summary mode: use --mode per-call"
            );
        }
        let _ = writeln!(
            out,
            "  {:<18} {:>9} {:>9} {:>9} {:>7}",
            "stage", "mean", "p50≤", "p99≤", "share"
        );
        let n = s.calls.max(1) as f64;
        let total = s.total_ns.max(1) as f64;
        let wait_cpu = s.wait_ns.saturating_sub(s.wait_blocked_ns + s.wait_runq_ns);
        let pct = |h: Option<&[u64; HIST_BUCKETS]>, p: f64| {
            h.map_or_else(|| "-".to_string(), |h| fmt_ns(hist_percentile(h, p) as f64))
        };
        for (stage, sum, hist) in [
            ("total", s.total_ns, Some(&s.hist_total)),
            ("wait", s.wait_ns, Some(&s.hist_wait)),
            ("  blocked", s.wait_blocked_ns, None),
            ("  run queue", s.wait_runq_ns, None),
            ("  on cpu", wait_cpu, None),
            ("copy", s.copy_ns, Some(&s.hist_copy)),
        ] {
            let _ = writeln!(
                out,
                "  {:<18} {:>9} {:>9} {:>9} {:>6.1}%",
                stage,
                fmt_ns(sum as f64 / n),
                pct(hist, 50.0),
                pct(hist, 99.0),
                100.0 * sum as f64 / total
            );
        }
        out.push('\n');
    }
    out
}
