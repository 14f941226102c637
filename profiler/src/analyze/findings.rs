//! Findings: what a run shows, as data (serde types) for the report, `--findings` and
//! tools. Pure: the run's data in, findings out; no text is formatted here beyond the words of
//! a thread's evidence.
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::{
    analyze::{
        infer::{self, Evidence},
        models,
        movement::{self, Cpu, Movement},
        summary,
    },
    capture::{
        RunData,
        session::{EndReason, RunResult},
    },
    plan::{Mode, Plan},
    syscalls,
};

/// Everything a run found.
#[derive(Clone, Debug, Serialize)]
pub struct Findings {
    /// What was traced, how and for how long.
    pub traced: Traced,
    /// Per traced process.
    pub processes: Vec<Process>,
    /// Per thread that made a traced call: its I/O model and the evidence.
    pub threads: Vec<Thread>,
    /// Per call kind and descriptor class, sorted by time inside the calls, longest first.
    pub calls: Vec<CallKind>,
    /// The data moved.
    pub data: Data,
    /// Records: seen, sent, lost.
    pub records: Records,
    /// The kernel hooks tried.
    pub hooks: Vec<HookState>,
    /// Things the reader must know to trust the numbers.
    pub warnings: Vec<String>,
    /// Copy-on-write counts per thread (per-call runs).
    pub cow: Vec<crate::analyze::cow::CowThread>,
    /// What the kernel programs logged about unexpected cases.
    pub kernel_diagnostics: Vec<String>,
    /// Per-thread verdicts, for the thread tables.
    #[serde(skip)]
    pub verdicts: Vec<infer::Verdict>,
    /// Per-message analysis, for the message table and the per-call exports.
    #[serde(skip)]
    pub messages: Vec<models::Message>,
}

/// What was traced.
#[derive(Clone, Debug, Serialize)]
pub struct Traced {
    /// The run's name (`--label`, or the command).
    pub label: String,
    /// The command line started, empty with `-p`.
    pub command: Vec<String>,
    /// The processes traced at the start.
    pub pids: Vec<u32>,
    /// Wall time of the run, ns.
    pub wall_ns: u64,
    /// What the kernel did per call.
    pub mode: Mode,
    /// `--bounded`: no call kept, per-call analyses off.
    pub bounded: bool,
    /// How the run ended: `command exited with code N`, `killed by signal N`, `duration`,
    /// `interrupted`, `targets gone`.
    pub end: String,
}

/// One traced process.
#[derive(Clone, Debug, Serialize)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Command name.
    pub comm: String,
    /// Threads seen making traced calls.
    pub threads: usize,
}

/// One thread's I/O model.
#[derive(Clone, Debug, Serialize)]
pub struct Thread {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Command name of its process.
    pub comm: String,
    /// `blocking`, `non-blocking`, `multiplexing`, `signal-driven`, `asynchronous` or
    /// `no-input`.
    pub model: &'static str,
    /// The evidence in words.
    pub evidence: String,
    /// The evidence as counts.
    pub counts: Evidence,
}

/// The calls of one kind and descriptor class (`read file`, `recvfrom socket` …).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallKind {
    /// Call name and descriptor kinds.
    pub label: String,
    /// Calls.
    pub calls: u64,
    /// Calls that moved data.
    pub data_calls: u64,
    /// Bytes the calls returned.
    pub bytes: u64,
    /// Time inside the calls.
    pub total_ns: u64,
    /// Waiting for data.
    pub wait_ns: u64,
    /// Of the wait, asleep.
    pub wait_blocked_ns: u64,
    /// Of the wait, in the run queue.
    pub wait_runq_ns: u64,
    /// Copying.
    pub copy_ns: u64,
    /// Runnable but not running, in any stage.
    pub runq_ns: u64,
    /// Calls whose copy started at a copy marker (else the copy is the time on CPU).
    pub marker_calls: u64,
    /// Share of the time inside all traced calls, 0 to 1.
    pub share: f64,
}

/// The data moved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Data {
    /// Bytes the traced calls moved (returned, or handed to sockets).
    pub bytes_moved: u64,
    /// Calls that moved data.
    pub data_calls: u64,
    /// The data-movement summary (per-call runs only).
    pub movement: Option<Movement>,
}

/// Records of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Records {
    /// Calls seen.
    pub calls: u64,
    /// Records the kernel sent.
    pub sent: u64,
    /// Records lost to a full ring buffer.
    pub lost: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// Calls not traced: the kernel's table of calls in flight was full.
    pub untraced_in_flight: u64,
    /// Calls not summed: the summary map was full.
    pub summary_full: u64,
    /// CPU samples.
    pub samples: u64,
    /// CPU samples lost.
    pub samples_lost: u64,
    /// Unexpected cases the kernel programs logged.
    pub kernel_diagnostics: u64,
    /// Calls beyond the most a run keeps for the analyses that need every call: in the
    /// stage table, not in the models, messages and data movement.
    pub calls_not_kept: u64,
}

