//! Page faults and socket sends of traced processes: counted into the call in flight when
//! there is one, else into per-CPU counters of what happened outside traced calls. Write
//! faults and the pages copied by copy-on-write are also counted per thread.
use aya_ebpf::{
    macros::{map, raw_tracepoint, tracepoint},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::{RawTracePointContext, TracePointContext},
};
use probe_common::{Counter, CowCounts, Diag, MAX_COW_THREADS, fault_bits};

use crate::{
    diag,
    maps::{COUNTERS, current_ids, field, in_flight, is_traced, now},
};

// sock/sock_send_length/format:
//   field:void * sk;       offset:8;  size:8;
//   field:__u16 family;    offset:16; size:2;
//   field:__u16 protocol;  offset:18; size:2;
//   field:int ret;         offset:20; size:4;
//   field:int flags;       offset:24; size:4;
const SEND_RET: usize = 20;
// exceptions/page_fault_user/format and exceptions/page_fault_kernel/format:
//   field:unsigned long address;    offset:8;  size:8;
//   field:unsigned long ip;         offset:16; size:8;
//   field:unsigned long error_code; offset:24; size:8;
// (page_fault_user reads error_code; page_fault_kernel only counts the event)
const FAULT_ERROR_CODE: usize = 24;
// kmem/mm_page_alloc/format:
//   field:unsigned long pfn;        offset:8;  size:8;
//   field:unsigned int order;       offset:16; size:4;
//   field:unsigned long gfp_flags;  offset:24; size:8;
const ALLOC_ORDER: usize = 16;
const ALLOC_GFP: usize = 24;
/// `__GFP_MOVABLE`: set for pages of user memory (a copy-on-write copy), not for the kernel's
/// own allocations a fault may make first (page tables, `anon_vma`).
const GFP_MOVABLE: u64 = 0x08;
// filemap/mm_filemap_fault/format:
//   field:unsigned long i_ino; offset:8;  size:8;
//   field:dev_t s_dev;         offset:16; size:4;
//   field:unsigned long index; offset:24; size:8;
// (only the event itself is counted; no field is read)

/// Adds `n` to a counter of this CPU.
#[inline(always)]
fn add(c: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(c as u32) {
        // SAFETY: a per-CPU slot is only touched by programs on this CPU, which do not nest.
        unsafe { *p += n };
    }
}

/// Which fault a program counts.
#[derive(Clone, Copy)]
enum Fault {
    User,
    Kernel,
    File,
}

/// Counts a fault of the current thread when its process is traced; returns its
/// `(tgid, tid, in a traced call)`, `None` when untraced.
#[inline(always)]
fn fault(which: Fault) -> Option<(u32, u32, bool)> {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return None;
    }
    let (all, outside) = match which {
        Fault::User => (Counter::FaultsUser, Counter::FaultsUserOutside),
        Fault::Kernel => (Counter::FaultsKernel, Counter::FaultsKernelOutside),
        Fault::File => (Counter::FileFaults, Counter::FileFaultsOutside),
    };
    add(all, 1);
    let in_call = match in_flight(tid) {
        Some(s) => {
            match which {
                Fault::User => s.rec.faults_user += 1,
                Fault::Kernel => s.rec.faults_kernel += 1,
                Fault::File => s.rec.file_faults += 1,
            }
            true
        }
        None => {
            add(outside, 1);
            false
        }
    };
    Some((tgid, tid, in_call))
}

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    let Some((tgid, tid, in_call)) = fault(Fault::User) else {
        return 0;
    };
    // SAFETY: offset from the page_fault_user format above.
    let code = unsafe { field::<u64>(&ctx, FAULT_ERROR_CODE) };
    if code & fault_bits::WRITE != 0 {
        write_fault(tgid, tid, !in_call, code);
    }
    0
}

/// Copy-on-write counts per thread (summed over CPUs by user space).
#[map]
static COW_THREADS: PerCpuHashMap<u32, CowCounts> =
    PerCpuHashMap::with_max_entries(MAX_COW_THREADS, 0);

/// The thread whose copy-on-write fault this CPU is handling, and when it started: the next
/// page allocation by that thread soon after is the copy.
#[map]
static COW_PENDING: PerCpuArray<CowPending> = PerCpuArray::with_max_entries(1, 0);

/// A copy-on-write fault in progress on one CPU.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct CowPending {
    tid: u32,
    /// 1 once its copy's page was allocated.
    copied: u32,
    start_ns: u64,
}

/// How long after a copy-on-write fault's entry its page allocation may come, ns: the copy's
/// allocation follows within microseconds; a later allocation is something else.
const COPY_WITHIN_NS: u64 = 50_000;

/// The copy-on-write counts of thread `tid` of `tgid` on this CPU, made on first use.
#[inline(always)]
fn cow_counts(tgid: u32, tid: u32) -> Option<&'static mut CowCounts> {
    if let Some(p) = COW_THREADS.get_ptr_mut(&tid) {
        // SAFETY: a per-CPU entry is only touched by programs on this CPU, which do not nest.
        return Some(unsafe { &mut *p });
    }
    let fresh = CowCounts {
        pid: tgid,
        ..CowCounts::default()
    };
    if COW_THREADS.insert(&tid, &fresh, 0).is_err() {
        add(Counter::CowTableFull, 1);
        diag::once(Diag::CowTableFull, tid);
        return None;
    }
    // SAFETY: as above.
    COW_THREADS.get_ptr_mut(&tid).map(|p| unsafe { &mut *p })
}

