//! The system-wide table: one line per process, like `top` for I/O stages.
use std::fmt::Write as _;

use crate::{
    analyze::top::ProcessIo,
    render::report::{fmt_bytes, fmt_ns},
};

/// Processes shown by default.
pub const ROWS: usize = 20;

/// The `rows` busiest processes (wait plus copy), with how many more there were.
pub fn table(procs: &[ProcessIo], rows: usize) -> String {
    let mut out = String::new();
    if procs.is_empty() {
        out.push_str("no process made a traced call\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:>8} {:<16} {:>10} {:>10} {:>10} {:>10} {:>8}  model",
        "pid", "comm", "calls", "bytes", "wait", "copy", "errors"
    );
    for p in procs.iter().take(rows) {
        let _ = writeln!(
            out,
            "{:>8} {:<16} {:>10} {:>10} {:>10} {:>10} {:>8}  {}",
            p.pid,
            p.comm,
            p.calls,
            fmt_bytes(p.bytes),
            fmt_ns(p.wait_ns as f64),
            fmt_ns(p.copy_ns as f64),
            p.errors,
            p.model.unwrap_or("-")
        );
    }
    if procs.len() > rows {
        let _ = writeln!(out, "… and {} more processes", procs.len() - rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_capped_and_models_shown_where_known() {
        let p = |pid, model| ProcessIo {
            pid,
            comm: format!("p{pid}"),
            model,
            calls: 3,
            wait_ns: 1_000_000,
            ..ProcessIo::default()
        };
        let t = table(&[p(1, Some("blocking")), p(2, None), p(3, None)], 2);
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[1].contains("p1") && lines[1].ends_with("blocking"),
            "{t}"
        );
        assert!(lines[2].ends_with(" -"), "{t}");
        assert_eq!(lines[3], "… and 1 more processes");
        assert_eq!(table(&[], 2), "no process made a traced call\n");
    }
}