/// One kernel hook.
#[derive(Clone, Debug, Serialize)]
pub struct HookState {
    /// `category:name`.
    pub name: String,
    /// Why it is not attached (`None`: attached).
    pub error: Option<String>,
    /// What cannot be measured without it.
    pub without: &'static str,
}

fn end_words(e: EndReason) -> String {
    use crate::capture::launch::Exit;
    match e {
        EndReason::CommandExited(Exit::Code(c)) => format!("command exited with code {c}"),
        EndReason::CommandExited(Exit::Signal(s)) => format!("command killed by signal {s}"),
        EndReason::TargetsGone => "every traced process ended".into(),
        EndReason::Duration => "duration over".into(),
        EndReason::Interrupted => "interrupted".into(),
    }
}

/// Every traced process, with the threads seen making traced calls.
fn processes(data: &RunData, comm: &dyn Fn(u32) -> String) -> Vec<Process> {
    let r = &data.result;
    let mut tids: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for c in &data.calls {
        tids.entry(c.rec.pid).or_default().insert(c.rec.tid);
    }
    let mut pids: BTreeSet<u32> = r.pids.iter().copied().collect();
    pids.extend(tids.keys());
    pids.extend(r.summaries.keys().map(|k| k.pid));
    pids.into_iter()
        .map(|pid| Process {
            pid,
            comm: comm(pid),
            threads: tids.get(&pid).map_or(0, BTreeSet::len),
        })
        .collect()
}

/// The run's record counts.
fn records(r: &RunResult, per_call: bool, calls_not_kept: u64) -> Records {
    Records {
        calls: if per_call {
            r.calls
        } else {
            r.summaries.values().map(|s| s.calls).sum()
        },
        sent: r.sent,
        lost: r.lost,
        undecodable: r.undecodable,
        untraced_in_flight: r.counter(probe_common::Counter::InFlightFull),
        summary_full: r.summary_full,
        samples: r.samples.records.len() as u64,
        samples_lost: r.samples.lost,
        kernel_diagnostics: r.diagnostics.len() as u64,
        calls_not_kept,
    }
}

/// The findings of a run. `cpu`: the traced command's CPU time, when known.
pub fn analyze(plan: &Plan, data: &RunData, cpu: Option<Cpu>) -> Findings {
    let r = &data.result;
    let comm = |pid: u32| r.names.get(&pid).cloned().unwrap_or_else(|| "?".into());
    let per_call = plan.mode.per_call();
    let analyses = per_call && !plan.bounded;
    let events = if analyses {
        infer::outside_copies_only(&data.calls, &r.events)
    } else {
        Vec::new()
    };
    let verdicts = if analyses {
        infer::infer_run(&data.calls, &events)
    } else {
        Vec::new()
    };
    let messages = if analyses {
        models::messages(&data.calls, &events)
    } else {
        Vec::new()
    };
    let threads: Vec<Thread> = verdicts
        .iter()
        .map(|v| Thread {
            pid: v.pid,
            tid: v.tid,
            comm: comm(v.pid),
            model: v.model.as_str(),
            evidence: v.evidence.to_string(),
            counts: v.evidence,
        })
        .collect();
    let processes = processes(data, &comm);
    let calls = if per_call {
        from_stats(data)
    } else {
        from_summaries(&r.summaries)
    };
    let movement = analyses.then(|| {
        movement::summarize(
            &plan.label,
            &data.calls,
            &r.events,
            &r.counters,
            r.wall.as_nanos() as u64,
            cpu,
        )
    });
    let data_out = Data {
        bytes_moved: match &movement {
            Some(m) => m.bytes,
            None if per_call => calls.iter().map(|c| c.bytes).max().unwrap_or(0),
            None => movement::summary_bytes(&r.summaries),
        },
        data_calls: calls.iter().map(|c| c.data_calls).sum(),
        movement,
    };
    let records = records(r, per_call, data.calls_not_kept);
    let hooks: Vec<HookState> = r
        .hooks
        .iter()
        .map(|h| HookState {
            name: h.name.clone(),
            error: h.error.clone(),
            without: h.without,
        })
        .collect();
    let warnings = warnings(plan, &records, &hooks, &calls);
    Findings {
        traced: Traced {
            label: plan.label.clone(),
            command: match &plan.target {
                crate::capture::session::Target::Command(argv) => argv.clone(),
                crate::capture::session::Target::Pids(_)
                | crate::capture::session::Target::All(_) => Vec::new(),
            },
            pids: r.pids.clone(),
            wall_ns: r.wall.as_nanos() as u64,
            mode: plan.mode,
            bounded: plan.bounded,
            end: end_words(r.end),
        },
        processes,
        threads,
        calls,
        data: data_out,
        records,
        hooks,
        warnings,
        cow: r.cow.clone(),
        kernel_diagnostics: r.diagnostics.clone(),
        verdicts,
        messages,
    }
}

