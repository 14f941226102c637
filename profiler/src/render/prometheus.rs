//! The Prometheus text exposition format (version 0.0.4) of the exported series and of the
//! profiler's own health: counters of calls, bytes and errors, histograms of call, wait and
//! copy time in seconds from the kernel's histograms, the wait's split as counters.
use std::fmt::Write as _;

use probe_common::{CallSummary, HIST_BUCKETS, hist_bucket_end};

use crate::serve::series::{Labels, Series};

/// The profiler's own state at a scrape.
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// Records lost to a full ring buffer since the start.
    pub records_lost: u64,
    /// Calls not summed because the kernel's summary map was full.
    pub summary_full: u64,
    /// Kernel programs attached.
    pub programs_attached: u64,
    /// How long the previous scrape took to read and render, seconds.
    pub scrape_seconds: f64,
    /// CPU time of the profiler since its start, seconds.
    pub cpu_seconds: f64,
    /// Resident memory of the profiler, bytes.
    pub rss_bytes: u64,
}

/// The value of a label, escaped as the format wants.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(l: &Labels) -> String {
    format!(
        "comm=\"{}\",call=\"{}\",fd_class=\"{}\",model=\"{}\"",
        escape(&l.comm),
        escape(&l.call),
        l.fd_class,
        l.model
    )
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One histogram: the buckets of its range (see [`Series::ranges`]), then `+Inf`, `_sum` and
/// `_count`.
fn histogram(
    out: &mut String,
    name: &str,
    l: &str,
    (hist, sum_ns): (&[u64; HIST_BUCKETS], u64),
    range: Option<(usize, usize)>,
) {
    let count: u64 = hist.iter().sum();
    if let Some((first, last)) = range {
        let mut cum = hist[..first].iter().sum::<u64>();
        for (i, c) in hist
            .iter()
            .enumerate()
            .take(last.min(HIST_BUCKETS - 2) + 1)
            .skip(first)
        {
            cum += c;
            let le = seconds(hist_bucket_end(i));
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{le}\"}} {cum}");
        }
    }
    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{l}}} {}", seconds(sum_ns));
    let _ = writeln!(out, "{name}_count{{{l}}} {count}");
}

type Field = fn(&CallSummary) -> f64;

/// A histogram of a summary and the sum of its values, ns.
type Hist = fn(&CallSummary) -> (&[u64; HIST_BUCKETS], u64);

/// The exposition of every series and the profiler's health.
pub fn exposition(series: &Series, health: &Health) -> String {
    let mut out = String::new();
    let counters: [(&str, &str, Field); 6] = [
        ("ioprof_calls_total", "Traced calls that ended.", |s| {
            s.calls as f64
        }),
        ("ioprof_bytes_total", "Bytes the calls moved.", |s| {
            s.bytes as f64
        }),
        (
            "ioprof_errors_total",
            "Calls that returned an error.",
            |s| s.errors as f64,
        ),
        (
            "ioprof_wait_blocked_seconds_total",
            "Of the wait for data, time asleep.",
            |s| seconds(s.wait_blocked_ns),
        ),
        (
            "ioprof_wait_runqueue_seconds_total",
            "Of the wait for data, time in the run queue.",
            |s| seconds(s.wait_runq_ns),
        ),
        (
            "ioprof_wait_oncpu_seconds_total",
            "Of the wait for data, time on CPU.",
            |s| seconds(s.wait_ns.saturating_sub(s.wait_blocked_ns + s.wait_runq_ns)),
        ),
    ];
    for (name, help, f) in counters {
        family(&mut out, name, "counter", help);
        for (l, s) in &series.sums {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(l), f(s));
        }
    }
    let hists: [(&str, &str, Hist); 3] = [
        ("ioprof_call_seconds", "Time inside each call.", |s| {
            (&s.hist_total, s.total_ns)
        }),
        (
            "ioprof_wait_seconds",
            "Time each call waited for data.",
            |s| (&s.hist_wait, s.wait_ns),
        ),
        ("ioprof_copy_seconds", "Time each call copied data.", |s| {
            (&s.hist_copy, s.copy_ns)
        }),
    ];
    for (i, (name, help, f)) in hists.into_iter().enumerate() {
        family(&mut out, name, "histogram", help);
        for (l, s) in &series.sums {
            let range = series.ranges.get(l).and_then(|r| r[i]);
            histogram(&mut out, name, &labels(l), f(s), range);
        }
    }
    health_metrics(&mut out, series, health);
    out
}

