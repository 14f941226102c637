//! Per-message attribution of the I/O models: pure functions from the calls and events of a
//! run to one record per message (the data one wait brought), saying how the wait was spent,
//! who copied, and how late the process learned of the data. No I/O, no BPF.
use std::collections::{BTreeMap, BTreeSet};

use probe_common::{RecordKind, SignalEvent};

use crate::{
    analyze::infer::{self, Model},
    capture::decode::Record,
    capture::fdkind::FdKind,
    capture::traced::TracedCall,
    syscalls::Role,
};

/// How a stretch of a message's wait was spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WaitKind {
    /// Asleep in the receive call itself (blocking I/O).
    Call,
    /// Asleep in a readiness multiplexer (`select`, `poll`, `epoll_wait` …).
    Mux,
    /// Asleep waiting for completions (`io_uring_enter`, `io_getevents`).
    Completion,
    /// On CPU in receive attempts that failed, and between them.
    Polling,
    /// Running its own code, outside any traced call: a signal or a completion told it.
    Free,
    /// Runnable but not running inside a traced call.
    RunQueue,
}

impl WaitKind {
    /// Every kind, in table order.
    pub const ALL: [WaitKind; 6] = [
        Self::Call,
        Self::Mux,
        Self::Completion,
        Self::Polling,
        Self::Free,
        Self::RunQueue,
    ];

    /// Name used in CSV and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Mux => "mux",
            Self::Completion => "completion",
            Self::Polling => "polling",
            Self::Free => "free",
            Self::RunQueue => "runq",
        }
    }
}

/// Which thread copied a message, relative to the thread that waited for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copier {
    /// The waiting thread, inside its own receive call.
    Caller,
    /// The waiting thread, in task work outside its calls or inside `io_uring_enter`.
    TaskWork,
    /// Another thread outside any traced call (an io_uring worker).
    Worker,
    /// Another thread in its own receive call (a C library helper thread).
    Helper,
}

impl Copier {
    /// Name used in CSV and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::TaskWork => "task-work",
            Self::Worker => "io-worker",
            Self::Helper => "helper-thread",
        }
    }
}

/// The thread that slept longest in a traced call during a message's wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// Its thread id.
    pub tid: u32,
    /// The call it slept in.
    pub call: String,
    /// How long it slept there during the wait.
    pub blocked_ns: u64,
}

/// One message: the data one wait brought (a receive, and the rest read at once after it).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Process.
    pub pid: u32,
    /// Index within the process, from 0.
    pub index: u64,
    /// The thread that waited (and was told).
    pub waiter: u32,
    /// The thread that copied.
    pub copier_tid: u32,
    /// Who that was.
    pub copier: Copier,
    /// The receiver started waiting.
    pub wait_start_ns: u64,
    /// The copy started.
    pub copy_start_ns: u64,
    /// The copy ended.
    pub copy_end_ns: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Wait time by [`WaitKind`], in [`WaitKind::ALL`] order.
    pub wait_by: [u64; 6],
    /// Receive attempts of the waiter that failed during the wait.
    pub failed_attempts: u64,
    /// Traced calls of the process that started during the message.
    pub calls: u64,
    /// Data reached the socket (first arrival during the wait).
    pub arrival_ns: Option<u64>,
    /// The process learned of the data (signal, multiplexer return, completion, or copy).
    pub notified_ns: Option<u64>,
    /// The thread that slept longest during the wait.
    pub blocker: Option<Blocker>,
    /// A readiness signal (`SIGIO`, or the `F_SETSIG` signal) reached the waiter during the
    /// wait.
    pub ready_signal: bool,
    /// The I/O model of the message: its waiting thread's, unless the message's own wait
    /// shows that the thread changed behaviour ([`Message::own_model`]).
    pub model: Model,
}

impl Message {
    /// Wait stage: start of waiting → start of the copy.
    pub fn wait_ns(&self) -> u64 {
        self.copy_start_ns.saturating_sub(self.wait_start_ns)
    }

    /// Copy stage.
    pub fn copy_ns(&self) -> u64 {
        self.copy_end_ns.saturating_sub(self.copy_start_ns)
    }

    /// Wait time spent one way.
    pub fn wait_of(&self, k: WaitKind) -> u64 {
        self.wait_by[k as usize]
    }

    /// The way most of the wait was spent.
    pub fn main_kind(&self) -> WaitKind {
        let mut best = WaitKind::Free;
        for k in WaitKind::ALL {
            if self.wait_of(k) > self.wait_of(best) {
                best = k;
            }
        }
        best
    }

    /// Data arrival → the process learned of it.
    pub fn notification_ns(&self) -> Option<u64> {
        Some(self.notified_ns?.saturating_sub(self.arrival_ns?))
    }

    /// Time on CPU for the message: polling and free running in the wait, and the copy.
    pub fn cpu_ns(&self) -> u64 {
        self.wait_of(WaitKind::Polling) + self.wait_of(WaitKind::Free) + self.copy_ns()
    }

    /// The I/O model of the message, by name.
    pub fn model(&self) -> &'static str {
        self.model.as_str()
    }

    /// The model the message's own wait shows, when it shows one: asleep in the receive
    /// call, in a multiplexer or in a wait for completions; polling with failed attempts; a
    /// copy by someone else; told by a readiness signal. A wait spent running free or in the
    /// run queue, with no signal, shows none: the data was there before the thread looked.
    pub fn own_model(&self) -> Option<Model> {
        match self.main_kind() {
            WaitKind::Call => Some(Model::Blocking),
            WaitKind::Mux => Some(Model::Multiplexing),
            WaitKind::Completion => Some(Model::Asynchronous),
            WaitKind::Polling if self.failed_attempts > 0 => Some(Model::NonBlocking),
            _ if self.copier != Copier::Caller => Some(Model::Asynchronous),
            _ if self.ready_signal => Some(Model::SignalDriven),
            _ => None,
        }
    }
}

