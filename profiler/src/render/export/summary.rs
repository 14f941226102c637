//! Summary CSV: one row per process × call kind × stage, with counts, sums and percentiles.
//! The columns are a stable interface, documented in docs/outputs.md.
use std::{collections::BTreeMap, io::Write};

use serde::{Deserialize, Serialize};

use super::{
    CallRow,
    ranks::{Counts, Picks},
};

/// How a stage's time is read from a call row.
pub type StageOf = fn(&CallRow) -> u64;

/// The stages of the summary, in order, with how each is read from a call row.
pub const STAGES: &[(&str, StageOf); 8] = &[
    ("total", |r| r.total_ns),
    ("wait", |r| r.wait_ns),
    ("wait_blocked", |r| r.wait_blocked_ns),
    ("wait_runq", |r| r.wait_runq_ns),
    ("wait_oncpu", |r| r.wait_oncpu_ns),
    ("copy", |r| r.copy_ns),
    ("blocked", |r| r.blocked_ns),
    ("runq", |r| r.runq_ns),
];

/// One summary row. Times are nanoseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Process id.
    pub pid: u32,
    /// System call name.
    pub call: String,
    /// What the call's data came from.
    pub fd_kind: String,
    /// What the call's data went to (`none` for calls with one descriptor).
    pub fd_out_kind: String,
    /// One of [`STAGES`].
    pub stage: String,
    /// Calls in the group.
    pub calls: u64,
    /// Calls of the group that moved data.
    pub data_calls: u64,
    /// Calls of the group split at a copy marker.
    pub marker_calls: u64,
    /// Bytes the group moved.
    pub bytes: u64,
    /// Sum of the stage over the group's calls.
    pub sum_ns: u64,
    /// Mean per call.
    pub mean_ns: f64,
    /// Median per call (nearest rank).
    pub p50_ns: u64,
    /// 99th percentile per call (nearest rank).
    pub p99_ns: u64,
    /// Largest.
    pub max_ns: u64,
    /// `sum_ns` as a percentage of the group's `total` sum.
    pub share_pct: f64,
}

/// A group: (pid, call, fd_kind, fd_out_kind).
type Key = (u32, String, String, String);

fn key(r: &CallRow) -> Key {
    (
        r.pid,
        r.call.clone(),
        r.fd_kind.clone(),
        r.fd_out_kind.clone(),
    )
}

/// One group's counts.
#[derive(Clone, Copy, Default)]
struct Counted {
    calls: u64,
    data_calls: u64,
    marker_calls: u64,
    bytes: u64,
}

/// The summary's first pass over the rows: per group, its counts and each stage's values in
/// buckets. Memory grows with the groups, not with the calls.
#[derive(Default)]
pub struct Summarizer {
    groups: BTreeMap<Key, (Counted, [Counts; STAGES.len()])>,
}

impl Summarizer {
    /// Takes one row.
    pub fn row(&mut self, r: &CallRow) {
        let (g, stages) = self.groups.entry(key(r)).or_default();
        g.calls += 1;
        g.data_calls += u64::from(r.bytes > 0);
        g.marker_calls += u64::from(r.stage_source == "marker");
        g.bytes += r.bytes;
        for (c, (_, get)) in stages.iter_mut().zip(STAGES) {
            c.add(get(r));
        }
    }

    /// The second pass, which finds the exact percentiles.
    pub fn second_pass(self) -> SummaryPicks {
        SummaryPicks {
            groups: self
                .groups
                .into_iter()
                .map(|(k, (g, stages))| (k, (g, stages.map(Counts::second_pass))))
                .collect(),
        }
    }
}

/// The summary's second pass over the same rows.
pub struct SummaryPicks {
    groups: BTreeMap<Key, (Counted, [Picks; STAGES.len()])>,
}

impl SummaryPicks {
    /// Takes one row, as given to the first pass.
    pub fn row(&mut self, r: &CallRow) {
        if let Some((_, stages)) = self.groups.get_mut(&key(r)) {
            for (p, (_, get)) in stages.iter_mut().zip(STAGES) {
                p.add(get(r));
            }
        }
    }

