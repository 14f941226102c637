//! Records and constants shared by the kernel probes and the profiler: plain `#[repr(C)]` data,
//! and the one stage split ([`split_stages`]) that both sides apply to a call record.
#![no_std]

mod stages;
pub use stages::{SplitBy, StageSplit, split_stages};

/// What a ring-buffer record is; every record starts with this as a `u32`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A traced system call that has returned: a [`CallRecord`].
    Call = 1,
    /// The same in 64 bytes, where every value fits: a [`CompactCall`].
    CompactCall = 4,
    /// A signal generated for or delivered to a traced process: a [`SignalRecord`].
    Signal = 2,
    /// A copy of socket data to user memory by a traced thread outside any traced call (an
    /// io_uring worker, task work): a [`CopyRecord`].
    Copy = 3,
    /// A CPU sample of a traced thread with its stacks and the call in flight: a
    /// [`SampleRecord`].
    Sample = 30,
    // I/O models (10-19).
    /// Data reached a socket (`sock:sk_data_ready`): a [`SockRecord`].
    DataReady = 10,
    /// A traced thread read from a socket (`sock:sock_recv_length`): a [`SockRecord`].
    RecvLength = 11,
    /// An io_uring request was submitted (`io_uring:io_uring_submit_req`): a [`UringRecord`].
    UringSubmit = 12,
    /// An io_uring request completed (`io_uring:io_uring_complete`): a [`UringRecord`].
    UringComplete = 13,
    /// A traced process forked or ended: a [`ProcRecord`].
    Proc = 40,
}

impl RecordKind {
    /// The kind for a raw value read from a record's first four bytes.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Call),
            4 => Some(Self::CompactCall),
            2 => Some(Self::Signal),
            3 => Some(Self::Copy),
            30 => Some(Self::Sample),
            10 => Some(Self::DataReady),
            11 => Some(Self::RecvLength),
            12 => Some(Self::UringSubmit),
            13 => Some(Self::UringComplete),
            40 => Some(Self::Proc),
            _ => None,
        }
    }
}

/// One system call of a traced thread, from entry to exit, with the scheduler and copy
/// events seen while it ran. Built in the kernel, sent at the call's exit.
///
/// Times are `bpf_ktime_get_ns` readings (CLOCK_MONOTONIC, nanoseconds).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallRecord {
    /// [`RecordKind::Call`] as `u32`.
    pub kind: u32,
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    /// System call number of this architecture.
    pub nr: u32,
    /// The first three arguments of the call, raw.
    pub args: [u64; 3],
    /// Return value: bytes moved, or `-errno`.
    pub ret: i64,
    /// Entry time.
    pub start_ns: u64,
    /// Exit time.
    pub end_ns: u64,
    /// Time of the first copy to user memory seen inside the call (0: none seen).
    pub first_copy_ns: u64,
    /// Bytes reported by the copy markers inside the call.
    pub copy_bytes: u64,
    /// Copy markers seen inside the call.
    pub copy_events: u32,
    /// Times the thread was switched out inside the call.
    pub switches: u32,
    /// Time switched out and not runnable (sleeping) inside the call.
    pub blocked_ns: u64,
    /// Time runnable but not running (preempted, or woken and waiting for a CPU).
    pub runq_ns: u64,
    /// `blocked_ns` as it stood at the first copy marker.
    pub wait_blocked_ns: u64,
    /// `runq_ns` as it stood at the first copy marker.
    pub wait_runq_ns: u64,
    // Page faults and socket sends inside the call.
    /// Page faults taken in user mode inside the call (`exceptions:page_fault_user`).
    pub faults_user: u32,
    /// Page faults taken in kernel mode inside the call, such as a copy from a mapped file
    /// (`exceptions:page_fault_kernel`).
    pub faults_kernel: u32,
    /// Faults that went to a file's pages (`filemap:mm_filemap_fault`).
    pub file_faults: u32,
    /// Bytes the call received from sockets (`sock:sock_recv_length`; per-call runs only).
    pub recv_bytes: u32,
    /// Bytes handed to sockets inside the call (`sock:sock_send_length`).
    pub sent_bytes: u64,
    /// What the call's source descriptor was at entry, a [`fd_class`] value.
    pub fd_class: u32,
    /// What the call's destination descriptor was at entry (calls with two), a [`fd_class`]
    /// value.
    pub fd_out_class: u32,
    /// [`call_flags`] bits.
    pub flags: u32,
    /// Explicit padding.
    pub _pad5: u32,
}