/// Whether a call waits for completions rather than readiness.
fn is_completion_wait(name: &str) -> bool {
    matches!(name, "io_uring_enter" | "io_getevents")
}

/// The kind of wait a call's sleep is.
fn call_kind(c: &TracedCall) -> Option<WaitKind> {
    let call = c.call?;
    match call.role {
        Role::Receive => Some(WaitKind::Call),
        Role::Multiplex if is_completion_wait(call.name) => Some(WaitKind::Completion),
        Role::Multiplex => Some(WaitKind::Mux),
        _ => None,
    }
}

fn is_receive(c: &TracedCall) -> bool {
    c.call.is_some_and(|k| k.role == Role::Receive)
}

/// How one call spent a message's wait, for the per-call CSV: `call`, `mux`, `completion`,
/// `polling` (a failed attempt), or `none` (a receive that did not wait).
pub fn call_wait_kind(c: &TracedCall) -> &'static str {
    match call_kind(c) {
        Some(WaitKind::Call) if c.rec.ret < 0 => WaitKind::Polling.as_str(),
        Some(WaitKind::Call) if c.stages.wait_blocked_ns > c.stages.wait_ns.max(1) / 2 => {
            WaitKind::Call.as_str()
        }
        Some(WaitKind::Call) | None => "none",
        Some(k) => k.as_str(),
    }
}

/// A delivery of data to the process, before it is tied to a wait.
struct Delivery {
    copier_tid: u32,
    copy_start: u64,
    copy_end: u64,
    bytes: u64,
    /// Delivered inside a traced call (index into the process's calls).
    call: Option<usize>,
}

/// Events of one process, split by kind.
#[derive(Default)]
struct Events {
    /// `(time, tid)` of signal deliveries.
    signals: Vec<(u64, u32)>,
    /// `(time, tid)` of readiness signal deliveries.
    ready_signals: Vec<(u64, u32)>,
    /// `(time, tid, bytes)` of copies outside calls.
    copies: Vec<(u64, u32, u64)>,
    /// `(time, sk)` of data arrivals.
    arrivals: Vec<(u64, u64)>,
    /// Sockets the process read.
    socks: BTreeSet<u64>,
    /// `(time, res)` of io_uring completions.
    completions: Vec<(u64, i32)>,
    /// `req → submitting tid`.
    submitters: BTreeMap<u64, u32>,
    /// `(time, tid)` of io_uring submissions.
    submits: Vec<(u64, u32)>,
}

fn split_events(events: &[Record]) -> BTreeMap<u32, Events> {
    let mut by: BTreeMap<u32, Events> = BTreeMap::new();
    for e in events {
        match e {
            Record::Signal(s) if s.event == SignalEvent::Deliver as u32 => {
                let ev = by.entry(s.pid).or_default();
                ev.signals.push((s.time_ns, s.tid));
                if infer::is_readiness_signal(s.sig, s.code) {
                    ev.ready_signals.push((s.time_ns, s.tid));
                }
            }
            Record::Copy(c) => {
                by.entry(c.pid)
                    .or_default()
                    .copies
                    .push((c.time_ns, c.tid, c.bytes as u64));
            }
            Record::Sock(s) if s.kind == RecordKind::DataReady as u32 => {
                by.entry(s.pid)
                    .or_default()
                    .arrivals
                    .push((s.time_ns, s.sk));
            }
            Record::Sock(s) => {
                by.entry(s.pid).or_default().socks.insert(s.sk);
            }
            Record::Uring(u) if u.kind == RecordKind::UringComplete as u32 => {
                by.entry(u.pid)
                    .or_default()
                    .completions
                    .push((u.time_ns, u.res));
            }
            Record::Uring(u) => {
                let ev = by.entry(u.pid).or_default();
                ev.submitters.insert(u.req, u.tid);
                ev.submits.push((u.time_ns, u.tid));
            }
            _ => {}
        }
    }
    for ev in by.values_mut() {
        ev.signals.sort_unstable();
        ev.ready_signals.sort_unstable();
        ev.copies.sort_unstable();
        ev.arrivals.sort_unstable();
        ev.completions.sort_unstable();
        ev.submits.sort_unstable();
    }
    by
}

/// Where each process's data was delivered, in time order.
fn deliveries(calls: &[&TracedCall], ev: &Events) -> Vec<Delivery> {
    let mut out = Vec::new();
    let mut used_completions = BTreeSet::new();
    for (i, c) in calls.iter().enumerate() {
        let name = c.call.map_or("", |k| k.name);
        // Only socket data is waited for; files and pipes read at start-up are not messages.
        if is_receive(c) && c.rec.ret > 0 && c.fd_kind == FdKind::Socket {
            out.push(Delivery {
                copier_tid: c.rec.tid,
                copy_start: c.rec.end_ns - c.stages.copy_ns,
                copy_end: c.rec.end_ns,
                bytes: c.bytes(),
                call: Some(i),
            });
        } else if name == "io_uring_enter" && c.rec.first_copy_ns != 0 && c.rec.copy_bytes > 0 {
            // Task work ran the receive inside the wait for completions.
            let start = c.rec.first_copy_ns;
            let first = ev.completions.partition_point(|e| e.0 < start);
            let done: Vec<usize> = ev.completions[first..]
                .iter()
                .take_while(|(t, _)| *t <= c.rec.end_ns)
                .enumerate()
                .filter(|(_, (_, res))| *res > 0)
                .map(|(j, _)| first + j)
                .collect();
            let bytes = done
                .iter()
                .map(|&j| ev.completions[j].1 as u64)
                .sum::<u64>();
            let end = done
                .iter()
                .map(|&j| ev.completions[j].0)
                .max()
                .unwrap_or(c.rec.end_ns);
            used_completions.extend(done);
            out.push(Delivery {
                copier_tid: c.rec.tid,
                copy_start: start,
                copy_end: end,
                bytes: if bytes > 0 { bytes } else { c.rec.copy_bytes },
                call: Some(i),
            });
        }
    }
    // Completions whose copy ran outside any traced call (task work, io_uring workers).
    let mut prev_end = 0;
    for (j, &(t, res)) in ev.completions.iter().enumerate() {
        if res <= 0 || used_completions.contains(&j) {
            continue;
        }
        let copy = ev
            .copies
            .get(ev.copies.partition_point(|c| c.0 <= prev_end))
            .filter(|(ct, _, _)| *ct <= t);
        let (start, tid) = copy.map_or((t, 0), |&(ct, tid, _)| (ct, tid));
        out.push(Delivery {
            copier_tid: tid,
            copy_start: start,
            copy_end: t,
            bytes: res as u64,
            call: None,
        });
        prev_end = t;
    }
    out.sort_by_key(|d| d.copy_start);
    out
}

