//! Summary mode: the run mode global, and per-CPU sums and histograms (8 buckets per power of
//! two) of each traced process's calls, per call and class of source descriptor, split into
//! stages in the kernel so that no per-call record is needed.
//!
//! The stages come from [`probe_common::split_stages`], the function user space applies to
//! per-call records; a root test checks that both give the same sums for the same calls.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use probe_common::{
    COUNTER_SUMMARY_FULL, CallRecord, CallSummary, HIST_BUCKETS, MAX_SUMMARY_KEYS, SplitBy,
    SummaryKey, hist_bucket, mode, split_stages,
};

use crate::maps::COUNTERS;

/// What the call programs do ([`probe_common::mode`] bits); set by user space at load time.
#[unsafe(no_mangle)]
static MODE: u32 = mode::RECORDS;

/// Sums per process, call and source descriptor class, per CPU.
#[map]
static SUMMARY: PerCpuHashMap<SummaryKey, CallSummary> =
    PerCpuHashMap::with_max_entries(MAX_SUMMARY_KEYS, 0);

/// One zeroed summary: the initial value of a new key (too large for the BPF stack).
#[map]
static ZERO_SUMMARY: PerCpuArray<CallSummary> = PerCpuArray::with_max_entries(1, 0);

/// The run mode.
#[inline(always)]
pub fn run_mode() -> u32 {
    // SAFETY: a read-only global set before load; the volatile read keeps the compiler from
    // folding the default value in.
    unsafe { core::ptr::read_volatile(&MODE) }
}

/// Adds one to a counter slot of this CPU (slots outside [`probe_common::Counter`]).
#[inline(always)]
pub fn count_slot(slot: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, which do not nest.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn bump(hist: &mut [u64; HIST_BUCKETS], v: u64) {
    if let Some(b) = hist.get_mut(hist_bucket(v)) {
        *b += 1;
    }
}

/// Adds one finished call to its process's and call's sums on this CPU.
#[inline(always)]
pub fn add(rec: &CallRecord) {
    let spec = crate::fdclass::CALL_FDS.get(rec.nr).copied().unwrap_or(0);
    let key = SummaryKey::of(spec, rec);
    let mut slot = SUMMARY.get_ptr_mut(&key);
    if slot.is_none() {
        if let Some(zero) = ZERO_SUMMARY.get(0) {
            let _ = SUMMARY.insert(&key, zero, BPF_NOEXIST as u64);
        }
        slot = SUMMARY.get_ptr_mut(&key);
    }
    let Some(p) = slot else {
        count_slot(COUNTER_SUMMARY_FULL);
        return;
    };
    // SAFETY: a per-CPU value is only touched by programs on this CPU, which do not nest.
    let s = unsafe { &mut *p };
    // Only calls that move data count bytes: an mmap address or a poll count is none.
    let bytes = probe_common::call_bytes(spec, rec);
    let st = split_stages(rec, bytes > 0);
    s.calls += 1;
    if bytes > 0 {
        s.data_calls += 1;
        s.bytes += bytes;
    }
    if st.by == SplitBy::Marker {
        s.marker_calls += 1;
    }
    if rec.ret < 0 {
        s.errors += 1;
    }
    s.total_ns += st.total_ns;
    s.wait_ns += st.wait_ns;
    s.copy_ns += st.copy_ns;
    s.blocked_ns += st.blocked_ns;
    s.runq_ns += st.runq_ns;
    s.wait_blocked_ns += st.wait_blocked_ns;
    s.wait_runq_ns += st.wait_runq_ns;
    bump(&mut s.hist_total, st.total_ns);
    bump(&mut s.hist_wait, st.wait_ns);
    bump(&mut s.hist_copy, st.copy_ns);
}