/// A [`CallRecord`] in 64 bytes: times as deltas from the start, ids, descriptor classes and
/// small counts packed, the descriptor arguments alone. Sent where every value the profiler
/// reads fits ([`CompactCall::pack`]); [`CompactCall::unpack`] gives the record back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactCall {
    /// [`RecordKind::CompactCall`] as `u32`.
    pub kind: u32,
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Call number (bits 0-9), descriptor classes (10-13, 14-17), flags (18), whether the
    /// bytes received from sockets are the return value (19; else none), argument indexes of
    /// the two descriptors (20-21, 22-23; 3: none), switches (24-27) and copy markers (28-31).
    pub packed: u32,
    /// Entry time.
    pub start_ns: u64,
    /// Return value.
    pub ret: i32,
    /// Bytes reported by the copy markers.
    pub copy_bytes: u32,
    /// The source descriptor argument.
    pub fd: i32,
    /// The destination descriptor argument.
    pub fd_out: i32,
    /// Entry to exit.
    pub total_ns: u32,
    /// First copy marker after entry plus one (0: none).
    pub first_copy: u32,
    /// Time asleep.
    pub blocked_ns: u32,
    /// Time runnable, not running.
    pub runq_ns: u32,
    /// Time asleep before the first copy marker.
    pub wait_blocked_ns: u32,
    /// Run-queue time before the first copy marker.
    pub wait_runq_ns: u32,
}

/// Argument index meaning "no such descriptor" in [`CompactCall::packed`].
const NO_INDEX: u32 = 3;

#[inline(always)]
fn narrow(v: u64) -> Option<u32> {
    if v > u32::MAX as u64 {
        None
    } else {
        Some(v as u32)
    }
}

impl CompactCall {
    /// `rec` in 64 bytes, when every value read from it fits; `from` and `to` are the argument
    /// indexes of its descriptors ([`NO_FD_ARG`]: none).
    #[inline(always)]
    pub fn pack(rec: &CallRecord, from: u32, to: u32) -> Option<Self> {
        let small = |v: u32, bits: u32| if v < (1 << bits) { Some(v) } else { None };
        let index = |i: u32| if i <= 2 { i } else { NO_INDEX };
        let (from, to) = (index(from), index(to));
        let arg = |i: u32| {
            if i <= 2 {
                rec.args[i as usize] as i32
            } else {
                -1
            }
        };
        if rec.faults_user | rec.faults_kernel | rec.file_faults != 0 || rec.sent_bytes != 0 {
            return None;
        }
        if rec.ret < i32::MIN as i64 || rec.ret > i32::MAX as i64 || rec.end_ns < rec.start_ns {
            return None;
        }
        let total = narrow(rec.end_ns - rec.start_ns)?;
        let received = match rec.recv_bytes {
            0 => 0,
            r if r as i64 == rec.ret => 1,
            _ => return None,
        };
        let first_copy = if rec.first_copy_ns == 0 {
            0
        } else if rec.first_copy_ns >= rec.start_ns && rec.first_copy_ns <= rec.end_ns {
            narrow(rec.first_copy_ns - rec.start_ns + 1)?
        } else {
            return None;
        };
        let packed = small(rec.nr, 10)?
            | small(rec.fd_class, 4)? << 10
            | small(rec.fd_out_class, 4)? << 14
            | small(rec.flags, 1)? << 18
            | received << 19
            | from << 20
            | to << 22
            | small(rec.switches, 4)? << 24
            | small(rec.copy_events, 4)? << 28;
        Some(Self {
            kind: RecordKind::CompactCall as u32,
            pid: rec.pid,
            tid: rec.tid,
            packed,
            start_ns: rec.start_ns,
            ret: rec.ret as i32,
            copy_bytes: narrow(rec.copy_bytes)?,
            fd: arg(from),
            fd_out: arg(to),
            total_ns: total,
            first_copy,
            blocked_ns: narrow(rec.blocked_ns)?,
            runq_ns: narrow(rec.runq_ns)?,
            wait_blocked_ns: narrow(rec.wait_blocked_ns)?,
            wait_runq_ns: narrow(rec.wait_runq_ns)?,
        })
    }

    /// The record this was packed from (arguments other than descriptors read as 0).
    pub fn unpack(&self) -> CallRecord {
        let bits = |at: u32, n: u32| (self.packed >> at) & ((1 << n) - 1);
        let mut args = [0u64; 3];
        for (at, fd) in [(20, self.fd), (22, self.fd_out)] {
            if let Some(a) = args.get_mut(bits(at, 2) as usize) {
                *a = fd as i64 as u64;
            }
        }
        CallRecord {
            kind: RecordKind::Call as u32,
            pid: self.pid,
            tid: self.tid,
            nr: bits(0, 10),
            args,
            ret: self.ret as i64,
            start_ns: self.start_ns,
            end_ns: self.start_ns + self.total_ns as u64,
            first_copy_ns: if self.first_copy == 0 {
                0
            } else {
                self.start_ns + self.first_copy as u64 - 1
            },
            copy_bytes: self.copy_bytes as u64,
            copy_events: bits(28, 4),
            switches: bits(24, 4),
            blocked_ns: self.blocked_ns as u64,
            runq_ns: self.runq_ns as u64,
            wait_blocked_ns: self.wait_blocked_ns as u64,
            wait_runq_ns: self.wait_runq_ns as u64,
            flags: bits(18, 1),
            recv_bytes: if bits(19, 1) != 0 { self.ret as u32 } else { 0 },
            fd_class: bits(10, 4),
            fd_out_class: bits(14, 4),
            ..CallRecord::default()
        }
    }
}

/// Bits of [`CallRecord::flags`].
pub mod call_flags {
    /// The call was in flight when tracing started: its start is the run's start, and its
    /// stages before that are unknown.
    pub const START_UNKNOWN: u32 = 1;
}