/// Index of the first of `calls` (sorted by start) that starts at or after `t`.
fn starting_from(calls: &[&TracedCall], t: u64) -> usize {
    calls.partition_point(|c| c.rec.start_ns < t)
}

/// Index of the first of `calls` (sorted by start) that starts after `t`.
fn starting_after(calls: &[&TracedCall], t: u64) -> usize {
    calls.partition_point(|c| c.rec.start_ns <= t)
}

/// The events of `list` (sorted by time) at or after `t`, in time order.
fn events_from<T>(list: &[(u64, T)], t: u64) -> &[(u64, T)] {
    &list[list.partition_point(|e| e.0 < t)..]
}

/// Adds the part of `[a, b)` that overlaps `[lo, hi)` to `acc`, scaled from `part` of a span.
fn scaled(part: u64, span: u64, a: u64, b: u64, lo: u64, hi: u64) -> u64 {
    let (s, e) = (a.max(lo), b.min(hi));
    if e <= s || span == 0 {
        return 0;
    }
    ((part as u128 * (e - s) as u128) / span as u128) as u64
}

/// Whether delivery `d` is the rest of message `prev`: a receive of the same thread, its next
/// call after the previous copy, that did not sleep, with no signal in between.
fn continues(
    prev: &Message,
    d: &Delivery,
    calls: &[&TracedCall],
    ev: &Events,
    waiter: u32,
) -> bool {
    let Some(i) = d.call else { return false };
    let c = calls[i];
    if !is_receive(c) || c.stages.wait_blocked_ns > 0 || prev.waiter != waiter {
        return false;
    }
    let between = starting_after(calls, prev.copy_end_ns)..starting_from(calls, c.rec.start_ns);
    !calls
        .get(between)
        .unwrap_or_default()
        .iter()
        .any(|o| o.rec.tid == waiter)
        && !events_from(&ev.signals, prev.copy_end_ns)
            .iter()
            .take_while(|&&(t, _)| t <= d.copy_start)
            .any(|&(_, tid)| tid == waiter)
}

/// Cuts every traced process's run into messages. `calls` and `events` are everything a run
/// collected, in any order.
pub fn messages(calls: &[TracedCall], events: &[Record]) -> Vec<Message> {
    let evs = split_events(events);
    let mut by_pid: BTreeMap<u32, Vec<&TracedCall>> = BTreeMap::new();
    for c in calls {
        by_pid.entry(c.rec.pid).or_default().push(c);
    }
    let empty = Events::default();
    let mut out = Vec::new();
    for (pid, mut pcalls) in by_pid {
        pcalls.sort_by_key(|c| c.rec.start_ns);
        let ev = evs.get(&pid).unwrap_or(&empty);
        out.extend(process_messages(pid, &pcalls, ev));
    }
    let threads: BTreeMap<(u32, u32), Model> = infer::infer_run(calls, events)
        .into_iter()
        .map(|v| ((v.pid, v.tid), v.model))
        .collect();
    for m in &mut out {
        let thread = threads
            .get(&(m.pid, m.waiter))
            .copied()
            .unwrap_or(Model::NoInput);
        m.model = m.own_model().unwrap_or(thread);
    }
    out
}

