//! The terminal report: one screen by default (what was traced, each thread's model, the
//! calls that carry the I/O time, the data moved, warnings, the cost line); details on
//! request (`--show`, `-v`).
use std::{collections::BTreeMap, fmt::Write as _};

use crate::{
    analyze::findings::{CallKind, Findings, Thread},
    render::report::{fmt_bytes, fmt_ns},
};

/// Threads listed one by one before the rest are counted per model.
const THREAD_LINES: usize = 6;
/// Call kinds listed before the rest fold into "other calls".
const CALL_LINES: usize = 8;
/// Calls under this share of the time that moved no data fold into "other calls".
const FOLD_SHARE: f64 = 0.01;
/// Bytes under which per-GiB figures and throughput mean nothing.
pub const MIN_BYTES_FOR_RATES: u64 = 1 << 20;

/// `nginx (pid 1234)`, `cat (pid 9)`, `2 processes (pid 1,2)`.
pub fn what(f: &Findings) -> String {
    let pids: Vec<String> = f.traced.pids.iter().map(u32::to_string).collect();
    let name = |pid: u32| {
        f.processes
            .iter()
            .find(|p| p.pid == pid)
            .map_or("?", |p| p.comm.as_str())
            .to_string()
    };
    match f.traced.pids.as_slice() {
        [] if f.traced.command.is_empty() => format!(
            "every process but the profiler ({} seen)",
            f.processes.len()
        ),
        [one] => format!("{} (pid {one})", name(*one)),
        _ => format!("{} processes (pid {})", f.traced.pids.len(), pids.join(",")),
    }
}

/// The headline and the records line.
fn head(f: &Findings, out: &mut String) {
    let _ = writeln!(
        out,
        "Traced {} for {}: {} calls, {} mode; {}",
        what(f),
        fmt_ns(f.traced.wall_ns as f64),
        f.records.calls,
        match f.traced.mode {
            crate::plan::Mode::PerCall => "per-call",
            crate::plan::Mode::Summary => "summary",
            crate::plan::Mode::Both => "per-call and summary",
            crate::plan::Mode::Floor => "floor",
        },
        f.traced.end
    );
    let r = &f.records;
    let _ = writeln!(
        out,
        "{} calls in {:.2}s; records sent {}, lost {}{}",
        r.calls,
        f.traced.wall_ns as f64 / 1e9,
        r.sent,
        r.lost,
        if r.undecodable > 0 {
            format!(", undecodable {}", r.undecodable)
        } else {
            String::new()
        }
    );
}

fn thread_line(t: &Thread) -> String {
    format!(
        "  {} {}/{}: {} — {}",
        t.comm, t.pid, t.tid, t.model, t.evidence
    )
}

