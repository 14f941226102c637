//! Records and constants shared by the kernel probes and the profiler: plain `#[repr(C)]` data,
//! nothing else.
#![no_std]

/// What a ring-buffer record is; every record starts with this as a `u32`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A traced system call that has returned: a [`CallRecord`].
    Call = 1,
    /// A signal generated for or delivered to a traced process: a [`SignalRecord`].
    Signal = 2,
    /// A copy of socket data to user memory by a traced thread outside any traced call (an
    /// io_uring worker, task work): a [`CopyRecord`].
    Copy = 3,
}

impl RecordKind {
    /// The kind for a raw value read from a record's first four bytes.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Call),
            2 => Some(Self::Signal),
            3 => Some(Self::Copy),
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
    // issue 4: page faults and socket sends inside the call.
    /// Page faults taken in user mode inside the call (`exceptions:page_fault_user`).
    pub faults_user: u32,
    /// Page faults taken in kernel mode inside the call, such as a copy from a mapped file
    /// (`exceptions:page_fault_kernel`).
    pub faults_kernel: u32,
    /// Faults that went to a file's pages (`filemap:mm_filemap_fault`).
    pub file_faults: u32,
    /// Explicit padding.
    pub _pad4: u32,
    /// Bytes handed to sockets inside the call (`sock:sock_send_length`).
    pub sent_bytes: u64,
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
    // issue 4: page faults and socket sends of traced processes (20-29).
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
}

/// Number of slots in the `COUNTERS` array. Slots are reserved in ranges of ten per area of
/// the product; 0-9 belong to the call path.
pub const COUNTER_SLOTS: u32 = 64;

/// `sched_switch` `prev_state` bits that mean the task went to sleep. A preempted task reports
/// `TASK_REPORT_MAX` (0x100) or 0, which are not in this mask.
pub const SLEEP_STATE_MASK: u64 = 0xff;

/// `clone` flag: the new task is a thread of the same process.
pub const CLONE_THREAD: u64 = 0x0001_0000;

/// Default size of the call record ring buffer, bytes.
pub const DEFAULT_RINGBUF_BYTES: u32 = 4 << 20;

/// Maximum number of threads with a call in flight at once.
pub const MAX_IN_FLIGHT: u32 = 16384;

/// Maximum number of traced processes.
pub const MAX_TRACED: u32 = 4096;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: these are `#[repr(C)]` records of integers with explicit padding: every bit
    // pattern is a valid value and there are no implicit holes.
    unsafe impl aya::Pod for super::CallRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InFlight {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SignalRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CopyRecord {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn record_sizes_are_pinned() {
        assert_eq!(size_of::<CallRecord>(), 144);
        assert_eq!(size_of::<InFlight>(), 168);
        assert_eq!(size_of::<SignalRecord>(), 40);
        assert_eq!(size_of::<CopyRecord>(), 24);
    }

    #[test]
    fn kinds_round_trip() {
        assert_eq!(
            RecordKind::from_u32(RecordKind::Call as u32),
            Some(RecordKind::Call)
        );
        for k in [RecordKind::Signal, RecordKind::Copy] {
            assert_eq!(RecordKind::from_u32(k as u32), Some(k));
        }
        assert_eq!(RecordKind::from_u32(0), None);
    }
}
