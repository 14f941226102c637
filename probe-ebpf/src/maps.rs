//! Maps shared by all hook families, and small helpers over them.
use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use probe_common::{
    COUNTER_SLOTS, Counter, DEFAULT_RINGBUF_BYTES, InFlight, MAX_IN_FLIGHT, MAX_TRACED,
    THREAD_SLOTS,
};

/// Traced processes (tgids), each in the slot `tgid & SLOT_MASK` of this array (an inlined
/// lookup on every hook), or in [`TRACED`] when another traced process holds that slot.
/// Filled by user space before the target runs; children are added on fork.
#[map]
static TRACED_SLOTS: Array<u32> = Array::with_max_entries(THREAD_SLOTS, 0);

/// Traced processes whose slot in [`TRACED_SLOTS`] was taken.
#[map]
static TRACED: HashMap<u32, u8> = HashMap::with_max_entries(MAX_TRACED, 0);

/// Index mask of the slot arrays: `THREAD_SLOTS - 1`, or smaller when user space asks for
/// fewer slots (tests force clashes that way).
#[unsafe(no_mangle)]
static SLOT_MASK: u32 = THREAD_SLOTS - 1;

/// Whether each clash table ([`SPILL_CALLS`]: [`SPILLED`], [`SPILL_PROCS`]: [`TRACED`]) is in
/// use: 1 from its first clash on. Until then no lookup looks there.
#[map]
static SPILL_USED: Array<u32> = Array::with_max_entries(2, 0);
const SPILL_CALLS: u32 = probe_common::SPILL_CALLS;
const SPILL_PROCS: u32 = probe_common::SPILL_PROCS;

/// The call of each traced thread, in the slot `tid & SLOT_MASK`: an array lookup is
/// inlined by the kernel and touches one cache line, where a hash lookup walks a bucket. This
/// matters because the scheduler hooks look up both threads of every context switch on the
/// machine. A slot belongs to the thread in `rec.tid` from its first call until it ends (a
/// call costs no insert or delete); it is in flight while `rec.start_ns` is not 0. A free
/// slot (`rec.tid` 0) is claimed through [`CLAIMS`], so that two threads entering at once on
/// two CPUs cannot both write it.
#[map]
static SLOTS: Array<InFlight> = Array::with_max_entries(THREAD_SLOTS, 0);

/// The owner of each claimed slot of [`SLOTS`], by slot index: an insert that fails when the
/// key exists is atomic, so one thread only wins a free slot.
#[map]
static CLAIMS: HashMap<u32, u32> = HashMap::with_max_entries(THREAD_SLOTS, 0);

/// Calls of threads whose slot belongs to another thread (thread ids equal modulo
/// [`THREAD_SLOTS`], possible where `pid_max` is larger), keyed by thread id; removed when the
/// thread ends. When it is full a call is counted in [`Counter::InFlightFull`], never dropped
/// unseen.
#[map]
static SPILLED: HashMap<u32, InFlight> = HashMap::with_max_entries(MAX_IN_FLIGHT, 0);

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

#[inline(always)]
fn slot_index(id: u32) -> u32 {
    // SAFETY: a read-only global set before load; volatile so that the default is not folded.
    id & unsafe { core::ptr::read_volatile(&SLOT_MASK) }
}

#[inline(always)]
fn spill_used(table: u32) -> bool {
    SPILL_USED.get(table).is_some_and(|u| *u != 0)
}

#[inline(always)]
fn set_spill_used(table: u32) {
    if let Some(used) = SPILL_USED.get_ptr_mut(table) {
        // SAFETY: one word, only ever set to 1.
        unsafe { *used = 1 };
    }
}

/// System-wide runs: [`probe_common::filter`] bits, 0 in per-process runs. Set before load.
#[unsafe(no_mangle)]
static FILTER: u32 = 0;

/// 1: summary-mode entries classify the source descriptor of data calls (for the per-class
/// sums `profiler serve` labels); 0: they do not, which saves a descriptor-table walk per call.
/// Set before load.
#[unsafe(no_mangle)]
static SUMMARY_CLASSES: u32 = 0;

/// Whether summary-mode entries classify descriptors ([`SUMMARY_CLASSES`]).
#[inline(always)]
pub fn summary_classes() -> bool {
    // SAFETY: a read of a constant the loader may have rewritten; volatile so that the
    // compiler does not fold the default.
    unsafe { core::ptr::read_volatile(&SUMMARY_CLASSES) != 0 }
}

/// The profiler's own process, never traced by a system-wide run.
#[unsafe(no_mangle)]
static SELF_TGID: u32 = 0;