/// What happened to a signal.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalEvent {
    /// Sent (`signal:signal_generate`), in the sender's context.
    Generate = 1,
    /// Delivered to a handler or default action (`signal:signal_deliver`), in the receiver.
    Deliver = 2,
}

/// A signal event of a traced process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalRecord {
    /// [`RecordKind::Signal`] as `u32`.
    pub kind: u32,
    /// [`SignalEvent`] as `u32`.
    pub event: u32,
    /// Process (tgid) of the receiver for a delivery; for a generation, the traced process
    /// the target thread belongs to when known, else the target thread id.
    pub pid: u32,
    /// Thread that received it (delivery) or the target thread (generation).
    pub tid: u32,
    /// Signal number.
    pub sig: i32,
    /// `si_code`.
    pub code: i32,
    /// Generation result (0 delivered, 1 ignored, 2 already pending, …); 0 for a delivery.
    pub result: i32,
    /// Process (tgid) that was running when the event happened (the sender for a
    /// generation, 0 in interrupt context is reported as the interrupted task's tgid).
    pub current_pid: u32,
    /// Time of the event.
    pub time_ns: u64,
}

/// A copy of socket data to a traced process's memory outside any traced call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyRecord {
    /// [`RecordKind::Copy`] as `u32`.
    pub kind: u32,
    /// Process (tgid).
    pub pid: u32,
    /// Thread that copied.
    pub tid: u32,
    /// Bytes of this copy.
    pub bytes: u32,
    /// Time of the copy.
    pub time_ns: u64,
}

/// A socket event of a traced process: data reached the socket, or a thread read from it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRecord {
    /// [`RecordKind::DataReady`] or [`RecordKind::RecvLength`] as `u32`.
    pub kind: u32,
    /// Process (tgid) that owns the socket (data ready) or read from it.
    pub pid: u32,
    /// Thread that was running (the reader; for data ready, whoever delivered the data).
    pub tid: u32,
    /// Bytes read or `-errno` (receive); 0 for data ready.
    pub ret: i32,
    /// Kernel address of the socket (`struct sock *`): ties arrivals to reads.
    pub sk: u64,
    /// Time of the event.
    pub time_ns: u64,
}

/// An io_uring request event of a traced process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringRecord {
    /// [`RecordKind::UringSubmit`] or [`RecordKind::UringComplete`] as `u32`.
    pub kind: u32,
    /// Process (tgid).
    pub pid: u32,
    /// Thread that was running (the submitter; for a completion, the completing thread).
    pub tid: u32,
    /// Operation code (submission only; 0 for a completion).
    pub opcode: u32,
    /// Result of the request (completion only; 0 for a submission).
    pub res: i32,
    /// Explicit padding.
    pub _pad: u32,
    /// Kernel address of the request: ties a completion to its submission.
    pub req: u64,
    /// The request's user data.
    pub user_data: u64,
    /// Time of the event.
    pub time_ns: u64,
}

/// What happened to a traced process.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// It was forked by a traced process and is traced from now on.
    Fork = 1,
    /// Its last thread ended; it is no longer traced.
    Exit = 2,
}

/// A traced process forked or ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcRecord {
    /// [`RecordKind::Proc`] as `u32`.
    pub kind: u32,
    /// [`ProcEvent`] as `u32`.
    pub event: u32,
    /// The process (tgid).
    pub pid: u32,
    /// For a fork, the traced process that forked it; 0 for an exit.
    pub parent: u32,
    /// Time of the event.
    pub time_ns: u64,
    /// Command name (`comm`), NUL-padded: the parent's at a fork, the process's own at exit.
    pub comm: [u8; 16],
}

