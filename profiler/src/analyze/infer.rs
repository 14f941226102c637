//! Infers the I/O model each thread uses from what it did, without any ground truth, and keeps
//! the evidence: blocking reads, `EAGAIN` loops, a readiness wait followed by a read, a
//! readiness signal (`SIGIO`, or the signal chosen with `F_SETSIG`) followed by a read,
//! io_uring. Pure: events in, verdicts out.
use std::{collections::BTreeMap, fmt};

use crate::{capture::decode::Record, capture::traced::TracedCall, syscalls::Role};

/// `EAGAIN` / `EWOULDBLOCK` as a negative return value.
const EAGAIN: i64 = -11;
/// `SIGIO` / `SIGPOLL`.
const SIGIO: i32 = 29;
/// `si_code` of a signal the kernel sends itself (`SI_KERNEL`): the plain `SIGIO` of a
/// descriptor in `O_ASYNC` mode with no `F_SETSIG` signal.
const SI_KERNEL: i32 = 0x80;
/// `si_code` values of an I/O readiness signal chosen with `F_SETSIG`: `POLL_IN`, `POLL_OUT`,
/// `POLL_ERR`, `POLL_PRI`, `POLL_HUP` (`POLL_MSG`, 3, is a lease break, not readiness).
const POLL_READINESS: [i32; 5] = [1, 2, 4, 5, 6];
/// Signals whose codes 1 to 6 mean something else (a child's exit, a fault, a trap).
const CODES_OF_THEIR_OWN: [i32; 6] = [
    libc::SIGCHLD,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGTRAP,
];

/// Whether a delivered signal told its thread that a descriptor is ready: the kernel's own
/// `SIGIO` of an `O_ASYNC` descriptor, or the signal chosen with `F_SETSIG`, which carries a
/// `POLL_*` code. A `SIGIO` sent with `kill` is no readiness.
pub fn is_readiness_signal(sig: i32, code: i32) -> bool {
    if sig == SIGIO && code == SI_KERNEL {
        return true;
    }
    POLL_READINESS.contains(&code) && !CODES_OF_THEIR_OWN.contains(&sig)
}

/// One thing a thread did, as inference needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A traced call that returned.
    Call {
        /// Process.
        pid: u32,
        /// Thread.
        tid: u32,
        /// Call name.
        name: String,
        /// What the call does with data.
        role: Role,
        /// Source descriptor (-1: none).
        fd: i64,
        /// Return value.
        ret: i64,
        /// Whether the thread slept inside the call.
        slept: bool,
        /// Entry time.
        time_ns: u64,
    },
    /// A signal delivered to a thread.
    Signal {
        /// Process.
        pid: u32,
        /// Thread.
        tid: u32,
        /// Signal number.
        sig: i32,
        /// Its `si_code`.
        code: i32,
        /// Delivery time.
        time_ns: u64,
    },
    /// Socket data copied to the thread's memory outside any traced call (the kernel doing
    /// the copy for an asynchronous request).
    AsyncCopy {
        /// Process.
        pid: u32,
        /// Thread.
        tid: u32,
        /// Time.
        time_ns: u64,
    },
}

impl Event {
    fn key(&self) -> (u32, u32) {
        match *self {
            Self::Call { pid, tid, .. }
            | Self::Signal { pid, tid, .. }
            | Self::AsyncCopy { pid, tid, .. } => (pid, tid),
        }
    }

    fn time(&self) -> u64 {
        match *self {
            Self::Call { time_ns, .. }
            | Self::Signal { time_ns, .. }
            | Self::AsyncCopy { time_ns, .. } => time_ns,
        }
    }

    /// The event of a traced call.
    pub fn from_call(c: &TracedCall) -> Self {
        Self::Call {
            pid: c.rec.pid,
            tid: c.rec.tid,
            name: c.name(),
            role: c.call.map_or(Role::Other, |k| k.role),
            fd: c.fd,
            ret: c.rec.ret,
            slept: c.stages.blocked_ns > 0,
            time_ns: c.rec.start_ns,
        }
    }

    /// The event of another record; `None` for records inference does not use.
    pub fn from_record(r: &Record) -> Option<Self> {
        match r {
            Record::Signal(s) if s.event == probe_common::SignalEvent::Deliver as u32 => {
                Some(Self::Signal {
                    pid: s.pid,
                    tid: s.tid,
                    sig: s.sig,
                    code: s.code,
                    time_ns: s.time_ns,
                })
            }
            Record::Copy(c) => Some(Self::AsyncCopy {
                pid: c.pid,
                tid: c.tid,
                time_ns: c.time_ns,
            }),
            _ => None,
        }
    }
}

