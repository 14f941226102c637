//! Scheduler hooks: time a traced thread spends switched out inside a call, split into
//! sleeping (blocked) and runnable (run queue); new processes of traced ones become traced.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use probe_common::{CLONE_THREAD, SLEEP_STATE_MASK};

use crate::maps::{current_ids, field, filtering, in_flight, is_traced, now, trace};

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
    // The clock is read only for a traced thread: most switches on a machine are not.
    if let Some(s) = in_flight(prev) {
        s.off_ns = now();
        s.wake_ns = 0;
        s.off_blocked = (prev_state & SLEEP_STATE_MASK != 0) as u32;
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
    0
}

#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the sched_wakeup format above.
    let pid = unsafe { field::<i32>(&ctx, WAKEUP_PID) } as u32;
    if let Some(s) = in_flight(pid)
        && s.off_ns != 0
        && s.off_blocked != 0
    {
        s.wake_ns = now();
    }
    0
}

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    // SAFETY: offsets from the task_newtask format above.
    let (pid, flags) = unsafe {
        (
            field::<i32>(&ctx, NEWTASK_PID) as u32,
            field::<u64>(&ctx, NEWTASK_FLAGS),
        )
    };
    // A system-wide run traces by its filter: forks need no record.
    if flags & CLONE_THREAD == 0 && !filtering() && is_traced(tgid) {
        trace(pid);
        crate::procs::forked(pid, tgid);
    }
    0
}
