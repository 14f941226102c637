//! The data-movement report of a run: how many bytes moved and by which calls, what it cost in
//! CPU, sleep and page faults, which bytes passed through user memory; the signals of the run;
//! and several runs side by side. Pure: built from records and numbers, no I/O, no BPF.
use std::{collections::BTreeMap, fmt::Write as _};

use probe_common::{Counter, SignalEvent, SignalRecord};
use serde::{Deserialize, Serialize};

use crate::{
    fdkind::FdKind,
    report::{fmt_bytes, fmt_ns},
    session::counter,
    syscalls::Role,
    traced::TracedCall,
};

/// What the calls of one label (`read file`, `sendfile64 file→socket` …) did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallCost {
    /// Call name and descriptor kinds.
    pub label: String,
    /// Whether the bytes pass through the process's memory (a read into it or a write from it).
    pub user_memory: bool,
    /// Number of calls.
    pub calls: u64,
    /// Bytes the calls returned.
    pub bytes: u64,
    /// Bytes the calls handed to sockets.
    pub sent_bytes: u64,
    /// Time on CPU inside the calls.
    pub oncpu_ns: u64,
    /// Time asleep inside the calls.
    pub blocked_ns: u64,
    /// User-mode page faults inside the calls.
    pub faults_user: u64,
    /// Kernel-mode page faults inside the calls.
    pub faults_kernel: u64,
}

/// CPU time of the traced program, from the kernel's accounting of the finished process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// User-mode CPU time.
    pub user_ns: u64,
    /// Kernel-mode CPU time.
    pub system_ns: u64,
}

/// The data movement of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Movement {
    /// What ran (`splice`, a command, a pid).
    pub label: String,
    /// Bytes that reached their destination: handed to sockets, or moved file to file in the
    /// kernel.
    pub bytes: u64,
    /// Calls that moved data (returned bytes, or handed bytes to a socket).
    pub data_calls: u64,
    /// Wall time of the run.
    pub wall_ns: u64,
    /// First data-moving call's entry to the last one's exit.
    pub span_ns: u64,
    /// CPU time of the program, when it was started by the profiler and has ended.
    pub cpu: Option<Cpu>,
    /// Time asleep inside traced calls.
    pub blocked_ns: u64,
    /// On-CPU time of the data-moving calls: the copy time where no CPU sampling is done (an
    /// upper bound: it holds the calls' other kernel work too).
    pub copy_oncpu_ns: u64,
    /// The part of `copy_oncpu_ns` spent on the sending side (every data-moving call but
    /// receives from sockets).
    #[serde(default)]
    pub send_oncpu_ns: u64,
    /// User-mode page faults, all, and outside traced calls.
    pub faults_user: u64,
    /// Kernel-mode page faults, all.
    pub faults_kernel: u64,
    /// Faults on file pages, all.
    pub file_faults: u64,
    /// Page faults (both modes) outside traced calls.
    pub faults_outside: u64,
    /// Bytes read from files into user memory (`read`, `pread64` …).
    pub user_reads: u64,
    /// Bytes written from user memory to sockets (`write`, `sendto` …).
    pub user_writes: u64,
    /// Bytes received from sockets into user memory (the receiving side).
    pub user_receives: u64,
    /// Per call label.
    pub by_call: Vec<CallCost>,
    /// Write faults and copy-on-write of the run.
    #[serde(default)]
    pub cow: crate::cow::CowTotals,
}

fn moved(c: &TracedCall) -> bool {
    c.stages.bytes > 0 || c.rec.sent_bytes > 0
}

fn oncpu(c: &TracedCall) -> u64 {
    c.stages
        .total_ns
        .saturating_sub(c.stages.blocked_ns + c.stages.runq_ns)
}

