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
    /// A traced process forked or ended: a [`ProcRecord`] (issue 6).
    Proc = 40,
}

impl RecordKind {
    /// The kind for a raw value read from a record's first four bytes.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Call),
            2 => Some(Self::Signal),
            3 => Some(Self::Copy),
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
    // issue 6:
    /// What the call's source descriptor was at entry, a [`fd_class`] value.
    pub fd_class: u32,
    /// What the call's destination descriptor was at entry (calls with two), a [`fd_class`]
    /// value.
    pub fd_out_class: u32,
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

/// What happened to a traced process (issue 6).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// It was forked by a traced process and is traced from now on.
    Fork = 1,
    /// Its last thread ended; it is no longer traced.
    Exit = 2,
}

/// A traced process forked or ended (issue 6).
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

/// What a descriptor refers to, as the probes see it at a call's entry (issue 6).
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
/// before load, so that the probes can classify descriptors (issue 6). All zero: disabled.
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
/// for none. Set per call number by user space in the `CALL_FDS` map (issue 6).
pub const NO_FD_ARG: u32 = 0xff;

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
        assert_eq!(size_of::<CallRecord>(), 128);
        assert_eq!(size_of::<InFlight>(), 152);
        assert_eq!(size_of::<FdOffsets>(), 48);
        assert_eq!(size_of::<ProcRecord>(), 40);
        assert_eq!(size_of::<SignalRecord>(), 40);
        assert_eq!(size_of::<CopyRecord>(), 24);
    }

    #[test]
    fn kinds_round_trip() {
        assert_eq!(
            RecordKind::from_u32(RecordKind::Call as u32),
            Some(RecordKind::Call)
        );
        for k in [RecordKind::Signal, RecordKind::Copy, RecordKind::Proc] {
            assert_eq!(RecordKind::from_u32(k as u32), Some(k));
        }
        assert_eq!(RecordKind::from_u32(0), None);
    }
}
