//! Signal hooks: signals sent to and delivered to traced processes (SIGIO of signal-driven
//! I/O, SIGBUS of a truncated mapping, lease-break signals).
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
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

/// `si_code` of a signal's `struct kernel_siginfo *`, as the tracepoints record it: the two
/// special pointer values mean a signal from user space and one from the kernel.
#[inline(always)]
fn si_code(info: u64) -> i32 {
    const SI_USER: i32 = 0;
    const SI_KERNEL: i32 = 0x80;
    // `kernel_siginfo`: si_signo, si_errno, si_code (a stable layout).
    const CODE: u64 = 8;
    match info {
        0 => SI_USER,
        1 => SI_KERNEL,
        // SAFETY: bpf_probe_read_kernel checks the address and fails cleanly on a bad one.
        _ => unsafe { bpf_probe_read_kernel((info + CODE) as *const i32) }.unwrap_or(0),
    }
}

#[tracepoint]
pub fn signal_generate(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the signal_generate format above.
    let (sig, code, target, result) = unsafe {
        (
            field::<i32>(&ctx, GEN_SIG),
            field::<i32>(&ctx, GEN_CODE),
            field::<i32>(&ctx, GEN_PID) as u32,
            field::<i32>(&ctx, GEN_RESULT),
        )
    };
    generated(sig, code, target, result);
    0
}

/// `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task, int group,
/// int result)`.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn raw_signal_generate(ctx: RawTracePointContext) -> u32 {
    let target = crate::sched::task_pid(ctx.arg(2));
    let sig = ctx.arg::<u64>(0) as i32;
    generated(sig, si_code(ctx.arg(1)), target, ctx.arg::<u64>(4) as i32);
    0
}

/// Signal `sig` was sent to thread `target`.
#[inline(always)]
fn generated(sig: i32, code: i32, target: u32, result: i32) {
    let (tgid, _) = current_ids();
    // The target is known by thread id only: a process-directed signal names the main thread,
    // whose id is the process id. Signals a traced process sends are kept too.
    let target_traced = is_traced(target);
    if !target_traced && !is_traced(tgid) {
        return;
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
}

#[tracepoint]
pub fn signal_deliver(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the signal_deliver format above.
    let (sig, code) = unsafe {
        (
            field::<i32>(&ctx, DELIVER_SIG),
            field::<i32>(&ctx, DELIVER_CODE),
        )
    };
    delivered(sig, code);
    0
}

/// `signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)`.
#[raw_tracepoint(tracepoint = "signal_deliver")]
pub fn raw_signal_deliver(ctx: RawTracePointContext) -> u32 {
    delivered(ctx.arg::<u64>(0) as i32, si_code(ctx.arg(1)));
    0
}

/// Signal `sig` is delivered to the current thread.
#[inline(always)]
fn delivered(sig: i32, code: i32) {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return;
    }
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
}