/// The data movement of a run from its calls and counters.
pub fn summarize(
    label: &str,
    calls: &[TracedCall],
    counters: &[u64],
    wall_ns: u64,
    cpu: Option<Cpu>,
) -> Movement {
    let mut m = Movement {
        label: label.into(),
        wall_ns,
        cpu,
        faults_user: counter(counters, Counter::FaultsUser),
        faults_kernel: counter(counters, Counter::FaultsKernel),
        file_faults: counter(counters, Counter::FileFaults),
        faults_outside: counter(counters, Counter::FaultsUserOutside)
            + counter(counters, Counter::FaultsKernelOutside),
        bytes: counter(counters, Counter::SentBytes),
        cow: crate::cow::CowTotals::from_counters(counters),
        ..Movement::default()
    };
    let mut groups: BTreeMap<String, CallCost> = BTreeMap::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    for c in calls {
        let role = c.call.map(|k| k.role);
        m.blocked_ns += c.stages.blocked_ns;
        let g = groups.entry(c.label()).or_insert_with(|| CallCost {
            label: c.label(),
            user_memory: matches!(role, Some(Role::Receive | Role::Send)),
            ..CallCost::default()
        });
        g.calls += 1;
        g.bytes += c.stages.bytes;
        g.sent_bytes += c.rec.sent_bytes;
        g.oncpu_ns += oncpu(c);
        g.blocked_ns += c.stages.blocked_ns;
        g.faults_user += u64::from(c.rec.faults_user);
        g.faults_kernel += u64::from(c.rec.faults_kernel);
        if !moved(c) {
            continue;
        }
        m.data_calls += 1;
        m.copy_oncpu_ns += oncpu(c);
        first = first.min(c.rec.start_ns);
        last = last.max(c.rec.end_ns);
        if !(role == Some(Role::Receive) && c.fd_kind == FdKind::Socket) {
            m.send_oncpu_ns += oncpu(c);
        }
        match (role, c.fd_kind, c.fd_out_kind) {
            (Some(Role::Receive), FdKind::File, _) => m.user_reads += c.stages.bytes,
            (Some(Role::Receive), FdKind::Socket, _) => m.user_receives += c.stages.bytes,
            (Some(Role::Send), FdKind::Socket, _) => m.user_writes += c.stages.bytes,
            (Some(Role::Transfer), _, FdKind::File) => m.bytes += c.stages.bytes,
            _ => {}
        }
    }
    m.span_ns = last.saturating_sub(first);
    m.by_call = groups.into_values().collect();
    m
}

fn per_gib(v: f64, bytes: u64) -> f64 {
    if bytes == 0 {
        0.0
    } else {
        v * (1u64 << 30) as f64 / bytes as f64
    }
}

