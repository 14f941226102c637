//! Page faults and socket sends of traced processes: counted into the call in flight when
//! there is one, else into per-CPU counters of what happened outside traced calls.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use probe_common::Counter;

use crate::maps::{COUNTERS, current_ids, field, in_flight, is_traced};

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
// (only the event itself is counted; no field is read)
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

#[inline(always)]
fn fault(which: Fault) -> u32 {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return 0;
    }
    let (all, outside) = match which {
        Fault::User => (Counter::FaultsUser, Counter::FaultsUserOutside),
        Fault::Kernel => (Counter::FaultsKernel, Counter::FaultsKernelOutside),
        Fault::File => (Counter::FileFaults, Counter::FileFaultsOutside),
    };
    add(all, 1);
    match in_flight(tid) {
        Some(s) => match which {
            Fault::User => s.rec.faults_user += 1,
            Fault::Kernel => s.rec.faults_kernel += 1,
            Fault::File => s.rec.file_faults += 1,
        },
        None => add(outside, 1),
    }
    0
}

#[tracepoint]
pub fn page_fault_user(_ctx: TracePointContext) -> u32 {
    fault(Fault::User)
}

#[tracepoint]
pub fn page_fault_kernel(_ctx: TracePointContext) -> u32 {
    fault(Fault::Kernel)
}

#[tracepoint]
pub fn filemap_fault(_ctx: TracePointContext) -> u32 {
    fault(Fault::File)
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return 0;
    }
    // SAFETY: offset from the sock_send_length format above.
    let ret = unsafe { field::<i32>(&ctx, SEND_RET) };
    if ret <= 0 {
        return 0;
    }
    let n = ret as u64;
    add(Counter::SentBytes, n);
    match in_flight(tid) {
        Some(s) => s.rec.sent_bytes += n,
        None => add(Counter::SentBytesOutside, n),
    }
    0
}
