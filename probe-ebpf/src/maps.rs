//! Maps shared by all hook families, and small helpers over them.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use probe_common::{
    COUNTER_SLOTS, Counter, DEFAULT_RINGBUF_BYTES, InFlight, MAX_IN_FLIGHT, MAX_TRACED,
};

/// Processes (tgids) whose calls are traced. Filled by user space before the target runs;
/// children are added on fork.
#[map]
pub static TRACED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TRACED, 0);

/// The call in flight of each traced thread, keyed by thread id.
#[map]
pub static IN_FLIGHT: LruHashMap<u32, InFlight> = LruHashMap::with_max_entries(MAX_IN_FLIGHT, 0);

/// Finished call records for user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

/// Per-CPU counters, indexed by [`Counter`].
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Adds one to a counter of this CPU.
#[inline(always)]
pub fn count(c: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, which do not nest.
        unsafe { *p += 1 };
    }
}

/// Current time, nanoseconds of CLOCK_MONOTONIC.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// `(tgid, tid)` of the current task.
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

/// Whether a process is traced.
#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    // SAFETY: the value is only read for presence.
    unsafe { TRACED.get(&tgid).is_some() }
}

/// The in-flight call of a thread, if it has one.
///
/// A thread's entry stays in [`IN_FLIGHT`] between calls (so that a call costs no map insert
/// and delete); it is in flight while `rec.start_ns` is not 0.
#[inline(always)]
pub fn in_flight(tid: u32) -> Option<&'static mut InFlight> {
    // SAFETY: an entry is written only by its own thread's programs (enter, exit, copy marker,
    // switch-in) or by a wake-up that stores one word; a torn read of that word is harmless.
    let s = IN_FLIGHT.get_ptr_mut(&tid).map(|p| unsafe { &mut *p })?;
    if s.rec.start_ns == 0 { None } else { Some(s) }
}

/// The entry of a thread, in flight or not (the call entry program reuses it).
#[inline(always)]
pub fn thread_slot(tid: u32) -> Option<&'static mut InFlight> {
    // SAFETY: as in [`in_flight`].
    IN_FLIGHT.get_ptr_mut(&tid).map(|p| unsafe { &mut *p })
}

/// Reads a field of a tracepoint record at `offset` (from the tracepoint's format file).
///
/// # Safety
/// `offset` must lie within the tracepoint's record and be aligned for `T`.
#[inline(always)]
pub unsafe fn field<T: Copy>(ctx: &aya_ebpf::programs::TracePointContext, offset: usize) -> T {
    use aya_ebpf::EbpfContext;
    // SAFETY: the caller guarantees the offset; tracepoint context loads are checked by the
    // verifier against the record's size.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}
