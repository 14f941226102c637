//! Start and stop: a command that does nothing, run under each tool and timed from outside
//! (wall time; launch → the command's first instruction; the command's end → control back
//! to the caller), and the bystander cost of each way of attaching the call hooks.
use std::{
    fmt::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use workloads::spread::median_min_max;

/// Who runs the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Starter {
    Untraced,
    /// `profiler -- COMMAND` as a user types it (summary mode, hooks as detected).
    Profiler,
    /// The same with the per-call tracepoints instead of the raw tracepoint pair.
    ProfilerTracepoints,
    /// `bpftrace -e 'tracepoint:syscalls:sys_enter_read {}' -c COMMAND`.
    Bpftrace,
}

pub(super) const STARTERS: [Starter; 4] = [
    Starter::Untraced,
    Starter::Profiler,
    Starter::ProfilerTracepoints,
    Starter::Bpftrace,
];

/// The profiler's environment variable that picks the per-call tracepoints.
const HOOKS_ENV: (&str, &str) = ("IOPROF_SYSCALL_HOOKS", "tracepoints");

impl Starter {
    fn name(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Profiler => "`profiler -- COMMAND` (raw sys_enter/sys_exit)",
            Self::ProfilerTracepoints => "`profiler -- COMMAND`, per-call tracepoints",
            Self::Bpftrace => "`bpftrace -e 'tracepoint:syscalls:sys_enter_read {}' -c COMMAND`",
        }
    }
}

/// One timed start and stop, ms: (wall, launch → first instruction, end → control back).
pub(super) type Timing = (f64, f64, f64);

/// The command: prints CLOCK_REALTIME in ns as its last act.
const COMMAND: [&str; 2] = ["/bin/date", "+%s%N"];

fn epoch_ns(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_nanos() as f64)
}

/// Runs the command once under `s`.
pub(super) fn measure(profiler: &Path, s: Starter) -> anyhow::Result<Timing> {
    let mut c = match s {
        Starter::Untraced => {
            let mut c = Command::new(COMMAND[0]);
            c.args(&COMMAND[1..]);
            c
        }
        Starter::Profiler | Starter::ProfilerTracepoints => {
            let mut c = Command::new(profiler);
            c.arg("--").args(COMMAND);
            if s == Starter::ProfilerTracepoints {
                c.env(HOOKS_ENV.0, HOOKS_ENV.1);
            }
            c
        }
        Starter::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.args(["-e", "tracepoint:syscalls:sys_enter_read {}", "-c"])
                .arg(COMMAND.join(" "));
            c
        }
    };
    c.stdin(Stdio::null()).stderr(Stdio::null());
    let t0 = SystemTime::now();
    let out = c.output().with_context(|| format!("failed to run {c:?}"))?;
    let t1 = SystemTime::now();
    anyhow::ensure!(out.status.success(), "{c:?} failed ({})", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let printed: f64 = text
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 19 && l.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|l| l.parse().ok())
        .with_context(|| format!("the command's time is missing from:\n{text}"))?;
    let (t0, t1) = (epoch_ns(t0), epoch_ns(t1));
    Ok(((t1 - t0) / 1e6, (printed - t0) / 1e6, (t1 - printed) / 1e6))
}

/// The start-and-stop table: medians [min–max] of each starter's timings.
pub(super) fn render(md: &mut String, timings: &[(Starter, Vec<Timing>)]) {
    let _ = writeln!(md, "## Start and stop\n");
    let _ = writeln!(
        md,
        "`{}` run under each tool, interleaved, timed from outside: wall time; from the \
         tool's launch to the time the command prints; from then to control back \
         to the caller (for the profiler: its report printed and every hook released or \
         handed to a detached process that releases it). Targets: wall ≤ 300 ms, launch ≤ \
         150 ms, end → control back ≤ 100 ms.\n\n\
         | tool | wall ms | launch → command ms | command's end → back ms |\n|---|---|---|---|",
        COMMAND.join(" ")
    );
    for (s, t) in timings {
        let col = |f: fn(&Timing) -> f64| {
            median_min_max(t.iter().map(f).collect()).map_or("-".into(), |(m, lo, hi)| {
                format!("{m:.0} [{lo:.0}–{hi:.0}]")
            })
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            s.name(),
            col(|t| t.0),
            col(|t| t.1),
            col(|t| t.2)
        );
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_starter_with_medians() {
        let mut md = String::new();
        render(
            &mut md,
            &[
                (Starter::Untraced, vec![(2.0, 1.0, 1.0), (4.0, 3.0, 1.0)]),
                (Starter::Bpftrace, vec![(400.0, 300.0, 100.0)]),
            ],
        );
        assert!(
            md.contains("| untraced | 3 [2–4] | 2 [1–3] | 1 [1–1] |"),
            "{md}"
        );
        assert!(
            md.contains("| 400 [400–400] | 300 [300–300] | 100 [100–100] |"),
            "{md}"
        );
    }
}
