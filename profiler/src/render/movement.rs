//! The data-movement tables: one run's (`--show movement`), runs side by side and the savings
//! of one method over another (`--compare`), and the signal lines.
use std::fmt::Write as _;

use probe_common::{SignalEvent, SignalRecord};

use crate::{
    analyze::movement::{Movement, mib_s, per_gib, signal_name},
    render::report::{fmt_bytes, fmt_ns},
};

/// The report of one run.
pub fn report(m: &Movement) -> String {
    let mut out = String::new();
    let gib = |v: f64| per_gib(v, m.bytes);
    let _ = writeln!(
        out,
        "data moved: {} in {} data-moving calls; wall {}, transfer {} ({:.0} MiB/s)",
        fmt_bytes(m.bytes),
        m.data_calls,
        fmt_ns(m.wall_ns as f64),
        fmt_ns(m.span_ns as f64),
        mib_s(m.bytes, m.span_ns)
    );
    if let Some(cpu) = m.cpu {
        let _ = writeln!(
            out,
            "  CPU per GiB: user {}, system {}",
            fmt_ns(gib(cpu.user_ns as f64)),
            fmt_ns(gib(cpu.system_ns as f64))
        );
    }
    let _ = writeln!(
        out,
        "  per GiB: blocked {}, copy time {} (on-CPU time of the data-moving calls), {} of it sending",
        fmt_ns(gib(m.blocked_ns as f64)),
        fmt_ns(gib(m.copy_oncpu_ns as f64)),
        fmt_ns(gib(m.send_oncpu_ns as f64)),
    );
    let _ = writeln!(
        out,
        "  page faults per GiB: user {:.0}, kernel {:.0} (file pages {:.0}; {} of {} outside traced calls)",
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

/// Several runs side by side, one column each.
pub fn side_by_side(runs: &[Movement]) -> String {
    let mut out = String::new();
    let rows: [Row; 14] = [
        ("bytes moved", |m| fmt_bytes(m.bytes)),
        ("data-moving calls", |m| m.data_calls.to_string()),
        ("wall", |m| fmt_ns(m.wall_ns as f64)),
        ("transfer", |m| fmt_ns(m.span_ns as f64)),
        ("throughput MiB/s", |m| {
            format!("{:.0}", mib_s(m.bytes, m.span_ns))
        }),
        ("user CPU /GiB", |m| {
            m.cpu
                .map_or("-".into(), |c| fmt_ns(per_gib(c.user_ns as f64, m.bytes)))
        }),
        ("system CPU /GiB", |m| {
            m.cpu
                .map_or("-".into(), |c| fmt_ns(per_gib(c.system_ns as f64, m.bytes)))
        }),
        ("blocked /GiB", |m| {
            fmt_ns(per_gib(m.blocked_ns as f64, m.bytes))
        }),
        ("copy (on-CPU) /GiB", |m| {
            fmt_ns(per_gib(m.copy_oncpu_ns as f64, m.bytes))
        }),
        ("  sending side /GiB", |m| {
            fmt_ns(per_gib(m.send_oncpu_ns as f64, m.bytes))
        }),
        ("user faults /GiB", |m| {
            format!("{:.0}", per_gib(m.faults_user as f64, m.bytes))
        }),
        ("kernel faults /GiB", |m| {
            format!("{:.0}", per_gib(m.faults_kernel as f64, m.bytes))
        }),
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
    let user = |x: &Movement| per_gib((x.user_reads + x.user_writes) as f64, x.bytes);
    let pct = |a: f64, b: f64| {
        if a == 0.0 {
            "n/a".to_string()
        } else {
            format!("{:+.0}%", 100.0 * (b - a) / a)
        }
    };
    let sys = |x: &Movement| x.cpu.map_or(0.0, |c| per_gib(c.system_ns as f64, x.bytes));
    let usr = |x: &Movement| x.cpu.map_or(0.0, |c| per_gib(c.user_ns as f64, x.bytes));
    let copy = |x: &Movement| per_gib(x.send_oncpu_ns as f64, x.bytes);
    let faults = |x: &Movement| per_gib((x.faults_user + x.faults_kernel) as f64, x.bytes);
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
        mib_s(base.bytes, base.span_ns),
        mib_s(m.bytes, m.span_ns)
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
