//! Scheduler hooks: time a traced thread spends switched out inside a call, split into
//! sleeping (blocked) and runnable (run queue); new processes of traced ones become traced.
//!
//! Each hook has a tracepoint program and a raw tracepoint one (which reads the thread ids from
//! `task_struct` at an offset user space found in the kernel's BTF): raw tracepoints attach
//! and release without waiting for the tracing subsystem.
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use probe_common::{CLONE_THREAD, SLEEP_STATE_MASK};

use crate::maps::{current_ids, field, filtering, in_flight, is_traced, now, trace};

/// Offset of `task_struct.pid`, set by user space from the kernel's BTF (0: unknown, and the
/// raw tracepoint programs are not attached).
#[unsafe(no_mangle)]
static TASK_PID: u32 = 0;

/// The thread id of a `task_struct`.
#[inline(always)]
pub fn task_pid(task: u64) -> u32 {
    // SAFETY: a read-only global set before load; bpf_probe_read_kernel checks the address.
    let off = unsafe { core::ptr::read_volatile(&TASK_PID) } as u64;
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel((task + off) as *const i32) }.unwrap_or(0) as u32
}

// sched/sched_switch/format:
//   field:pid_t prev_pid;   offset:24; size:4;
//   field:long prev_state;  offset:32; size:8;
//   field:pid_t next_pid;   offset:56; size:4;
const SWITCH_PREV_PID: usize = 24;
const SWITCH_PREV_STATE: usize = 32;
const SWITCH_NEXT_PID: usize = 56;
// sched/sched_wakeup/format:
//   field:pid_t pid;        offset:24; size:4;
const WAKEUP_PID: usize = 24;
// task/task_newtask/format:
//   field:pid_t pid;        offset:8;  size:4;
//   field:u64 clone_flags;  offset:32; size:8;
const NEWTASK_PID: usize = 8;
const NEWTASK_FLAGS: usize = 32;

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the sched_switch format above.
    let (prev, prev_state, next) = unsafe {
        (
            field::<i32>(&ctx, SWITCH_PREV_PID) as u32,
            field::<i64>(&ctx, SWITCH_PREV_STATE) as u64,
            field::<i32>(&ctx, SWITCH_NEXT_PID) as u32,
        )
    };
    switch(prev, prev_state & SLEEP_STATE_MASK != 0, next);
    0
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`: a preempted task, or one whose state is running, stays runnable.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn raw_sched_switch(ctx: RawTracePointContext) -> u32 {
    let preempt: u64 = ctx.arg(0);
    let state: u64 = ctx.arg(3);
    let asleep = preempt & 0xff == 0 && state & SLEEP_STATE_MASK != 0;
    switch(task_pid(ctx.arg(1)), asleep, task_pid(ctx.arg(2)));
    0
}

/// Thread `prev` is switched out (`asleep`: not runnable), `next` in.
#[inline(always)]
fn switch(prev: u32, asleep: bool, next: u32) {
    // The clock is read only for a traced thread: most switches on a machine are not.
    if let Some(s) = in_flight(prev) {
        s.off_ns = now();
        s.wake_ns = 0;
        s.off_blocked = asleep as u32;
        s.rec.switches += 1;
    }
    if let Some(s) = in_flight(next)
        && s.off_ns != 0
    {
        let t = now();
        if s.off_blocked != 0 {
            let woke = if s.wake_ns >= s.off_ns && s.wake_ns <= t {
                s.wake_ns
            } else {
                t
            };
            s.rec.blocked_ns += woke - s.off_ns;
            s.rec.runq_ns += t - woke;
        } else {
            s.rec.runq_ns += t - s.off_ns;
        }
        s.off_ns = 0;
    }
}

#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the sched_wakeup format above.
    wakeup(unsafe { field::<i32>(&ctx, WAKEUP_PID) } as u32);
    0
}

/// `sched_wakeup(struct task_struct *p)`.
#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn raw_sched_wakeup(ctx: RawTracePointContext) -> u32 {
    wakeup(task_pid(ctx.arg(0)));
    0
}

#[inline(always)]
fn wakeup(pid: u32) {
    if let Some(s) = in_flight(pid)
        && s.off_ns != 0
        && s.off_blocked != 0
    {
        s.wake_ns = now();
    }
}

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the task_newtask format above.
    let (pid, flags) = unsafe {
        (
            field::<i32>(&ctx, NEWTASK_PID) as u32,
            field::<u64>(&ctx, NEWTASK_FLAGS),
        )
    };
    new_task(pid, flags);
    0
}

/// `task_newtask(struct task_struct *task, u64 clone_flags)`.
#[raw_tracepoint(tracepoint = "task_newtask")]
pub fn raw_task_newtask(ctx: RawTracePointContext) -> u32 {
    new_task(task_pid(ctx.arg(0)), ctx.arg(1));
    0
}

/// The current task made task `pid`: a new process of a traced one is traced.
#[inline(always)]
fn new_task(pid: u32, flags: u64) {
    let (tgid, _) = current_ids();
    if flags & CLONE_THREAD == 0 {
        // A new process, perhaps given the pid of one whose classes are still cached.
        crate::fdclass::forget_process(pid);
    }
    // A system-wide run traces by its filter: forks need no record.
    if flags & CLONE_THREAD == 0 && !filtering() && is_traced(tgid) {
        trace(pid);
        crate::procs::forked(pid, tgid);
    }
}
