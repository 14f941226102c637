//! Signal hooks: signals sent to and delivered to traced processes (SIGIO of signal-driven
//! I/O, SIGBUS of a truncated mapping, lease-break signals).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use probe_common::{RecordKind, SignalEvent, SignalRecord};

use crate::maps::{current_ids, field, is_traced, now};

// signal/signal_generate/format:
//   field:int sig;     offset:8;  size:4;
//   field:int code;    offset:16; size:4;
//   field:pid_t pid;   offset:36; size:4;
//   field:int result;  offset:44; size:4;
const GEN_SIG: usize = 8;
const GEN_CODE: usize = 16;
const GEN_PID: usize = 36;
const GEN_RESULT: usize = 44;
// signal/signal_deliver/format:
//   field:int sig;     offset:8;  size:4;
//   field:int code;    offset:16; size:4;
const DELIVER_SIG: usize = 8;
const DELIVER_CODE: usize = 16;

fn send(rec: &SignalRecord) {
    crate::maps::send(rec, rec.time_ns);
}

#[tracepoint]
pub fn signal_generate(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    // SAFETY: offsets from the signal_generate format above.
    let (sig, code, target, result) = unsafe {
        (
            field::<i32>(&ctx, GEN_SIG),
            field::<i32>(&ctx, GEN_CODE),
            field::<i32>(&ctx, GEN_PID) as u32,
            field::<i32>(&ctx, GEN_RESULT),
        )
    };
    // The target is known by thread id only: a process-directed signal names the main thread,
    // whose id is the process id. Signals a traced process sends are kept too.
    let target_traced = is_traced(target);
    if !target_traced && !is_traced(tgid) {
        return 0;
    }
    send(&SignalRecord {
        kind: RecordKind::Signal as u32,
        event: SignalEvent::Generate as u32,
        pid: target,
        tid: target,
        sig,
        code,
        result,
        current_pid: tgid,
        time_ns: now(),
    });
    0
}

#[tracepoint]
pub fn signal_deliver(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return 0;
    }
    // SAFETY: offsets from the signal_deliver format above.
    let (sig, code) = unsafe {
        (
            field::<i32>(&ctx, DELIVER_SIG),
            field::<i32>(&ctx, DELIVER_CODE),
        )
    };
    send(&SignalRecord {
        kind: RecordKind::Signal as u32,
        event: SignalEvent::Deliver as u32,
        pid: tgid,
        tid,
        sig,
        code,
        result: 0,
        current_pid: tgid,
        time_ns: now(),
    });
    0
}