/// The command name a `COMM` filter asks for, NUL-padded, as two words.
#[unsafe(no_mangle)]
static FILTER_COMM: [u64; 2] = [0; 2];

/// The cgroup v2 id a `CGROUP` filter asks for.
#[unsafe(no_mangle)]
static FILTER_CGROUP: u64 = 0;

/// True in a system-wide run: the traced set is the filter, not the table of processes.
#[inline(always)]
pub fn filtering() -> bool {
    // SAFETY: a read-only global set before load; volatile so that the default is not folded.
    unsafe { core::ptr::read_volatile(&FILTER) != 0 }
}

/// Whether the filter of a system-wide run takes process `tgid`. The command name and cgroup
/// are the current task's: exact for the calls, stages and exits of the current task (every
/// summary-mode hook), an approximation where `tgid` is another process (a signal's target).
#[inline(always)]
fn passes_filter(tgid: u32, flags: u32) -> bool {
    // SAFETY: read-only globals set before load, read volatile as above.
    let (me, comm, cgroup) = unsafe {
        (
            core::ptr::read_volatile(&SELF_TGID),
            core::ptr::read_volatile(&FILTER_COMM),
            core::ptr::read_volatile(&FILTER_CGROUP),
        )
    };
    if tgid == 0 || tgid == me {
        return false;
    }
    if flags & probe_common::filter::COMM != 0 {
        let Ok(name) = bpf_get_current_comm() else {
            return false;
        };
        // SAFETY: 16 bytes read as two words, unaligned.
        let words = unsafe { core::ptr::read_unaligned(name.as_ptr() as *const [u64; 2]) };
        if words[0] != comm[0] || words[1] != comm[1] {
            return false;
        }
    }
    // SAFETY: the helper has no preconditions.
    flags & probe_common::filter::CGROUP == 0 || unsafe { bpf_get_current_cgroup_id() } == cgroup
}

/// Whether a process is traced: by the filter in a system-wide run, else by the table of
/// traced processes.
#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    // SAFETY: a read-only global set before load; volatile so that the default is not folded.
    let flags = unsafe { core::ptr::read_volatile(&FILTER) };
    if flags != 0 {
        return passes_filter(tgid, flags);
    }
    if TRACED_SLOTS.get(slot_index(tgid)) == Some(&tgid) {
        return true;
    }
    // SAFETY: the value is only read for presence.
    spill_used(SPILL_PROCS) && unsafe { TRACED.get(&tgid).is_some() }
}

/// The slot of [`TRACED_SLOTS`] that process `tgid` would hold.
#[inline(always)]
fn process_slot(tgid: u32) -> Option<&'static mut u32> {
    // SAFETY: a slot holds one word.
    TRACED_SLOTS
        .get_ptr_mut(slot_index(tgid))
        .map(|p| unsafe { &mut *p })
}

/// Traces process `tgid` (a child of a traced one); nothing to do in a system-wide run.
#[inline(always)]
pub fn trace(tgid: u32) {
    if filtering() {
        return;
    }
    if let Some(held) = process_slot(tgid) {
        if *held == 0 || *held == tgid {
            *held = tgid;
            return;
        }
    }
    set_spill_used(SPILL_PROCS);
    count(Counter::ProcsSpilled);
    let _ = TRACED.insert(&tgid, &1, 0);
}

/// Stops tracing process `tgid` (it ended), so that a later process given its pid is not.
#[inline(always)]
pub fn untrace(tgid: u32) {
    if let Some(held) = process_slot(tgid) {
        if *held == tgid {
            *held = 0;
            return;
        }
    }
    let _ = TRACED.remove(&tgid);
}

#[inline(always)]
fn slot(tid: u32) -> Option<&'static mut InFlight> {
    // SAFETY: a slot is written by its own thread's programs (enter, exit, copy marker,
    // switch-in, faults) or by a wake-up that stores one word; a torn read of that word is
    // harmless.
    SLOTS
        .get_ptr_mut(slot_index(tid))
        .map(|p| unsafe { &mut *p })
}

/// The in-flight call of a thread, if it has one.
#[inline(always)]
pub fn in_flight(tid: u32) -> Option<&'static mut InFlight> {
    if let Some(s) = slot(tid)
        && s.rec.tid == tid
    {
        // The slot is this thread's: its call, if any, is here (a thread only spills when
        // another thread holds the slot).
        return if s.rec.start_ns == 0 { None } else { Some(s) };
    }
    if !spill_used(SPILL_CALLS) {
        return None;
    }
    // SAFETY: as in [`slot`].
    let s = SPILLED.get_ptr_mut(&tid).map(|p| unsafe { &mut *p })?;
    if s.rec.start_ns == 0 { None } else { Some(s) }
}

