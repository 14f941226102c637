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
    /// With an OTLP endpoint, the pushes so far.
    pub otlp: Option<PushCounts>,
}

/// OTLP pushes that succeeded and that failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushCounts {
    pub ok: u64,
    pub failed: u64,
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

/// Nanoseconds as seconds.
pub fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The cumulative counts of a histogram's buckets in its range (see [`Series::ranges`]):
/// each bucket's upper bound in seconds and the values at or below it. The OTLP push sends
/// the same bounds.
pub fn buckets(
    hist: &[u64; HIST_BUCKETS],
    range: Option<(usize, usize)>,
) -> impl Iterator<Item = (f64, u64)> + '_ {
    let (first, last) = range.map_or((1, 0), |(a, b)| (a, b.min(HIST_BUCKETS - 2)));
    let mut cum = hist[..first.min(HIST_BUCKETS)].iter().sum::<u64>();
    (first..=last).map(move |i| {
        cum += hist[i];
        (seconds(hist_bucket_end(i)), cum)
    })
}

/// One histogram: the buckets of its range, then `+Inf`, `_sum` and `_count`.
fn histogram(
    out: &mut String,
    name: &str,
    l: &str,
    (hist, sum_ns): (&[u64; HIST_BUCKETS], u64),
    range: Option<(usize, usize)>,
) {
    let count: u64 = hist.iter().sum();
    for (le, cum) in buckets(hist, range) {
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"{le}\"}} {cum}");
    }
    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{l}}} {}", seconds(sum_ns));
    let _ = writeln!(out, "{name}_count{{{l}}} {count}");
}

/// The value of a counter of a label set.
pub type Field = fn(&CallSummary) -> f64;

/// A histogram of a summary and the sum of its values, ns.
pub type Hist = fn(&CallSummary) -> (&[u64; HIST_BUCKETS], u64);

/// One exported metric family: its name, help text and unit (UCUM, as OTLP wants it).
#[derive(Clone, Copy, Debug)]
pub struct Family<F> {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: &'static str,
    pub value: F,
}

/// The counters of each label set.
pub const COUNTERS: [Family<Field>; 6] = [
    Family {
        name: "ioprof_calls_total",
        help: "Traced calls that ended.",
        unit: "{call}",
        value: |s| s.calls as f64,
    },
    Family {
        name: "ioprof_bytes_total",
        help: "Bytes the calls moved.",
        unit: "By",
        value: |s| s.bytes as f64,
    },
    Family {
        name: "ioprof_errors_total",
        help: "Calls that returned an error.",
        unit: "{call}",
        value: |s| s.errors as f64,
    },
    Family {
        name: "ioprof_wait_blocked_seconds_total",
        help: "Of the wait for data, time asleep.",
        unit: "s",
        value: |s| seconds(s.wait_blocked_ns),
    },
    Family {
        name: "ioprof_wait_runqueue_seconds_total",
        help: "Of the wait for data, time in the run queue.",
        unit: "s",
        value: |s| seconds(s.wait_runq_ns),
    },
    Family {
        name: "ioprof_wait_oncpu_seconds_total",
        help: "Of the wait for data, time on CPU.",
        unit: "s",
        value: |s| seconds(s.wait_ns.saturating_sub(s.wait_blocked_ns + s.wait_runq_ns)),
    },
];

/// The histograms of each label set, in the order of [`Series::ranges`].
pub const HISTOGRAMS: [Family<Hist>; 3] = [
    Family {
        name: "ioprof_call_seconds",
        help: "Time inside each call.",
        unit: "s",
        value: |s| (&s.hist_total, s.total_ns),
    },
    Family {
        name: "ioprof_wait_seconds",
        help: "Time each call waited for data.",
        unit: "s",
        value: |s| (&s.hist_wait, s.wait_ns),
    },
    Family {
        name: "ioprof_copy_seconds",
        help: "Time each call copied data.",
        unit: "s",
        value: |s| (&s.hist_copy, s.copy_ns),
    },
];

/// The exposition of every series and the profiler's health, whole (see [`Exposition`]).
pub fn exposition(series: &Series, health: &Health) -> String {
    let mut out = String::new();
    let mut e = Exposition::new(series, health);
    while e.fill(&mut out, usize::MAX) {}
    out
}

/// The exposition written piece by piece: a family's header, one label set's samples of a
/// family, or the health. A scrape holds one buffer of about the size it asks for, whatever
/// the number of label sets.
pub struct Exposition<'a> {
    series: &'a Series,
    health: &'a Health,
    /// The family being written: the counters, then the histograms, then the health.
    family: usize,
    /// Its label sets not yet written; `None` before its header.
    sets: Option<std::collections::btree_map::Iter<'a, Labels, CallSummary>>,
}

