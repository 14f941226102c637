//! Groups a run's calls without any ground truth: per process, thread, descriptor class
//! (TCP, UDP, Unix socket, pipe, file …) and call, with each thread's inferred I/O model and
//! its evidence. Pure: calls in, groups out (the table is in `render::groups`).
use std::collections::BTreeMap;

use crate::{capture::fdkind::FdClass, capture::traced::TracedCall};

/// The key of one group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// Call name.
    pub call: String,
    /// Class of the source descriptor.
    pub class: FdClass,
    /// Class of the destination descriptor, for calls with two.
    pub out_class: Option<FdClass>,
}

/// What the calls of one group add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Calls.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Of those, `EAGAIN`.
    pub eagain: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Time inside the calls.
    pub total_ns: u64,
    /// Time asleep inside the calls.
    pub blocked_ns: u64,
}

/// Groups calls per process, thread, descriptor class and call.
pub fn group(calls: &[TracedCall]) -> BTreeMap<GroupKey, GroupStats> {
    let mut out: BTreeMap<GroupKey, GroupStats> = BTreeMap::new();
    for c in calls {
        let key = GroupKey {
            pid: c.rec.pid,
            tid: c.rec.tid,
            call: c.name(),
            class: c.fd_class,
            out_class: (c.fd_out >= 0).then_some(c.fd_out_class),
        };
        let s = out.entry(key).or_default();
        s.calls += 1;
        if c.rec.ret < 0 {
            s.errors += 1;
            if c.rec.ret == -(libc::EAGAIN as i64) {
                s.eagain += 1;
            }
        }
        s.bytes += c.bytes();
        s.total_ns += c.stages.total_ns;
        s.blocked_ns += c.stages.blocked_ns;
    }
    out
}

/// Sums groups over threads: per process, descriptor class and call.
pub fn per_process(groups: &BTreeMap<GroupKey, GroupStats>) -> BTreeMap<GroupKey, GroupStats> {
    let mut out: BTreeMap<GroupKey, GroupStats> = BTreeMap::new();
    for (k, s) in groups {
        let key = GroupKey {
            tid: 0,
            ..k.clone()
        };
        let t = out.entry(key).or_default();
        t.calls += s.calls;
        t.errors += s.errors;
        t.eagain += s.eagain;
        t.bytes += s.bytes;
        t.total_ns += s.total_ns;
        t.blocked_ns += s.blocked_ns;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::groups::table;
    use crate::{analyze::infer, capture::fdkind::FdKind};
    use probe_common::{CallRecord, fd_class};
    use std::collections::HashMap;

    fn rec(pid: u32, tid: u32, nr: i64, fd: u64, ret: i64, class: u32) -> TracedCall {
        TracedCall::new(
            CallRecord {
                pid,
                tid,
                nr: nr as u32,
                args: [fd, 0, 0],
                ret,
                start_ns: 0,
                end_ns: 1_000,
                blocked_ns: 600,
                fd_class: class,
                ..Default::default()
            },
            |_, _| FdKind::Unknown,
        )
    }

    #[test]
    fn groups_split_by_thread_class_and_call() {
        let calls = vec![
            rec(10, 10, libc::SYS_recvfrom, 3, 100, fd_class::TCP),
            rec(10, 10, libc::SYS_recvfrom, 3, 50, fd_class::TCP),
            rec(10, 10, libc::SYS_recvfrom, 4, -11, fd_class::UDP),
            rec(10, 11, libc::SYS_read, 5, 7, fd_class::PIPE),
            rec(20, 20, libc::SYS_read, 5, 9, fd_class::FILE),
        ];
        let g = group(&calls);
        assert_eq!(g.len(), 4);
        let tcp = GroupKey {
            pid: 10,
            tid: 10,
            call: "recvfrom".into(),
            class: FdClass::Tcp,
            out_class: None,
        };
        assert_eq!(
            g[&tcp],
            GroupStats {
                calls: 2,
                errors: 0,
                eagain: 0,
                bytes: 150,
                total_ns: 2_000,
                blocked_ns: 1_200
            }
        );
        let udp = GroupKey {
            class: FdClass::Udp,
            ..tcp.clone()
        };
        assert_eq!((g[&udp].errors, g[&udp].eagain, g[&udp].bytes), (1, 1, 0));
        let p = per_process(&g);
        assert_eq!(p.len(), 4, "three classes in pid 10, one in pid 20");
        assert!(p.keys().all(|k| k.tid == 0));
    }

    #[test]
    fn table_names_processes_threads_and_models() {
        let calls = vec![
            rec(10, 10, libc::SYS_recvfrom, 3, 100, fd_class::TCP),
            rec(10, 11, libc::SYS_read, 5, 7, fd_class::UNIX),
        ];
        let verdicts = infer::infer_run(&calls, &[]);
        let names = HashMap::from([(10, "server".to_string())]);
        let t = table(&calls, &verdicts, &names);
        assert!(t.contains("pid 10 (server), 2 thread(s)"), "{t}");
        assert!(
            t.contains("tid 10: blocking (1 data reads (1 slept))"),
            "{t}"
        );
        assert!(t.contains("recvfrom     tcp"), "{t}");
        assert!(t.contains("read         unix"), "{t}");
        assert_eq!(table(&[], &[], &names), "");
    }
}
