//! Render: the terminal report, per-call exports, flame graphs and the HTML page, from the
//! findings (and the run's rows for per-call exports). Every output is opened here, once the
//! plan has been checked, through one route per destination.

pub mod cost;
pub mod cow;
pub mod export;
pub mod flame;
pub mod groups;
pub mod html_report;
pub mod messages;
pub mod movement;
pub mod prometheus;
pub mod report;
pub mod samples;
pub mod summary;
pub mod terminal;
pub mod top;

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{
    analyze::{findings::Findings, models},
    capture::{RunData, decode::Record, loader::Hook, selfcost, spill::Spilled},
    plan::{Dest, Detail, Plan},
    render::export::{
        exports::{Exports, Format},
        output::Output,
    },
};

/// Opens an output (`Dest::Stdout`: standard output).
fn open(d: &Dest) -> anyhow::Result<Output> {
    Output::open(&d.path())
}

/// The outputs of a run, opened (created or truncated) after every check has passed.
pub struct Writers {
    report: Box<dyn Write>,
    exports: Exports,
    /// `--bounded --csv`: rows written as calls arrive.
    pub csv_stream: Option<Output>,
    findings: Option<(PathBuf, Output)>,
    model_json: Option<(PathBuf, Output)>,
    movement_json: Option<(PathBuf, Output)>,
    folded: Option<(PathBuf, std::fs::File)>,
    flamegraph: Option<(PathBuf, std::fs::File)>,
}

fn file_of(d: &Option<Dest>) -> anyhow::Result<Option<(PathBuf, std::fs::File)>> {
    d.as_ref()
        .map(|d| {
            let p = d.path();
            let f = match d {
                Dest::Stdout => {
                    use std::os::fd::AsFd as _;
                    std::fs::File::from(
                        io::stdout()
                            .as_fd()
                            .try_clone_to_owned()
                            .context("cannot write to standard output")?,
                    )
                }
                Dest::File(p) => crate::capture::sink::create_output(p)?,
            };
            Ok((p, f))
        })
        .transpose()
}

impl Writers {
    /// Opens every output of the plan.
    pub fn open(plan: &Plan) -> anyhow::Result<Self> {
        let o = &plan.outputs;
        let json = |d: &Option<Dest>| -> anyhow::Result<_> {
            d.as_ref().map(|d| Ok((d.path(), open(d)?))).transpose()
        };
        let report: Box<dyn Write> = match &o.report {
            None => Box::new(io::stderr()),
            Some(d) => Box::new(open(d)?),
        };
        let (csv_stream, csv_export) = if plan.bounded {
            (o.csv.as_ref().map(open).transpose()?, None)
        } else {
            (None, o.csv.as_ref().map(Dest::path))
        };
        let paths = [
            (Format::Csv, csv_export),
            (Format::SummaryCsv, o.summary_csv.as_ref().map(Dest::path)),
            (Format::Json, o.json.as_ref().map(Dest::path)),
            (Format::Trace, o.trace.as_ref().map(Dest::path)),
        ];
        let requested: Vec<(Format, Option<&PathBuf>)> =
            paths.iter().map(|(f, p)| (*f, p.as_ref())).collect();
        Ok(Self {
            report,
            exports: Exports::open(&requested)?,
            csv_stream,
            findings: json(&o.findings)?,
            model_json: json(&o.model_json)?,
            movement_json: json(&o.movement_json)?,
            folded: file_of(&o.folded)?,
            flamegraph: file_of(&o.flamegraph)?,
        })
    }

    /// Where the report goes.
    pub fn report(&mut self) -> &mut dyn Write {
        &mut self.report
    }
}

