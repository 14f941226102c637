//! Socket copy markers: the start and size of each copy of socket data to user memory.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use probe_common::{CopyRecord, RecordKind};

use crate::maps::{current_ids, field, in_flight, is_traced, now, send};

// skb/skb_copy_datagram_iovec/format:
//   field:const void * skbaddr; offset:8;  size:8;
//   field:int len;              offset:16; size:4;
const COPY_LEN: usize = 16;

#[tracepoint]
pub fn skb_copy(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the skb_copy_datagram_iovec format above.
    copied(unsafe { field::<i32>(&ctx, COPY_LEN) });
    0
}

/// `skb_copy_datagram_iovec(const struct sk_buff *skb, int len)`.
#[raw_tracepoint(tracepoint = "skb_copy_datagram_iovec")]
pub fn raw_skb_copy(ctx: RawTracePointContext) -> u32 {
    copied(ctx.arg::<u64>(1) as i32);
    0
}

/// The current thread copies `len` bytes of socket data to user memory.
#[inline(always)]
fn copied(len: i32) {
    let (tgid, tid) = current_ids();
    let Some(s) = in_flight(tid) else {
        // A copy outside any traced call (an io_uring worker, task work): report it alone.
        if is_traced(tgid) {
            let t = now();
            let rec = CopyRecord {
                kind: RecordKind::Copy as u32,
                pid: tgid,
                tid,
                bytes: len.max(0) as u32,
                time_ns: t,
            };
            send(&rec, t);
        }
        return;
    };
    {
        if s.rec.first_copy_ns == 0 {
            s.rec.first_copy_ns = now();
            s.rec.wait_blocked_ns = s.rec.blocked_ns;
            s.rec.wait_runq_ns = s.rec.runq_ns;
        }
        s.rec.copy_bytes += len.max(0) as u64;
        s.rec.copy_events += 1;
    }
}