fn process_messages(pid: u32, calls: &[&TracedCall], ev: &Events) -> Vec<Message> {
    let dels = deliveries(calls, ev);
    // The first wait starts with the first call that waits for or reads socket data (not
    // with the process's start-up, whose checks of its descriptors find nothing ready).
    let first_activity = calls
        .iter()
        .filter(|c| {
            (is_receive(c) && c.fd_kind == FdKind::Socket)
                || (c.call.is_some_and(|k| k.role == Role::Multiplex) && c.rec.ret > 0)
        })
        .map(|c| c.rec.start_ns)
        .chain(ev.submits.iter().map(|s| s.0))
        .min();
    let arrivals: Vec<u64> = ev
        .arrivals
        .iter()
        .filter(|(_, sk)| ev.socks.is_empty() || ev.socks.contains(sk))
        .map(|a| a.0)
        .collect();
    // The longest call: the calls overlapping a stretch of time are found by a binary search
    // on start times back to the stretch's start minus this.
    let longest = calls
        .iter()
        .map(|c| c.rec.end_ns.saturating_sub(c.rec.start_ns))
        .max()
        .unwrap_or(0);
    // Calls that start in [a, b].
    let starting_in = |a: u64, b: u64| {
        starting_from(calls, a)..starting_after(calls, b).max(starting_from(calls, a))
    };
    let mut out = Vec::new();
    let mut prev_end: Option<u64> = None;
    for (n, d) in dels.iter().enumerate() {
        let w0 = prev_end
            .or(first_activity)
            .unwrap_or(d.copy_start)
            .min(d.copy_start);
        let c0 = d.copy_start;
        let next_start = dels.get(n + 1).map_or(u64::MAX, |x| x.copy_start);
        // A signal to another thread after a copy in a call means that thread was waiting
        // and a helper copied for it.
        let told_after = events_from(&ev.signals, d.copy_end)
            .iter()
            .take_while(|(t, _)| *t < next_start)
            .find(|(_, tid)| *tid != d.copier_tid);
        let submitter = if d.call.is_none() {
            ev.submits
                .partition_point(|s| s.0 <= c0)
                .checked_sub(1)
                .map(|i| ev.submits[i].1)
                .or_else(|| ev.submitters.values().next().copied())
        } else {
            None
        };
        let (waiter, copier) = match (d.call, told_after, submitter) {
            (Some(_), Some(&(_, tid)), _) => (tid, Copier::Helper),
            (Some(i), None, _) if !is_receive(calls[i]) => (d.copier_tid, Copier::TaskWork),
            (Some(_), None, _) => (d.copier_tid, Copier::Caller),
            (None, _, Some(s)) if s == d.copier_tid || d.copier_tid == 0 => (s, Copier::TaskWork),
            (None, _, Some(s)) => (s, Copier::Worker),
            (None, _, None) => (d.copier_tid, Copier::TaskWork),
        };

        // The rest of a message read at once, with no wait in between, belongs to it.
        if let Some(prev) = out.last_mut()
            && continues(prev, d, calls, ev, waiter)
        {
            prev.calls += starting_after(calls, d.copy_end)
                .saturating_sub(starting_after(calls, prev.copy_end_ns))
                as u64;
            prev.bytes += d.bytes;
            prev.copy_end_ns = prev.copy_end_ns.max(d.copy_end);
            prev_end = Some(prev.copy_end_ns);
            continue;
        }

        let mut m = Message {
            pid,
            index: out.len() as u64,
            waiter,
            copier_tid: if d.copier_tid == 0 {
                waiter
            } else {
                d.copier_tid
            },
            copier,
            wait_start_ns: w0,
            copy_start_ns: c0,
            copy_end_ns: d.copy_end.max(c0),
            bytes: d.bytes,
            wait_by: [0; 6],
            failed_attempts: 0,
            calls: starting_in(w0, d.copy_end).len() as u64,
            arrival_ns: None,
            notified_ns: None,
            blocker: None,
            ready_signal: events_from(&ev.ready_signals, w0)
                .iter()
                .take_while(|&&(t, _)| t <= c0)
                .any(|&(_, tid)| tid == waiter),
            model: Model::NoInput,
        };

        // A signal told the waiter something between two of its calls: it was not polling.
        let signalled = |a: u64, b: u64| {
            events_from(&ev.signals, a)
                .iter()
                .take_while(|&&(t, _)| t <= b)
                .any(|&(_, tid)| tid == waiter)
        };
        // How the waiter spent [w0, c0].
        let mut covered = 0u64;
        let mut after_failure = false;
        let mut cursor = w0;
        let mut blocked_by: BTreeMap<(u32, String), u64> = BTreeMap::new();
        // Calls that start before c0 and may end after w0 (none that starts before
        // w0 - longest does), in start order.
        let overlapping =
            starting_from(calls, w0.saturating_sub(longest))..starting_from(calls, c0);
        for (i, c) in calls
            .iter()
            .enumerate()
            .take(overlapping.end)
            .skip(overlapping.start)
        {
            let r = &c.rec;
            if r.end_ns <= w0 || r.start_ns >= c0 {
                continue;
            }
            let delivering = d.call == Some(i);
            let (span, blocked, runq) = if delivering {
                let span = c0.saturating_sub(r.start_ns);
                (span, c.stages.wait_blocked_ns, c.stages.wait_runq_ns)
            } else {
                (c.stages.total_ns, c.stages.blocked_ns, c.stages.runq_ns)
            };
            let end = if delivering { c0 } else { r.end_ns };
            let b = scaled(blocked, span, r.start_ns, end, w0, c0);
            if b > 0 {
                *blocked_by.entry((r.tid, c.name())).or_default() += b;
            }
            if r.tid != waiter {
                continue;
            }
            let Some(kind) = call_kind(c) else { continue };
            let q = scaled(runq, span, r.start_ns, end, w0, c0);
            let all = scaled(span, span, r.start_ns, end, w0, c0);
            let oncpu = all.saturating_sub(b + q);
            let cpu_kind = if kind == WaitKind::Call {
                WaitKind::Polling
            } else {
                kind
            };
            // The stretch before this call, outside traced calls.
            let gap = r.start_ns.max(w0).saturating_sub(cursor);
            let gap_kind = if after_failure && is_receive(c) && !signalled(cursor, r.start_ns) {
                WaitKind::Polling
            } else {
                WaitKind::Free
            };
            m.wait_by[gap_kind as usize] += gap;
            m.wait_by[kind as usize] += b;
            m.wait_by[WaitKind::RunQueue as usize] += q;
            m.wait_by[cpu_kind as usize] += oncpu;
            covered += gap + all;
            cursor = cursor.max(end.min(c0));
            after_failure = is_receive(c) && r.ret < 0;
            if after_failure && r.start_ns >= w0 {
                m.failed_attempts += 1;
            }
        }
        // The rest of the wait, outside traced calls.
        let rest = (c0 - w0).saturating_sub(covered);
        let rest_kind = if after_failure && !signalled(cursor, c0) {
            WaitKind::Polling
        } else {
            WaitKind::Free
        };
        m.wait_by[rest_kind as usize] += rest;
        m.blocker =
            blocked_by
                .into_iter()
                .max_by_key(|(_, ns)| *ns)
                .map(|((tid, call), blocked_ns)| Blocker {
                    tid,
                    call,
                    blocked_ns,
                });

        // Notification: data arrival → the process learned of it.
        m.arrival_ns = arrivals
            .get(arrivals.partition_point(|&t| t <= w0))
            .copied()
            .filter(|&t| t <= c0);
        if let Some(a) = m.arrival_ns {
            let signal = events_from(&ev.signals, a)
                .iter()
                .take_while(|(t, _)| *t < next_start)
                .find(|(_, tid)| *tid == waiter)
                .map(|s| s.0);
            // Calls that may end in [a, copy end]: started no later than its end, and no
            // earlier than a - longest.
            let ending = starting_from(calls, a.saturating_sub(longest))
                ..starting_after(calls, m.copy_end_ns.max(c0));
            let mux_return = calls
                .get(ending)
                .unwrap_or_default()
                .iter()
                .filter(|c| {
                    c.rec.tid == waiter
                        && c.call.is_some_and(|k| k.role == Role::Multiplex)
                        && c.rec.end_ns >= a
                        && c.rec.end_ns <= m.copy_end_ns.max(c0)
                })
                .map(|c| c.rec.end_ns)
                .min();
            let waited_in = d
                .call
                .filter(|&i| !is_receive(calls[i]))
                .map(|i| calls[i].rec.end_ns);
            m.notified_ns = Some(
                signal
                    .or(waited_in)
                    .or(mux_return)
                    .or(d.call.is_none().then_some(d.copy_end))
                    .unwrap_or(c0),
            );
        }
        prev_end = Some(m.copy_end_ns);
        out.push(m);
    }
    out
}