fn health_metrics(out: &mut String, series: &Series, h: &Health) {
    let gauges: [(&str, &str, &str, f64); 9] = [
        (
            "ioprof_records_lost_total",
            "counter",
            "Records lost to a full ring buffer.",
            h.records_lost as f64,
        ),
        (
            "ioprof_summary_full_total",
            "counter",
            "Calls not summed: the kernel's summary map was full.",
            h.summary_full as f64,
        ),
        (
            "ioprof_programs_attached",
            "gauge",
            "Kernel programs attached.",
            h.programs_attached as f64,
        ),
        (
            "ioprof_scrape_duration_seconds",
            "gauge",
            "Time the previous scrape took to read the kernel's sums and render them.",
            h.scrape_seconds,
        ),
        (
            "ioprof_process_cpu_seconds_total",
            "counter",
            "CPU time of the profiler.",
            h.cpu_seconds,
        ),
        (
            "ioprof_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the profiler.",
            h.rss_bytes as f64,
        ),
        (
            "ioprof_series",
            "gauge",
            "Label sets exported.",
            series.sums.len() as f64,
        ),
        (
            "ioprof_series_limit",
            "gauge",
            "The most label sets exported (--max-series).",
            series.max as f64,
        ),
        (
            "ioprof_series_dropped_total",
            "counter",
            "Label sets summed under comm=\"other\" because the limit was reached.",
            series.dropped as f64,
        ),
    ];
    for (name, kind, help, v) in gauges {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::summary::Summaries;
    use probe_common::{SummaryKey, hist_bucket};

    #[test]
    fn histograms_are_cumulative_in_seconds_and_labels_escaped() {
        let mut s = CallSummary {
            calls: 3,
            bytes: 30,
            wait_ns: 15_000_000,
            ..CallSummary::default()
        };
        s.hist_wait[hist_bucket(5_000_000)] = 2;
        s.hist_wait[hist_bucket(5_000_000) + 2] = 1;
        let live: Summaries = [(
            SummaryKey {
                pid: 1,
                nr: libc::SYS_read as u32,
                fd_class: probe_common::fd_class::FILE,
            },
            s,
        )]
        .into();
        let names = [(1, "a\"b".to_string())].into();
        let mut series = Series::new(10);
        series.update(&live, &names);
        let text = exposition(&series, &Health::default());
        let l = "comm=\"a\\\"b\",call=\"read\",fd_class=\"file\",model=\"unknown\"";
        assert!(
            text.contains(&format!("ioprof_calls_total{{{l}}} 3\n")),
            "{text}"
        );
        let buckets: Vec<&str> = text
            .lines()
            .filter(|x| x.starts_with("ioprof_wait_seconds_bucket"))
            .collect();
        // From an octave below the shortest value to two above the longest, then +Inf.
        assert_eq!(buckets.len(), 8 + 3 + 16 + 1, "{buckets:?}");
        let end = hist_bucket_end(hist_bucket(5_000_000)) as f64 / 1e9;
        assert!(buckets[7].ends_with("} 0"), "{buckets:?}");
        assert!(
            buckets[8].ends_with(&format!("le=\"{end}\"}} 2")),
            "{buckets:?}"
        );
        assert!(
            buckets[10].ends_with("} 3") && buckets[27].contains("+Inf\"} 3"),
            "{buckets:?}"
        );
        assert!(
            text.contains(&format!("ioprof_wait_seconds_sum{{{l}}} 0.015\n")),
            "{text}"
        );
        assert!(text.contains("# TYPE ioprof_wait_seconds histogram\n"));
        assert!(text.contains("ioprof_series_limit 10\n"));
    }
}
