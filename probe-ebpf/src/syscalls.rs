//! System call entry and exit. Two attachments where the kernel allows: raw tracepoints on
//! `sys_enter`/`sys_exit`, which run for every call and keep only the traced call numbers (set
//! in `CALL_FDS`); else one program pair attached to the `syscalls:sys_enter_*` /
//! `sys_exit_*` tracepoints of every traced call. A call already in flight when tracing
//! starts is recorded at its exit, from the run's start, and marked so.
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{map, raw_tracepoint, tracepoint},
    maps::Array,
    programs::{RawTracePointContext, TracePointContext},
};
use probe_common::{
    CALL_FDS_DROPS, CALL_FDS_SET, COUNTER_CALLS_LOST, CallRecord, CompactCall, Counter, InFlight,
    RecordKind, call_flags, mode,
};

use crate::{
    fdclass::CALL_FDS,
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
const EXIT_NR: usize = 8;
const EXIT_RET: usize = 16;

/// Where the first three arguments lie in `struct pt_regs`, set by user space for this
/// architecture before load: `[first, second, third]` byte offsets, and the offset of the
/// call number. Read by the raw tracepoint programs only.
#[unsafe(no_mangle)]
static REGS_ARGS: [u32; 3] = [0; 3];
#[unsafe(no_mangle)]
static REGS_NR: u32 = 0;

/// Slot 0: the time tracing of the given processes started, when calls in flight at that
/// moment are to be recorded at their exit (0: they are not; a launched command has none).
#[map]
pub static RUN_START: Array<u64> = Array::with_max_entries(1, 0);

/// Whether call number `nr` is traced in this run.
#[inline(always)]
fn traced_call(nr: u64) -> bool {
    nr < probe_common::CALL_FDS_SLOTS as u64
        && CALL_FDS
            .get(nr as u32)
            .is_some_and(|v| *v & CALL_FDS_SET != 0)
}

#[tracepoint]
pub fn call_enter(ctx: TracePointContext) -> u32 {
    if summary::run_mode() == mode::FLOOR {
        return 0;
    }
    // SAFETY: offset from the sys_enter format above.
    let nr = unsafe { field::<i32>(&ctx, ENTER_NR) } as u32;
    enter(nr, || {
        // SAFETY: offsets from the sys_enter format above.
        unsafe {
            [
                field::<u64>(&ctx, ENTER_ARGS),
                field::<u64>(&ctx, ENTER_ARGS + 8),
                field::<u64>(&ctx, ENTER_ARGS + 16),
            ]
        }
    });
    0
}

/// Entry of calls with two arguments (`munmap`): the kernel refuses to attach a program that
/// reads past a tracepoint's record, so this one reads no third argument.
#[tracepoint]
pub fn call_enter2(ctx: TracePointContext) -> u32 {
    if summary::run_mode() == mode::FLOOR {
        return 0;
    }
    // SAFETY: offset from the sys_enter format above.
    let nr = unsafe { field::<i32>(&ctx, ENTER_NR) } as u32;
    enter(nr, || {
        // SAFETY: offsets from the sys_enter format above.
        unsafe {
            [
                field::<u64>(&ctx, ENTER_ARGS),
                field::<u64>(&ctx, ENTER_ARGS + 8),
                0,
            ]
        }
    });
    0
}

/// Reads a word of the caller's saved registers.
#[inline(always)]
fn reg(regs: u64, off: u32) -> u64 {
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly on a bad one.
    unsafe { bpf_probe_read_kernel((regs + off as u64) as *const u64) }.unwrap_or(0)
}

/// `sys_enter(struct pt_regs *regs, long id)`: every call of every process.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_call_enter(ctx: RawTracePointContext) -> u32 {
    if summary::run_mode() == mode::FLOOR {
        return 0;
    }
    let nr: u64 = ctx.arg(1);
    if nr >= probe_common::CALL_FDS_SLOTS as u64 {
        return 0;
    }
    let spec = CALL_FDS.get(nr as u32).copied().unwrap_or(0);
    if spec & CALL_FDS_DROPS != 0 {
        let (tgid, _) = current_ids();
        if is_traced(tgid) {
            crate::fdclass::drop_cached(tgid, spec, || regs_args(ctx.arg(0)));
        }
    }
    if spec & CALL_FDS_SET == 0 {
        return 0;
    }
    enter(nr as u32, || regs_args(ctx.arg(0)));
    0
}