/// Where a thread's new call goes: its slot, when it is the thread's or free and won (else an
/// entry of [`SPILLED`]). `None` when both are full. The caller writes the whole record,
/// `rec.tid` included.
#[inline(always)]
pub fn entry_slot(tid: u32) -> Option<&'static mut InFlight> {
    let s = slot(tid)?;
    if s.rec.tid == tid {
        return Some(s);
    }
    // A slot won here still reads as free (`rec.tid` 0) until the caller writes its record,
    // so that the caller can tell a thread's first call; meanwhile the claim keeps others out.
    if s.rec.tid == 0
        && CLAIMS
            .insert(&slot_index(tid), &tid, BPF_NOEXIST as u64)
            .is_ok()
    {
        return Some(s);
    }
    set_spill_used(SPILL_CALLS);
    count(Counter::CallsSpilled);
    crate::diag::once(probe_common::Diag::SlotClash, tid);
    // SAFETY: as in [`slot`].
    if let Some(p) = SPILLED.get_ptr_mut(&tid) {
        return Some(unsafe { &mut *p });
    }
    SPILLED.insert(&tid, &InFlight::default(), 0).ok()?;
    SPILLED.get_ptr_mut(&tid).map(|p| unsafe { &mut *p })
}

/// Frees what an ending thread held: its slot (claimed again by the next thread that calls)
/// or its clash table entry.
#[inline(always)]
pub fn release_thread(tid: u32) {
    if let Some(s) = slot(tid)
        && s.rec.tid == tid
    {
        s.rec.start_ns = 0;
        s.rec.tid = 0;
        let _ = CLAIMS.remove(&slot_index(tid));
    }
    // A thread that spilled once may own a slot since: its entry there goes too.
    if spill_used(SPILL_CALLS) {
        let _ = SPILLED.remove(&tid);
    }
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

/// Unread ring-buffer bytes at which a record wakes the reader (the record that crosses them);
/// below, the reader finds records on its own polls (one wake-up per record would cost more
/// than the record). Set by user space at load time.
#[unsafe(no_mangle)]
static WAKE_BYTES: u64 = 0;

/// When this CPU last woke the reader, ns.
#[map]
static LAST_WAKE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Bytes of the ring buffer's header before each record.
const RECORD_HEADER: u64 = 8;

/// Least time between two wake-ups of the reader from one CPU below the byte threshold, ns:
/// the first record after a quiet spell wakes the reader at once (it learns what new
/// descriptors are while they are open), a stream of records wakes it at most this often.
/// A wake-up is a self-interrupt, tens of µs under virtualisation: at 1 ms they made up most
/// of a per-call run's cost on streams of large messages.
const WAKE_EVERY_NS: u64 = 10_000_000;

/// The submit flag of a record of type `T` made at `now_ns` (asked before the record is
/// reserved): wake the reader when this record takes the unread bytes over the threshold, or
/// when this CPU has not woken it for a while. Only the record that crosses the threshold
/// wakes: while the reader is behind, every record forcing a wake-up would cost each one an
/// interrupt (measured: 2.4 µs a socket-arrival record instead of under 1 µs).
#[inline(always)]
pub fn wakeup_flag<T>(now_ns: u64) -> u64 {
    let size = core::mem::size_of::<T>() as u64 + RECORD_HEADER;
    // SAFETY: a read-only global set before load; volatile so that the default is not folded.
    let wake = unsafe { core::ptr::read_volatile(&WAKE_BYTES) };
    let unread = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if unread < wake && unread + size >= wake {
        return BPF_RB_FORCE_WAKEUP as u64;
    }
    if let Some(last) = LAST_WAKE.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, which do not nest.
        let last = unsafe { &mut *last };
        if now_ns.wrapping_sub(*last) >= WAKE_EVERY_NS {
            *last = now_ns;
            return BPF_RB_FORCE_WAKEUP as u64;
        }
    }
    BPF_RB_NO_WAKEUP as u64
}

/// Sends a record to user space at `now_ns`, counting it as sent or lost.
#[inline(always)]
pub fn emit<T: 'static>(rec: &T, now_ns: u64, sent: Counter, lost: Counter) {
    match EVENTS.output::<T>(rec, wakeup_flag::<T>(now_ns)) {
        Ok(()) => count(sent),
        Err(_) => count(lost),
    }
}

/// [`emit`] for the records counted as [`Counter::Sent`] / [`Counter::Lost`].
#[inline(always)]
pub fn send<T: 'static>(rec: &T, now_ns: u64) {
    emit(rec, now_ns, Counter::Sent, Counter::Lost)
}
