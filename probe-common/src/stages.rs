//! The stage split of one call, shared by the kernel's summary mode and user space so that
//! the two can never disagree: entry → first copy marker → exit, each part split into asleep,
//! run queue and on CPU.
use crate::CallRecord;

/// How a call's stages were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitBy {
    /// A copy marker inside the call: wait is entry → first copy, copy is first copy → exit.
    Marker,
    /// Data moved with no marker: wait is the time asleep, copy the time on CPU.
    OnCpu,
    /// No data moved: the whole call was waiting (or failing).
    NoData,
}

/// Where one call's time went, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageSplit {
    /// Entry to exit.
    pub total_ns: u64,
    /// Waiting for data.
    pub wait_ns: u64,
    /// Copying data.
    pub copy_ns: u64,
    /// Asleep inside the call (in any stage).
    pub blocked_ns: u64,
    /// Runnable but not running inside the call (in any stage).
    pub runq_ns: u64,
    /// The part of `wait_ns` spent asleep.
    pub wait_blocked_ns: u64,
    /// The part of `wait_ns` spent runnable but not running.
    pub wait_runq_ns: u64,
    /// How the split was found.
    pub by: SplitBy,
}

impl StageSplit {
    /// The part of the wait spent on CPU (the call's own work before the copy, or polling).
    pub fn wait_oncpu_ns(&self) -> u64 {
        self.wait_ns
            .saturating_sub(self.wait_blocked_ns + self.wait_runq_ns)
    }
}

/// Splits one call into its stages. `moved`: the call moved data (its bytes by
/// [`crate::call_bytes`] are above 0); without a copy marker, the time on CPU of such a call
/// is its copy, and a call that moved none (a failed read, a multiplexer's ready count, an
/// `mmap` address) spent all of its time waiting. The kernel's sums can exceed the call's span
/// by a clock read's skew: they are clamped to it.
#[inline(always)]
pub fn split_stages(rec: &CallRecord, moved: bool) -> StageSplit {
    let total_ns = rec.end_ns.saturating_sub(rec.start_ns);
    let blocked_ns = rec.blocked_ns.min(total_ns);
    let runq_ns = rec.runq_ns.min(total_ns - blocked_ns);
    if rec.first_copy_ns != 0
        && rec.first_copy_ns >= rec.start_ns
        && rec.first_copy_ns <= rec.end_ns
    {
        let wait_ns = rec.first_copy_ns - rec.start_ns;
        let wait_blocked_ns = rec.wait_blocked_ns.min(wait_ns);
        StageSplit {
            total_ns,
            wait_ns,
            copy_ns: rec.end_ns - rec.first_copy_ns,
            blocked_ns,
            runq_ns,
            wait_blocked_ns,
            wait_runq_ns: rec.wait_runq_ns.min(wait_ns - wait_blocked_ns),
            by: SplitBy::Marker,
        }
    } else if moved {
        StageSplit {
            total_ns,
            wait_ns: blocked_ns,
            copy_ns: total_ns - blocked_ns - runq_ns,
            blocked_ns,
            runq_ns,
            wait_blocked_ns: blocked_ns,
            wait_runq_ns: 0,
            by: SplitBy::OnCpu,
        }
    } else {
        StageSplit {
            total_ns,
            wait_ns: total_ns,
            copy_ns: 0,
            blocked_ns,
            runq_ns,
            wait_blocked_ns: blocked_ns,
            wait_runq_ns: runq_ns,
            by: SplitBy::NoData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(first_copy: u64, ret: i64, blocked: u64, runq: u64) -> CallRecord {
        CallRecord {
            start_ns: 1_000,
            end_ns: 2_000,
            first_copy_ns: first_copy,
            ret,
            blocked_ns: blocked,
            runq_ns: runq,
            wait_blocked_ns: blocked,
            wait_runq_ns: runq,
            ..CallRecord::default()
        }
    }

    #[test]
    fn a_marker_splits_the_call_at_the_first_copy() {
        let s = split_stages(&rec(1_700, 64, 500, 100), true);
        assert_eq!((s.by, s.wait_ns, s.copy_ns), (SplitBy::Marker, 700, 300));
        assert_eq!((s.wait_blocked_ns, s.wait_runq_ns), (500, 100));
    }

    #[test]
    fn without_a_marker_the_copy_is_the_time_on_cpu() {
        let s = split_stages(&rec(0, 64, 500, 100), true);
        assert_eq!((s.by, s.wait_ns, s.copy_ns), (SplitBy::OnCpu, 500, 400));
        assert_eq!(s.wait_oncpu_ns(), 0);
        let s = split_stages(&rec(0, -11, 500, 100), false);
        assert_eq!((s.by, s.wait_ns, s.copy_ns), (SplitBy::NoData, 1_000, 0));
        assert_eq!(s.wait_oncpu_ns(), 400);
        // A positive return that is no byte count (an address, a ready count) moved nothing.
        let s = split_stages(&rec(0, 0x7f00_0000_0000, 500, 100), false);
        assert_eq!((s.by, s.wait_ns, s.copy_ns), (SplitBy::NoData, 1_000, 0));
    }

    #[test]
    fn sums_beyond_the_span_are_clamped() {
        let s = split_stages(&rec(5_000, 64, 5_000, 5_000), true);
        assert_eq!(s.by, SplitBy::OnCpu, "a marker after the exit is ignored");
        assert_eq!((s.blocked_ns, s.runq_ns, s.copy_ns), (1_000, 0, 0));
    }
}