/// The I/O models of the classic table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// The thread sleeps inside its reads until data comes.
    Blocking,
    /// The thread polls: reads fail with `EAGAIN` until data comes.
    NonBlocking,
    /// The thread waits in `select` / `poll` / `epoll_wait`, then reads.
    Multiplexing,
    /// `SIGIO` tells the thread that data is ready, then it reads.
    SignalDriven,
    /// The kernel waits and copies (io_uring).
    Asynchronous,
    /// The thread read nothing the profiler saw.
    NoInput,
}

impl Model {
    /// Name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocking => "blocking",
            Self::NonBlocking => "non-blocking",
            Self::Multiplexing => "multiplexing",
            Self::SignalDriven => "signal-driven",
            Self::Asynchronous => "asynchronous",
            Self::NoInput => "no-input",
        }
    }
}

/// What a thread did that speaks for one model or another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Evidence {
    /// Receive calls that returned data.
    pub data_reads: u64,
    /// Of those, the ones during which the thread slept.
    pub slept_reads: u64,
    /// Receive calls that failed with `EAGAIN`.
    pub eagain: u64,
    /// Runs of two or more `EAGAIN` failures on one descriptor before it returned data.
    pub eagain_loops: u64,
    /// Readiness waits (`select`, `poll`, `epoll_wait` …) that returned ready descriptors.
    pub ready_waits: u64,
    /// Data reads that directly followed a readiness wait that returned ready descriptors.
    pub reads_after_wait: u64,
    /// Readiness signal deliveries (`SIGIO`, or the `F_SETSIG` signal).
    pub sigio: u64,
    /// Data reads that directly followed a readiness signal.
    pub reads_after_sigio: u64,
    /// `io_uring_enter` calls.
    pub uring_enters: u64,
    /// Socket copies to the thread's memory outside its calls (done by the kernel for it).
    pub async_copies: u64,
    /// Calls that sent data or moved it between descriptors (`write`, `sendto`, `splice` …)
    /// and returned a count above 0: what a thread that reads nothing does.
    pub data_sends: u64,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![format!(
            "{} data reads ({} slept)",
            self.data_reads, self.slept_reads
        )];
        if self.eagain > 0 {
            parts.push(format!(
                "{} EAGAIN ({} loops)",
                self.eagain, self.eagain_loops
            ));
        }
        if self.ready_waits > 0 {
            parts.push(format!(
                "{} readiness waits, {} reads right after",
                self.ready_waits, self.reads_after_wait
            ));
        }
        if self.sigio > 0 {
            parts.push(format!(
                "{} readiness signals, {} reads right after",
                self.sigio, self.reads_after_sigio
            ));
        }
        if self.data_reads == 0 && self.data_sends > 0 {
            parts.push(format!("{} sends and transfers", self.data_sends));
        }
        if self.uring_enters > 0 || self.async_copies > 0 {
            parts.push(format!(
                "{} io_uring_enter, {} kernel copies outside calls",
                self.uring_enters, self.async_copies
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// The verdict for one thread.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// Process.
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// The model its input follows.
    pub model: Model,
    /// Why.
    pub evidence: Evidence,
    /// The thread it read for, when it is a helper thread.
    pub helper: Option<crate::analyze::helpers::Helper>,
}

/// Counts the evidence in one thread's events, in time order.
pub fn evidence(events: &[&Event]) -> Evidence {
    let mut e = Evidence::default();
    // What the thread did last that a read can follow: a ready wait, or a SIGIO.
    let mut after_wait = false;
    let mut after_sigio = false;
    // The descriptor and length of the current run of EAGAIN failures.
    let mut run: Option<(i64, u64)> = None;
    for ev in events {
        match ev {
            Event::Signal { sig, code, .. } => {
                if is_readiness_signal(*sig, *code) {
                    e.sigio += 1;
                    after_sigio = true;
                }
            }
            Event::AsyncCopy { .. } => e.async_copies += 1,
            Event::Call {
                name,
                role,
                fd,
                ret,
                slept,
                ..
            } => {
                if name == "io_uring_enter" {
                    e.uring_enters += 1;
                    continue;
                }
                match role {
                    Role::Multiplex => {
                        if *ret > 0 {
                            e.ready_waits += 1;
                            after_wait = true;
                        }
                    }
                    Role::Receive => {
                        if *ret == EAGAIN {
                            e.eagain += 1;
                            run = match run {
                                Some((f, n)) if f == *fd => Some((f, n + 1)),
                                _ => Some((*fd, 1)),
                            };
                        } else if *ret > 0 {
                            e.data_reads += 1;
                            if *slept {
                                e.slept_reads += 1;
                            }
                            if after_wait {
                                e.reads_after_wait += 1;
                            }
                            if after_sigio {
                                e.reads_after_sigio += 1;
                            }
                            if let Some((f, n)) = run
                                && f == *fd
                                && n >= 2
                            {
                                e.eagain_loops += 1;
                            }
                            run = None;
                            after_wait = false;
                            after_sigio = false;
                        }
                    }
                    Role::Send | Role::Transfer => {
                        if *ret > 0 {
                            e.data_sends += 1;
                        }
                    }
                    Role::Memory | Role::Other => {}
                }
            }
        }
    }
    e
}

/// The model that the evidence speaks for. A thread that reads after a readiness signal or a
/// readiness wait, and whose reads themselves mostly do not sleep, waits in the signal or the
/// multiplexer; not every read has to follow one (a server reads a kept-alive connection again
/// at once, and only waits when that finds nothing). A thread whose reads neither failed
/// with `EAGAIN` nor followed a wait or a signal makes blocking calls, whether or not one had
/// to sleep (a file's data is always ready: the evidence says how many slept).
pub fn model(e: &Evidence) -> Model {
    let reads_rarely_sleep = e.slept_reads * 2 < e.data_reads;
    if e.uring_enters > 0 || e.async_copies > 0 {
        Model::Asynchronous
    } else if e.data_reads == 0 {
        Model::NoInput
    } else if e.reads_after_sigio > 0 && reads_rarely_sleep {
        Model::SignalDriven
    } else if e.reads_after_wait > 0 && reads_rarely_sleep {
        Model::Multiplexing
    } else if e.eagain_loops > 0 || (e.eagain > 0 && e.eagain >= e.data_reads) {
        Model::NonBlocking
    } else {
        Model::Blocking
    }
}

/// One verdict per thread that did anything, ordered by process and thread.
pub fn infer(events: &[Event]) -> Vec<Verdict> {
    let mut by_thread: BTreeMap<(u32, u32), Vec<&Event>> = BTreeMap::new();
    for ev in events {
        by_thread.entry(ev.key()).or_default().push(ev);
    }
    by_thread
        .into_iter()
        .map(|((pid, tid), mut evs)| {
            evs.sort_by_key(|e| e.time());
            let evidence = evidence(&evs);
            Verdict {
                pid,
                tid,
                model: model(&evidence),
                evidence,
                helper: None,
            }
        })
        .collect()
}

/// The records of a run without the socket copies that fell inside a traced call of the same
/// thread: a call already in flight when tracing started has no entry in the kernel, so its
/// copies arrive as if done outside any call; they are the call's own copy, not the kernel
/// copying for the thread (io_uring task work).
pub fn outside_copies_only(calls: &[TracedCall], records: &[Record]) -> Vec<Record> {
    let mut spans: std::collections::HashMap<u32, Vec<(u64, u64)>> =
        std::collections::HashMap::new();
    for c in calls {
        spans
            .entry(c.rec.tid)
            .or_default()
            .push((c.rec.start_ns, c.rec.end_ns));
    }
    for s in spans.values_mut() {
        s.sort_unstable();
    }
    let inside = |tid: u32, t: u64| {
        spans.get(&tid).is_some_and(|s| {
            // The last call that started at or before `t`.
            let i = s.partition_point(|&(start, _)| start <= t);
            i > 0 && s[i - 1].1 >= t
        })
    };
    records
        .iter()
        .filter(|r| !matches!(r, Record::Copy(c) if inside(c.tid, c.time_ns)))
        .copied()
        .collect()
}

/// Verdicts for a run's calls and other records.
pub fn infer_run(calls: &[TracedCall], records: &[Record]) -> Vec<Verdict> {
    let events: Vec<Event> = calls
        .iter()
        .map(Event::from_call)
        .chain(records.iter().filter_map(Event::from_record))
        .collect();
    let mut verdicts = infer(&events);
    for h in crate::analyze::helpers::helpers(calls, records) {
        if let Some(v) = verdicts
            .iter_mut()
            .find(|v| (v.pid, v.tid) == (h.pid, h.tid))
        {
            v.helper = Some(h);
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_inside_a_call_is_not_outside() {
        use probe_common::{CallRecord, CopyRecord, RecordKind};
        let rec = CallRecord {
            kind: RecordKind::Call as u32,
            pid: 1,
            tid: 7,
            nr: libc::SYS_recvfrom as u32,
            start_ns: 100,
            end_ns: 200,
            ret: 10,
            ..Default::default()
        };
        let call = TracedCall::new(rec, |_, _| crate::capture::fdkind::FdKind::Socket);
        let copy = |tid, time_ns| {
            Record::Copy(CopyRecord {
                kind: RecordKind::Copy as u32,
                pid: 1,
                tid,
                bytes: 10,
                time_ns,
            })
        };
        let kept = outside_copies_only(&[call], &[copy(7, 150), copy(7, 250), copy(8, 150)]);
        assert_eq!(kept, vec![copy(7, 250), copy(8, 150)]);
    }

    fn call(tid: u32, t: u64, name: &str, role: Role, fd: i64, ret: i64, slept: bool) -> Event {
        Event::Call {
            pid: 1,
            tid,
            name: name.into(),
            role,
            fd,
            ret,
            slept,
            time_ns: t,
        }
    }

    fn read(tid: u32, t: u64, fd: i64, ret: i64, slept: bool) -> Event {
        call(tid, t, "read", Role::Receive, fd, ret, slept)
    }

    fn one(events: Vec<Event>) -> Verdict {
        let v = infer(&events);
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().expect("one")
    }

    #[test]
    fn sleeping_reads_are_blocking() {
        let v = one((0..10).map(|i| read(5, i, 3, 100, true)).collect());
        assert_eq!(v.model, Model::Blocking);
        assert_eq!((v.evidence.data_reads, v.evidence.slept_reads), (10, 10));
    }

    #[test]
    fn a_thread_that_only_sends_says_so() {
        let mut events: Vec<Event> = (0..4)
            .map(|i| call(5, i, "splice", Role::Transfer, 3, 65536, false))
            .collect();
        events.push(call(5, 9, "sendto", Role::Send, 4, -11, false));
        let v = one(events);
        assert_eq!(v.model, Model::NoInput);
        assert_eq!(v.evidence.data_sends, 4);
        assert_eq!(
            v.evidence.to_string(),
            "0 data reads (0 slept); 4 sends and transfers"
        );
        // A thread that reads is told by its reads.
        let v = one(vec![
            read(5, 0, 3, 100, true),
            call(5, 1, "write", Role::Send, 4, 100, false),
        ]);
        assert_eq!(v.evidence.to_string(), "1 data reads (1 slept)");
    }

    #[test]
    fn reads_that_never_slept_are_blocking_calls() {
        let v = one((0..3).map(|i| read(5, i, 3, 100, false)).collect());
        assert_eq!(v.model, Model::Blocking);
        assert_eq!((v.evidence.data_reads, v.evidence.slept_reads), (3, 0));
    }

    #[test]
    fn eagain_runs_are_non_blocking() {
        let mut evs = Vec::new();
        let mut t = 0;
        for _ in 0..5 {
            for _ in 0..20 {
                evs.push(read(5, t, 4, EAGAIN, false));
                t += 1;
            }
            evs.push(read(5, t, 4, 512, false));
            t += 1;
        }
        let v = one(evs);
        assert_eq!(v.model, Model::NonBlocking);
        assert_eq!(
            (
                v.evidence.eagain,
                v.evidence.eagain_loops,
                v.evidence.data_reads
            ),
            (100, 5, 5)
        );
    }

    #[test]
    fn ready_wait_then_read_is_multiplexing_even_with_eagain() {
        let mut evs = Vec::new();
        for i in 0..10u64 {
            evs.push(call(6, 10 * i, "epoll_wait", Role::Multiplex, 9, 1, true));
            evs.push(read(6, 10 * i + 1, 4, 100, false));
            // Draining a non-blocking socket ends with EAGAIN.
            evs.push(read(6, 10 * i + 2, 4, EAGAIN, false));
        }
        let v = one(evs);
        assert_eq!(v.model, Model::Multiplexing);
        assert_eq!(
            (v.evidence.ready_waits, v.evidence.reads_after_wait),
            (10, 10)
        );
        assert_eq!(v.evidence.eagain_loops, 0);
    }

    #[test]
    fn a_server_that_reads_again_before_waiting_is_multiplexing() {
        // As nginx on kept-alive connections: some reads follow epoll_wait, others follow
        // the previous response directly; none sleeps.
        let mut evs = Vec::new();
        for i in 0..10u64 {
            if i % 3 == 0 {
                evs.push(call(6, 10 * i, "epoll_wait", Role::Multiplex, 9, 1, true));
            }
            evs.push(read(6, 10 * i + 1, 4, 100, false));
        }
        assert_eq!(one(evs).model, Model::Multiplexing);
    }

    #[test]
    fn a_poll_before_sleeping_reads_stays_blocking() {
        let mut evs = vec![call(6, 0, "poll", Role::Multiplex, -1, 1, false)];
        evs.extend((1..10).map(|i| read(6, i, 4, 100, true)));
        assert_eq!(one(evs).model, Model::Blocking);
    }

    #[test]
    fn sigio_then_read_is_signal_driven() {
        let mut evs = Vec::new();
        for i in 0..4u64 {
            evs.push(Event::Signal {
                pid: 1,
                tid: 7,
                sig: SIGIO,
                code: SI_KERNEL,
                time_ns: 10 * i,
            });
            evs.push(call(7, 10 * i + 1, "recvfrom", Role::Receive, 3, 64, false));
        }
        let v = one(evs);
        assert_eq!(v.model, Model::SignalDriven);
        assert_eq!((v.evidence.sigio, v.evidence.reads_after_sigio), (4, 4));
    }

    #[test]
    fn only_a_readiness_signal_makes_a_thread_signal_driven() {
        let with = |sig: i32, code: i32| {
            let mut evs = Vec::new();
            for i in 0..4u64 {
                evs.push(Event::Signal {
                    pid: 1,
                    tid: 7,
                    sig,
                    code,
                    time_ns: 10 * i,
                });
                evs.push(call(7, 10 * i + 1, "recvfrom", Role::Receive, 3, 64, false));
            }
            one(evs).model
        };
        // SIGIO sent with kill (SI_USER), a child's exit, a timer: no readiness.
        assert_eq!(with(SIGIO, 0), Model::Blocking);
        assert_eq!(with(libc::SIGCHLD, 1), Model::Blocking);
        assert_eq!(with(libc::SIGALRM, 0x80), Model::Blocking);
        // The F_SETSIG signal carries POLL_IN; a lease break's POLL_MSG is no readiness.
        assert_eq!(with(libc::SIGRTMIN() + 2, 1), Model::SignalDriven);
        assert_eq!(with(SIGIO, 1), Model::SignalDriven);
        assert_eq!(with(libc::SIGRTMIN() + 2, 3), Model::Blocking);
    }

    #[test]
    fn model_names_are_the_six_of_the_table() {
        let names: Vec<_> = [
            Model::Blocking,
            Model::NonBlocking,
            Model::Multiplexing,
            Model::SignalDriven,
            Model::Asynchronous,
            Model::NoInput,
        ]
        .iter()
        .map(|m| {
            let json = serde_json::to_string(m).expect("json");
            assert_eq!(json, format!("\"{}\"", m.as_str()));
            m.as_str()
        })
        .collect();
        assert_eq!(
            names,
            [
                "blocking",
                "non-blocking",
                "multiplexing",
                "signal-driven",
                "asynchronous",
                "no-input"
            ]
        );
    }

    #[test]
    fn io_uring_is_asynchronous() {
        let v = one(vec![
            call(8, 0, "io_uring_enter", Role::Other, 5, 1, true),
            Event::AsyncCopy {
                pid: 1,
                tid: 8,
                time_ns: 1,
            },
        ]);
        assert_eq!(v.model, Model::Asynchronous);
        assert_eq!((v.evidence.uring_enters, v.evidence.async_copies), (1, 1));
    }

    #[test]
    fn threads_are_judged_apart_and_writers_read_nothing() {
        let evs = vec![
            read(2, 0, 3, 10, true),
            call(3, 0, "write", Role::Send, 4, 10, false),
            read(2, 5, 3, 10, true),
        ];
        let v = infer(&evs);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].tid, v[0].model), (2, Model::Blocking));
        assert_eq!((v[1].tid, v[1].model), (3, Model::NoInput));
        assert!(v[0].evidence.to_string().contains("2 data reads (2 slept)"));
    }

    #[test]
    fn events_are_ordered_by_time_within_a_thread() {
        // Records arrive in exit order; a long wait that began first is still "before".
        let evs = vec![
            read(4, 20, 3, 100, false),
            call(4, 10, "poll", Role::Multiplex, -1, 1, true),
        ];
        assert_eq!(one(evs).model, Model::Multiplexing);
    }
}
