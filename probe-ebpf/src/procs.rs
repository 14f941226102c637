//! Traced processes come and go: a fork by a traced process is reported, and when the last
//! thread of a traced process ends, its pid leaves the traced set (so that a later process
//! given the same pid is not traced) and its final command name is reported.
use aya_ebpf::{helpers::bpf_get_current_comm, macros::tracepoint, programs::TracePointContext};
use probe_common::{Counter, ProcEvent, ProcRecord, RecordKind};

use crate::maps::{EVENTS, TRACED, count, current_ids, field, is_traced, now};

// sched/sched_process_exit/format:
//   field:pid_t pid;        offset:24; size:4;
//   field:bool group_dead;  offset:32; size:1;
const EXIT_GROUP_DEAD: usize = 32;

fn send(event: ProcEvent, pid: u32, parent: u32) {
    let rec = ProcRecord {
        kind: RecordKind::Proc as u32,
        event: event as u32,
        pid,
        parent,
        time_ns: now(),
        comm: bpf_get_current_comm().unwrap_or_default(),
    };
    match EVENTS.output::<ProcRecord>(&rec, 0) {
        Ok(()) => count(Counter::Sent),
        Err(_) => count(Counter::Lost),
    }
}

/// Reports a process forked by the traced process `parent` (called by `task_newtask`).
#[inline(always)]
pub fn forked(pid: u32, parent: u32) {
    send(ProcEvent::Fork, pid, parent);
}

#[tracepoint]
pub fn process_exit(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    if !is_traced(tgid) {
        return 0;
    }
    // SAFETY: offset from the sched_process_exit format above.
    let group_dead = unsafe { field::<u8>(&ctx, EXIT_GROUP_DEAD) };
    if group_dead != 0 {
        let _ = TRACED.remove(&tgid);
        send(ProcEvent::Exit, tgid, 0);
    }
    0
}
