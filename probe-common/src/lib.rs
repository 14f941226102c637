//! Records and constants shared by the kernel probes and the profiler: plain `#[repr(C)]` data,
//! nothing else.
#![no_std]

/// What a ring-buffer record is; every record starts with this as a `u32`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A traced system call that has returned: a [`CallRecord`].
    Call = 1,
}

impl RecordKind {
    /// The kind for a raw value read from a record's first four bytes.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Call),
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

/// Number of slots in the `COUNTERS` array.
pub const COUNTER_SLOTS: u32 = 4;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn record_sizes_are_pinned() {
        assert_eq!(size_of::<CallRecord>(), 120);
        assert_eq!(size_of::<InFlight>(), 144);
    }

    #[test]
    fn kinds_round_trip() {
        assert_eq!(
            RecordKind::from_u32(RecordKind::Call as u32),
            Some(RecordKind::Call)
        );
        assert_eq!(RecordKind::from_u32(0), None);
    }
}
