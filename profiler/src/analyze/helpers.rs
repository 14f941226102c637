//! Finds helper threads: a thread whose reads, one after another, end just before another
//! thread of its process is told something (its multiplexer returns ready, or a signal reaches
//! it). The C library's aio thread and tokio's blocking pool read for a waiting thread this
//! way. Pure: calls and events in, helpers out.
use std::collections::{BTreeMap, BTreeSet};

use probe_common::SignalEvent;

use crate::{
    capture::{decode::Record, traced::TracedCall},
    syscalls::Role,
};

/// How soon after a helper's read the helped thread must be told, ns.
pub const TELL_WITHIN_NS: u64 = 1_000_000;

/// Reads a thread must have made, at least, to be called a helper.
const MIN_READS: u64 = 2;

/// A thread that read for another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Helper {
    /// Process.
    pub pid: u32,
    /// The helper thread.
    pub tid: u32,
    /// The thread it read for.
    pub helped: u32,
    /// Its reads that returned data.
    pub reads: u64,
    /// Of those, the ones after which the helped thread was told within
    /// [`TELL_WITHIN_NS`].
    pub told: u64,
    /// Bytes those reads returned.
    pub bytes: u64,
}

/// The helper threads of a run: a thread is one when at least half of its data reads (and at
/// least two) are followed, within [`TELL_WITHIN_NS`], by a ready multiplexer return or a
/// signal delivery on one same other thread, and it does not wait in a multiplexer itself.
pub fn helpers(calls: &[TracedCall], events: &[Record]) -> Vec<Helper> {
    // Per process: (time, tid) of every moment a thread was told something.
    let mut tells: BTreeMap<u32, Vec<(u64, u32)>> = BTreeMap::new();
    // Threads that wait in a multiplexer themselves.
    let mut waiters: BTreeSet<(u32, u32)> = BTreeSet::new();
    for c in calls {
        if c.call.is_some_and(|k| k.role == Role::Multiplex) && c.rec.ret > 0 {
            tells
                .entry(c.rec.pid)
                .or_default()
                .push((c.rec.end_ns, c.rec.tid));
            waiters.insert((c.rec.pid, c.rec.tid));
        }
    }
    for e in events {
        if let Record::Signal(s) = e
            && s.event == SignalEvent::Deliver as u32
        {
            tells.entry(s.pid).or_default().push((s.time_ns, s.tid));
        }
    }
    for t in tells.values_mut() {
        t.sort_unstable();
    }
    // (pid, helper) → (reads, bytes, helped tid → times told).
    type Tally = (u64, u64, BTreeMap<u32, u64>);
    let mut tally: BTreeMap<(u32, u32), Tally> = BTreeMap::new();
    for c in calls {
        let r = &c.rec;
        if c.call.is_none_or(|k| k.role != Role::Receive) || r.ret <= 0 {
            continue;
        }
        if waiters.contains(&(r.pid, r.tid)) {
            continue;
        }
        let t = tally.entry((r.pid, r.tid)).or_default();
        t.0 += 1;
        t.1 += r.ret as u64;
        let Some(list) = tells.get(&r.pid) else {
            continue;
        };
        let from = list.partition_point(|e| e.0 < r.end_ns);
        if let Some(&(_, tid)) = list[from..]
            .iter()
            .take_while(|e| e.0 <= r.end_ns + TELL_WITHIN_NS)
            .find(|e| e.1 != r.tid)
        {
            *t.2.entry(tid).or_default() += 1;
        }
    }
    tally
        .into_iter()
        .filter_map(|((pid, tid), (reads, bytes, told))| {
            let (helped, n) = told.into_iter().max_by_key(|(_, n)| *n)?;
            (reads >= MIN_READS && n * 2 >= reads).then_some(Helper {
                pid,
                tid,
                helped,
                reads,
                told: n,
                bytes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fdkind::FdKind;
    use probe_common::CallRecord;

    const PID: u32 = 10;

    fn call(tid: u32, nr: i64, start: u64, end: u64, ret: i64) -> TracedCall {
        TracedCall::new(
            CallRecord {
                pid: PID,
                tid,
                nr: nr as u32,
                args: [3, 0, 0],
                ret,
                start_ns: start,
                end_ns: end,
                ..Default::default()
            },
            |_, _| FdKind::File,
        )
    }

    #[test]
    fn reads_that_wake_a_multiplexer_make_a_helper() {
        let (worker, pool) = (PID, PID + 1);
        let mut calls = Vec::new();
        for i in 0..4u64 {
            let t = i * 10_000_000;
            calls.push(call(pool, libc::SYS_read, t, t + 100_000, 262_144));
            calls.push(call(worker, libc::SYS_epoll_wait, t, t + 120_000, 1));
        }
        let h = helpers(&calls, &[]);
        assert_eq!(
            h,
            vec![Helper {
                pid: PID,
                tid: pool,
                helped: worker,
                reads: 4,
                told: 4,
                bytes: 4 * 262_144
            }]
        );
    }

    #[test]
    fn reads_nobody_hears_of_make_no_helper() {
        let mut calls = Vec::new();
        for i in 0..4u64 {
            let t = i * 10_000_000;
            calls.push(call(PID + 1, libc::SYS_read, t, t + 100_000, 4096));
            // Told, but long after the read.
            calls.push(call(PID, libc::SYS_epoll_wait, t, t + 5_000_000, 1));
        }
        assert!(helpers(&calls, &[]).is_empty());
        // A thread that waits in a multiplexer itself reads for itself.
        let own = vec![
            call(PID, libc::SYS_epoll_wait, 0, 10, 1),
            call(PID, libc::SYS_read, 20, 30, 5),
            call(PID + 1, libc::SYS_epoll_wait, 40, 50, 1),
            call(PID, libc::SYS_read, 60, 70, 5),
            call(PID + 1, libc::SYS_epoll_wait, 80, 90, 1),
        ];
        assert!(helpers(&own, &[]).is_empty());
    }
}