/// The message each call belongs to: `(pid, start_ns)` of a call → message index, for the
/// per-call CSV. A call belongs to the message whose wait or copy it started in.
pub fn message_of(msgs: &[Message], pid: u32, start_ns: u64) -> Option<&Message> {
    msgs.iter()
        .find(|m| m.pid == pid && start_ns >= m.wait_start_ns && start_ns <= m.copy_end_ns)
}

/// A process's messages in [`MessageIndex`]: wait starts, running maximum of copy ends, the
/// messages themselves.
type ProcessMessages<'a> = (Vec<u64>, Vec<u64>, Vec<&'a Message>);

/// [`message_of`] by binary search: a process's messages start in time order (each wait
/// starts where the previous message's copy ended, or later), so the first message whose copy
/// ends at or after a time is found on the running maximum of copy ends. A process whose
/// messages are not in that order is searched one by one.
pub struct MessageIndex<'a> {
    /// Per process: wait starts, running maximum of copy ends, the messages.
    by_pid: BTreeMap<u32, ProcessMessages<'a>>,
    /// Processes whose wait starts are out of order.
    unsorted: BTreeSet<u32>,
    msgs: &'a [Message],
}

impl<'a> MessageIndex<'a> {
    /// Indexes `msgs`.
    pub fn new(msgs: &'a [Message]) -> Self {
        let mut by_pid: BTreeMap<u32, ProcessMessages<'a>> = BTreeMap::new();
        for m in msgs {
            let (starts, ends, ms) = by_pid.entry(m.pid).or_default();
            starts.push(m.wait_start_ns);
            ends.push(
                ends.last()
                    .map_or(m.copy_end_ns, |&e: &u64| e.max(m.copy_end_ns)),
            );
            ms.push(m);
        }
        let unsorted = by_pid
            .iter()
            .filter(|(_, (starts, _, _))| !starts.is_sorted())
            .map(|(&pid, _)| pid)
            .collect();
        Self {
            by_pid,
            unsorted,
            msgs,
        }
    }

    /// The message of the call of `pid` that started at `start_ns`.
    pub fn find(&self, pid: u32, start_ns: u64) -> Option<&'a Message> {
        let (starts, ends, ms) = self.by_pid.get(&pid)?;
        if self.unsorted.contains(&pid) {
            return message_of(self.msgs, pid, start_ns);
        }
        let j = ends.partition_point(|&e| e < start_ns);
        (j < starts.len() && starts[j] <= start_ns).then(|| ms[j])
    }
}

/// A summary of many messages: one row of the model table.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ModelRow {
    /// The model most messages show.
    pub model: String,
    /// Messages.
    pub messages: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Mean wait per message, ns.
    pub wait_ns: f64,
    /// Share of the wait spent each way, percent, in [`WaitKind::ALL`] order.
    pub wait_pct: [f64; 6],
    /// Mean copy per message, ns.
    pub copy_ns: f64,
    /// Mean notification latency, ns (messages with an arrival seen).
    pub notify_ns: Option<f64>,
    /// Traced system calls per message.
    pub calls: f64,
    /// Failed receive attempts per message.
    pub failed: f64,
    /// CPU time per message, ns.
    pub cpu_ns: f64,
    /// Who copied most messages.
    pub copier: String,
    /// The thread that slept longest overall and where: `tid N in CALL`.
    pub blocker: String,
}

