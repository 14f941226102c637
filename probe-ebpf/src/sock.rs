//! Socket copy markers: the start and size of each copy of socket data to user memory.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use crate::maps::{current_ids, field, in_flight, now};

// skb/skb_copy_datagram_iovec/format:
//   field:const void * skbaddr; offset:8;  size:8;
//   field:int len;              offset:16; size:4;
const COPY_LEN: usize = 16;

#[tracepoint]
pub fn skb_copy(ctx: TracePointContext) -> u32 {
    let (_, tid) = current_ids();
    if let Some(s) = in_flight(tid) {
        // SAFETY: offset from the skb_copy_datagram_iovec format above.
        let len = unsafe { field::<i32>(&ctx, COPY_LEN) };
        if s.rec.first_copy_ns == 0 {
            s.rec.first_copy_ns = now();
            s.rec.wait_blocked_ns = s.rec.blocked_ns;
            s.rec.wait_runq_ns = s.rec.runq_ns;
        }
        s.rec.copy_bytes += len.max(0) as u64;
        s.rec.copy_events += 1;
    }
    0
}