/// Per-thread state of the call in flight, kept in the kernel between entry and exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    /// The record being built.
    pub rec: CallRecord,
    /// When the thread was switched out (0: it is running).
    pub off_ns: u64,
    /// When a sleeping thread was woken (0: not yet).
    pub wake_ns: u64,
    /// 1 when the thread went to sleep when switched out, 0 when it stayed runnable.
    pub off_blocked: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// Index of each counter in the `COUNTERS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Call records sent to the ring buffer.
    Sent = 0,
    /// Call records lost because the ring buffer was full.
    Lost = 1,
    /// Calls whose entry found no room in the in-flight map.
    InFlightFull = 2,
    /// Calls kept in the clash table: their thread's slot was held by another thread's call.
    CallsSpilled = 3,
    /// Traced processes kept in the clash table: their slot was held by another process.
    ProcsSpilled = 4,
    // CPU sampling and exact copy timing (30-39).
    /// CPU samples of traced threads sent to the ring buffer.
    SamplesSent = 30,
    /// CPU samples lost because the ring buffer was full.
    SamplesLost = 31,
    /// Samples inside a call whose kernel stack could not be stored (stack map full or
    /// unwinding failed).
    KernelStackMissing = 32,
    /// Samples whose user stack could not be stored.
    UserStackMissing = 33,
    /// Copies timed exactly by entry/exit hooks on the copy routines (exact mode only).
    ExactCopies = 34,
    // Page faults and socket sends of traced processes (20-29).
    /// User-mode page faults, all.
    FaultsUser = 20,
    /// Kernel-mode page faults, all.
    FaultsKernel = 21,
    /// File-page faults, all.
    FileFaults = 22,
    /// Bytes handed to sockets, all.
    SentBytes = 23,
    /// User-mode page faults outside traced calls.
    FaultsUserOutside = 24,
    /// Kernel-mode page faults outside traced calls.
    FaultsKernelOutside = 25,
    /// File-page faults outside traced calls.
    FileFaultsOutside = 26,
    /// Bytes handed to sockets outside traced calls (io_uring workers, task work).
    SentBytesOutside = 27,
    // Copy-on-write (40-49).
    /// User-mode write faults of traced processes, all.
    WriteFaults = 40,
    /// User-mode write faults outside traced calls.
    WriteFaultsOutside = 41,
    /// Write faults on present pages: copy-on-write (a copy, or the page reused when no one
    /// else maps it any more).
    CowFaults = 42,
    /// Pages allocated inside those faults: the pages copied.
    CowCopies = 43,
    /// Copy-on-write faults of threads the per-thread table had no room for.
    CowTableFull = 44,
    /// Time of the copying copy-on-write faults, ns: from the fault's entry to the TLB flush
    /// of the old page after the copy.
    CowCopyNs = 45,
    /// Copies whose time is in [`Counter::CowCopyNs`].
    CowCopiesTimed = 46,
    // Kernel-side diagnostics (50-59).
    /// Diagnostics the kernel programs logged (each kind once per run and CPU).
    Diagnostics = 50,
}

// CPU sampling.

/// What a CPU sample's thread was doing, as the kernel saw it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleStage {
    /// No traced call in flight: the thread ran its own code (or an untraced call).
    User = 0,
    /// Inside a traced call, before any copy marker.
    BeforeMarker = 1,
    /// Inside a traced call, after its first copy marker.
    AfterMarker = 2,
}

/// Stack id meaning "no stack stored" in a [`SampleRecord`].
pub const NO_STACK: i32 = -1;

/// Call number meaning "no call in flight" in a [`SampleRecord`].
pub const NO_CALL: u32 = u32::MAX;

/// One CPU sample of a traced thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleRecord {
    /// [`RecordKind::Sample`] as `u32`.
    pub kind: u32,
    /// Process (tgid).
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// System call number of the call in flight, or [`NO_CALL`].
    pub nr: u32,
    /// Kernel stack id in the `STACKS` map, or negative (none: user mode, or not stored).
    pub kstack: i32,
    /// User stack id in the `STACKS` map, or negative.
    pub ustack: i32,
    /// [`SampleStage`] as `u32`.
    pub stage: u32,
    /// CPU that took the sample.
    pub cpu: u32,
    /// Entry time of the call in flight (0: none); with `tid` it names the call.
    pub call_start_ns: u64,
    /// Time of the sample.
    pub time_ns: u64,
}

/// Names one call of one thread: the key of exact copy timing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CallKey {
    /// Thread.
    pub tid: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Entry time of the call.
    pub start_ns: u64,
}

/// Copy time of one call, measured by entry/exit hooks on the copy routines (exact mode).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExactCopy {
    /// Time inside the outermost copy routine, nanoseconds.
    pub ns: u64,
    /// Copies timed.
    pub copies: u64,
}

/// Per-thread state of a copy routine being timed (exact mode).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyTimer {
    /// Entry time of the outermost copy routine.
    pub start_ns: u64,
    /// Nesting depth of copy routines (`copy_page_to_iter` calls `_copy_to_iter`).
    pub depth: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// Maximum number of distinct stacks kept by the sampler (kernel and user together).
pub const MAX_STACKS: u32 = 8192;

/// Maximum number of calls with an exact copy time kept at once.
pub const MAX_EXACT_CALLS: u32 = 65536;

/// `error_code` bits of `exceptions:page_fault_user` (x86 `X86_PF_*`).
pub mod fault_bits {
    /// The page was present: a protection fault (on a write, a write-protected page).
    pub const PRESENT: u64 = 1;
    /// The access was a write.
    pub const WRITE: u64 = 2;
}

/// Maximum number of threads the copy-on-write table holds.
pub const MAX_COW_THREADS: u32 = 16384;

/// Copy-on-write counts of one thread on one CPU (the `COW_THREADS` per-CPU hash, keyed by
/// thread id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CowCounts {
    /// The thread's process.
    pub pid: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// User-mode write faults.
    pub write_faults: u64,
    /// Of those, outside traced calls.
    pub write_faults_outside: u64,
    /// Write faults on present pages (copy-on-write).
    pub cow_faults: u64,
    /// Pages allocated inside those faults: the pages copied.
    pub copies: u64,
    /// Time of the faults that copied, ns (entry to the TLB flush after the copy).
    pub copy_ns: u64,
}

/// The kinds of kernel-side diagnostic, each logged once per run and CPU.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diag {
    /// The copy-on-write table is full: a thread's faults go uncounted per thread.
    CowTableFull = 0,
    /// The in-flight call table is full: a call is not traced.
    InFlightFull = 1,
    /// A call record was dropped: the ring buffer was full.
    RecordDropped = 2,
    /// A thread's call slot was held by another thread: the call went to the clash table.
    SlotClash = 3,
    /// A structure the probes read through BTF offsets could not be read.
    BtfUnreadable = 4,
}

