//! Stage attribution: pure functions from call records to the time each call spent waiting
//! for data and copying it, and summaries over many calls. No I/O, no BPF.
use probe_common::{CallRecord, SplitBy};

/// How a call's stages were found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageSource {
    /// A copy marker (`skb_copy_datagram_iovec`) was seen: wait is entry → first copy, copy is
    /// first copy → exit.
    Marker,
    /// Data moved with no marker (file, pipe, `splice`): wait is the time asleep, copy is the
    /// time on CPU (an upper bound of the copy: it includes the call's other kernel work).
    OnCpu,
    /// No data moved: the whole call was waiting (or failing).
    NoData,
}

impl StageSource {
    /// Name used in CSV and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Marker => "marker",
            Self::OnCpu => "oncpu",
            Self::NoData => "nodata",
        }
    }
}

/// Where one call's time went. All times in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stages {
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
    /// Bytes the call moved (its return value when positive).
    pub bytes: u64,
}

impl Stages {
    /// The part of the wait spent on CPU (the call's own work before the copy, or polling).
    pub fn wait_oncpu_ns(&self) -> u64 {
        self.wait_ns
            .saturating_sub(self.wait_blocked_ns + self.wait_runq_ns)
    }
}

/// How a call's stages are found, from what the kernel saw.
pub fn source(rec: &CallRecord) -> StageSource {
    split_source(probe_common::split_stages(rec).by)
}

fn split_source(by: SplitBy) -> StageSource {
    match by {
        SplitBy::Marker => StageSource::Marker,
        SplitBy::OnCpu => StageSource::OnCpu,
        SplitBy::NoData => StageSource::NoData,
    }
}

/// Splits one call into its stages ([`probe_common::split_stages`], the kernel's own rule).
pub fn stages(rec: &CallRecord) -> Stages {
    let s = probe_common::split_stages(rec);
    Stages {
        total_ns: s.total_ns,
        wait_ns: s.wait_ns,
        copy_ns: s.copy_ns,
        blocked_ns: s.blocked_ns,
        runq_ns: s.runq_ns,
        wait_blocked_ns: s.wait_blocked_ns,
        wait_runq_ns: s.wait_runq_ns,
        bytes: rec.ret.max(0) as u64,
    }
}

/// Mean and percentiles of one quantity over many calls.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Distribution {
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest value.
    pub max: u64,
    /// Sum of all values.
    pub sum: u64,
}

impl Distribution {
    /// The distribution of `values` (all zero when empty).
    pub fn of(mut values: Vec<u64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let sum: u64 = values.iter().sum();
        Self {
            mean: sum as f64 / values.len() as f64,
            p50: percentile(&values, 50.0),
            p99: percentile(&values, 99.0),
            max: values[values.len() - 1],
            sum,
        }
    }
}

/// Nearest-rank percentile of sorted, non-empty `values`.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summary of a group of calls (one call kind, say).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Number of calls.
    pub calls: u64,
    /// Calls that moved data.
    pub data_calls: u64,
    /// Calls whose copy start was seen by a marker.
    pub marker_calls: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Entry to exit.
    pub total: Distribution,
    /// Waiting for data.
    pub wait: Distribution,
    /// Copying.
    pub copy: Distribution,
    /// Asleep.
    pub blocked: Distribution,
    /// Run queue.
    pub runq: Distribution,
}

/// Summarises calls with their stages.
pub fn summarize<'a>(calls: impl IntoIterator<Item = (&'a CallRecord, Stages)>) -> Summary {
    let mut s = Summary::default();
    let (mut total, mut wait, mut copy, mut blocked, mut runq) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (rec, st) in calls {
        s.calls += 1;
        s.bytes += st.bytes;
        if st.bytes > 0 {
            s.data_calls += 1;
        }
        if source(rec) == StageSource::Marker {
            s.marker_calls += 1;
        }
        total.push(st.total_ns);
        wait.push(st.wait_ns);
        copy.push(st.copy_ns);
        blocked.push(st.blocked_ns);
        runq.push(st.runq_ns);
    }
    s.total = Distribution::of(total);
    s.wait = Distribution::of(wait);
    s.copy = Distribution::of(copy);
    s.blocked = Distribution::of(blocked);
    s.runq = Distribution::of(runq);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(start: u64, end: u64, first_copy: u64, ret: i64) -> CallRecord {
        CallRecord {
            start_ns: start,
            end_ns: end,
            first_copy_ns: first_copy,
            ret,
            ..Default::default()
        }
    }

    #[test]
    fn marker_splits_at_first_copy() {
        let mut r = rec(1_000, 6_000, 5_000, 4096);
        r.blocked_ns = 3_500;
        r.runq_ns = 300;
        r.wait_blocked_ns = 3_500;
        r.wait_runq_ns = 200;
        let s = stages(&r);
        assert_eq!(source(&r), StageSource::Marker);
        assert_eq!((s.total_ns, s.wait_ns, s.copy_ns), (5_000, 4_000, 1_000));
        assert_eq!(
            (s.wait_blocked_ns, s.wait_runq_ns, s.wait_oncpu_ns()),
            (3_500, 200, 300)
        );
        assert_eq!(s.bytes, 4096);
        assert_eq!(s.wait_ns + s.copy_ns, s.total_ns);
    }

    #[test]
    fn no_marker_with_data_uses_sleep_and_cpu() {
        let mut r = rec(0, 10_000, 0, 65536);
        r.blocked_ns = 6_000;
        r.runq_ns = 1_000;
        let s = stages(&r);
        assert_eq!(source(&r), StageSource::OnCpu);
        assert_eq!((s.wait_ns, s.copy_ns, s.runq_ns), (6_000, 3_000, 1_000));
    }

    #[test]
    fn failed_call_is_all_wait() {
        let r = rec(0, 700, 0, -11);
        let s = stages(&r);
        assert_eq!(source(&r), StageSource::NoData);
        assert_eq!((s.wait_ns, s.copy_ns, s.bytes), (700, 0, 0));
    }

    #[test]
    fn marker_outside_the_call_is_ignored_and_sums_are_clamped() {
        let mut r = rec(100, 200, 50, 10);
        r.blocked_ns = 500;
        r.runq_ns = 500;
        let s = stages(&r);
        assert_eq!(source(&r), StageSource::OnCpu);
        assert_eq!((s.blocked_ns, s.runq_ns, s.copy_ns), (100, 0, 0));
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let d = Distribution::of((1..=100).collect());
        assert_eq!((d.p50, d.p99, d.max, d.sum), (50, 99, 100, 5050));
        assert!((d.mean - 50.5).abs() < 1e-9);
        assert_eq!(Distribution::of(vec![]), Distribution::default());
        assert_eq!(Distribution::of(vec![7]).p99, 7);
    }

    #[test]
    fn summary_counts_calls_bytes_and_markers() {
        let a = rec(0, 10, 5, 100);
        let b = rec(0, 20, 0, -11);
        let s = summarize([(&a, stages(&a)), (&b, stages(&b))]);
        assert_eq!(
            (s.calls, s.data_calls, s.marker_calls, s.bytes),
            (2, 1, 1, 100)
        );
        assert_eq!(s.wait.sum, 5 + 20);
    }
}