    /// The summary rows: groups in (pid, call, fd_kind, fd_out_kind) order, stages in
    /// [`STAGES`] order.
    pub fn rows(&self) -> Vec<SummaryRow> {
        let mut out = Vec::new();
        for ((pid, call, fd_kind, fd_out_kind), (g, stages)) in &self.groups {
            let total = stages[0].distribution().sum;
            for ((stage, _), p) in STAGES.iter().zip(stages) {
                let d = p.distribution();
                out.push(SummaryRow {
                    pid: *pid,
                    call: call.clone(),
                    fd_kind: fd_kind.clone(),
                    fd_out_kind: fd_out_kind.clone(),
                    stage: (*stage).into(),
                    calls: g.calls,
                    data_calls: g.data_calls,
                    marker_calls: g.marker_calls,
                    bytes: g.bytes,
                    sum_ns: d.sum,
                    mean_ns: d.mean,
                    p50_ns: d.p50,
                    p99_ns: d.p99,
                    max_ns: d.max,
                    share_pct: if total == 0 {
                        0.0
                    } else {
                        100.0 * d.sum as f64 / total as f64
                    },
                });
            }
        }
        out
    }

    /// Writes the summary as CSV with a header.
    pub fn write<W: Write>(&self, out: W) -> anyhow::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        for r in self.rows() {
            w.serialize(r)?;
        }
        w.flush()?;
        Ok(())
    }
}

/// Both passes over `rows`.
fn summary_of(rows: &[CallRow]) -> SummaryPicks {
    let mut s = Summarizer::default();
    rows.iter().for_each(|r| s.row(r));
    let mut p = s.second_pass();
    rows.iter().for_each(|r| p.row(r));
    p
}

/// Summarises call rows: groups in (pid, call, fd_kind, fd_out_kind) order, stages in
/// [`STAGES`] order.
pub fn summarize(rows: &[CallRow]) -> Vec<SummaryRow> {
    summary_of(rows).rows()
}

/// Writes the summary of `rows` as CSV with a header.
pub fn write_summary_csv<W: Write>(out: W, rows: &[CallRow]) -> anyhow::Result<()> {
    summary_of(rows).write(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::export::tests::sample_rows;

    #[test]
    fn summary_reads_back_with_every_cell_filled() {
        let rows = sample_rows();
        let mut buf = Vec::new();
        write_summary_csv(&mut buf, &rows).expect("write");
        let text = String::from_utf8(buf).expect("utf8");
        assert_eq!(
            text.lines().next(),
            Some(
                "pid,call,fd_kind,fd_out_kind,stage,calls,data_calls,marker_calls,bytes,sum_ns,\
                 mean_ns,p50_ns,p99_ns,max_ns,share_pct"
            )
        );
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        for rec in rdr.records() {
            let rec = rec.expect("record");
            assert!(rec.iter().all(|c| !c.is_empty()), "empty cell in {rec:?}");
        }
        let back: Vec<SummaryRow> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .expect("read back");
        assert_eq!(back, summarize(&rows));
        // Three groups in the sample (two recvfrom of one process, one splice, one read of
        // another process), each with every stage.
        assert_eq!(back.len(), 3 * STAGES.len());
        let get = |call: &str, stage: &str| {
            back.iter()
                .find(|r| r.call == call && r.stage == stage)
                .expect("row")
        };
        let recv_total = get("recvfrom", "total");
        assert_eq!((recv_total.calls, recv_total.bytes), (2, 8192));
        assert_eq!(recv_total.sum_ns, 5_000 + 7_000);
        assert!((recv_total.share_pct - 100.0).abs() < 1e-9);
        let recv_wait = get("recvfrom", "wait");
        assert_eq!((recv_wait.sum_ns, recv_wait.max_ns), (4_000 + 6_500, 6_500));
        assert!((recv_wait.mean_ns - 5_250.0).abs() < 1e-9);
        // Wait and copy of marker calls add up to the total.
        let recv_copy = get("recvfrom", "copy");
        assert!((recv_wait.share_pct + recv_copy.share_pct - 100.0).abs() < 1e-9);
        let read_wait = get("read", "wait");
        assert_eq!(
            (
                read_wait.calls,
                read_wait.data_calls,
                read_wait.marker_calls
            ),
            (1, 0, 0)
        );
    }
}