/// The banner, once the probes are attached: what is traced, and the hooks when asked for
/// (a missing hook is named among the report's warnings).
pub fn banner(plan: &Plan, hooks: &[Hook], pids: &[u32], names: &dyn Fn(u32) -> String) {
    let who = match &plan.target {
        crate::capture::session::Target::Command(argv) => {
            format!("`{}` (pid {})", argv.join(" "), join(pids))
        }
        crate::capture::session::Target::All(f) => f.describe(),
        crate::capture::session::Target::Pids(_) => match pids {
            [one] => format!("{} (pid {one})", names(*one)),
            _ => format!(
                "{} (pid {})",
                pids.iter()
                    .map(|p| names(*p))
                    .collect::<Vec<_>>()
                    .join(", "),
                join(pids)
            ),
        },
    };
    eprintln!("Tracing {who}… Ctrl-C to end.");
    if let Some(who) = &plan.run_as {
        eprintln!("command runs as {who}");
    }
    if plan.shows(Detail::Hooks) {
        eprintln!("hooks:");
        for h in hooks {
            eprintln!("  {h}");
        }
    }
    if plan.verbose {
        eprintln!(
            "mode: {}; ring buffer {} bytes",
            plan.mode.describe(),
            plan.ringbuf_bytes
        );
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `v` as JSON to `out`; an error goes to `failed`.
fn write_json<T: serde::Serialize>(
    out: Option<(PathBuf, Output)>,
    v: &T,
    what: &str,
    failed: &mut Vec<anyhow::Error>,
) {
    if let Some((p, mut o)) = out {
        let written = serde_json::to_writer_pretty(&mut o, v)
            .map_err(io::Error::from)
            .and_then(|_| writeln!(o))
            .and_then(|_| o.flush())
            .with_context(|| format!("failed to write {what} to {}", p.display()));
        failed.extend(written.err());
    }
}

/// Writes the report and every output of a run. An output that cannot be written stops no
/// other: the errors of those that failed are returned (a report that cannot be written is
/// the error).
pub fn render(
    plan: &Plan,
    f: &Findings,
    data: &mut RunData,
    mut w: Writers,
) -> anyhow::Result<Vec<anyhow::Error>> {
    let mut failed: Vec<anyhow::Error> = data.csv_error.take().into_iter().collect();
    let r = &data.result;
    let calls = &data.calls;
    let mut text = terminal::summary(f, plan.shows(Detail::Threads));
    if let crate::capture::session::Target::All(_) = &plan.target {
        // The busiest processes come right after the headline and the records line.
        let procs = crate::analyze::top::by_process(&r.summaries, &r.names);
        let at = text
            .match_indices('\n')
            .nth(1)
            .map_or(text.len(), |(i, _)| i + 1);
        text.insert_str(at, &top::table(&procs, top::ROWS));
    }
    if plan.verbose {
        for d in &f.kernel_diagnostics {
            text.push_str(&format!("kernel: {d}\n"));
        }
    }
    if plan.shows(Detail::Hooks) {
        text.push_str(&terminal::hooks(f));
    }
    if plan.shows(Detail::Threads) && !calls.is_empty() {
        text.push('\n');
        text.push_str(&groups::table(calls, &f.verdicts, &r.names));
    }
    if plan.shows(Detail::Calls) {
        if plan.mode.per_call() {
            text.push('\n');
            text.push_str(&report::stage_table_of(&data.stats));
        }
        if plan.mode.summed() {
            text.push_str("\nsummary (in-kernel):\n");
            text.push_str(&summary::table(&r.summaries));
        }
        text.push_str(&terminal::other_events(r));
    }
    if plan.shows(Detail::Movement)
        && let Some(m) = &f.data.movement
    {
        text.push('\n');
        text.push_str(&movement::report(m));
        text.push_str(&cow::render(&m.cow, &f.cow, m.bytes));
    }
    if plan.shows(Detail::Messages) {
        if !f.messages.is_empty() {
            text.push('\n');
            text.push_str(&messages::report(&f.messages));
        }
        text.push_str(&terminal::signals(calls, &r.events));
    }
    if let Some(rows) = data.streamed_rows
        && let Some(d) = &plan.outputs.csv
    {
        text.push_str(&format!("wrote {rows} rows to {}\n", d.path().display()));
    }
    w.report.write_all(text.as_bytes())?;
    let mut sample_text: Box<dyn Write> = if plan.shows(Detail::Samples) {
        Box::new(&mut w.report)
    } else {
        Box::new(io::sink())
    };
    samples::report(
        calls,
        &r.samples,
        samples::Outputs {
            folded: w.folded.take(),
            flamegraph: w.flamegraph.take(),
        },
        &mut sample_text,
        &mut failed,
    )?;
    drop(sample_text);
    write_json(w.findings.take(), f, "the findings", &mut failed);
    write_json(
        w.model_json.take(),
        &models::model_row(&f.messages),
        "the model summary",
        &mut failed,
    );
    if let Some(m) = &f.data.movement {
        write_json(
            w.movement_json.take(),
            m,
            "the data-movement summary",
            &mut failed,
        );
    }
    let exports = std::mem::replace(&mut w.exports, Exports::open(&[])?);
    if !exports.is_empty() {
        let calls = (data.spilled.as_ref(), data.spill_error.take());
        write_exports(
            exports,
            calls,
            &r.events,
            &f.messages,
            &mut w.report,
            &mut failed,
        );
    }
    // Last, so that the cost covers the analyses and exports as well as the run.
    let cost = cost::report(r.lost, &selfcost::own_usage(), r.programs.as_deref());
    w.report.write_all(cost.as_bytes())?;
    w.report.flush()?;
    Ok(failed)
}

/// Writes the per-call exports from the calls put aside in the temporary file, each row with
/// the model and message the analyses found for it.
fn write_exports(
    exports: Exports,
    calls: (Option<&Spilled>, Option<anyhow::Error>),
    events: &[Record],
    msgs: &[models::Message],
    note: &mut dyn Write,
    failed: &mut Vec<anyhow::Error>,
) {
    let index = models::MessageIndex::new(msgs);
    let (spilled, error) = calls;
    let mut error = match spilled {
        Some(_) => None,
        None => Some(error.unwrap_or_else(|| anyhow::anyhow!("no call was kept"))),
    };
    let rows = || match (&spilled, error.take()) {
        (_, Some(e)) => Err(e),
        (Some(s), None) => Ok(s.iter()?.map(|c| c.map(|c| messages::row(&c, &index)))),
        (None, None) => Err(anyhow::anyhow!("no call was kept")),
    };
    exports.write(rows, events, note, failed);
}

/// `--compare`: earlier runs' data-movement summaries side by side, on standard output.
pub fn compare(files: &[PathBuf]) -> anyhow::Result<()> {
    let runs = files
        .iter()
        .map(|p: &PathBuf| {
            let p: &Path = p;
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str::<crate::analyze::movement::Movement>(&text)
                .with_context(|| format!("{} is not a --movement-json file", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    print!("{}", movement::side_by_side(&runs));
    if let Some((base, rest)) = runs.split_first()
        && !rest.is_empty()
    {
        println!();
        for m in rest {
            println!("{}", movement::savings(base, m));
        }
    }
    Ok(())
}