impl<'a> Exposition<'a> {
    pub fn new(series: &'a Series, health: &'a Health) -> Self {
        Self {
            series,
            health,
            family: 0,
            sets: None,
        }
    }

    /// Appends pieces to `out` until it holds at least `size` bytes or the end is reached;
    /// false once everything was written.
    pub fn fill(&mut self, out: &mut String, size: usize) -> bool {
        while out.len() < size {
            if !self.piece(out) {
                return false;
            }
        }
        true
    }

    /// Appends the next piece to `out`; false at the end.
    fn piece(&mut self, out: &mut String) -> bool {
        let (counters, hists) = (COUNTERS.len(), HISTOGRAMS.len());
        let f = self.family;
        if f >= counters + hists {
            if f == counters + hists {
                for m in health_metrics(self.series, self.health) {
                    let kind = if m.counter { "counter" } else { "gauge" };
                    family(out, m.name, kind, m.help);
                    let _ = writeln!(out, "{} {}", m.name, m.value);
                }
                self.family += 1;
            }
            return f == counters + hists;
        }
        let Some(sets) = self.sets.as_mut() else {
            match COUNTERS.get(f) {
                Some(c) => family(out, c.name, "counter", c.help),
                None => {
                    let h = HISTOGRAMS[f - counters];
                    family(out, h.name, "histogram", h.help);
                }
            }
            self.sets = Some(self.series.sums.iter());
            return true;
        };
        let Some((l, s)) = sets.next() else {
            self.family += 1;
            self.sets = None;
            return true;
        };
        match COUNTERS.get(f) {
            Some(c) => {
                let _ = writeln!(out, "{}{{{}}} {}", c.name, labels(l), (c.value)(s));
            }
            None => {
                let i = f - counters;
                let range = self.series.ranges.get(l).and_then(|r| r[i]);
                let h = HISTOGRAMS[i];
                histogram(out, h.name, &labels(l), (h.value)(s), range);
            }
        }
        true
    }
}

/// One unlabelled metric of the profiler's health.
#[derive(Clone, Copy, Debug)]
pub struct HealthMetric {
    pub name: &'static str,
    /// A counter (monotonic), else a gauge.
    pub counter: bool,
    pub help: &'static str,
    pub unit: &'static str,
    pub value: f64,
}

/// The profiler's health as metrics, for the exposition and the OTLP push alike.
pub fn health_metrics(series: &Series, h: &Health) -> Vec<HealthMetric> {
    let m = |name, counter, help, unit, value| HealthMetric {
        name,
        counter,
        help,
        unit,
        value,
    };
    let mut all = vec![
        m(
            "ioprof_records_lost_total",
            true,
            "Records lost to a full ring buffer.",
            "{record}",
            h.records_lost as f64,
        ),
        m(
            "ioprof_summary_full_total",
            true,
            "Calls not summed: the kernel's summary map was full.",
            "{call}",
            h.summary_full as f64,
        ),
        m(
            "ioprof_programs_attached",
            false,
            "Kernel programs attached.",
            "{program}",
            h.programs_attached as f64,
        ),
        m(
            "ioprof_scrape_duration_seconds",
            false,
            "Time the previous scrape took to read the kernel's sums and render them.",
            "s",
            h.scrape_seconds,
        ),
        m(
            "ioprof_process_cpu_seconds_total",
            true,
            "CPU time of the profiler.",
            "s",
            h.cpu_seconds,
        ),
        m(
            "ioprof_process_resident_memory_bytes",
            false,
            "Resident memory of the profiler.",
            "By",
            h.rss_bytes as f64,
        ),
        m(
            "ioprof_series",
            false,
            "Label sets exported.",
            "{series}",
            series.sums.len() as f64,
        ),
        m(
            "ioprof_series_limit",
            false,
            "The most label sets exported (--max-series).",
            "{series}",
            series.max as f64,
        ),
        m(
            "ioprof_series_dropped_total",
            true,
            "Label sets summed under comm=\"other\" because the limit was reached.",
            "{series}",
            series.dropped as f64,
        ),
    ];
    if let Some(p) = h.otlp {
        all.push(m(
            "ioprof_otlp_pushes_total",
            true,
            "OTLP metrics pushes the collector accepted.",
            "{push}",
            p.ok as f64,
        ));
        all.push(m(
            "ioprof_otlp_push_failures_total",
            true,
            "OTLP metrics pushes that failed (no connection, timeout, or an error status).",
            "{push}",
            p.failed as f64,
        ));
    }
    all
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