/// Summarises messages into one model row.
pub fn model_row(msgs: &[Message]) -> ModelRow {
    let n = msgs.len().max(1) as f64;
    let wait_sum: u64 = msgs.iter().map(Message::wait_ns).sum();
    let mut pct = [0.0; 6];
    for k in WaitKind::ALL {
        let s: u64 = msgs.iter().map(|m| m.wait_of(k)).sum();
        pct[k as usize] = 100.0 * s as f64 / wait_sum.max(1) as f64;
    }
    let notes: Vec<u64> = msgs.iter().filter_map(Message::notification_ns).collect();
    let most = |f: &dyn Fn(&Message) -> String| {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for m in msgs {
            *count.entry(f(m)).or_default() += 1;
        }
        count
            .into_iter()
            .max_by_key(|(_, c)| *c)
            .map(|(k, _)| k)
            .unwrap_or_default()
    };
    let mut blockers: BTreeMap<(u32, String), u64> = BTreeMap::new();
    for b in msgs.iter().filter_map(|m| m.blocker.as_ref()) {
        *blockers.entry((b.tid, b.call.clone())).or_default() += b.blocked_ns;
    }
    let pid = msgs.first().map_or(0, |m| m.pid);
    ModelRow {
        model: most(&|m| m.model().to_string()),
        messages: msgs.len() as u64,
        bytes: msgs.iter().map(|m| m.bytes).sum(),
        wait_ns: wait_sum as f64 / n,
        wait_pct: pct,
        copy_ns: msgs.iter().map(Message::copy_ns).sum::<u64>() as f64 / n,
        notify_ns: (!notes.is_empty())
            .then(|| notes.iter().sum::<u64>() as f64 / notes.len() as f64),
        calls: msgs.iter().map(|m| m.calls).sum::<u64>() as f64 / n,
        failed: msgs.iter().map(|m| m.failed_attempts).sum::<u64>() as f64 / n,
        cpu_ns: msgs.iter().map(Message::cpu_ns).sum::<u64>() as f64 / n,
        copier: most(&|m| m.copier.as_str().to_string()),
        blocker: blockers
            .into_iter()
            .max_by_key(|(_, ns)| *ns)
            .map(|((tid, call), _)| {
                let who = if tid == pid {
                    "main thread"
                } else if msgs.iter().any(|m| m.waiter == tid) {
                    "waiting thread"
                } else {
                    "helper thread"
                };
                format!("tid {tid} ({who}) in {call}")
            })
            .unwrap_or_else(|| "nobody".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::{CallRecord, CopyRecord, SignalRecord, SockRecord, UringRecord};

    const PID: u32 = 100;

    fn call(tid: u32, nr: i64, start: u64, end: u64, ret: i64) -> CallRecord {
        CallRecord {
            pid: PID,
            tid,
            nr: nr as u32,
            start_ns: start,
            end_ns: end,
            ret,
            ..Default::default()
        }
    }

    /// A call asleep from `start` to `copy - 10µs`, copying from `copy` to `end`.
    fn slept(mut r: CallRecord, copy: u64) -> CallRecord {
        r.first_copy_ns = copy;
        r.copy_bytes = r.ret.max(0) as u64;
        r.blocked_ns = copy - 10_000 - r.start_ns;
        r.wait_blocked_ns = r.blocked_ns;
        r
    }

    fn traced(recs: &[CallRecord]) -> Vec<TracedCall> {
        recs.iter()
            .map(|r| TracedCall::new(*r, |_, _| FdKind::Socket))
            .collect()
    }

    fn arrival(t: u64) -> Record {
        Record::Sock(SockRecord {
            kind: RecordKind::DataReady as u32,
            pid: PID,
            sk: 7,
            time_ns: t,
            ..Default::default()
        })
    }

    fn deliver(tid: u32, t: u64) -> Record {
        Record::Signal(SignalRecord {
            event: SignalEvent::Deliver as u32,
            pid: PID,
            tid,
            sig: libc::SIGIO,
            code: 0x80,
            time_ns: t,
            ..Default::default()
        })
    }

    /// A receive that found its data ready: on CPU from `start` to `end`, copying from
    /// `copy`.
    fn ready(tid: u32, start: u64, copy: u64, end: u64, ret: i64) -> CallRecord {
        let mut r = call(tid, libc::SYS_recvfrom, start, end, ret);
        r.first_copy_ns = copy;
        r
    }

    fn models_of(msgs: &[Message]) -> Vec<&'static str> {
        msgs.iter().map(Message::model).collect()
    }

    #[test]
    fn a_blocking_receiver_whose_data_was_ready_stays_blocking() {
        // Paced at 5 ms, writing a line after each message: two receives sleep; one finds its
        // data ready after the thread ran its own code for 4 ms; one spends its short wait on
        // CPU inside the call.
        let write = |t: u64| call(PID, libc::SYS_write, t, t + 500, 10);
        let recs = [
            slept(call(PID, libc::SYS_recvfrom, 0, 5_010_000, 100), 5_000_000),
            write(5_011_000),
            ready(PID, 9_020_000, 9_021_000, 9_030_000, 100),
            write(9_031_000),
            slept(
                call(PID, libc::SYS_recvfrom, 9_040_000, 15_010_000, 100),
                15_000_000,
            ),
            write(15_011_000),
            ready(PID, 15_012_000, 15_019_000, 15_020_000, 100),
        ];
        let msgs = messages(&traced(&recs), &[arrival(8_000_000)]);
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert_eq!(msgs[1].main_kind(), WaitKind::Free);
        assert_eq!(msgs[3].main_kind(), WaitKind::Polling);
        assert_eq!(models_of(&msgs), ["blocking"; 4]);
        assert_eq!(model_row(&msgs).model, "blocking");
    }

    #[test]
    fn a_multiplexing_server_reading_a_kept_alive_connection_stays_multiplexing() {
        let mut wait = call(PID, libc::SYS_epoll_wait, 0, 5_000_000, 1);
        wait.blocked_ns = 4_990_000;
        let recs = [
            wait,
            ready(PID, 5_001_000, 5_002_000, 5_010_000, 100),
            call(PID, libc::SYS_writev, 5_011_000, 5_012_000, 200),
            // The next request was already there: read at once, no wait, no signal.
            ready(PID, 8_000_000, 8_001_000, 8_010_000, 100),
        ];
        let msgs = messages(&traced(&recs), &[]);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[1].main_kind(), WaitKind::Free);
        assert_eq!(models_of(&msgs), ["multiplexing"; 2]);
    }

    #[test]
    fn a_sigio_sent_with_kill_is_no_readiness() {
        let recs = [
            ready(PID, 0, 1_000, 2_000, 100),
            call(PID, libc::SYS_write, 3_000, 4_000, 10),
            ready(PID, 5_001_000, 5_002_000, 5_010_000, 100),
        ];
        let mut sent = deliver(PID, 5_000_000);
        if let Record::Signal(s) = &mut sent {
            s.code = 0;
        }
        let msgs = messages(&traced(&recs), &[sent]);
        assert!(msgs.iter().all(|m| !m.ready_signal), "{msgs:?}");
        assert_eq!(models_of(&msgs), ["blocking"; 2]);
        // The signal chosen with F_SETSIG carries POLL_IN: that is readiness.
        let mut rt = deliver(PID, 5_000_000);
        if let Record::Signal(s) = &mut rt {
            (s.sig, s.code) = (libc::SIGRTMIN() + 1, 1);
        }
        let msgs = messages(&traced(&recs), &[rt]);
        assert_eq!(models_of(&msgs)[1], "signal-driven");
    }

    #[test]
    fn a_thread_that_changes_behaviour_changes_its_messages_model() {
        let mut wait = call(PID, libc::SYS_poll, 10_020_000, 15_000_000, 1);
        wait.blocked_ns = 4_970_000;
        let recs = [
            slept(call(PID, libc::SYS_recvfrom, 0, 5_010_000, 100), 5_000_000),
            slept(
                call(PID, libc::SYS_recvfrom, 5_020_000, 10_010_000, 100),
                10_000_000,
            ),
            wait,
            ready(PID, 15_001_000, 15_002_000, 15_010_000, 100),
        ];
        let msgs = messages(&traced(&recs), &[]);
        assert_eq!(
            models_of(&msgs),
            ["blocking", "blocking", "multiplexing"],
            "{msgs:?}"
        );
    }

    fn share(m: &Message, k: WaitKind) -> f64 {
        m.wait_of(k) as f64 / m.wait_ns() as f64
    }

    #[test]
    fn blocking_waits_in_the_call_and_the_caller_copies() {
        let recs = [
            slept(
                call(PID, libc::SYS_recvfrom, 0, 5_010_000, 16384),
                5_000_000,
            ),
            slept(
                call(PID, libc::SYS_recvfrom, 5_020_000, 10_030_000, 16384),
                10_020_000,
            ),
        ];
        let msgs = messages(&traced(&recs), &[arrival(4_999_000)]);
        assert_eq!(msgs.len(), 2);
        let m = &msgs[0];
        assert_eq!(
            (m.wait_ns(), m.copy_ns(), m.bytes),
            (5_000_000, 10_000, 16384)
        );
        assert!(share(m, WaitKind::Call) > 0.99, "{m:?}");
        assert_eq!((m.copier, m.model()), (Copier::Caller, "blocking"));
        assert_eq!(m.notification_ns(), Some(1_000));
        // The second wait starts where the first copy ended.
        assert_eq!(msgs[1].wait_start_ns, 5_010_000);
        assert_eq!(msgs[1].wait_ns(), 5_010_000);
        assert_eq!(msgs[1].arrival_ns, None);
    }

    #[test]
    fn the_rest_read_at_once_belongs_to_the_message() {
        let mut first = call(PID, libc::SYS_recvfrom, 0, 5_010_000, 65483);
        first = slept(first, 5_000_000);
        let mut rest = call(PID, libc::SYS_recvfrom, 5_011_000, 5_012_000, 53);
        rest.first_copy_ns = 5_011_500;
        let fail = call(PID, libc::SYS_recvfrom, 5_013_000, 5_014_000, -11);
        let mut next = call(PID, libc::SYS_recvfrom, 5_015_000, 10_010_000, 65536);
        next = slept(next, 10_000_000);
        let msgs = messages(&traced(&[first, rest, fail, next]), &[]);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!((msgs[0].bytes, msgs[0].copy_end_ns), (65536, 5_012_000));
        assert_eq!(msgs[0].calls, 2);
        // A failed attempt in between starts a new wait.
        assert_eq!((msgs[1].bytes, msgs[1].wait_start_ns), (65536, 5_012_000));
        assert_eq!(msgs[1].failed_attempts, 1);
    }

    #[test]
    fn nonblocking_polls_with_failed_attempts() {
        let mut recs: Vec<CallRecord> = (0..1000)
            .map(|i| call(PID, libc::SYS_recvfrom, i * 5_000, i * 5_000 + 3_000, -11))
            .collect();
        let mut ok = call(PID, libc::SYS_recvfrom, 5_000_000, 5_020_000, 16384);
        ok.first_copy_ns = 5_002_000;
        recs.push(ok);
        let msgs = messages(&traced(&recs), &[]);
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.failed_attempts, 1000);
        assert_eq!(m.calls, 1001);
        assert!(share(m, WaitKind::Polling) > 0.99, "{m:?}");
        assert_eq!(m.model(), "non-blocking");
        assert_eq!(m.cpu_ns(), m.wait_ns() + m.copy_ns());
    }

    #[test]
    fn multiplexer_wait_is_told_by_its_return() {
        let mut sel = call(PID, libc::SYS_select, 0, 5_000_000, 1);
        sel.blocked_ns = 4_990_000;
        let mut rd = call(PID, libc::SYS_recvfrom, 5_001_000, 5_010_000, 16384);
        rd.first_copy_ns = 5_002_000;
        let msgs = messages(&traced(&[sel, rd]), &[arrival(4_995_000)]);
        let m = &msgs[0];
        assert!(share(m, WaitKind::Mux) > 0.99, "{m:?}");
        assert_eq!(m.model(), "multiplexing");
        assert_eq!(m.notification_ns(), Some(5_000));
        assert_eq!(m.calls, 2);
        assert_eq!(call_wait_kind(&traced(&[sel])[0]), "mux");
    }

    #[test]
    fn signal_driven_runs_free_until_the_signal() {
        let fail = call(PID, libc::SYS_recvfrom, 0, 1_000, -11);
        let mut rd = call(PID, libc::SYS_recvfrom, 5_001_000, 5_010_000, 16384);
        rd.first_copy_ns = 5_002_000;
        let msgs = messages(
            &traced(&[fail, rd]),
            &[arrival(4_999_000), deliver(PID, 5_000_000)],
        );
        let m = &msgs[0];
        assert!(share(m, WaitKind::Free) > 0.99, "{m:?}");
        assert_eq!((m.model(), m.copier), ("signal-driven", Copier::Caller));
        assert_eq!(m.notification_ns(), Some(1_000));
        assert_eq!(m.failed_attempts, 1);
    }

    #[test]
    fn a_helper_thread_that_blocks_and_signals_is_named() {
        let helper = 101;
        let pread = call(helper, libc::SYS_pread64, 0, 500, -(libc::ESPIPE as i64));
        let rd = slept(
            call(helper, libc::SYS_read, 600, 5_010_000, 16384),
            5_000_000,
        );
        let msgs = messages(
            &traced(&[pread, rd]),
            &[arrival(4_999_000), deliver(PID, 5_020_000)],
        );
        let m = &msgs[0];
        assert_eq!(
            (m.waiter, m.copier, m.copier_tid),
            (PID, Copier::Helper, helper)
        );
        assert!(share(m, WaitKind::Free) > 0.99, "{m:?}");
        assert_eq!(m.model(), "asynchronous");
        assert_eq!(m.notification_ns(), Some(21_000));
        let b = m.blocker.as_ref().expect("blocker");
        assert_eq!((b.tid, b.call.as_str()), (helper, "read"));
        let row = model_row(&msgs);
        assert_eq!(row.blocker, format!("tid {helper} (helper thread) in read"));
        assert_eq!(row.copier, "helper-thread");
    }

    #[test]
    fn io_uring_reaped_later_was_copied_by_task_work() {
        let enter = call(PID, libc::SYS_io_uring_enter, 0, 1_000, 1);
        let events = [
            Record::Uring(UringRecord {
                kind: RecordKind::UringSubmit as u32,
                pid: PID,
                tid: PID,
                req: 9,
                time_ns: 500,
                ..Default::default()
            }),
            arrival(4_999_000),
            Record::Copy(CopyRecord {
                pid: PID,
                tid: PID,
                bytes: 16384,
                time_ns: 5_000_000,
                ..Default::default()
            }),
            Record::Uring(UringRecord {
                kind: RecordKind::UringComplete as u32,
                pid: PID,
                tid: PID,
                req: 9,
                res: 16384,
                time_ns: 5_003_000,
                ..Default::default()
            }),
        ];
        let msgs = messages(&traced(&[enter]), &events);
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(
            (m.copy_ns(), m.bytes, m.copier),
            (3_000, 16384, Copier::TaskWork)
        );
        assert!(share(m, WaitKind::Free) > 0.99, "{m:?}");
        assert_eq!(m.model(), "asynchronous");
        assert_eq!(m.notification_ns(), Some(4_000));
    }

    #[test]
    fn io_uring_waited_for_in_enter_is_a_completion_wait() {
        let mut enter = slept(
            call(PID, libc::SYS_io_uring_enter, 0, 5_010_000, 1),
            5_000_000,
        );
        enter.copy_bytes = 16384;
        let done = Record::Uring(UringRecord {
            kind: RecordKind::UringComplete as u32,
            pid: PID,
            tid: PID,
            res: 16384,
            time_ns: 5_004_000,
            ..Default::default()
        });
        let msgs = messages(&traced(&[enter]), &[arrival(4_999_000), done]);
        let m = &msgs[0];
        assert_eq!(
            (m.copy_ns(), m.bytes, m.copier),
            (4_000, 16384, Copier::TaskWork)
        );
        assert!(share(m, WaitKind::Completion) > 0.99, "{m:?}");
        assert_eq!(m.model(), "asynchronous");
        assert_eq!(m.notification_ns(), Some(11_000));
        let row = model_row(&msgs);
        assert_eq!((row.messages, row.bytes), (1, 16384));
        assert!(row.wait_pct[WaitKind::Completion as usize] > 99.0);
    }

    #[test]
    fn message_index_finds_what_the_linear_search_finds() {
        let msg = |pid: u32, index: u64, wait: u64, end: u64| Message {
            pid,
            index,
            waiter: 1,
            copier_tid: 1,
            copier: Copier::Caller,
            wait_start_ns: wait,
            copy_start_ns: wait,
            copy_end_ns: end,
            bytes: 1,
            wait_by: [0; 6],
            failed_attempts: 0,
            calls: 1,
            arrival_ns: None,
            notified_ns: None,
            blocker: None,
            ready_signal: false,
            model: Model::Blocking,
        };
        let msgs = vec![
            // pid 1: in order, a long copy that ends after the next message's (overlap).
            msg(1, 0, 10, 20),
            msg(1, 1, 20, 60),
            msg(1, 2, 30, 40),
            msg(1, 3, 70, 80),
            // pid 2: out of order (searched one by one).
            msg(2, 0, 50, 55),
            msg(2, 1, 5, 9),
            // pid 3: a gap between messages.
            msg(3, 0, 100, 110),
            msg(3, 1, 200, 210),
        ];
        let index = MessageIndex::new(&msgs);
        for pid in [1, 2, 3, 4] {
            for t in 0..=220 {
                assert_eq!(
                    index.find(pid, t).map(|m| (m.pid, m.index)),
                    message_of(&msgs, pid, t).map(|m| (m.pid, m.index)),
                    "pid {pid} at {t}"
                );
            }
        }
    }
}