/// Slots of the once-per-kind flags of [`Diag`].
pub const DIAG_KINDS: u32 = 8;

/// Number of slots in the `COUNTERS` array. Slots are reserved in ranges of ten per area of
/// the product; 0-9 belong to the call path.
pub const COUNTER_SLOTS: u32 = 80;

/// `sched_switch` `prev_state` bits that mean the task went to sleep. A preempted task reports
/// `TASK_REPORT_MAX` (0x100) or 0, which are not in this mask.
pub const SLEEP_STATE_MASK: u64 = 0xff;

/// `clone` flag: the new task is a thread of the same process.
pub const CLONE_THREAD: u64 = 0x0001_0000;

/// Default size of the call record ring buffer, bytes.
pub const DEFAULT_RINGBUF_BYTES: u32 = 4 << 20;

/// Maximum number of threads with a call in flight at once.
pub const MAX_IN_FLIGHT: u32 = 16384;

/// Slots of the per-thread call table and of the traced-process table, indexed by id modulo
/// this number (a power of two; the default `pid_max` is 32768, so that on such a machine no
/// two threads share one). Ids that clash go to hash tables.
pub const THREAD_SLOTS: u32 = 32768;

/// Index in the `SPILL_USED` array of the flag "a call went to the clash table".
pub const SPILL_CALLS: u32 = 0;
/// Index in the `SPILL_USED` array of the flag "a traced process went to the clash table".
pub const SPILL_PROCS: u32 = 1;

/// Maximum number of traced processes.
pub const MAX_TRACED: u32 = 4096;

// In-kernel aggregation (summary mode) and the probe's run mode.

/// What the call programs do, set by user space before load (the `MODE` global of the probe).
/// Bits; 0 is the benchmark floor: the programs are attached and return at once.
pub mod mode {
    /// Attached, empty: the programs return at once.
    pub const FLOOR: u32 = 0;
    /// One ring-buffer record per call.
    pub const RECORDS: u32 = 1;
    /// Per-CPU sums and histograms per process and call, no per-call record.
    pub const AGGREGATE: u32 = 2;
}

/// Which processes a system-wide run traces (the `FILTER` global of the probe, set by user
/// space before load). Bits; 0: only the processes in the traced set (a pid or a command and
/// its children).
pub mod filter {
    /// Every process but the profiler (`SELF_TGID`).
    pub const ALL: u32 = 1;
    /// Only threads whose command name is `FILTER_COMM`.
    pub const COMM: u32 = 2;
    /// Only tasks in the cgroup v2 `FILTER_CGROUP`.
    pub const CGROUP: u32 = 4;
}

/// Counter: calls that found no room in the summary map (their stages are not summed).
pub const COUNTER_SUMMARY_FULL: u32 = 70;

/// Counter: call records lost because the ring buffer was full (also counted in
/// [`Counter::Lost`], which counts every kind of record).
pub const COUNTER_CALLS_LOST: u32 = 71;

/// Sub-buckets per power of two of the summary histograms, as a power of two (8 a power):
/// neighbouring bounds differ by 9%, so a quantile interpolated inside a bucket lands within
/// a few percent of the value.
pub const HIST_SUB_BITS: u32 = 3;

/// Bit length below which every value shares the first bucket (values under 256 ns).
pub const HIST_MIN_EXP: u32 = 8;

/// Powers of two split into sub-buckets: 256 ns to 2^38 ns (about 4.6 minutes).
pub const HIST_OCTAVES: usize = 30;

/// Buckets of each summary histogram: bucket 0 holds values under 2^[`HIST_MIN_EXP`], then
/// each power of two in 2^[`HIST_SUB_BITS`] equal steps, the last bucket everything longer.
pub const HIST_BUCKETS: usize = 2 + (HIST_OCTAVES << HIST_SUB_BITS);

/// Maximum number of (process, call, descriptor class) keys the summary map holds.
pub const MAX_SUMMARY_KEYS: u32 = 1024;

/// Key of the summary map: one traced process, one call and the class of its source
/// descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SummaryKey {
    /// Process id (tgid).
    pub pid: u32,
    /// System call number.
    pub nr: u32,
    /// The [`fd_class`] of the call's source descriptor at entry for a call that moves data
    /// ([`moves_data`]); [`fd_class::UNKNOWN`] for every other call, which summary mode does
    /// not classify.
    pub fd_class: u32,
}

impl SummaryKey {
    /// The key a finished call is summed under; `spec` is its `CALL_FDS` value.
    #[inline(always)]
    pub fn of(spec: u32, rec: &CallRecord) -> Self {
        Self {
            pid: rec.pid,
            nr: rec.nr,
            fd_class: if moves_data(spec) {
                rec.fd_class
            } else {
                fd_class::UNKNOWN
            },
        }
    }
}

/// Whether a call with this `CALL_FDS` value moves data (its bytes are counted).
#[inline(always)]
pub fn moves_data(spec: u32) -> bool {
    spec & (CALL_BYTES_RET | CALL_BYTES_RECEIVED | CALL_BYTES_SENT) != 0
}

