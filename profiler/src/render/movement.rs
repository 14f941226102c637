//! The data-movement tables: one run's (`--show movement`), runs side by side and the savings
//! of one method over another (`--compare`), and the signal lines.
use std::fmt::Write as _;

use probe_common::{SignalEvent, SignalRecord};

use crate::{
    analyze::movement::{Ends, Movement, PER_GIB_MIN_BYTES, mib_s, per_call, per_gib, signal_name},
    render::report::{fmt_bytes, fmt_ns},
};

/// The nonzero ends of `e`: `files 64.0 MiB, other 64.0 MiB`.
fn ends_text(e: &Ends) -> String {
    let parts: Vec<String> = [
        ("files", e.files),
        ("sockets", e.sockets),
        ("pipes", e.pipes),
        ("devices", e.other),
        ("io_uring", e.io_uring),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| format!("{name} {}", fmt_bytes(*n)))
    .collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// The report of one run.
pub fn report(m: &Movement) -> String {
    let mut out = String::new();
    // Per GiB where at least a MiB moved; per data-moving call otherwise.
    let (unit, gib): (&str, Box<dyn Fn(f64) -> f64>) = if m.bytes >= PER_GIB_MIN_BYTES {
        ("per GiB", Box::new(|v| per_gib(v, m.bytes).unwrap_or(0.0)))
    } else {
        ("per data-moving call", Box::new(|v| per_call(v, m)))
    };
    let _ = writeln!(
        out,
        "data moved: {} in {} data-moving calls; wall {}, transfer {}{}",
        fmt_bytes(m.bytes),
        m.data_calls,
        fmt_ns(m.wall_ns as f64),
        fmt_ns(m.span_ns as f64),
        mib_s(m.bytes, m.span_ns).map_or_else(String::new, |r| format!(" ({r:.0} MiB/s)"))
    );
    let _ = writeln!(
        out,
        "  from {}; to {}",
        ends_text(&m.from),
        ends_text(&m.to)
    );
    if let Some(cpu) = m.cpu {
        let _ = writeln!(
            out,
            "  CPU {unit}: user {}, system {}",
            fmt_ns(gib(cpu.user_ns as f64)),
            fmt_ns(gib(cpu.system_ns as f64))
        );
    }
    let _ = writeln!(
        out,
        "  {unit}: blocked {}, copy time {} (on-CPU time of the data-moving calls){}",
        fmt_ns(gib(m.blocked_ns as f64)),
        fmt_ns(gib(m.copy_oncpu_ns as f64)),
        if m.send_oncpu_ns > 0 {
            format!(", {} of it sending", fmt_ns(gib(m.send_oncpu_ns as f64)))
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  page faults {unit}: user {:.0}, kernel {:.0} (file pages {:.0}; {} of {} outside traced calls)",
        gib(m.faults_user as f64),
        gib(m.faults_kernel as f64),
        gib(m.file_faults as f64),
        m.faults_outside,
        m.faults_user + m.faults_kernel
    );
    let _ = writeln!(
        out,
        "  through user memory: {} read from files, {} written to sockets, {} received",
        fmt_bytes(m.user_reads),
        fmt_bytes(m.user_writes),
        fmt_bytes(m.user_receives)
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>7} {:>11} {:>11} {:>10} {:>10} {:>8} {:>8}",
        "call", "calls", "bytes", "to sockets", "on cpu", "blocked", "flt usr", "flt krn"
    );
    for c in &m.by_call {
        let _ = writeln!(
            out,
            "  {:<28} {:>7} {:>11} {:>11} {:>10} {:>10} {:>8} {:>8}",
            format!(
                "{}{}",
                c.label,
                if c.user_memory && c.bytes > 0 {
                    " (user mem)"
                } else {
                    ""
                }
            ),
            c.calls,
            fmt_bytes(c.bytes),
            fmt_bytes(c.sent_bytes),
            fmt_ns(c.oncpu_ns as f64),
            fmt_ns(c.blocked_ns as f64),
            c.faults_user,
            c.faults_kernel
        );
    }
    out
}

/// A row of the side-by-side table: its name and how a run fills its cell.
type Row = (&'static str, fn(&Movement) -> String);

/// A time per GiB moved, or `-` where it says nothing.
fn gib_ns(ns: Option<u64>, m: &Movement) -> String {
    ns.and_then(|v| per_gib(v as f64, m.bytes))
        .map_or("-".into(), fmt_ns)
}

/// Several runs side by side, one column each.
pub fn side_by_side(runs: &[Movement]) -> String {
    let mut out = String::new();
    let rows: [Row; 17] = [
        ("bytes moved", |m| fmt_bytes(m.bytes)),
        ("data-moving calls", |m| m.data_calls.to_string()),
        ("wall", |m| fmt_ns(m.wall_ns as f64)),
        ("transfer", |m| fmt_ns(m.span_ns as f64)),
        ("throughput MiB/s", |m| {
            mib_s(m.bytes, m.span_ns).map_or("-".into(), |r| format!("{r:.0}"))
        }),
        ("user CPU /GiB", |m| gib_ns(m.cpu.map(|c| c.user_ns), m)),
        ("system CPU /GiB", |m| gib_ns(m.cpu.map(|c| c.system_ns), m)),
        ("blocked /GiB", |m| gib_ns(Some(m.blocked_ns), m)),
        ("copy (on-CPU) /GiB", |m| gib_ns(Some(m.copy_oncpu_ns), m)),
        ("  sending side /GiB", |m| gib_ns(Some(m.send_oncpu_ns), m)),
        ("user faults /GiB", |m| {
            per_gib(m.faults_user as f64, m.bytes).map_or("-".into(), |v| format!("{v:.0}"))
        }),
        ("kernel faults /GiB", |m| {
            per_gib(m.faults_kernel as f64, m.bytes).map_or("-".into(), |v| format!("{v:.0}"))
        }),
        ("COW faults /GiB", |m| {
            per_gib(m.cow.cow_faults as f64, m.bytes).map_or("-".into(), |v| format!("{v:.0}"))
        }),
        ("COW pages copied /GiB", |m| {
            per_gib(m.cow.copies as f64, m.bytes).map_or("-".into(), |v| format!("{v:.0}"))
        }),
        ("COW fault time /GiB", |m| gib_ns(Some(m.cow.copy_ns), m)),
        ("read to user mem", |m| fmt_bytes(m.user_reads)),
        ("written from user mem", |m| fmt_bytes(m.user_writes)),
    ];
    let width = runs
        .iter()
        .map(|m| m.label.len())
        .max()
        .unwrap_or(0)
        .max(10);
    let _ = write!(out, "{:<22}", "");
    for m in runs {
        let _ = write!(out, " {:>width$}", m.label);
    }
    out.push('\n');
    for (name, f) in rows {
        let _ = write!(out, "{name:<22}");
        for m in runs {
            let _ = write!(out, " {:>width$}", f(m));
        }
        out.push('\n');
    }
    out
}

/// What `m` saves against `base`, per GiB moved, in one line.
pub fn savings(base: &Movement, m: &Movement) -> String {
    let gib = |v: u64, x: &Movement| per_gib(v as f64, x.bytes).unwrap_or(0.0);
    let user = |x: &Movement| gib(x.user_reads + x.user_writes, x);
    let pct = |a: f64, b: f64| {
        if a == 0.0 {
            "n/a".to_string()
        } else {
            format!("{:+.0}%", 100.0 * (b - a) / a)
        }
    };
    let sys = |x: &Movement| x.cpu.map_or(0.0, |c| gib(c.system_ns, x));
    let usr = |x: &Movement| x.cpu.map_or(0.0, |c| gib(c.user_ns, x));
    let copy = |x: &Movement| gib(x.send_oncpu_ns, x);
    let faults = |x: &Movement| gib(x.faults_user + x.faults_kernel, x);
    format!(
        "{} against {}: bytes through the sender's user memory per GiB {} → {}; system CPU {}, \
         user CPU {}, sending calls' on-CPU time {}, page faults {}; throughput {:.0} → {:.0} MiB/s",
        m.label,
        base.label,
        fmt_bytes(user(base) as u64),
        fmt_bytes(user(m) as u64),
        pct(sys(base), sys(m)),
        pct(usr(base), usr(m)),
        pct(copy(base), copy(m)),
        pct(faults(base), faults(m)),
        mib_s(base.bytes, base.span_ns).unwrap_or(0.0),
        mib_s(m.bytes, m.span_ns).unwrap_or(0.0)
    )
}

/// One line per signal event, with its time after `t0_ns`.
pub fn signal_lines(signals: &[SignalRecord], t0_ns: u64) -> String {
    let mut out = String::new();
    for s in signals {
        let at = fmt_ns(s.time_ns.saturating_sub(t0_ns) as f64);
        let name = signal_name(s.sig);
        if s.event == SignalEvent::Generate as u32 {
            let _ = writeln!(
                out,
                "  +{at:>9}  {name} sent to task {} by pid {} (code {}, result {})",
                s.tid, s.current_pid, s.code, s.result
            );
        } else {
            let _ = writeln!(
                out,
                "  +{at:>9}  {name} delivered to thread {} of pid {}",
                s.tid, s.pid
            );
        }
    }
    out
}
