//! Traced processes come and go: a fork by a traced process is reported, and when the last
//! thread of a traced process ends, its pid leaves the traced set (so that a later process
//! given the same pid is not traced) and its final command name is reported.
use aya_ebpf::{helpers::bpf_get_current_comm, macros::tracepoint, programs::TracePointContext};
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
    let (tgid, tid) = current_ids();
    if !is_traced(tgid) {
        return 0;
    }
    // A thread that ends (inside a call too, killed while blocked) frees its slot.
    release_thread(tid);
    // SAFETY: offset from the sched_process_exit format above.
    let group_dead = unsafe { field::<u8>(&ctx, EXIT_GROUP_DEAD) };
    if group_dead != 0 {
        untrace(tgid);
        send(ProcEvent::Exit, tgid, 0);
    }
    0
}
