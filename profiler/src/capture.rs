//! Capture: loads and attaches the probes, launches or attaches to the target, and reads the
//! run's records, samples and lost counts.

pub mod attach;
pub mod btf;
pub mod cpu_probes;
pub mod decode;
pub mod fdkind;
pub mod kallsyms;
pub mod launch;
pub mod loader;
pub mod progress;
pub mod selfcost;
pub mod session;
pub mod sink;
pub mod system;
pub mod traced;
pub mod usyms;

use std::io::Write;

use crate::{
    analyze::stats::CallStats,
    capture::{
        loader::{Hook, LoadOptions},
        session::{RunOptions, RunResult},
        sink::{CallSink as _, CsvStream},
        traced::TracedCall,
    },
    plan::Plan,
};

/// The run's data, handed to the analysis.
pub struct RunData {
    /// What the session saw (events, summaries, samples, counters, lost counts).
    pub result: RunResult,
    /// Every call, in arrival order (empty in summary mode and with `--bounded`).
    pub calls: Vec<TracedCall>,
    /// Streaming stage statistics of every call (kept in every per-call run).
    pub stats: CallStats,
    /// Rows written as calls arrived (`--bounded --csv`).
    pub streamed_rows: Option<u64>,
}

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
    }
}

/// Runs the plan. With `csv`, rows are written to it as calls arrive (`--bounded`).
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
    };
    let mut csv = csv.map(CsvStream::new).transpose()?;
    let mut stats = CallStats::default();
    let mut kept: Option<Vec<TracedCall>> = (!plan.bounded).then(Vec::new);
    let result = session::run(&opts, &mut (&mut stats, (&mut csv, &mut kept)), on_attached)?;
    csv.finish()?;
    Ok(RunData {
        result,
        calls: kept.unwrap_or_default(),
        stats,
        streamed_rows: csv.as_ref().map(|s| s.rows()),
    })
}