/// The first three arguments of the current call, from its saved registers: one read of the
/// three adjacent words that hold them (in either order, as on x86_64 and aarch64).
#[inline(always)]
fn regs_args(regs: u64) -> [u64; 3] {
    // SAFETY: read-only globals set before load.
    let offs = unsafe { core::ptr::read_volatile(&REGS_ARGS) };
    let base = offs[0].min(offs[1]).min(offs[2]);
    // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly on a bad one.
    let words =
        unsafe { bpf_probe_read_kernel((regs + base as u64) as *const [u64; 3]) }.unwrap_or([0; 3]);
    let word = |off: u32| match (off - base) / 8 {
        0 => words[0],
        1 => words[1],
        _ => words[2],
    };
    [word(offs[0]), word(offs[1]), word(offs[2])]
}

/// Starts a call of the current thread if its process is traced. `args` is read only when
/// the run keeps per-call records.
#[inline(always)]
fn enter(nr: u32, args: impl FnOnce() -> [u64; 3]) {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return;
    }
    let Some(s) = entry_slot(tid) else {
        count(Counter::InFlightFull);
        crate::diag::once(probe_common::Diag::InFlightFull, tid);
        return;
    };
    if summary::run_mode() & mode::RECORDS != 0 {
        s.rec = record(tgid, tid, nr, args(), now(), 0);
    } else {
        // Summary mode: only what `summary::add` reads (the counts that only records carry
        // are left to wrap), which halves the stores of a call's entry.
        let r = &mut s.rec;
        r.pid = tgid;
        r.tid = tid;
        r.nr = nr;
        r.flags = 0;
        r.first_copy_ns = 0;
        r.blocked_ns = 0;
        r.runq_ns = 0;
        r.wait_blocked_ns = 0;
        r.wait_runq_ns = 0;
        // The bytes of recvmmsg and sendmmsg.
        r.recv_bytes = 0;
        r.sent_bytes = 0;
        r.fd_class = if crate::maps::summary_classes() {
            crate::fdclass::source_class(CALL_FDS.get(nr).copied().unwrap_or(0), args)
        } else {
            probe_common::fd_class::UNKNOWN
        };
        r.start_ns = now();
    }
    s.off_ns = 0;
    s.wake_ns = 0;
    s.off_blocked = 0;
}

#[tracepoint]
pub fn call_exit(ctx: TracePointContext) -> u32 {
    if summary::run_mode() == mode::FLOOR {
        return 0;
    }
    // SAFETY: offset from the sys_exit format above.
    let ret = unsafe { field::<i64>(&ctx, EXIT_RET) };
    // The exit record has no arguments: those of a call begun before tracing are unknown
    // (-1 reads as no descriptor).
    // SAFETY: offset from the sys_exit format above.
    exit(
        ret,
        || unsafe { field::<i32>(&ctx, EXIT_NR) } as u64,
        || [u64::MAX; 3],
    );
    0
}

/// `sys_exit(struct pt_regs *regs, long ret)`: every call of every process.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_call_exit(ctx: RawTracePointContext) -> u32 {
    if summary::run_mode() == mode::FLOOR {
        return 0;
    }
    let ret: i64 = ctx.arg(1);
    let regs: u64 = ctx.arg(0);
    exit(
        ret,
        // SAFETY: a read-only global set before load.
        || reg(regs, unsafe { core::ptr::read_volatile(&REGS_NR) }) as u32 as u64,
        // The argument registers are as they were at entry.
        || regs_args(regs),
    );
    0
}

