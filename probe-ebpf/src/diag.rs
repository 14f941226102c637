//! Kernel-side diagnostics: the rare unexpected cases (a table full, a structure unreadable,
//! a slot clash, a record dropped) are logged through aya-log, each kind once per run and CPU,
//! and counted. Only the error paths call in here; a normal call never does.
use aya_ebpf::{macros::map, maps::PerCpuArray};
use aya_log_ebpf::warn;
use probe_common::{Counter, DIAG_KINDS, Diag};

use crate::maps::count;

/// Whether each kind of diagnostic was logged on this CPU (1) or not yet (0).
#[map]
static DIAG_SEEN: PerCpuArray<u32> = PerCpuArray::with_max_entries(DIAG_KINDS, 0);

/// Whether `kind` is logged for the first time on this CPU; marks it logged.
#[inline(always)]
fn first(kind: Diag) -> bool {
    let Some(seen) = DIAG_SEEN.get_ptr_mut(kind as u32) else {
        return false;
    };
    // SAFETY: a per-CPU slot is only touched by programs on this CPU, which do not nest.
    let seen = unsafe { &mut *seen };
    if *seen != 0 {
        return false;
    }
    *seen = 1;
    count(Counter::Diagnostics);
    true
}

/// Logs diagnostic `kind` about thread (or process) `id`, once per run and CPU.
#[inline(never)]
pub fn once(kind: Diag, id: u32) {
    // aya-log writes to its own ring buffer: the program's context is not needed.
    let ctx = &();
    if !first(kind) {
        return;
    }
    match kind {
        Diag::CowTableFull => warn!(
            ctx,
            "copy-on-write table full: the faults of thread {} are counted in totals only", id
        ),
        Diag::InFlightFull => warn!(
            ctx,
            "in-flight call table full: a call of thread {} is not traced", id
        ),
        Diag::RecordDropped => warn!(
            ctx,
            "ring buffer full: a record of thread {} was dropped", id
        ),
        Diag::SlotClash => warn!(
            ctx,
            "slot clash: the call slot of thread {} was held by another thread; its call went to the clash table",
            id
        ),
        Diag::BtfUnreadable => warn!(
            ctx,
            "descriptor {} unreadable through the BTF offsets: its class is left to user space", id
        ),
    }
}