/// Sums over the calls of one [`SummaryKey`] on one CPU, stages split as the profiler's
/// attribution rules say. Times in nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallSummary {
    /// Calls.
    pub calls: u64,
    /// Calls that moved data (return value > 0).
    pub data_calls: u64,
    /// Calls split at a copy marker.
    pub marker_calls: u64,
    /// Bytes moved (sum of positive return values).
    pub bytes: u64,
    /// Sum of entry-to-exit times.
    pub total_ns: u64,
    /// Sum of wait stages.
    pub wait_ns: u64,
    /// Sum of copy stages.
    pub copy_ns: u64,
    /// Sum of time asleep.
    pub blocked_ns: u64,
    /// Sum of run-queue time.
    pub runq_ns: u64,
    /// Sum of the wait stages' time asleep.
    pub wait_blocked_ns: u64,
    /// Sum of the wait stages' run-queue time.
    pub wait_runq_ns: u64,
    /// Calls that failed (return value < 0).
    pub errors: u64,
    /// Histogram of entry-to-exit times ([`hist_bucket`]).
    pub hist_total: [u64; HIST_BUCKETS],
    /// Histogram of wait stages.
    pub hist_wait: [u64; HIST_BUCKETS],
    /// Histogram of copy stages.
    pub hist_copy: [u64; HIST_BUCKETS],
}

impl Default for CallSummary {
    fn default() -> Self {
        Self {
            calls: 0,
            data_calls: 0,
            marker_calls: 0,
            bytes: 0,
            total_ns: 0,
            wait_ns: 0,
            copy_ns: 0,
            blocked_ns: 0,
            runq_ns: 0,
            wait_blocked_ns: 0,
            wait_runq_ns: 0,
            errors: 0,
            hist_total: [0; HIST_BUCKETS],
            hist_wait: [0; HIST_BUCKETS],
            hist_copy: [0; HIST_BUCKETS],
        }
    }
}

/// The histogram bucket of a value: 0 under 2^[`HIST_MIN_EXP`], else its power of two and the
/// next [`HIST_SUB_BITS`] bits below the leading one, capped at the last bucket.
#[inline(always)]
pub fn hist_bucket(v: u64) -> usize {
    if v < 1 << HIST_MIN_EXP {
        return 0;
    }
    let exp = 63 - v.leading_zeros();
    let sub = ((v >> (exp - HIST_SUB_BITS)) & ((1 << HIST_SUB_BITS) - 1)) as usize;
    let i = 1 + (((exp - HIST_MIN_EXP) as usize) << HIST_SUB_BITS) + sub;
    if i >= HIST_BUCKETS {
        HIST_BUCKETS - 1
    } else {
        i
    }
}

/// The least value above bucket `i` (its exclusive upper bound; `u64::MAX` for the last).
pub fn hist_bucket_end(i: usize) -> u64 {
    if i == 0 {
        return 1 << HIST_MIN_EXP;
    }
    if i >= HIST_BUCKETS - 1 {
        return u64::MAX;
    }
    let j = i - 1;
    let exp = (j >> HIST_SUB_BITS) as u32 + HIST_MIN_EXP;
    let steps = (1u64 << HIST_SUB_BITS) + (j as u64 & ((1 << HIST_SUB_BITS) - 1)) + 1;
    steps << (exp - HIST_SUB_BITS)
}
/// What a descriptor refers to, as the probes see it at a call's entry.
pub mod fd_class {
    /// Not classified (no kernel layout known, or a read failed).
    pub const UNKNOWN: u32 = 0;
    /// A regular file.
    pub const FILE: u32 = 1;
    /// A pipe or FIFO.
    pub const PIPE: u32 = 2;
    /// A TCP socket (IPv4 or IPv6 stream).
    pub const TCP: u32 = 3;
    /// A UDP socket (IPv4 or IPv6 datagram).
    pub const UDP: u32 = 4;
    /// A Unix domain socket.
    pub const UNIX: u32 = 5;
    /// Any other socket (netlink, raw, packet …).
    pub const SOCKET: u32 = 6;
    /// A device, eventfd, epoll instance, directory or other object.
    pub const OTHER: u32 = 7;
    /// The descriptor was not open.
    pub const NOT_OPEN: u32 = 8;
    /// The call has no such descriptor.
    pub const NONE: u32 = 9;
}

/// Byte offsets inside kernel structures, read from the kernel's BTF by user space and set
/// before load, so that the probes can classify descriptors. All zero: disabled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdOffsets {
    /// 1 when the offsets below are valid.
    pub enabled: u32,
    /// `task_struct.files`.
    pub task_files: u32,
    /// `files_struct.fdt`.
    pub files_fdt: u32,
    /// `fdtable.max_fds`.
    pub fdt_max_fds: u32,
    /// `fdtable.fd`.
    pub fdt_fd: u32,
    /// `file.f_inode`.
    pub file_inode: u32,
    /// `file.private_data`.
    pub file_private: u32,
    /// `inode.i_mode`.
    pub inode_mode: u32,
    /// `socket.type`.
    pub socket_type: u32,
    /// `socket.sk`.
    pub socket_sk: u32,
    /// `sock.__sk_common.skc_family`.
    pub sk_family: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// How a call's descriptor arguments are found: `from | to << 8`, argument indexes, `0xff`
