//! I/O model hooks: when data reached a traced process's socket (`sock:sk_data_ready`), which
//! socket each read drained (`sock:sock_recv_length`), and the life of io_uring requests
//! (`io_uring:io_uring_submit_req` / `io_uring_complete`).
use aya_ebpf::{
    macros::{map, raw_tracepoint, tracepoint},
    maps::LruHashMap,
    programs::{RawTracePointContext, TracePointContext},
};
use probe_common::{RecordKind, SockRecord, UringRecord};

use crate::maps::{current_ids, field, in_flight, is_traced, now, send};

/// Sockets a traced process has read from, by kernel address, with the reader's tgid: data
/// reaching them is reported whoever delivers it.
#[map]
static WATCHED_SOCKS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(4096, 0);

// sock/sk_data_ready/format:
//   field:const void * skaddr; offset:8;  size:8;
const READY_SK: usize = 8;
// sock/sock_recv_length/format:
//   field:void * sk;           offset:8;  size:8;
//   field:int ret;             offset:20; size:4;
const RECV_SK: usize = 8;
const RECV_RET: usize = 20;
// io_uring/io_uring_submit_req/format:
//   field:void * req;                 offset:16; size:8;
//   field:unsigned long long user_data; offset:24; size:8;
//   field:u8 opcode;                  offset:32; size:1;
const SUBMIT_REQ: usize = 16;
const SUBMIT_USER_DATA: usize = 24;
const SUBMIT_OPCODE: usize = 32;
// io_uring/io_uring_complete/format:
//   field:void * req;          offset:16; size:8;
//   field:u64 user_data;       offset:24; size:8;
//   field:int res;             offset:32; size:4;
const COMPLETE_REQ: usize = 16;
const COMPLETE_USER_DATA: usize = 24;
const COMPLETE_RES: usize = 32;

#[inline(always)]
fn send_sock(kind: RecordKind, pid: u32, tid: u32, ret: i32, sk: u64) {
    let t = now();
    let rec = SockRecord {
        kind: kind as u32,
        pid,
        tid,
        ret,
        sk,
        time_ns: t,
    };
    send(&rec, t);
}

#[inline(always)]
fn send_uring(mut rec: UringRecord) {
    let t = now();
    rec.time_ns = t;
    send(&rec, t);
}

#[tracepoint]
pub fn sk_data_ready(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the sk_data_ready format above.
    data_ready(unsafe { field::<u64>(&ctx, READY_SK) });
    0
}

/// `sk_data_ready(const struct sock *sk)`.
#[raw_tracepoint(tracepoint = "sk_data_ready")]
pub fn raw_sk_data_ready(ctx: RawTracePointContext) -> u32 {
    data_ready(ctx.arg(0));
    0
}

/// Data reached socket `sk`.
#[inline(always)]
fn data_ready(sk: u64) {
    let (tgid, tid) = current_ids();
    // SAFETY: the value is a plain integer copied out at once.
    let owner = match unsafe { WATCHED_SOCKS.get(&sk) } {
        Some(&o) => o,
        // Before its first read a socket is unknown; data a traced process sends to itself
        // (a loopback peer) is still seen.
        None if is_traced(tgid) => tgid,
        None => return,
    };
    send_sock(RecordKind::DataReady, owner, tid, 0, sk);
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the sock_recv_length format above.
    recv_length(|| unsafe { (field::<u64>(&ctx, RECV_SK), field::<i32>(&ctx, RECV_RET)) });
    0
}

/// `sock_recv_length(struct sock *sk, int ret, int flags)`.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn raw_sock_recv_length(ctx: RawTracePointContext) -> u32 {
    recv_length(|| (ctx.arg(0), ctx.arg::<u64>(1) as i32));
    0
}

/// The current thread read from a socket: `(sk, ret)` are read only for a traced process.
#[inline(always)]
fn recv_length(sk_ret: impl FnOnce() -> (u64, i32)) {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return;
    }
    let (sk, ret) = sk_ret();
    // The bytes of a batched receive (recvmmsg), whose return value counts messages.
    if ret > 0
        && let Some(s) = in_flight(tid)
    {
        s.rec.recv_bytes = s.rec.recv_bytes.saturating_add(ret as u32);
    }
    // User space learns which sockets a process reads once: a socket already known for this
    // process costs one lookup and no record (reads run at every call, failed ones included).
    // SAFETY: the value is a plain integer copied out at once.
    if unsafe { WATCHED_SOCKS.get(&sk) } == Some(&tgid) {
        return;
    }
    let _ = WATCHED_SOCKS.insert(&sk, &tgid, 0);
    send_sock(RecordKind::RecvLength, tgid, tid, ret, sk);
}

#[tracepoint]
pub fn uring_submit(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return 0;
    }
    // SAFETY: offsets from the io_uring_submit_req format above.
    let (req, user_data, opcode) = unsafe {
        (
            field::<u64>(&ctx, SUBMIT_REQ),
            field::<u64>(&ctx, SUBMIT_USER_DATA),
            field::<u8>(&ctx, SUBMIT_OPCODE),
        )
    };
    send_uring(UringRecord {
        kind: RecordKind::UringSubmit as u32,
        pid: tgid,
        tid,
        opcode: opcode as u32,
        req,
        user_data,
        ..UringRecord::default()
    });
    0
}

#[tracepoint]
pub fn uring_complete(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return 0;
    }
    // SAFETY: offsets from the io_uring_complete format above.
    let (req, user_data, res) = unsafe {
        (
            field::<u64>(&ctx, COMPLETE_REQ),
            field::<u64>(&ctx, COMPLETE_USER_DATA),
            field::<i32>(&ctx, COMPLETE_RES),
        )
    };
    send_uring(UringRecord {
        kind: RecordKind::UringComplete as u32,
        pid: tgid,
        tid,
        res,
        req,
        user_data,
        ..UringRecord::default()
    });
    0
}
