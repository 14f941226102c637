//! The data movement of a run: how many bytes moved and by which calls, what it cost in CPU,
//! sleep and page faults, which bytes passed through user memory, and signal names. Pure:
//! built from records and numbers, no I/O, no BPF (the tables are in `render::movement`).
use std::collections::BTreeMap;

use probe_common::{Counter, RecordKind};
use serde::{Deserialize, Serialize};

use crate::{
    capture::decode::Record, capture::fdkind::FdKind, capture::session::counter,
    capture::traced::TracedCall, syscalls::Role,
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

/// Bytes by the kind of object at one end of the data's way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ends {
    /// Regular files.
    pub files: u64,
    /// Sockets.
    pub sockets: u64,
    /// Pipes and FIFOs.
    pub pipes: u64,
    /// Devices (`/dev/null`, a terminal) and other descriptors.
    pub other: u64,
    /// io_uring requests (their descriptors are not known).
    pub io_uring: u64,
}

impl Ends {
    fn add(&mut self, kind: FdKind, n: u64) {
        match kind {
            FdKind::File => self.files += n,
            FdKind::Socket => self.sockets += n,
            FdKind::Pipe => self.pipes += n,
            FdKind::Other | FdKind::Unknown => self.other += n,
        }
    }

    /// The most bytes through one kind of end.
    pub fn largest(&self) -> u64 {
        [
            self.files,
            self.sockets,
            self.pipes,
            self.other,
            self.io_uring,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

/// Below this many bytes moved, figures per GiB and throughput say nothing: costs are given
/// per call instead.
pub const PER_GIB_MIN_BYTES: u64 = 1 << 20;

/// The data movement of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Movement {
    /// What ran (`splice`, a command, a pid).
    pub label: String,
    /// Bytes moved: the largest stream through the traced processes, from one kind of end
    /// (files, sockets, pipes, devices, io_uring reads) or to one ([`Movement::from`],
    /// [`Movement::to`]). `cat F > /dev/null` moves the file's size once (read from a file,
    /// written to a device), a receiver what it received, `cp` what it copied.
    pub bytes: u64,
    /// Bytes that left each kind of end: reads and receives, and the sources of in-kernel
    /// transfers.
    #[serde(default)]
    pub from: Ends,
    /// Bytes that reached each kind of end: writes and sends (sockets: every byte handed to
    /// one, in calls or not), and the destinations of in-kernel transfers.
    #[serde(default)]
    pub to: Ends,
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
    /// The part of `copy_oncpu_ns` spent on the sending side: the data-moving calls (but
    /// socket receives) of the threads that hand data to sockets. Zero where nothing went to
    /// a socket (`cp`'s in-kernel copy is no sending).
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
    pub cow: crate::analyze::cow::CowTotals,
}

fn moved(c: &TracedCall) -> bool {
    c.bytes() > 0 || c.rec.sent_bytes > 0
}

fn oncpu(c: &TracedCall) -> u64 {
    c.stages
        .total_ns
        .saturating_sub(c.stages.blocked_ns + c.stages.runq_ns)
}

/// Whether a call hands data to a socket.
fn sends_to_socket(c: &TracedCall) -> bool {
    let role = c.call.map(|k| k.role);
    c.rec.sent_bytes > 0
        || (c.bytes() > 0
            && match role {
                Some(Role::Send) => c.fd_kind == FdKind::Socket,
                Some(Role::Transfer) => c.fd_out_kind == FdKind::Socket,
                _ => false,
            })
}

/// Adds a data-moving call's bytes to the ends they left and reached.
fn add_ends(m: &mut Movement, c: &TracedCall) {
    let n = c.bytes();
    match c.call.map(|k| (k.role, k.name)) {
        Some((Role::Receive, _)) => m.from.add(c.fd_kind, n),
        Some((Role::Send, _)) => m.to.add(c.fd_kind, n),
        // From user memory into the pipe it names.
        Some((Role::Transfer, "vmsplice")) => m.to.add(c.fd_kind, n),
        Some((Role::Transfer, _)) => {
            m.from.add(c.fd_kind, n);
            m.to.add(c.fd_out_kind, n);
        }
        _ => {}
    }
}

/// io_uring operation codes (`<linux/io_uring.h>`) that read into the process.
const URING_READS: [u32; 6] = [1, 4, 10, 22, 27, 49];
/// io_uring operation codes that write or send from the process.
const URING_WRITES: [u32; 6] = [2, 5, 9, 23, 26, 47];

/// Adds the bytes of completed io_uring reads and writes, tied to their submissions.
fn add_uring(m: &mut Movement, events: &[Record]) {
    let mut opcode: BTreeMap<(u32, u64), u32> = BTreeMap::new();
    for e in events {
        if let Record::Uring(u) = e
            && u.kind == RecordKind::UringSubmit as u32
        {
            opcode.insert((u.pid, u.req), u.opcode);
        }
    }
    for e in events {
        let Record::Uring(u) = e else { continue };
        if u.kind != RecordKind::UringComplete as u32 || u.res <= 0 {
            continue;
        }
        match opcode.get(&(u.pid, u.req)) {
            Some(op) if URING_READS.contains(op) => m.from.io_uring += u.res as u64,
            Some(op) if URING_WRITES.contains(op) => m.to.io_uring += u.res as u64,
            _ => {}
        }
    }
}

/// Data moved in summary mode, where calls are summed per process and call without their
/// descriptors: the largest of the bytes read or received, the bytes written or sent, and
/// the bytes each in-kernel transfer call moved (a `splice` through a pipe counts both hops).
pub fn summary_bytes(sums: &crate::analyze::summary::Summaries) -> u64 {
    let (mut from, mut to) = (0u64, 0u64);
    let mut transfers: BTreeMap<u32, u64> = BTreeMap::new();
    for (k, s) in sums {
        match crate::syscalls::by_nr(k.nr).map(|c| (c.role, c.name)) {
            Some((Role::Receive, _)) => from += s.bytes,
            Some((Role::Send, _)) | Some((Role::Transfer, "vmsplice")) => to += s.bytes,
            Some((Role::Transfer, _)) => *transfers.entry(k.nr).or_default() += s.bytes,
            _ => {}
        }
    }
    transfers.into_values().chain([from, to]).max().unwrap_or(0)
}

/// The data movement of a run from its calls, its other records and its counters.
pub fn summarize(
    label: &str,
    calls: &[TracedCall],
    events: &[Record],
    counters: &[u64],
    wall_ns: u64,
    cpu: Option<Cpu>,
) -> Movement {
    let mut m = Movement {
        label: label.into(),
        wall_ns,
        cpu,
        faults_user: counter(counters, Counter::FaultsUser),
        cow: crate::analyze::cow::CowTotals::from_counters(counters),
        faults_kernel: counter(counters, Counter::FaultsKernel),
        file_faults: counter(counters, Counter::FileFaults),
        faults_outside: counter(counters, Counter::FaultsUserOutside)
            + counter(counters, Counter::FaultsKernelOutside),
        ..Movement::default()
    };
    let mut groups: BTreeMap<String, CallCost> = BTreeMap::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    // Threads that hand data to sockets: their data-moving calls are the sending side.
    let senders: std::collections::BTreeSet<u32> = calls
        .iter()
        .filter(|c| sends_to_socket(c))
        .map(|c| c.rec.tid)
        .collect();
    for c in calls {
        let role = c.call.map(|k| k.role);
        m.blocked_ns += c.stages.blocked_ns;
        let g = groups.entry(c.label()).or_insert_with(|| CallCost {
            label: c.label(),
            user_memory: matches!(role, Some(Role::Receive | Role::Send)),
            ..CallCost::default()
        });
        g.calls += 1;
        g.bytes += c.bytes();
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
        if senders.contains(&c.rec.tid)
            && !(role == Some(Role::Receive) && c.fd_kind == FdKind::Socket)
        {
            m.send_oncpu_ns += oncpu(c);
        }
        add_ends(&mut m, c);
        match (role, c.fd_kind) {
            (Some(Role::Receive), FdKind::File) => m.user_reads += c.bytes(),
            (Some(Role::Receive), FdKind::Socket) => m.user_receives += c.bytes(),
            (Some(Role::Send), FdKind::Socket) => m.user_writes += c.bytes(),
            _ => {}
        }
    }
    // Every byte handed to a socket, in traced calls or not (io_uring workers, task work).
    m.to.sockets = m.to.sockets.max(counter(counters, Counter::SentBytes));
    add_uring(&mut m, events);
    m.bytes = m.from.largest().max(m.to.largest());
    m.span_ns = last.saturating_sub(first);
    m.by_call = groups.into_values().collect();
    m
}

/// `v` per GiB of `bytes` moved; `None` below [`PER_GIB_MIN_BYTES`], where it would say
/// nothing.
pub fn per_gib(v: f64, bytes: u64) -> Option<f64> {
    (bytes >= PER_GIB_MIN_BYTES).then(|| v * (1u64 << 30) as f64 / bytes as f64)
}

/// Throughput of `bytes` in `ns`; `None` below [`PER_GIB_MIN_BYTES`] or without a span.
pub fn mib_s(bytes: u64, ns: u64) -> Option<f64> {
    (bytes >= PER_GIB_MIN_BYTES && ns > 0)
        .then(|| bytes as f64 / (1 << 20) as f64 / (ns as f64 / 1e9))
}

/// `v` per data-moving call of `m`.
pub fn per_call(v: f64, m: &Movement) -> f64 {
    v / m.data_calls.max(1) as f64
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::movement::{report, savings, side_by_side, signal_lines};
    use probe_common::{CallRecord, RecordKind};
    use probe_common::{SignalEvent, SignalRecord};

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
        let m = summarize("read-write", &calls, &[], &counters, 1_000, None);
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
        let m = summarize("x", &calls, &[], &counters, 100, Some(Cpu::default()));
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

    const MIB: u64 = 1 << 20;

    /// `n` calls of `nr` on `fd` returning `each`, one after the other, on thread `tid`.
    fn many(tid: u32, nr: i64, fd: u64, each: i64, n: u64, t0: u64) -> Vec<TracedCall> {
        (0..n)
            .map(|i| {
                let mut r = call(nr, [fd, 0, 0], each, t0 + 10 * i, t0 + 10 * i + 5);
                r.tid = tid;
                TracedCall::new(r, kinds)
            })
            .collect()
    }

    #[test]
    fn cat_to_dev_null_moves_the_file_once() {
        // The loader reads a library's header; cat reads 64 MiB and writes it to /dev/null.
        let mut calls = many(1, libc::SYS_read, 3, 832, 1, 0);
        calls.extend(many(1, libc::SYS_read, 3, 128 << 10, 512, 100));
        calls.extend(many(1, libc::SYS_write, 9, 128 << 10, 512, 100_000));
        let m = summarize("cat", &calls, &[], &[0; 64], 1_000_000, None);
        assert_eq!((m.from.files, m.to.other), (64 * MIB + 832, 64 * MIB));
        assert_eq!(m.bytes, 64 * MIB + 832);
        assert_eq!(m.data_calls, 1025);
        // Nothing reached a socket: no sending side.
        assert_eq!(m.send_oncpu_ns, 0);
        let text = report(&m);
        assert!(text.contains("data moved: 64.0 MiB"), "{text}");
        assert!(
            text.contains("from files 64.0 MiB; to devices 64.0 MiB"),
            "{text}"
        );
        assert!(!text.contains("sending"), "{text}");
    }

    #[test]
    fn a_receiver_moves_what_it_received() {
        let mut calls = many(1, libc::SYS_recvfrom, 4, 65536, 100, 0);
        calls.extend(many(1, libc::SYS_write, 9, 20, 100, 5_000));
        let m = summarize("rx", &calls, &[], &[0; 64], 1_000, None);
        assert_eq!(m.bytes, 6_553_600);
        assert_eq!(m.user_receives, 6_553_600);
    }

    #[test]
    fn addresses_and_ready_counts_are_no_bytes() {
        let calls = [
            TracedCall::new(
                call(libc::SYS_mmap, [0, 0, 0], 0x7f00_0000_0000, 0, 10),
                kinds,
            ),
            TracedCall::new(call(libc::SYS_munmap, [0, 0, 0], 0, 20, 30), kinds),
            TracedCall::new(call(libc::SYS_poll, [0, 0, 0], 3, 40, 50), kinds),
            TracedCall::new(call(libc::SYS_epoll_wait, [7, 0, 0], 2, 60, 70), kinds),
            TracedCall::new(call(libc::SYS_io_uring_enter, [7, 0, 0], 8, 80, 90), kinds),
        ];
        let m = summarize("x", &calls, &[], &[0; 64], 100, None);
        assert_eq!((m.bytes, m.data_calls), (0, 0));
        assert!(m.by_call.iter().all(|c| c.bytes == 0), "{:?}", m.by_call);
    }

    #[test]
    fn batched_socket_calls_count_bytes_not_messages() {
        let mut rx = call(libc::SYS_recvmmsg, [4, 0, 0], 3, 0, 10);
        rx.recv_bytes = 3 * 1400;
        let mut tx = call(libc::SYS_sendmmsg, [4, 0, 0], 2, 20, 30);
        tx.sent_bytes = 2 * 1400;
        let calls = [TracedCall::new(rx, kinds), TracedCall::new(tx, kinds)];
        assert_eq!(calls[0].bytes(), 4200);
        assert_eq!(calls[1].bytes(), 2800);
        let m = summarize("mmsg", &calls, &[], &[0; 64], 100, None);
        assert_eq!((m.from.sockets, m.to.sockets, m.bytes), (4200, 2800, 4200));
    }

    #[test]
    fn an_in_kernel_file_copy_is_no_sending() {
        let c = call(
            libc::SYS_copy_file_range,
            [3, 0, 6],
            64 << 20,
            0,
            500_000_000,
        );
        let calls = [TracedCall::new(c, |p, fd| {
            if fd == 6 { FdKind::File } else { kinds(p, fd) }
        })];
        let m = summarize("cp", &calls, &[], &[0; 64], 600_000_000, None);
        assert_eq!((m.bytes, m.to.files), (64 * MIB, 64 * MIB));
        assert_eq!((m.copy_oncpu_ns, m.send_oncpu_ns), (500_000_000, 0));
        assert!(!report(&m).contains("sending"));
    }

    #[test]
    fn io_uring_completions_move_bytes() {
        let uring = |kind: RecordKind, opcode: u32, req: u64, res: i32| {
            Record::Uring(probe_common::UringRecord {
                kind: kind as u32,
                pid: 1,
                opcode,
                req,
                res,
                ..Default::default()
            })
        };
        let events = [
            uring(RecordKind::UringSubmit, 22, 1, 0),
            uring(RecordKind::UringSubmit, 23, 2, 0),
            uring(RecordKind::UringSubmit, 6, 3, 0),
            uring(RecordKind::UringComplete, 0, 1, 4096),
            uring(RecordKind::UringComplete, 0, 2, 1000),
            // A poll's ready mask is no bytes.
            uring(RecordKind::UringComplete, 0, 3, 1),
        ];
        let m = summarize("uring", &[], &events, &[0; 64], 100, None);
        assert_eq!(
            (m.from.io_uring, m.to.io_uring, m.bytes),
            (4096, 1000, 4096)
        );
    }

    #[test]
    fn per_gib_figures_only_where_a_mib_moved() {
        let small = Movement {
            bytes: 125 << 10,
            data_calls: 10,
            copy_oncpu_ns: 10_000,
            span_ns: 1_000_000,
            faults_user: 50,
            ..Movement::default()
        };
        assert_eq!(per_gib(1.0, small.bytes), None);
        assert_eq!(mib_s(small.bytes, small.span_ns), None);
        let text = report(&small);
        assert!(!text.contains("GiB"), "{text}");
        assert!(!text.contains("MiB/s"), "{text}");
        assert!(
            text.contains("per data-moving call: blocked 0ns, copy time 1.0µs"),
            "{text}"
        );
        assert!(
            text.contains("page faults per data-moving call: user 5,"),
            "{text}"
        );
        let big = Movement {
            bytes: 1 << 30,
            span_ns: 1_000_000_000,
            ..small.clone()
        };
        assert_eq!(per_gib(2.0, big.bytes), Some(2.0));
        assert!(report(&big).contains("(1024 MiB/s)"));
        let table = side_by_side(&[small]);
        assert!(table.contains("throughput MiB/s"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("blocked /GiB") && l.trim_end().ends_with('-')),
            "{table}"
        );
    }

    #[test]
    fn summary_mode_moves_the_larger_direction_not_the_sum() {
        use crate::analyze::summary::Summaries;
        let sum = |pid: u32, nr: i64, bytes: u64| {
            (
                probe_common::SummaryKey {
                    pid,
                    nr: nr as u32,
                    ..Default::default()
                },
                probe_common::CallSummary {
                    calls: 1,
                    bytes,
                    ..Default::default()
                },
            )
        };
        // cat: the file read, then written to /dev/null.
        let cat: Summaries = [
            sum(1, libc::SYS_read, 64 * MIB + 832),
            sum(1, libc::SYS_write, 64 * MIB),
            sum(1, libc::SYS_mmap, 0),
        ]
        .into();
        assert_eq!(summary_bytes(&cat), 64 * MIB + 832);
        let cp: Summaries = [sum(2, libc::SYS_copy_file_range, 64 * MIB)].into();
        assert_eq!(summary_bytes(&cp), 64 * MIB);
        let server: Summaries = [
            sum(3, libc::SYS_recvfrom, 100),
            sum(3, libc::SYS_sendfile, 8 * MIB),
            sum(3, libc::SYS_writev, 200),
        ]
        .into();
        assert_eq!(summary_bytes(&server), 8 * MIB);
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
