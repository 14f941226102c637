//! The closing cost lines of a run: the profiler's own CPU time, peak memory and records
//! lost, and each kernel program's runs with `--self-stats`.
use std::fmt::Write as _;

use crate::capture::selfcost::{OwnUsage, ProgramStats};

/// The closing cost lines of a run, machine-readable `key=value` pairs after a label.
pub fn report(lost: u64, usage: &OwnUsage, programs: Option<&[ProgramStats]>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "profiler cost: records_lost={lost} cpu_ms={:.1} peak_rss_kib={}",
        usage.cpu.as_secs_f64() * 1e3,
        usage.max_rss_kib
    );
    if let Some(progs) = programs {
        for p in progs {
            let _ = writeln!(
                out,
                "program {}: runs={} ns_per_run={:.1}",
                p.name,
                p.runs,
                p.ns_per_run()
            );
        }
    }
    out
}
