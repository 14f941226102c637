//! Traced processes come and go: a fork by a traced process is reported, and when the last
//! thread of a traced process ends, its pid leaves the traced set (so that a later process
//! given the same pid is not traced) and its final command name is reported.
use aya_ebpf::{
    helpers::bpf_get_current_comm,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use probe_common::{ProcEvent, ProcRecord, RecordKind};

use crate::maps::{current_ids, field, is_traced, now, release_thread, untrace};

// sched/sched_process_exit/format:
//   field:pid_t pid;        offset:24; size:4;
//   field:bool group_dead;  offset:32; size:1;
const EXIT_GROUP_DEAD: usize = 32;

fn send(event: ProcEvent, pid: u32, parent: u32) {
    let t = now();
    let rec = ProcRecord {
        kind: RecordKind::Proc as u32,
        event: event as u32,
        pid,
        parent,
        time_ns: t,
        comm: bpf_get_current_comm().unwrap_or_default(),
    };
    crate::maps::send(&rec, t);
}

/// Reports a process forked by the traced process `parent` (called by `task_newtask`).
#[inline(always)]
pub fn forked(pid: u32, parent: u32) {
    send(ProcEvent::Fork, pid, parent);
}

#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the sched_process_exit format above.
    exited(|| unsafe { field::<u8>(&ctx, EXIT_GROUP_DEAD) } != 0);
    0
}

/// `sched_process_exit(struct task_struct *p, bool group_dead)`, in the exiting thread.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn raw_process_exit(ctx: RawTracePointContext) -> u32 {
    exited(|| ctx.arg::<u64>(1) & 0xff != 0);
    0
}

/// `sched_process_exec`: the current process runs a new program, its descriptors marked
/// close-on-exec closed.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn raw_process_exec(_ctx: RawTracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    if is_traced(tgid) {
        crate::fdclass::new_generation(tgid);
    }
    0
}

/// The current thread ends; `group_dead`: it is the last of its process.
#[inline(always)]
fn exited(group_dead: impl FnOnce() -> bool) {
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return;
    }
    // A thread that ends (inside a call too, killed while blocked) frees its slot.
    release_thread(tid);
    if group_dead() {
        crate::fdclass::forget_process(tgid);
        untrace(tgid);
        send(ProcEvent::Exit, tgid, 0);
    }
}
