//! The per-process, per-thread, per-descriptor-class call table (`--show threads`).
use std::{collections::HashMap, fmt::Write as _};

use crate::{
    analyze::{
        groups::{GroupKey, group},
        infer::Verdict,
    },
    capture::traced::TracedCall,
    render::report::{fmt_bytes, fmt_ns},
};

fn class_label(k: &GroupKey) -> String {
    match k.out_class {
        Some(o) => format!("{}→{}", k.class.as_str(), o.as_str()),
        None => k.class.as_str().to_string(),
    }
}

/// The table: one block per process (with its command name when known), one per thread with
/// its I/O model and evidence, one row per descriptor class and call.
pub fn table(calls: &[TracedCall], verdicts: &[Verdict], names: &HashMap<u32, String>) -> String {
    let groups = group(calls);
    let mut out = String::new();
    if groups.is_empty() {
        return out;
    }
    let verdict: HashMap<(u32, u32), &Verdict> =
        verdicts.iter().map(|v| ((v.pid, v.tid), v)).collect();
    let _ = writeln!(out, "per process, thread, descriptor class and call:");
    let mut last_pid = None;
    let mut last_tid = None;
    for (k, s) in &groups {
        if last_pid != Some(k.pid) {
            let name = names.get(&k.pid).map_or("?", String::as_str);
            let threads = groups
                .keys()
                .filter(|g| g.pid == k.pid)
                .map(|g| g.tid)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let _ = writeln!(out, "pid {} ({name}), {threads} thread(s)", k.pid);
            last_pid = Some(k.pid);
            last_tid = None;
        }
        if last_tid != Some(k.tid) {
            match verdict.get(&(k.pid, k.tid)) {
                Some(v) => {
                    let _ = writeln!(
                        out,
                        "  tid {}: {} ({})",
                        k.tid,
                        v.model.as_str(),
                        v.evidence
                    );
                    if let Some(h) = v.helper {
                        let _ = writeln!(
                            out,
                            "    helper thread of tid {}: {} of its {} reads ({}) woke it",
                            h.helped,
                            h.told,
                            h.reads,
                            fmt_bytes(h.bytes)
                        );
                    }
                }
                None => {
                    let _ = writeln!(out, "  tid {}", k.tid);
                }
            }
            let _ = writeln!(
                out,
                "    {:<12} {:<12} {:>8} {:>8} {:>12} {:>10} {:>10}",
                "call", "descriptor", "calls", "errors", "bytes", "time", "asleep"
            );
            last_tid = Some(k.tid);
        }
        let _ = writeln!(
            out,
            "    {:<12} {:<12} {:>8} {:>8} {:>12} {:>10} {:>10}",
            k.call,
            class_label(k),
            s.calls,
            s.errors,
            fmt_bytes(s.bytes),
            fmt_ns(s.total_ns as f64),
            fmt_ns(s.blocked_ns as f64)
        );
    }
    out
}