/// Ends the current thread's call; `nr` and `args` are read only for a call with no entry
/// seen.
#[inline(always)]
fn exit(ret: i64, nr: impl FnOnce() -> u64, args: impl FnOnce() -> [u64; 3]) {
    let (tgid, tid) = current_ids();
    let state = match in_flight(tid) {
        Some(s) => s,
        None => match started_before(tgid, tid, nr, args) {
            Some(s) => s,
            None => return,
        },
    };
    state.rec.end_ns = now();
    state.rec.ret = ret;
    let run_mode = summary::run_mode();
    if run_mode & mode::AGGREGATE != 0 {
        summary::add(&state.rec);
    }
    if run_mode & mode::RECORDS != 0 {
        let spec = CALL_FDS.get(state.rec.nr).copied().unwrap_or(0);
        let sent = match CompactCall::pack(&state.rec, spec & 0xff, (spec >> 8) & 0xff) {
            Some(c) => submit(&c, state.rec.end_ns),
            None => submit(&state.rec, state.rec.end_ns),
        };
        if sent {
            count(Counter::Sent);
        } else {
            count(Counter::Lost);
            summary::count_slot(COUNTER_CALLS_LOST);
            crate::diag::once(probe_common::Diag::RecordDropped, state.rec.tid);
        }
    }
    // The entry stays for the thread's next call; it is no longer in flight.
    state.rec.start_ns = 0;
}

/// Sends a call record made at `now_ns` to user space; false when the ring buffer is full.
#[inline(always)]
fn submit<T: Copy + 'static>(rec: &T, now_ns: u64) -> bool {
    let flag = wakeup_flag::<T>(now_ns);
    match EVENTS.reserve::<T>(0) {
        Some(mut slot) => {
            slot.write(*rec);
            slot.submit(flag);
            true
        }
        None => false,
    }
}

/// A traced call ending with no entry seen: when the run records calls in flight at its
/// start and this thread has made no traced call yet, the call began before tracing did.
/// Returns its state, begun at the run's start and marked [`call_flags::START_UNKNOWN`].
#[inline(always)]
fn started_before(
    tgid: u32,
    tid: u32,
    nr: impl FnOnce() -> u64,
    args: impl FnOnce() -> [u64; 3],
) -> Option<&'static mut InFlight> {
    let start = *RUN_START.get(0)?;
    if start == 0 || !is_traced(tgid) {
        return None;
    }
    let nr = nr();
    if !traced_call(nr) {
        return None;
    }
    let s = entry_slot(tid)?;
    if s.rec.tid == tid {
        // This thread's slot: it has made a traced call since the start (its entry was lost).
        return None;
    }
    let nr = nr as u32;
    // Only its source descriptor is classified, by the walk alone (see `walked_source_class`);
    // user space resolves a second one from /proc.
    let (args, fd_class) = if summary::run_mode() & mode::RECORDS != 0 {
        let args = args();
        (args, crate::fdclass::walked_source_class(nr, &args))
    } else if crate::maps::summary_classes()
        && probe_common::moves_data(CALL_FDS.get(nr).copied().unwrap_or(0))
    {
        (
            [u64::MAX; 3],
            crate::fdclass::walked_source_class(nr, &args()),
        )
    } else {
        ([u64::MAX; 3], probe_common::fd_class::UNKNOWN)
    };
    s.rec = CallRecord {
        kind: RecordKind::Call as u32,
        pid: tgid,
        tid,
        nr,
        args,
        start_ns: start,
        flags: call_flags::START_UNKNOWN,
        fd_class,
        fd_out_class: probe_common::fd_class::UNKNOWN,
        ..CallRecord::default()
    };
    s.off_ns = 0;
    s.wake_ns = 0;
    s.off_blocked = 0;
    Some(s)
}

/// A new call record, its descriptors classified from `args`.
#[inline(always)]
fn record(tgid: u32, tid: u32, nr: u32, args: [u64; 3], start_ns: u64, flags: u32) -> CallRecord {
    let (fd_class, fd_out_class) = crate::fdclass::classes(nr, &args);
    CallRecord {
        kind: RecordKind::Call as u32,
        pid: tgid,
        tid,
        nr,
        args,
        start_ns,
        flags,
        fd_class,
        fd_out_class,
        ..CallRecord::default()
    }
}