/// Threads: each one when few, else the first ones and a count per model.
fn threads(f: &Findings, all: bool, out: &mut String) {
    if f.threads.is_empty() {
        return;
    }
    let _ = writeln!(out, "threads (I/O model — evidence):");
    let shown = if all { f.threads.len() } else { THREAD_LINES };
    for t in f.threads.iter().take(shown) {
        let _ = writeln!(out, "{}", thread_line(t));
    }
    let rest = &f.threads[shown.min(f.threads.len())..];
    if !rest.is_empty() {
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for t in rest {
            *per.entry(t.model).or_default() += 1;
        }
        let words: Vec<String> = per.iter().map(|(m, n)| format!("{n} {m}")).collect();
        let _ = writeln!(
            out,
            "  … {} more threads: {} (--show threads lists them)",
            rest.len(),
            words.join(", ")
        );
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// One call kind: calls, bytes, time and share, then wait (and how much of it asleep), copy
/// (`*`: the time on CPU, no copy marker) and run-queue time when it counts. A call that maps
/// memory waits for no data and copies none: its time is not split.
fn call_line(c: &CallKind) -> String {
    let head = format!(
        "  {:<24} {:>7} calls {:>10} {:>9} {:>4.0}%",
        c.label,
        c.calls,
        fmt_bytes(c.bytes),
        fmt_ns(c.total_ns as f64),
        100.0 * c.share,
    );
    let maps_memory = c
        .label
        .split_whitespace()
        .next()
        .and_then(crate::syscalls::by_name)
        .is_some_and(|call| call.role == crate::syscalls::Role::Memory);
    if maps_memory {
        return format!("{head}  (maps memory: moves no data)");
    }
    let mut line = format!("{head}  wait {:>9}", fmt_ns(c.wait_ns as f64));
    if c.wait_ns > 0 {
        let _ = write!(line, " ({:.0}% asleep)", pct(c.wait_blocked_ns, c.wait_ns));
    }
    let _ = write!(
        line,
        "  copy {}{}",
        fmt_ns(c.copy_ns as f64),
        if c.marker_calls == 0 && c.data_calls > 0 {
            "*"
        } else {
            ""
        }
    );
    if c.runq_ns * 100 >= c.total_ns.max(1) {
        let _ = write!(line, "  run queue {}", fmt_ns(c.runq_ns as f64));
    }
    line
}

/// Calls: the ones that carry the I/O time, with wait and copy; the rest in one line.
fn calls(f: &Findings, out: &mut String) {
    if f.calls.is_empty() {
        let _ = writeln!(out, "no traced calls");
        return;
    }
    let (mut main, mut other): (Vec<&CallKind>, Vec<&CallKind>) = (Vec::new(), Vec::new());
    for c in &f.calls {
        if main.len() < CALL_LINES && (c.bytes > 0 || c.share >= FOLD_SHARE) {
            main.push(c);
        } else {
            other.push(c);
        }
    }
    let _ = writeln!(
        out,
        "I/O time by call (time inside the calls, share; wait for data, part asleep; copy; * = time on CPU):"
    );
    for c in &main {
        let _ = writeln!(out, "{}", call_line(c));
    }
    if !other.is_empty() {
        let n: u64 = other.iter().map(|c| c.calls).sum();
        let t: u64 = other.iter().map(|c| c.total_ns).sum();
        let names: Vec<&str> = other
            .iter()
            .take(4)
            .map(|c| c.label.split(' ').next().unwrap_or(""))
            .collect();
        let _ = writeln!(
            out,
            "  other calls: {n} calls of {} kind{} ({}{}), {} in all",
            other.len(),
            if other.len() == 1 { "" } else { "s" },
            names.join(", "),
            if other.len() > 4 { ", …" } else { "" },
            fmt_ns(t as f64)
        );
    }
}

/// The data moved, and where it passed through user memory.
fn data(f: &Findings, out: &mut String) {
    let d = &f.data;
    let Some(m) = &d.movement else {
        let _ = writeln!(
            out,
            "data: {} returned by {} calls",
            fmt_bytes(d.bytes_moved),
            d.data_calls
        );
        return;
    };
    let rate = if m.bytes >= MIN_BYTES_FOR_RATES && m.span_ns > 0 {
        format!(
            ", {:.0} MiB/s over {}",
            m.bytes as f64 / (1 << 20) as f64 / (m.span_ns as f64 / 1e9),
            fmt_ns(m.span_ns as f64)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "data moved: {} in {} calls{rate}",
        fmt_bytes(d.bytes_moved),
        d.data_calls
    );
    let _ = writeln!(
        out,
        "  through user memory: {} read from files, {} written to sockets, {} received",
        fmt_bytes(m.user_reads),
        fmt_bytes(m.user_writes),
        fmt_bytes(m.user_receives)
    );
}

fn warnings(f: &Findings, out: &mut String) {
    for w in &f.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
}

/// The default report (the cost line is added by the caller, last).
pub fn summary(f: &Findings, all_threads: bool) -> String {
    let mut out = String::new();
    head(f, &mut out);
    threads(f, all_threads, &mut out);
    calls(f, &mut out);
    data(f, &mut out);
    warnings(f, &mut out);
    out
}

/// The hook list.
pub fn hooks(f: &Findings) -> String {
    let mut out = String::from("hooks:\n");
    for h in &f.hooks {
        let _ = match &h.error {
            None => writeln!(out, "  {}", h.name),
            Some(e) => writeln!(out, "  {} (unavailable: {e}; {})", h.name, h.without),
        };
    }
    out
}

/// Every record that is not a call, so that calls + these = records read.
pub fn other_events(r: &crate::capture::session::RunResult) -> String {
    use crate::capture::decode::Record;
    let count = |f: fn(&Record) -> bool| r.events.iter().filter(|e| f(e)).count();
    let signals = count(|e| matches!(e, Record::Signal(_)));
    let copies = count(|e| matches!(e, Record::Copy(_)));
    let sockets = count(|e| matches!(e, Record::Sock(_)));
    let rings = count(|e| matches!(e, Record::Uring(_)));
    let procs = r.procs.len() + r.events.len() - signals - copies - sockets - rings;
    let samples = r.samples.records.len();
    if procs + signals + copies + sockets + rings + samples == 0 {
        return String::new();
    }
    format!(
        "other events: {signals} signal events, {copies} copies outside traced calls, \
         {sockets} socket events, {rings} io_uring events, {procs} process events, \
         {samples} CPU samples\n"
    )
}

/// The signals delivered, time after the first traced event.
pub fn signals(
    calls: &[crate::capture::traced::TracedCall],
    events: &[crate::capture::decode::Record],
) -> String {
    let signals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            crate::capture::decode::Record::Signal(s) => Some(*s),
            _ => None,
        })
        .collect();
    if signals.is_empty() {
        return String::new();
    }
    let t0 = calls
        .iter()
        .map(|c| c.rec.start_ns)
        .chain(signals.iter().map(|s| s.time_ns))
        .min()
        .unwrap_or(0);
    format!(
        "signals (time after the first traced event):\n{}",
        crate::render::movement::signal_lines(&signals, t0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::findings::{Data, Process, Records, Traced};

    fn kind(label: &str, bytes: u64, total_ns: u64, share: f64) -> CallKind {
        CallKind {
            label: label.into(),
            calls: 10,
            data_calls: u64::from(bytes > 0) * 10,
            bytes,
            total_ns,
            wait_ns: total_ns / 2,
            wait_blocked_ns: total_ns / 2,
            copy_ns: total_ns / 2,
            share,
            ..CallKind::default()
        }
    }

    #[test]
    fn a_mapping_call_has_no_wait_or_copy() {
        let line = call_line(&kind("mmap", 0, 1_000, 0.1));
        assert!(line.contains("maps memory"), "{line}");
        assert!(!line.contains("wait") && !line.contains("copy"), "{line}");
        let line = call_line(&kind("read file", 100, 1_000, 0.1));
        assert!(line.contains("wait") && line.contains("copy"), "{line}");
    }

    fn thread(tid: u32, model: &'static str) -> Thread {
        Thread {
            pid: 7,
            tid,
            comm: "srv".into(),
            model,
            evidence: "3 data reads (3 slept)".into(),
            counts: Default::default(),
        }
    }

    fn findings(threads: Vec<Thread>, calls: Vec<CallKind>) -> Findings {
        Findings {
            traced: Traced {
                label: "srv".into(),
                command: vec![],
                pids: vec![7],
                wall_ns: 2_000_000_000,
                mode: crate::plan::Mode::PerCall,
                bounded: false,
                end: "interrupted".into(),
            },
            processes: vec![Process {
                pid: 7,
                comm: "srv".into(),
                threads: threads.len(),
            }],
            threads,
            calls,
            data: Data::default(),
            records: Records::default(),
            hooks: vec![],
            warnings: vec!["1 records were lost".into()],
            cow: vec![],
            kernel_diagnostics: vec![],
            verdicts: vec![],
            messages: vec![],
        }
    }

    #[test]
    fn calls_without_data_under_one_percent_fold_into_one_line() {
        let f = findings(
            vec![thread(7, "blocking")],
            vec![
                kind("recvfrom socket", 4096, 9_000, 0.90),
                kind("mmap", 0, 500, 0.005),
                kind("read file", 10, 400, 0.004),
                kind("munmap", 0, 100, 0.001),
            ],
        );
        let text = summary(&f, false);
        assert!(text.starts_with("Traced srv (pid 7) for 2.00s"), "{text}");
        assert!(text.contains("recvfrom socket"), "{text}");
        assert!(text.contains("read file"), "a data call stays: {text}");
        assert!(
            text.contains("other calls: 20 calls of 2 kinds (mmap, munmap)"),
            "{text}"
        );
        assert!(text.contains("srv 7/7: blocking — 3 data reads"), "{text}");
        assert!(text.contains("warning: 1 records were lost"), "{text}");
    }

    #[test]
    fn many_threads_are_counted_per_model() {
        let threads: Vec<Thread> = (0..20)
            .map(|i| {
                thread(
                    100 + i,
                    if i % 2 == 0 {
                        "multiplexing"
                    } else {
                        "no-input"
                    },
                )
            })
            .collect();
        let f = findings(threads, vec![kind("epoll_wait", 0, 100, 1.0)]);
        let short = summary(&f, false);
        assert!(
            short.contains("… 14 more threads: 7 multiplexing, 7 no-input"),
            "{short}"
        );
        assert!(short.lines().count() < 25, "{short}");
        let all = summary(&f, true);
        assert_eq!(all.matches(" — 3 data reads").count(), 20, "{all}");
    }
}
