//! The HTML report of `cargo xtask report`: reads what each workload's run left in a folder
//! (per-call CSV, ground truth) and the methods' comparison, and writes one self-contained
//! page with SVG charts and tables.
pub mod charts;
pub mod comparison;

use charts::Layout;
use comparison::Comparison;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use workloads::{Kind, truth::Truth};

use crate::{
    render::export::{CallRow, summary},
    render::report::{fmt_bytes, fmt_ns},
};

/// Files a run leaves in its folder `DIR/WORKLOAD/`.
pub const CALLS_CSV: &str = "calls.csv";
/// The summary CSV of a run.
pub const SUMMARY_CSV: &str = "summary.csv";
/// The JSON lines of a run.
pub const CALLS_JSON: &str = "calls.jsonl";
/// The Perfetto trace of a run.
pub const TRACE_JSON: &str = "trace.json";
/// The workload's ground truth.
pub const TRUTH_JSON: &str = "truth.json";
/// What the profiler printed.
pub const PROFILER_TXT: &str = "profiler.txt";

/// One workload's run, as read back from its folder.
#[derive(Clone, Debug)]
pub struct Run {
    /// Workload name.
    pub name: String,
    /// Model or method (`None`: not in the catalog).
    pub kind: Option<Kind>,
    /// Every call.
    pub rows: Vec<CallRow>,
    /// What the workload did.
    pub truth: Truth,
}

impl Run {
    /// Reads `dir/name/{calls.csv,truth.json}`.
    pub fn load(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let d = dir.join(name);
        let csv_path = d.join(CALLS_CSV);
        let rows = csv::Reader::from_path(&csv_path)
            .with_context(|| format!("cannot read {}", csv_path.display()))?
            .deserialize()
            .collect::<Result<Vec<CallRow>, _>>()
            .with_context(|| format!("{} is not a per-call CSV", csv_path.display()))?;
        Ok(Self {
            name: name.into(),
            kind: workloads::entry(name).map(|e| e.kind),
            rows,
            truth: Truth::read(&d.join(TRUTH_JSON))?,
        })
    }

    /// Bytes the workload moved: the file for file workloads, else what it received.
    pub fn bytes(&self) -> u64 {
        if self.truth.file_bytes > 0 {
            self.truth.file_bytes
        } else {
            self.truth.bytes
        }
    }

    /// Stage time per message inside traced calls, µs: wait asleep, wait in the run queue,
    /// wait on CPU, copy.
    pub fn stages_per_message_us(&self) -> Vec<f64> {
        let n = self.truth.messages.max(1) as f64;
        let sum = |f: fn(&CallRow) -> u64| self.rows.iter().map(f).sum::<u64>() as f64 / n / 1e3;
        vec![
            sum(|r| r.wait_blocked_ns),
            sum(|r| r.wait_runq_ns),
            sum(|r| r.wait_oncpu_ns),
            sum(|r| r.copy_ns),
        ]
    }

    /// Per-call latencies (total), grouped by call kind: only the kinds that moved data, and
    /// on plain files only the calls the workload times itself (its ground truth names them),
    /// so that the dynamic loader's mmap, munmap and reads of libraries, and the writing of the
    /// truth, are left out.
    pub fn latencies(&self) -> Vec<(String, Vec<u64>)> {
        let own: std::collections::HashSet<&str> =
            self.truth.calls.iter().map(|c| c.call.as_str()).collect();
        let mut g: BTreeMap<String, (bool, Vec<u64>)> = BTreeMap::new();
        for r in self
            .rows
            .iter()
            .filter(|r| r.fd_kind != "file" || own.is_empty() || own.contains(r.call.as_str()))
        {
            let e = g.entry(label(r)).or_default();
            e.0 |= r.bytes > 0 || r.sent_bytes > 0;
            e.1.push(r.total_ns);
        }
        g.into_iter()
            .filter(|(_, (moved, _))| *moved)
            .map(|(k, (_, v))| (k, v))
            .collect()
    }
}

