//! System call entry and exit: one program pair, attached by user space to the
//! `syscalls:sys_enter_*` / `sys_exit_*` tracepoints of every traced call.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use probe_common::{CallRecord, Counter, InFlight, RecordKind};

use crate::maps::{EVENTS, IN_FLIGHT, count, current_ids, field, in_flight, is_traced, now};

// syscalls/sys_enter_*/format:
//   field:int __syscall_nr; offset:8;  size:4;
//   first argument at offset 16, each argument 8 bytes.
const ENTER_NR: usize = 8;
const ENTER_ARGS: usize = 16;
// syscalls/sys_exit_*/format:
//   field:int __syscall_nr; offset:8;  size:4;
//   field:long ret;         offset:16; size:8;
const EXIT_RET: usize = 16;

#[tracepoint]
pub fn call_enter(ctx: TracePointContext) -> u32 {
    match try_call_enter(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_call_enter(ctx: &TracePointContext) -> Result<u32, u32> {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return Ok(0);
    }
    // SAFETY: offsets from the sys_enter format above.
    let (nr, args) = unsafe {
        (
            field::<i32>(ctx, ENTER_NR) as u32,
            [
                field::<u64>(ctx, ENTER_ARGS),
                field::<u64>(ctx, ENTER_ARGS + 8),
                field::<u64>(ctx, ENTER_ARGS + 16),
            ],
        )
    };
    let (fd_class, fd_out_class) = crate::fdclass::classes(nr, &args);
    let state = InFlight {
        rec: CallRecord {
            kind: RecordKind::Call as u32,
            pid: tgid,
            tid,
            nr,
            args,
            start_ns: now(),
            fd_class,
            fd_out_class,
            ..CallRecord::default()
        },
        ..InFlight::default()
    };
    if IN_FLIGHT.insert(&tid, &state, 0).is_err() {
        count(Counter::InFlightFull);
    }
    Ok(0)
}

#[tracepoint]
pub fn call_exit(ctx: TracePointContext) -> u32 {
    match try_call_exit(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_call_exit(ctx: &TracePointContext) -> Result<u32, u32> {
    let (_, tid) = current_ids();
    let Some(state) = in_flight(tid) else {
        return Ok(0);
    };
    let mut rec = state.rec;
    rec.end_ns = now();
    // SAFETY: offset from the sys_exit format above.
    rec.ret = unsafe { field::<i64>(ctx, EXIT_RET) };
    let _ = IN_FLIGHT.remove(&tid);
    match EVENTS.reserve::<CallRecord>(0) {
        Some(mut slot) => {
            slot.write(rec);
            slot.submit(0);
            count(Counter::Sent);
        }
        None => count(Counter::Lost),
    }
    Ok(0)
}