fn with_shares(mut v: Vec<CallKind>) -> Vec<CallKind> {
    let total = v.iter().map(|c| c.total_ns).sum::<u64>().max(1) as f64;
    for c in &mut v {
        c.share = c.total_ns as f64 / total;
    }
    v.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.label.cmp(&b.label)));
    v
}

fn from_stats(data: &RunData) -> Vec<CallKind> {
    with_shares(
        data.stats
            .by_label()
            .into_iter()
            .map(|(label, s)| CallKind {
                label: label.to_string(),
                calls: s.calls,
                data_calls: s.data_calls,
                bytes: s.bytes,
                total_ns: s.total.distribution().sum,
                wait_ns: s.wait.distribution().sum,
                wait_blocked_ns: s.wait_blocked.distribution().sum,
                wait_runq_ns: s.wait_runq.distribution().sum,
                copy_ns: s.copy.distribution().sum,
                runq_ns: s.runq.distribution().sum,
                marker_calls: s.marker_calls,
                share: 0.0,
            })
            .collect(),
    )
}

fn from_summaries(sums: &summary::Summaries) -> Vec<CallKind> {
    let mut by_call: BTreeMap<String, probe_common::CallSummary> = BTreeMap::new();
    for (k, v) in sums {
        summary::merge(by_call.entry(syscalls::name_of(k.nr)).or_default(), v);
    }
    with_shares(
        by_call
            .into_iter()
            .map(|(label, s)| {
                let bytes = if syscalls::by_name(&label).is_some_and(|c| c.role.returns_bytes()) {
                    s.bytes
                } else {
                    0
                };
                CallKind {
                    label,
                    calls: s.calls,
                    data_calls: if bytes > 0 { s.data_calls } else { 0 },
                    bytes,
                    total_ns: s.total_ns,
                    wait_ns: s.wait_ns,
                    wait_blocked_ns: s.wait_blocked_ns,
                    wait_runq_ns: s.wait_runq_ns,
                    copy_ns: s.copy_ns,
                    runq_ns: s.runq_ns,
                    marker_calls: s.marker_calls,
                    share: 0.0,
                }
            })
            .collect(),
    )
}

fn warnings(plan: &Plan, r: &Records, hooks: &[HookState], calls: &[CallKind]) -> Vec<String> {
    let mut w = Vec::new();
    if r.lost > 0 {
        w.push(format!(
            "{} records were lost (ring buffer full): raise --ringbuf-size, or use --bounded or \
             --mode summary",
            r.lost
        ));
    }
    if r.untraced_in_flight > 0 {
        w.push(format!(
            "{} calls not traced: no room left in the kernel's table of calls in flight",
            r.untraced_in_flight
        ));
    }
    if r.summary_full > 0 {
        w.push(format!(
            "{} calls were not summed (summary map full: more than {} process × call pairs)",
            r.summary_full,
            probe_common::MAX_SUMMARY_KEYS
        ));
    }
    if r.undecodable > 0 {
        w.push(format!("{} records could not be decoded", r.undecodable));
    }
    if r.kernel_diagnostics > 0 {
        w.push(format!(
            "the kernel programs met {} unexpected case(s) (see them with -v)",
            r.kernel_diagnostics
        ));
    }
    if r.samples_lost > 0 {
        w.push(format!(
            "{} CPU samples lost (ring buffer full)",
            r.samples_lost
        ));
    }
    // Hooks left out on purpose (the run does not read them) are listed with --show hooks.
    for h in hooks.iter().filter(|h| {
        h.error
            .as_deref()
            .is_some_and(|e| !e.starts_with("not attached:"))
    }) {
        w.push(format!("hook {} missing: {}", h.name, h.without));
    }
    if calls
        .iter()
        .any(|c| c.data_calls > 0 && c.marker_calls == 0)
    {
        w.push("copy time without a copy marker is the calls' time on CPU (an upper bound)".into());
    }
    if r.calls_not_kept > 0 {
        let rows = if plan.outputs.per_call_rows() {
            ", and their rows in the per-call exports have model `none` and message -1"
        } else {
            ""
        };
        w.push(format!(
            "{} calls came after the first {} kept: the stage table counts them, the models, \
             messages and data movement do not{rows} (for long runs use --mode summary or \
             --bounded)",
            r.calls_not_kept,
            crate::capture::KEEP_LIMIT
        ));
    }
    if plan.mode == Mode::Summary && !matches!(plan.target, crate::capture::session::Target::All(_))
    {
        w.push("summary mode: no per-thread models (use --mode per-call)".into());
    }
    if plan.bounded {
        w.push("--bounded: models and data movement are off".into());
    }
    w
}