/// `recvfrom socket`, `splice file→pipe`: the call and its descriptor kinds.
fn label(r: &CallRow) -> String {
    if r.fd_out_kind != "none" {
        format!("{} {}→{}", r.call, r.fd_kind, r.fd_out_kind)
    } else {
        format!("{} {}", r.call, r.fd_kind)
    }
}

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1320px;margin:24px auto;padding:0 16px;color:#222}\
h1{font-size:26px}h2{margin-top:36px;border-bottom:1px solid #ccc;padding-bottom:4px}\
table{border-collapse:collapse;margin:10px 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:14px;max-width:1000px}\
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg{border:1px solid #ddd}code{background:#f4f4f4;padding:0 3px}";

/// The whole page.
pub fn render(
    runs: &[Run],
    comparison: Option<&Comparison>,
    kernel: &str,
) -> anyhow::Result<String> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ioprof report</title>\
         <style>{STYLE}</style></head><body>\n<h1>Where the time of an I/O call goes: every bundled workload</h1>\n\
         <p class=\"note\">One run of each workload under the profiler, kernel {}. Times come from the \
         profiler's kernel probes (CLOCK_MONOTONIC), bytes, wall time and process CPU from each \
         workload's own ground truth. Each workload's CSVs, JSON lines and Perfetto trace are in its \
         folder beside this page.</p>\n",
        esc(kernel)
    );

    let models: Vec<&Run> = runs
        .iter()
        .filter(|r| r.kind == Some(Kind::Model))
        .collect();
    h.push_str("<h2>I/O models: wait vs copy</h2>\n");
    if models.is_empty() {
        h.push_str("<p>No model workload ran.</p>\n");
    } else {
        let names: Vec<String> = models.iter().map(|r| r.name.clone()).collect();
        let values: Vec<Vec<f64>> = models.iter().map(|r| r.stages_per_message_us()).collect();
        h.push_str(&charts::bar_chart(
            "Time per message inside traced calls, by stage",
            "µs per message",
            &names,
            &["wait: asleep", "wait: run queue", "wait: on CPU", "copy"],
            &values,
            Layout::Stacked,
            None,
        )?);
        h.push_str(
            "<p class=\"note\">Sum over every traced call of the workload (receives, and polls or \
             waits where the model makes them) divided by the messages it received. Wait is entry → \
             first copy (split into asleep, runnable, on CPU), copy is first copy → return; calls \
             with no copy marker count their time asleep as wait and their time on CPU as copy \
             (<code>stage_source</code> in the CSV). Time a model spends waiting outside any call \
             (signal-driven, asynchronous) is not in these bars.</p>\n",
        );
    }

    h.push_str("<h2>Zero-copy methods: throughput and CPU per GiB</h2>\n");
    match comparison {
        Some(c) => comparison::section(&mut h, c)?,
        None => h.push_str("<p>No comparison of the methods ran.</p>\n"),
    }

    h.push_str(
        "<h2>Per-call latency distributions</h2>\n<p class=\"note\">Calls that moved data, one \
         line per call and descriptor kind.</p>\n<div class=\"charts\">\n",
    );
    for r in runs {
        h.push_str(&charts::latency_cdf(&r.name, &r.latencies())?);
    }
    h.push_str("</div>\n<h2>Stages per workload</h2>\n");
    for r in runs {
        run_table(&mut h, r);
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

/// A workload's stage table (total, wait, copy per call kind) and links to its files.
fn run_table(h: &mut String, r: &Run) {
    let kind = match r.kind {
        Some(Kind::Model) => "I/O model",
        Some(Kind::Method) => "zero-copy method",
        Some(Kind::Loop) => "benchmark loop",
        None => "not in the catalog",
    };
    let _ = writeln!(
        h,
        "<h3>{} <small>({kind}; pid {}, {} received, {} messages, {})</small></h3>",
        esc(&r.name),
        r.truth.pid,
        fmt_bytes(r.truth.bytes),
        r.truth.messages,
        fmt_ns(r.truth.wall_ns as f64)
    );
    h.push_str("<table><tr><th>call</th><th>stage</th><th>calls</th><th>bytes</th><th>mean</th><th>p50</th><th>p99</th><th>max</th><th>share</th></tr>\n");
    for s in summary::summarize(&r.rows)
        .iter()
        .filter(|s| matches!(s.stage.as_str(), "total" | "wait" | "copy"))
    {
        let _ = writeln!(
            h,
            "<tr><td>{} {}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
            esc(&s.call),
            esc(&s.fd_kind),
            if s.fd_out_kind == "none" {
                String::new()
            } else {
                format!("→{}", esc(&s.fd_out_kind))
            },
            s.stage,
            s.calls,
            fmt_bytes(s.bytes),
            fmt_ns(s.mean_ns),
            fmt_ns(s.p50_ns as f64),
            fmt_ns(s.p99_ns as f64),
            fmt_ns(s.max_ns as f64),
            s.share_pct
        );
    }
    h.push_str("</table>\n<p class=\"note\">Files: ");
    for f in [
        CALLS_CSV,
        SUMMARY_CSV,
        CALLS_JSON,
        TRACE_JSON,
        TRUTH_JSON,
        PROFILER_TXT,
    ] {
        let _ = write!(h, "<a href=\"{0}/{1}\">{1}</a> ", esc(&r.name), f);
    }
    h.push_str("</p>\n");
}

/// Reads every workload of the catalog that has a folder in `dir`, in `workloads::NAMES`
/// order, and writes `dir/report.html`; returns its path.
pub fn write_report(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut runs = Vec::new();
    for name in workloads::NAMES {
        if dir.join(name).join(CALLS_CSV).is_file() {
            runs.push(Run::load(dir, name)?);
        }
    }
    anyhow::ensure!(
        !runs.is_empty(),
        "no workload run in {}: expected folders like {}/blocking/{CALLS_CSV}",
        dir.display(),
        dir.display()
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let comparison = Comparison::read(dir)?;
    let page = render(&runs, comparison.as_ref(), kernel.trim())?;
    let out = dir.join("report.html");
    std::fs::write(&out, page).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::export::tests::sample_rows;

    fn run(name: &str, kind: Kind) -> Run {
        Run {
            name: name.into(),
            kind: Some(kind),
            rows: sample_rows(),
            truth: Truth {
                workload: name.into(),
                messages: 2,
                bytes: 1 << 30,
                wall_ns: 2_000_000_000,
                cpu_user_ns: 100_000_000,
                cpu_sys_ns: 300_000_000,
                ..Truth::default()
            },
        }
    }

    #[test]
    fn numbers_come_from_rows_and_truth() {
        let r = run("blocking", Kind::Model);
        let st = r.stages_per_message_us();
        // Copy per message: (1000 + 500 + 4000 + 0) ns over 2 messages.
        assert!((st[3] - 2.75).abs() < 1e-9, "{st:?}");
        let lat = r.latencies();
        let names: Vec<_> = lat.iter().map(|(n, _)| n.as_str()).collect();
        // The pipe read moved no byte: not plotted.
        assert_eq!(names, ["recvfrom socket", "splice file→pipe"]);
        // A workload that times only its receives: its other calls on files are not its own.
        let mut own = r.clone();
        own.truth.calls = vec![workloads::truth::CallTruth {
            call: "recvfrom".into(),
            tid: 1,
            fd: 3,
            before_ns: 0,
            after_ns: 1,
            ret: 1,
        }];
        let lat = own.latencies();
        assert_eq!(
            lat.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["recvfrom socket"]
        );
    }

    #[test]
    fn page_is_self_contained_with_every_section() {
        let page = render(
            &[run("blocking", Kind::Model), run("splice", Kind::Method)],
            None,
            "6.18",
        )
        .expect("render");
        assert_eq!(page.matches("<svg").count(), 1 + 2, "stacked, two CDFs");
        assert!(page.contains("No comparison of the methods ran"));
        assert!(!page.contains("<script") && !page.contains("src=\"http"));
        for s in [
            "wait vs copy",
            "throughput and CPU per GiB",
            "latency distributions",
            "splice file→pipe",
        ] {
            assert!(page.contains(s), "missing {s}");
        }
    }
}
