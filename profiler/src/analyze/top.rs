//! System-wide view: the kernel's summaries per process and call folded into one row per
//! process (calls, bytes, wait, copy) with the I/O model its call mix shows, busiest first.
//! Pure: summaries and names in, rows out.
use std::collections::{BTreeMap, HashMap};

use probe_common::CallSummary;
use serde::Serialize;

use crate::{
    analyze::summary::{self, Summaries},
    syscalls::{self, Role},
};

/// One process's I/O calls over the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessIo {
    /// Process id.
    pub pid: u32,
    /// Command name (`?` when it ended before it could be read).
    pub comm: String,
    /// The model its calls show, when the call mix tells (`multiplexing`, `asynchronous`,
    /// `blocking`), else `None`.
    pub model: Option<&'static str>,
    /// Sums over its calls.
    #[serde(skip)]
    pub sums: CallSummary,
    /// Calls.
    pub calls: u64,
    /// Bytes the calls moved.
    pub bytes: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Time waiting for data, ns.
    pub wait_ns: u64,
    /// Time copying, ns.
    pub copy_ns: u64,
}

/// The model a process's call mix shows, from its sums per call: a readiness wait makes it
/// multiplexing, io_uring asynchronous, receives that slept and never failed blocking;
/// anything else needs the per-call analysis.
pub fn model_of<'a>(
    calls: impl IntoIterator<Item = (u32, &'a CallSummary)>,
) -> Option<&'static str> {
    let mut multiplex = false;
    let mut uring = false;
    let mut receive = CallSummary::default();
    for (nr, s) in calls {
        match syscalls::by_nr(nr) {
            Some(c) if c.role == Role::Multiplex => multiplex |= s.calls > 0,
            Some(c) if c.name == "io_uring_enter" => uring |= s.calls > 0,
            Some(c) if c.role == Role::Receive => summary::merge(&mut receive, s),
            _ => {}
        }
    }
    if multiplex {
        Some("multiplexing")
    } else if uring {
        Some("asynchronous")
    } else if receive.calls > 0 && receive.errors == 0 && receive.wait_blocked_ns > 0 {
        Some("blocking")
    } else {
        None
    }
}

/// One row per process, the longest wait plus copy first.
pub fn by_process(sums: &Summaries, names: &HashMap<u32, String>) -> Vec<ProcessIo> {
    let mut per: BTreeMap<u32, Vec<(u32, &CallSummary)>> = BTreeMap::new();
    for (k, v) in sums {
        per.entry(k.pid).or_default().push((k.nr, v));
    }
    let mut rows: Vec<ProcessIo> = per
        .into_iter()
        .map(|(pid, calls)| {
            let mut s = CallSummary::default();
            for (_, c) in &calls {
                summary::merge(&mut s, c);
            }
            ProcessIo {
                pid,
                comm: names.get(&pid).cloned().unwrap_or_else(|| "?".into()),
                model: model_of(calls.iter().copied()),
                calls: s.calls,
                bytes: s.bytes,
                errors: s.errors,
                wait_ns: s.wait_ns,
                copy_ns: s.copy_ns,
                sums: s,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.wait_ns + b.copy_ns)
            .cmp(&(a.wait_ns + a.copy_ns))
            .then(a.pid.cmp(&b.pid))
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::SummaryKey;

    fn sum(calls: u64, wait: u64, copy: u64, blocked: u64, errors: u64) -> CallSummary {
        CallSummary {
            calls,
            wait_ns: wait,
            copy_ns: copy,
            wait_blocked_ns: blocked,
            errors,
            ..CallSummary::default()
        }
    }

    #[test]
    fn rows_fold_calls_per_process_busiest_first_with_their_model() {
        let key = |pid, nr: i64| SummaryKey {
            pid,
            nr: nr as u32,
            fd_class: 0,
        };
        let mut sums = Summaries::new();
        sums.insert(key(10, libc::SYS_recvfrom), sum(5, 500, 50, 400, 0));
        sums.insert(key(10, libc::SYS_sendto), sum(5, 0, 100, 0, 0));
        sums.insert(key(20, libc::SYS_epoll_wait), sum(3, 9000, 0, 9000, 0));
        sums.insert(key(20, libc::SYS_recvfrom), sum(3, 0, 30, 0, 3));
        sums.insert(key(30, libc::SYS_read), sum(1, 1, 1, 0, 1));
        let names = HashMap::from([(10, "client".to_string()), (20, "nginx".to_string())]);
        let rows = by_process(&sums, &names);
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.pid,
                    r.comm.as_str(),
                    r.calls,
                    r.wait_ns,
                    r.copy_ns,
                    r.model,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (20, "nginx", 6, 9000, 30, Some("multiplexing")),
                (10, "client", 10, 500, 150, Some("blocking")),
                (30, "?", 1, 1, 1, None),
            ]
        );
        assert_eq!(rows[0].errors, 3);
    }
}
