//! Capture: loads and attaches the probes, launches or attaches to the target, and reads the
//! run's records, samples and lost counts.

pub mod attach;
pub mod btf;
pub mod cpu_probes;
pub mod decode;
pub mod fdkind;
pub mod kallsyms;
pub mod kdiag;
pub mod launch;
pub mod loader;
pub mod progress;
pub mod selfcost;
pub mod session;
pub mod sink;
pub mod spill;
pub mod system;
pub mod traced;
pub mod usyms;

use std::io::Write;

use crate::{
    analyze::stats::CallStats,
    capture::{
        loader::{Hook, LoadOptions},
        session::{RunOptions, RunResult},
        sink::{CallSink as _, CsvStream, Failsafe, Kept},
        spill::{Spill, Spilled},
        traced::TracedCall,
    },
    plan::Plan,
};

/// The run's data, handed to the analysis.
pub struct RunData {
    /// What the session saw (events, summaries, samples, counters, lost counts).
    pub result: RunResult,
    /// Every call, in arrival order, up to [`KEEP_LIMIT`] (empty in summary mode and with
    /// `--bounded`).
    pub calls: Vec<TracedCall>,
    /// Every call, in arrival order, in a temporary file, for the per-call exports (`--csv`,
    /// `--summary-csv`, `--json`, `--trace` without `--bounded`).
    pub spilled: Option<Spilled>,
    /// Why the calls could not all be kept for the per-call exports, if they could not.
    pub spill_error: Option<anyhow::Error>,
    /// Calls that came after [`KEEP_LIMIT`]: in the stage statistics, not in the analyses
    /// that need every call.
    pub calls_not_kept: u64,
    /// Streaming stage statistics of every call (kept in every per-call run).
    pub stats: CallStats,
    /// Rows written as calls arrived (`--bounded --csv`).
    pub streamed_rows: Option<u64>,
    /// Why the streamed CSV stopped being written, if it did.
    pub csv_error: Option<anyhow::Error>,
}

/// Most calls kept in memory for the analyses that need every call (thread models, messages,
/// data movement): about 256 bytes each, so a run of any length keeps at most 128 MiB of
/// them. Later calls are still counted in the stage statistics, and the per-call exports
/// have every call (they read them back from a temporary file).
pub const KEEP_LIMIT: usize = 1 << 19;

/// The loader's options for a plan: the kernel's mode bits are derived here.
pub fn load_options(plan: &Plan) -> LoadOptions {
    LoadOptions {
        calls: plan.calls.clone(),
        ringbuf_bytes: plan.ringbuf_bytes,
        mode: plan.mode.kernel_bits(),
        self_stats: plan.self_stats,
        sample_hz: plan.freq,
        // One record per socket event: only for per-call runs, whose analyses read them.
        message_events: !plan.bounded && plan.mode.per_call(),
        thread_slots: plan.thread_slots,
        filter: match &plan.target {
            session::Target::All(f) => Some(f.clone()),
            _ => None,
        },
        cow_threads: plan.cow_threads,
        summary_classes: false,
    }
}

/// Runs the plan. With `csv`, rows are written to it as calls arrive (`--bounded`); without,
/// a per-call export has every call put aside in a temporary file as it arrives.
/// `on_attached` is called once the probes are in place, with the hooks and the pids.
pub fn capture<W: Write>(
    plan: &Plan,
    csv: Option<W>,
    on_attached: impl FnOnce(&[Hook], &[u32]),
) -> anyhow::Result<RunData> {
    let opts = RunOptions {
        target: plan.target.clone(),
        load: load_options(plan),
        duration: plan.duration,
        run_as: plan.run_as.clone(),
    };
    // A CSV that fails stops nothing else: its error is reported with the run's report.
    let mut csv = csv.map(CsvStream::new).transpose()?.map(Failsafe::new);
    let mut stats = CallStats::default();
    let mut kept: Option<Kept> = (!plan.bounded).then(|| Kept::new(KEEP_LIMIT));
    let mut spill = (!plan.bounded && plan.outputs.per_call_rows())
        .then(Spill::new)
        .transpose()?
        .map(Failsafe::new);
    let result = session::run(
        &opts,
        &mut (&mut stats, (&mut csv, (&mut kept, &mut spill))),
        on_attached,
    )?;
    csv.finish()?;
    spill.finish()?;
    let (spilled, spill_error) = match spill.map(Failsafe::into_parts) {
        None => (None, None),
        Some((_, Some(e))) => (None, Some(e)),
        Some((s, None)) => match s.into_calls() {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        },
    };
    let csv_error = csv.as_mut().and_then(Failsafe::take_error).map(|e| {
        let path = plan
            .outputs
            .csv
            .as_ref()
            .map(|d| d.path())
            .unwrap_or_default();
        e.context(format!("failed to write {}", path.display()))
    });
    Ok(RunData {
        result,
        calls_not_kept: kept.as_ref().map_or(0, |k| k.beyond),
        calls: kept.map(|k| k.calls).unwrap_or_default(),
        spilled,
        spill_error,
        stats,
        streamed_rows: csv
            .as_ref()
            .filter(|_| csv_error.is_none())
            .map(|s| s.inner().rows()),
        csv_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_calls_take_at_most_128_mib() {
        let bytes = KEEP_LIMIT * std::mem::size_of::<TracedCall>();
        assert!(bytes <= 128 << 20, "{bytes} bytes");
    }
}
