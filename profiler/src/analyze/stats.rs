//! Streaming stage statistics: per call label (`recvfrom socket`, `splice file→pipe`), counts,
//! exact sums and histograms of every stage, so that a run of any length summarises its calls
//! in bounded memory instead of keeping each one.
use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;

use crate::{
    analyze::attribution::{Distribution, StageSource, Summary},
    capture::fdkind::FdKind,
    capture::traced::TracedCall,
};

/// Significant figures the histograms keep: percentiles are within 1% of the exact value.
const SIGFIGS: u8 = 2;

/// One quantity over many calls: an exact count, sum and maximum, and a histogram for the
/// percentiles.
#[derive(Clone, Debug)]
pub struct Stream {
    hist: Histogram<u64>,
    sum: u64,
    max: u64,
}

impl Default for Stream {
    fn default() -> Self {
        Self {
            hist: Histogram::new(SIGFIGS).expect("2 significant figures are always valid"),
            sum: 0,
            max: 0,
        }
    }
}

impl Stream {
    /// Adds one value.
    pub fn record(&mut self, v: u64) {
        // The histogram grows to hold any value it can track; beyond that it saturates.
        if self.hist.record(v).is_err() {
            self.hist.saturating_record(v);
        }
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Mean (exact), median and 99th percentile (within 1%, never above the maximum), maximum
    /// and sum (exact).
    pub fn distribution(&self) -> Distribution {
        let n = self.hist.len();
        if n == 0 {
            return Distribution::default();
        }
        let max = self.max;
        let q = |p: f64| self.hist.value_at_quantile(p).min(max);
        Distribution {
            mean: self.sum as f64 / n as f64,
            p50: q(0.5),
            p99: q(0.99),
            max,
            sum: self.sum,
        }
    }
}

/// Everything the stage table shows for one label.
#[derive(Clone, Debug, Default)]
pub struct LabelStats {
    /// Calls.
    pub calls: u64,
    /// Calls that moved data.
    pub data_calls: u64,
    /// Calls split at a copy marker.
    pub marker_calls: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Entry to exit.
    pub total: Stream,
    /// Waiting for data.
    pub wait: Stream,
    /// Copying.
    pub copy: Stream,
    /// Asleep, all stages.
    pub blocked: Stream,
    /// Run queue, all stages.
    pub runq: Stream,
    /// Asleep during the wait.
    pub wait_blocked: Stream,
    /// Run queue during the wait.
    pub wait_runq: Stream,
    /// On CPU during the wait.
    pub wait_oncpu: Stream,
}

impl LabelStats {
    /// Counts and the distributions of the five main stages.
    pub fn summary(&self) -> Summary {
        Summary {
            calls: self.calls,
            data_calls: self.data_calls,
            marker_calls: self.marker_calls,
            bytes: self.bytes,
            total: self.total.distribution(),
            wait: self.wait.distribution(),
            copy: self.copy.distribution(),
            blocked: self.blocked.distribution(),
            runq: self.runq.distribution(),
        }
    }

    fn add(&mut self, c: &TracedCall) {
        let s = &c.stages;
        self.calls += 1;
        self.bytes = self.bytes.saturating_add(c.bytes());
        if c.bytes() > 0 {
            self.data_calls += 1;
        }
        if c.source == StageSource::Marker {
            self.marker_calls += 1;
        }
        self.total.record(s.total_ns);
        self.wait.record(s.wait_ns);
        self.copy.record(s.copy_ns);
        self.blocked.record(s.blocked_ns);
        self.runq.record(s.runq_ns);
        self.wait_blocked.record(s.wait_blocked_ns);
        self.wait_runq.record(s.wait_runq_ns);
        self.wait_oncpu.record(s.wait_oncpu_ns());
    }
}

/// What groups calls into one label, without building the label's text for every call.
type Key = (u32, bool, FdKind, bool, FdKind);

/// Stage statistics of a run, per label.
#[derive(Clone, Debug, Default)]
pub struct CallStats {
    by_key: HashMap<Key, (String, LabelStats)>,
    calls: u64,
}

impl CallStats {
    /// Folds one call in.
    pub fn add(&mut self, c: &TracedCall) {
        self.calls += 1;
        let key = (c.rec.nr, c.fd >= 0, c.fd_kind, c.fd_out >= 0, c.fd_out_kind);
        self.by_key
            .entry(key)
            .or_insert_with(|| (c.label(), LabelStats::default()))
            .1
            .add(c);
    }

    /// Calls folded in.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Statistics per label, sorted by label.
    pub fn by_label(&self) -> BTreeMap<&str, &LabelStats> {
        let mut out: BTreeMap<&str, &LabelStats> = BTreeMap::new();
        for (label, s) in self.by_key.values() {
            out.insert(label.as_str(), s);
        }
        out
    }
}

impl<'a> FromIterator<&'a TracedCall> for CallStats {
    fn from_iter<I: IntoIterator<Item = &'a TracedCall>>(iter: I) -> Self {
        let mut s = Self::default();
        for c in iter {
            s.add(c);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::CallRecord;

    fn call(total: u64, ret: i64) -> TracedCall {
        let rec = CallRecord {
            nr: libc::SYS_recvfrom as u32,
            start_ns: 1_000,
            end_ns: 1_000 + total,
            first_copy_ns: 1_000 + total / 2,
            ret,
            ..Default::default()
        };
        TracedCall::new(rec, |_, _| FdKind::Socket)
    }

    #[test]
    fn streaming_matches_the_exact_distribution_within_one_percent() {
        let calls: Vec<TracedCall> = (1..=10_000u64).map(|i| call(i * 997, 10)).collect();
        let stats: CallStats = calls.iter().collect();
        let by = stats.by_label();
        let s = by.get("recvfrom socket").expect("label");
        assert_eq!(
            (s.calls, s.data_calls, s.marker_calls, s.bytes),
            (10_000, 10_000, 10_000, 100_000)
        );
        let exact = Distribution::of(calls.iter().map(|c| c.stages.total_ns).collect());
        let got = s.total.distribution();
        assert_eq!((got.sum, got.max), (exact.sum, exact.max));
        assert!((got.mean - exact.mean).abs() < 1e-6);
        for (g, e) in [(got.p50, exact.p50), (got.p99, exact.p99)] {
            assert!(g.abs_diff(e) as f64 <= 0.01 * e as f64, "{g} vs {e}");
        }
    }

    #[test]
    fn equal_values_report_exactly_and_labels_split() {
        let mut calls = vec![call(4_990_000, 65536); 3];
        calls.push(call(10, -11));
        let mut other = call(10, 5);
        other.fd_kind = FdKind::Pipe;
        calls.push(other);
        let stats: CallStats = calls.iter().collect();
        assert_eq!(stats.calls(), 5);
        let by = stats.by_label();
        assert_eq!(
            by.keys().copied().collect::<Vec<_>>(),
            ["recvfrom pipe", "recvfrom socket"]
        );
        let sock = by["recvfrom socket"];
        assert_eq!((sock.calls, sock.data_calls), (4, 3));
        let d = sock.total.distribution();
        assert_eq!((d.p50, d.max), (4_990_000, 4_990_000));
        assert_eq!(Stream::default().distribution(), Distribution::default());
    }
}