/// for none. Set per call number by user space in the `CALL_FDS` map.
pub const NO_FD_ARG: u32 = 0xff;

/// Slots of the `CALL_FDS` array, indexed by call number (every call number of x86_64 and
/// aarch64 is below it).
pub const CALL_FDS_SLOTS: u32 = 512;

/// Bit of a `CALL_FDS` value that says the slot was set (an unset slot reads 0).
pub const CALL_FDS_SET: u32 = 1 << 16;

/// Bit of a `CALL_FDS` value: the call's positive return value counts the bytes it moved
/// (`read`, `writev`, `splice` …; not `mmap`'s address nor `poll`'s ready count).
pub const CALL_BYTES_RET: u32 = 1 << 17;

/// Bit of a `CALL_FDS` value: the call returns a count of messages (`recvmmsg`); its bytes are
/// those it received from sockets (`sock:sock_recv_length`).
pub const CALL_BYTES_RECEIVED: u32 = 1 << 18;

/// Bit of a `CALL_FDS` value: the call returns a count of messages (`sendmmsg`); its bytes are
/// those handed to sockets (`sock:sock_send_length`).
pub const CALL_BYTES_SENT: u32 = 1 << 19;

/// Bit of a `CALL_FDS` value: the call can close or replace descriptors of its process
/// (`close`, `dup2`, `close_range`, `execve` …), so the probes drop the descriptor classes
/// they cached for it. Set for such calls whether they are traced or not.
pub const CALL_FDS_DROPS: u32 = 1 << 20;

/// Shift of the argument index, in a `CALL_FDS` value with [`CALL_FDS_DROPS`], of the one
/// descriptor the call closes or replaces; [`NO_FD_ARG`]: it can close any number of them.
pub const CALL_FDS_DROP_SHIFT: u32 = 24;

