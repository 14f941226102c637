//! System call entry and exit: one program pair, attached by user space to the
//! `syscalls:sys_enter_*` / `sys_exit_*` tracepoints of every traced call.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use probe_common::{COUNTER_CALLS_LOST, CallRecord, Counter, RecordKind, mode};

use crate::{
    maps::{EVENTS, count, current_ids, entry_slot, field, in_flight, is_traced, now, wakeup_flag},
    summary,
};

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
    if summary::run_mode() == mode::FLOOR {
        return 0;
    }
    match try_call_enter::<3>(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

/// Entry of calls with two arguments (`munmap`): the kernel refuses to attach a program that
/// reads past a tracepoint's record, so this one reads no third argument.
#[tracepoint]
pub fn call_enter2(ctx: TracePointContext) -> u32 {
    if summary::run_mode() == mode::FLOOR {
        return 0;
    }
    match try_call_enter::<2>(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

/// Reads the first `ARGS` (2 or 3) arguments.
#[inline(always)]
fn try_call_enter<const ARGS: usize>(ctx: &TracePointContext) -> Result<u32, u32> {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return Ok(0);
    }
    // SAFETY: offset from the sys_enter format above.
    let nr = unsafe { field::<i32>(ctx, ENTER_NR) } as u32;
    let Some(s) = entry_slot(tid) else {
        count(Counter::InFlightFull);
        crate::diag::once(probe_common::Diag::InFlightFull, tid);
        return Ok(0);
    };
    if summary::run_mode() & mode::RECORDS != 0 {
        // SAFETY: offsets from the sys_enter format above.
        let args = unsafe {
            [
                field::<u64>(ctx, ENTER_ARGS),
                field::<u64>(ctx, ENTER_ARGS + 8),
                if ARGS > 2 {
                    field::<u64>(ctx, ENTER_ARGS + 16)
                } else {
                    0
                },
            ]
        };
        let (fd_class, fd_out_class) = crate::fdclass::classes(nr, &args);
        s.rec = CallRecord {
            kind: RecordKind::Call as u32,
            pid: tgid,
            tid,
            nr,
            args,
            start_ns: now(),
            fd_class,
            fd_out_class,
            ..CallRecord::default()
        };
    } else {
        // Summary mode: only what `summary::add` reads (the counts that only records carry
        // are left to wrap), which halves the stores of a call's entry.
        let r = &mut s.rec;
        r.pid = tgid;
        r.tid = tid;
        r.nr = nr;
        r.first_copy_ns = 0;
        r.blocked_ns = 0;
        r.runq_ns = 0;
        r.wait_blocked_ns = 0;
        r.wait_runq_ns = 0;
        r.start_ns = now();
    }
    s.off_ns = 0;
    s.wake_ns = 0;
    s.off_blocked = 0;
    Ok(0)
}

#[tracepoint]
pub fn call_exit(ctx: TracePointContext) -> u32 {
    if summary::run_mode() == mode::FLOOR {
        return 0;
    }
    match try_call_exit(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_call_exit(ctx: &TracePointContext) -> Result<u32, u32> {
    let (_, tid) = current_ids();
    let Some(state) = in_flight(tid) else {
        return Ok(0);
    };
    state.rec.end_ns = now();
    // SAFETY: offset from the sys_exit format above.
    state.rec.ret = unsafe { field::<i64>(ctx, EXIT_RET) };
    let run_mode = summary::run_mode();
    if run_mode & mode::AGGREGATE != 0 {
        summary::add(&state.rec);
    }
    if run_mode & mode::RECORDS != 0 {
        let flag = wakeup_flag::<CallRecord>(state.rec.end_ns);
        match EVENTS.reserve::<CallRecord>(0) {
            Some(mut slot) => {
                slot.write(state.rec);
                slot.submit(flag);
                count(Counter::Sent);
            }
            None => {
                count(Counter::Lost);
                summary::count_slot(COUNTER_CALLS_LOST);
                crate::diag::once(probe_common::Diag::RecordDropped, state.rec.tid);
            }
        }
    }
    // The entry stays for the thread's next call; it is no longer in flight.
    state.rec.start_ns = 0;
    Ok(0)
}