fn mib_s(bytes: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        bytes as f64 / (1 << 20) as f64 / (ns as f64 / 1e9)
    }
}

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
    let rows: [Row; 17] = [
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
        ("COW faults /GiB", |m| {
            format!("{:.0}", per_gib(m.cow.cow_faults as f64, m.bytes))
        }),
        ("COW pages copied /GiB", |m| {
            format!("{:.0}", per_gib(m.cow.copies as f64, m.bytes))
        }),
        ("COW fault time /GiB", |m| {
            fmt_ns(per_gib(m.cow.copy_ns as f64, m.bytes))
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

/// A signal's name: `SIGBUS`, `SIGRTMIN+1`, or its number.
pub fn signal_name(sig: i32) -> String {
    let rtmin = libc::SIGRTMIN();
    if (rtmin..=libc::SIGRTMAX()).contains(&sig) {
        return format!("SIGRTMIN+{}", sig - rtmin);
    }
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::{CallRecord, RecordKind};

    fn call(nr: i64, args: [u64; 3], ret: i64, start: u64, end: u64) -> CallRecord {
        CallRecord {
            kind: RecordKind::Call as u32,
            nr: nr as u32,
            args,
            ret,
            start_ns: start,
            end_ns: end,
            ..Default::default()
        }
    }

    fn kinds(_pid: u32, fd: i64) -> FdKind {
        match fd {
            3 => FdKind::File,
            4 => FdKind::Socket,
            5 => FdKind::Pipe,
            _ => FdKind::Other,
        }
    }

    #[test]
    fn read_write_counts_both_user_memory_legs() {
        let mut w = call(libc::SYS_write, [4, 0, 0], 100, 20, 40);
        w.sent_bytes = 100;
        w.faults_kernel = 2;
        let mut counters = vec![0; 64];
        counters[Counter::SentBytes as usize] = 100;
        counters[Counter::FaultsKernel as usize] = 2;
        let calls = [
            TracedCall::new(call(libc::SYS_read, [3, 0, 0], 100, 0, 10), kinds),
            TracedCall::new(w, kinds),
            TracedCall::new(call(libc::SYS_mmap, [0, 0, 0], 0x7f00_0000, 50, 60), kinds),
        ];
        let m = summarize("read-write", &calls, &counters, 1_000, None);
        assert_eq!((m.bytes, m.data_calls), (100, 2));
        assert_eq!((m.user_reads, m.user_writes), (100, 100));
        assert_eq!((m.span_ns, m.copy_oncpu_ns, m.send_oncpu_ns), (40, 30, 30));
        assert_eq!(m.faults_kernel, 2);
        let w = m.by_call.iter().find(|c| c.label == "write socket");
        assert_eq!(w.map(|c| (c.faults_kernel, c.user_memory)), Some((2, true)));
        // An mmap's address is not bytes.
        let mm = m.by_call.iter().find(|c| c.label == "mmap");
        assert_eq!(mm.map(|c| c.bytes), Some(0));
        let text = report(&m);
        assert!(
            text.contains("100 B read from files, 100 B written to sockets"),
            "{text}"
        );
    }

    #[test]
    fn sendfile_and_copy_file_range_move_bytes_in_the_kernel() {
        let mut s = call(libc::SYS_sendfile, [4, 3, 0], 4096, 0, 10);
        s.sent_bytes = 4096;
        let c = call(libc::SYS_copy_file_range, [3, 0, 6], 8192, 20, 30);
        let mut counters = vec![0; 64];
        counters[Counter::SentBytes as usize] = 4096;
        let calls = [
            TracedCall::new(s, kinds),
            TracedCall::new(c, |p, fd| if fd == 6 { FdKind::File } else { kinds(p, fd) }),
        ];
        let m = summarize("x", &calls, &counters, 100, Some(Cpu::default()));
        assert_eq!(m.bytes, 4096 + 8192);
        assert_eq!((m.user_reads, m.user_writes), (0, 0));
        let table = side_by_side(&[
            m.clone(),
            Movement {
                label: "other".into(),
                ..m
            },
        ]);
        assert!(
            table.contains("bytes moved") && table.contains("other"),
            "{table}"
        );
        assert_eq!(table.lines().count(), 18);
        let base = Movement {
            label: "read-write".into(),
            bytes: 1 << 30,
            user_reads: 1 << 30,
            user_writes: 1 << 30,
            send_oncpu_ns: 1_000,
            span_ns: 1_000_000_000,
            ..Movement::default()
        };
        let better = Movement {
            label: "splice".into(),
            bytes: 1 << 30,
            send_oncpu_ns: 250,
            span_ns: 500_000_000,
            ..Movement::default()
        };
        let line = savings(&base, &better);
        assert!(line.contains("per GiB 2.0 GiB → 0 B"), "{line}");
        assert!(line.contains("sending calls' on-CPU time -75%"), "{line}");
        assert!(line.contains("1024 → 2048 MiB/s"), "{line}");
    }

    #[test]
    fn signals_are_named_and_timed() {
        assert_eq!(signal_name(libc::SIGBUS), "SIGBUS");
        assert_eq!(signal_name(libc::SIGRTMIN() + 1), "SIGRTMIN+1");
        let s = SignalRecord {
            kind: RecordKind::Signal as u32,
            event: SignalEvent::Deliver as u32,
            pid: 9,
            tid: 10,
            sig: libc::SIGBUS,
            time_ns: 2_500_000,
            ..Default::default()
        };
        let text = signal_lines(&[s], 1_000_000);
        assert!(
            text.contains("1.50ms  SIGBUS delivered to thread 10 of pid 9"),
            "{text}"
        );
    }
}