/// The bytes a finished call moved, by its `CALL_FDS` value: its return value, the bytes it
/// received from sockets, or the bytes it handed to sockets; 0 for a failed call and for a
/// call that moves no data.
#[inline(always)]
pub fn call_bytes(spec: u32, rec: &CallRecord) -> u64 {
    if rec.ret <= 0 {
        0
    } else if spec & CALL_BYTES_RET != 0 {
        rec.ret as u64
    } else if spec & CALL_BYTES_RECEIVED != 0 {
        u64::from(rec.recv_bytes)
    } else if spec & CALL_BYTES_SENT != 0 {
        rec.sent_bytes
    } else {
        0
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: a `#[repr(C)]` record of `u32`s with explicit padding.
    unsafe impl aya::Pod for super::FdOffsets {}
    // SAFETY: a `#[repr(C)]` record of integers and bytes without holes.
    unsafe impl aya::Pod for super::ProcRecord {}
    // SAFETY: these are `#[repr(C)]` records of integers with explicit padding: every bit
    // pattern is a valid value and there are no implicit holes.
    unsafe impl aya::Pod for super::CallRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InFlight {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CompactCall {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SignalRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CopyRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SummaryKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CallSummary {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SampleRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CallKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExactCopy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CopyTimer {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::UringRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CowCounts {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn record_sizes_are_pinned() {
        assert_eq!(size_of::<CallRecord>(), 160);
        assert_eq!(size_of::<CompactCall>(), 64);
        assert_eq!(size_of::<InFlight>(), 184);
        assert_eq!(size_of::<FdOffsets>(), 48);
        assert_eq!(size_of::<ProcRecord>(), 40);
        assert_eq!(size_of::<SignalRecord>(), 40);
        assert_eq!(size_of::<CopyRecord>(), 24);
        assert_eq!(size_of::<SummaryKey>(), 12);
        assert_eq!(size_of::<CallSummary>(), 96 + 3 * 8 * HIST_BUCKETS);
        assert_eq!(size_of::<SampleRecord>(), 48);
        assert_eq!(size_of::<CallKey>(), 16);
        assert_eq!(size_of::<ExactCopy>(), 16);
        assert_eq!(size_of::<CopyTimer>(), 16);
        assert_eq!(size_of::<SockRecord>(), 32);
        assert_eq!(size_of::<UringRecord>(), 48);
        assert_eq!(size_of::<CowCounts>(), 48);
    }

    #[test]
    fn kinds_round_trip() {
        assert_eq!(
            RecordKind::from_u32(RecordKind::Call as u32),
            Some(RecordKind::Call)
        );
        for k in [
            RecordKind::CompactCall,
            RecordKind::Signal,
            RecordKind::Copy,
            RecordKind::DataReady,
            RecordKind::RecvLength,
            RecordKind::UringSubmit,
            RecordKind::UringComplete,
            RecordKind::Sample,
            RecordKind::Proc,
        ] {
            assert_eq!(RecordKind::from_u32(k as u32), Some(k));
        }
        assert_eq!(RecordKind::from_u32(0), None);
    }

    fn call() -> CallRecord {
        CallRecord {
            kind: RecordKind::Call as u32,
            pid: 10,
            tid: 11,
            nr: 45,
            args: [7, 0, 0],
            ret: 4096,
            start_ns: 1_000_000_000,
            end_ns: 1_000_050_000,
            first_copy_ns: 1_000_040_000,
            copy_bytes: 4096,
            copy_events: 1,
            switches: 2,
            blocked_ns: 30_000,
            runq_ns: 5_000,
            wait_blocked_ns: 30_000,
            wait_runq_ns: 4_000,
            flags: call_flags::START_UNKNOWN,
            fd_class: fd_class::TCP,
            fd_out_class: fd_class::NONE,
            ..CallRecord::default()
        }
    }

    #[test]
    fn compact_calls_give_back_what_is_read() {
        let rec = call();
        let back = CompactCall::pack(&rec, 0, NO_FD_ARG)
            .expect("fits")
            .unpack();
        assert_eq!(back, rec);
        // A receive whose socket bytes are its return value.
        let received = CallRecord {
            recv_bytes: 4096,
            ..rec
        };
        let back = CompactCall::pack(&received, 0, NO_FD_ARG)
            .expect("fits")
            .unpack();
        assert_eq!(back, received);
        // A splice: descriptors in the first and third arguments, others read as 0.
        let splice = CallRecord {
            args: [3, 0xdead, u64::MAX],
            first_copy_ns: 0,
            ret: -11,
            ..rec
        };
        let back = CompactCall::pack(&splice, 0, 2).expect("fits").unpack();
        assert_eq!(back.args, [3, 0, u64::MAX]);
        assert_eq!(
            back,
            CallRecord {
                args: back.args,
                ..splice
            }
        );
    }

    #[test]
    fn calls_that_do_not_fit_stay_whole() {
        let rec = call();
        for big in [
            // Socket bytes that are not the return value (recvmmsg returns messages).
            CallRecord {
                recv_bytes: 3,
                ..rec
            },
            CallRecord {
                end_ns: rec.start_ns + (1 << 32),
                ..rec
            },
            CallRecord {
                ret: 1 << 40,
                ..rec
            },
            CallRecord {
                switches: 16,
                ..rec
            },
            CallRecord {
                faults_user: 1,
                ..rec
            },
            CallRecord {
                sent_bytes: 1,
                ..rec
            },
            CallRecord {
                first_copy_ns: rec.end_ns + 1,
                ..rec
            },
            CallRecord {
                end_ns: rec.start_ns - 1,
                ..rec
            },
        ] {
            assert_eq!(CompactCall::pack(&big, 0, NO_FD_ARG), None, "{big:?}");
        }
    }

    #[test]
    fn only_data_calls_count_bytes_and_messages_are_no_bytes() {
        let rec = CallRecord {
            ret: 0x7f00_0000_0000,
            copy_bytes: 200,
            recv_bytes: 300,
            sent_bytes: 400,
            ..CallRecord::default()
        };
        // An mmap address, a poll count: no bytes.
        assert_eq!(call_bytes(CALL_FDS_SET, &rec), 0);
        assert_eq!(
            call_bytes(CALL_FDS_SET | CALL_BYTES_RET, &rec),
            rec.ret as u64
        );
        // recvmmsg / sendmmsg return 3 messages: the bytes come from the socket hooks.
        let mmsg = CallRecord { ret: 3, ..rec };
        assert_eq!(call_bytes(CALL_FDS_SET | CALL_BYTES_RECEIVED, &mmsg), 300);
        assert_eq!(call_bytes(CALL_FDS_SET | CALL_BYTES_SENT, &mmsg), 400);
        let failed = CallRecord { ret: -11, ..rec };
        assert_eq!(call_bytes(CALL_FDS_SET | CALL_BYTES_RET, &failed), 0);
    }

    #[test]
    fn histogram_buckets_split_each_power_of_two_in_eight() {
        assert_eq!(hist_bucket(0), 0);
        assert_eq!(hist_bucket(255), 0);
        assert_eq!(hist_bucket(256), 1);
        assert_eq!(hist_bucket(287), 1);
        assert_eq!(hist_bucket(288), 2);
        assert_eq!(hist_bucket(511), 8);
        assert_eq!(hist_bucket(512), 9);
        assert_eq!(hist_bucket(u64::MAX), HIST_BUCKETS - 1);
        assert_eq!(hist_bucket(1 << 38), HIST_BUCKETS - 1);
        assert_eq!(hist_bucket((1 << 38) - 1), HIST_BUCKETS - 2);
        // Every bucket's end is the first value of the next one, and bounds grow by at most 1/8.
        for i in 0..HIST_BUCKETS - 1 {
            let end = hist_bucket_end(i);
            assert_eq!(hist_bucket(end - 1), i, "bucket {i}");
            assert_eq!(hist_bucket(end), i + 1, "bucket {i}");
            if i > 0 {
                let start = hist_bucket_end(i - 1);
                assert!((end - start) * 8 <= start, "bucket {i}: {start}..{end}");
            }
        }
        assert_eq!(hist_bucket_end(HIST_BUCKETS - 1), u64::MAX);
    }
}