/// Counts a user-mode write fault of traced thread `tid` of `tgid` (`outside`: outside a
/// traced call; `code`: the fault's error code).
#[inline(always)]
fn write_fault(tgid: u32, tid: u32, outside: bool, code: u64) {
    let cow = code & fault_bits::PRESENT != 0;
    add(Counter::WriteFaults, 1);
    if outside {
        add(Counter::WriteFaultsOutside, 1);
    }
    if cow {
        add(Counter::CowFaults, 1);
        if let Some(p) = COW_PENDING.get_ptr_mut(0) {
            // SAFETY: a per-CPU slot is only touched by programs on this CPU.
            unsafe {
                *p = CowPending {
                    tid,
                    copied: 0,
                    start_ns: now(),
                }
            };
        }
    }
    if let Some(c) = cow_counts(tgid, tid) {
        c.write_faults += 1;
        c.write_faults_outside += u64::from(outside);
        c.cow_faults += u64::from(cow);
    }
}

/// This CPU's copy-on-write fault in progress, with the current `(tgid, tid)`, when the
/// current thread made it and it is at `copied` (0: its copy's page not allocated yet, 1:
/// allocated). Costs one per-CPU lookup when no fault is pending.
#[inline(always)]
fn pending_of_current(copied: u32) -> Option<(&'static mut CowPending, u32, u32)> {
    // SAFETY: a per-CPU slot is only touched by programs on this CPU.
    let pending = unsafe { &mut *COW_PENDING.get_ptr_mut(0)? };
    if pending.tid == 0 || pending.copied != copied {
        return None;
    }
    let (tgid, tid) = current_ids();
    (pending.tid == tid).then_some((pending, tgid, tid))
}

/// A page allocation: the copy of a copy-on-write fault when the faulting thread makes it (a
/// page of user memory) on this CPU soon after the fault's entry. Every other allocation
/// returns after one lookup.
#[tracepoint]
pub fn page_alloc(ctx: TracePointContext) -> u32 {
    let Some((pending, tgid, tid)) = pending_of_current(0) else {
        return 0;
    };
    // SAFETY: offset from the mm_page_alloc format above.
    let gfp = unsafe { field::<u64>(&ctx, ALLOC_GFP) };
    if gfp & GFP_MOVABLE == 0 {
        return 0;
    }
    if now().wrapping_sub(pending.start_ns) > COPY_WITHIN_NS {
        pending.tid = 0;
        return 0;
    }
    // The fault stays pending until the TLB flush of the old page ends its copy.
    pending.copied = 1;
    // SAFETY: offset from the mm_page_alloc format above.
    let order = unsafe { field::<u32>(&ctx, ALLOC_ORDER) };
    let pages = 1u64 << (order & 15);
    add(Counter::CowCopies, pages);
    if let Some(c) = cow_counts(tgid, tid) {
        c.copies += pages;
    }
    0
}

// tlb/tlb_flush/format:
//   field:int reason;          offset:8;  size:4;
//   field:unsigned long pages; offset:16; size:8;
const FLUSH_PAGES: usize = 16;

/// A TLB flush: the one page flushed by a thread whose copy-on-write fault has copied is the
/// old page leaving its page table, right after the copy; its time since the fault's entry is
/// the fault's time. Every other flush returns after one lookup.
#[tracepoint]
pub fn tlb_flush(ctx: TracePointContext) -> u32 {
    let Some((pending, tgid, tid)) = pending_of_current(1) else {
        return 0;
    };
    // SAFETY: offset from the tlb_flush format above.
    let pages = unsafe { field::<u64>(&ctx, FLUSH_PAGES) };
    if pages != 1 {
        return 0;
    }
    pending.tid = 0;
    pending.copied = 0;
    let ns = now().wrapping_sub(pending.start_ns);
    if ns > COPY_WITHIN_NS {
        return 0;
    }
    add(Counter::CowCopyNs, ns);
    add(Counter::CowCopiesTimed, 1);
    if let Some(c) = cow_counts(tgid, tid) {
        c.copy_ns += ns;
    }
    0
}

#[tracepoint]
pub fn page_fault_kernel(_ctx: TracePointContext) -> u32 {
    fault(Fault::Kernel);
    0
}

#[tracepoint]
pub fn filemap_fault(_ctx: TracePointContext) -> u32 {
    fault(Fault::File);
    0
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the sock_send_length format above.
    sent(|| unsafe { field::<i32>(&ctx, SEND_RET) });
    0
}

/// `sock_send_length(struct sock *sk, int ret, int flags)`.
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn raw_sock_send_length(ctx: RawTracePointContext) -> u32 {
    sent(|| ctx.arg::<u64>(1) as i32);
    0
}

/// The current thread handed `ret` bytes to a socket (read only for a traced process).
#[inline(always)]
fn sent(ret: impl FnOnce() -> i32) {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return;
    }
    let ret = ret();
    if ret <= 0 {
        return;
    }
    let n = ret as u64;
    add(Counter::SentBytes, n);
    match in_flight(tid) {
        Some(s) => s.rec.sent_bytes += n,
        None => add(Counter::SentBytesOutside, n),
    }
}
