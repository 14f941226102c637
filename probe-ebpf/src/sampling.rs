//! CPU sampling of traced threads (a perf event on the software CPU clock): each sample keeps
//! the kernel and user stacks and the call in flight with its stage. Also the exact copy timers
//! (fentry/fexit, or kprobe/kretprobe, on the copy routines), used only where the kernel
//! allows them.
use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    helpers::bpf_get_smp_processor_id,
    macros::{fentry, fexit, kprobe, kretprobe, map, perf_event},
    maps::{HashMap, LruHashMap, StackTrace},
    programs::{
        FEntryContext, FExitContext, PerfEventContext, ProbeContext, RetProbeContext,
        tracing::StackIdContext,
    },
};
use probe_common::{
    CallKey, CopyTimer, Counter, ExactCopy, MAX_EXACT_CALLS, MAX_IN_FLIGHT, MAX_STACKS, NO_CALL,
    NO_STACK, RecordKind, SampleRecord, SampleStage,
};

use crate::maps::{count, current_ids, emit, in_flight, is_traced, now};

/// Kernel and user stacks of the samples, by stack id.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(MAX_STACKS, 0);

/// Copy time per call (exact mode).
#[map]
pub static EXACT: LruHashMap<CallKey, ExactCopy> = LruHashMap::with_max_entries(MAX_EXACT_CALLS, 0);

/// The copy routine being timed, per thread (exact mode).
#[map]
pub static TIMERS: HashMap<u32, CopyTimer> = HashMap::with_max_entries(MAX_IN_FLIGHT, 0);

#[perf_event]
pub fn cpu_sample(ctx: PerfEventContext) -> u32 {
    match try_cpu_sample(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_cpu_sample(ctx: &PerfEventContext) -> Result<u32, u32> {
    let (tgid, tid) = current_ids();
    if tgid == 0 || !is_traced(tgid) {
        return Ok(0);
    }
    let (nr, stage, call_start_ns) = match in_flight(tid) {
        Some(s) => (
            s.rec.nr,
            if s.rec.first_copy_ns != 0 {
                SampleStage::AfterMarker
            } else {
                SampleStage::BeforeMarker
            },
            s.rec.start_ns,
        ),
        None => (NO_CALL, SampleStage::User, 0),
    };
    let kstack = match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as i32,
        Err(_) => {
            // A sample in user mode has no kernel stack; inside a call it should.
            if nr != NO_CALL {
                count(Counter::KernelStackMissing);
            }
            NO_STACK
        }
    };
    let ustack = match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => id as i32,
        Err(_) => {
            count(Counter::UserStackMissing);
            NO_STACK
        }
    };
    let t = now();
    let rec = SampleRecord {
        kind: RecordKind::Sample as u32,
        pid: tgid,
        tid,
        nr,
        kstack,
        ustack,
        stage: stage as u32,
        // SAFETY: the helper has no preconditions.
        cpu: unsafe { bpf_get_smp_processor_id() },
        call_start_ns,
        time_ns: t,
    };
    emit(&rec, t, Counter::SamplesSent, Counter::SamplesLost);
    Ok(0)
}

/// Entry of a copy routine inside a traced call: starts (or nests) the thread's timer.
#[inline(always)]
fn copy_enter() {
    let (_, tid) = current_ids();
    if in_flight(tid).is_none() {
        return;
    }
    match TIMERS.get_ptr_mut(&tid) {
        // SAFETY: the entry belongs to this thread, which runs one program at a time.
        Some(t) => unsafe { (*t).depth += 1 },
        None => {
            let t = CopyTimer {
                start_ns: now(),
                depth: 1,
                _pad: 0,
            };
            let _ = TIMERS.insert(&tid, &t, 0);
        }
    }
}

/// Exit of a copy routine: at the outermost one, adds its time to the call's exact copy time.
#[inline(always)]
fn copy_exit() {
    let (_, tid) = current_ids();
    let Some(t) = TIMERS.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the entry belongs to this thread, which runs one program at a time.
    let t = unsafe { &mut *t };
    if t.depth > 1 {
        t.depth -= 1;
        return;
    }
    let ns = now().saturating_sub(t.start_ns);
    let _ = TIMERS.remove(&tid);
    let Some(s) = in_flight(tid) else {
        return;
    };
    let key = CallKey {
        tid,
        _pad: 0,
        start_ns: s.rec.start_ns,
    };
    match EXACT.get_ptr_mut(&key) {
        Some(e) => {
            // SAFETY: the entry belongs to this thread's call.
            unsafe {
                (*e).ns += ns;
                (*e).copies += 1;
            }
        }
        None => {
            let _ = EXACT.insert(&key, &ExactCopy { ns, copies: 1 }, 0);
        }
    }
    count(Counter::ExactCopies);
}

#[fentry(function = "_copy_to_user")]
pub fn copy_to_user_enter(_ctx: FEntryContext) -> u32 {
    copy_enter();
    0
}

#[fexit(function = "_copy_to_user")]
pub fn copy_to_user_exit(_ctx: FExitContext) -> u32 {
    copy_exit();
    0
}

#[fentry(function = "_copy_to_iter")]
pub fn copy_to_iter_enter(_ctx: FEntryContext) -> u32 {
    copy_enter();
    0
}

#[fexit(function = "_copy_to_iter")]
pub fn copy_to_iter_exit(_ctx: FExitContext) -> u32 {
    copy_exit();
    0
}

#[fentry(function = "copy_page_to_iter")]
pub fn copy_page_to_iter_enter(_ctx: FEntryContext) -> u32 {
    copy_enter();
    0
}

#[fexit(function = "copy_page_to_iter")]
pub fn copy_page_to_iter_exit(_ctx: FExitContext) -> u32 {
    copy_exit();
    0
}

/// The same timer as a kprobe, attached by user space to each copy routine where fentry is
/// refused but kprobes exist.
#[kprobe]
pub fn copy_kprobe(_ctx: ProbeContext) -> u32 {
    copy_enter();
    0
}

#[kretprobe]
pub fn copy_kretprobe(_ctx: RetProbeContext) -> u32 {
    copy_exit();
    0
}
