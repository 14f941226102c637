//! The exported series: the kernel's sums per process and call, read at each scrape, turned
//! into monotonic sums per label set (command name, call, descriptor class, model). Each scrape adds what every
//! (process, call) pair gained since the last one to the label set it has now, so counters
//! never go back when a process changes its name or model or ends. Label sets beyond the limit
//! are summed under `comm="other"`. Pure: sums and names in, series out.
use std::collections::{BTreeMap, HashMap};

use probe_common::{CallSummary, SummaryKey};

use crate::analyze::{summary::Summaries, top};

/// The labels of one series.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels {
    /// Command name of the process.
    pub comm: String,
    /// Call name.
    pub call: String,
    /// Class of the call's source descriptor (`unknown` for calls that move no data).
    pub fd_class: &'static str,
    /// The model the process's call mix shows (`unknown` until it tells).
    pub model: &'static str,
}

impl Labels {
    /// The label set every label set beyond the limit is summed under.
    pub fn other() -> Self {
        Self {
            comm: "other".into(),
            call: "other".into(),
            fd_class: "other",
            model: "other",
        }
    }
}

/// Every series exported so far and what is needed to extend them.
#[derive(Debug)]
pub struct Series {
    /// Sums per label set, monotonic.
    pub sums: BTreeMap<Labels, CallSummary>,
    /// Label sets summed under [`Labels::other`] because the limit was reached.
    pub dropped: u64,
    /// The most label sets kept (the `other` set included).
    pub max: usize,
    /// Per label set, the buckets each histogram shows (total, wait, copy): from an octave
    /// below its shortest value to two above its longest, widened when a value falls outside,
    /// never narrowed, so that Prometheus sees the same buckets from scrape to scrape.
    pub ranges: HashMap<Labels, [Option<(usize, usize)>; 3]>,
    last: HashMap<SummaryKey, CallSummary>,
    overflowed: std::collections::HashSet<Labels>,
}

/// Buckets shown below a histogram's shortest value and above its longest.
const BELOW: usize = 1 << probe_common::HIST_SUB_BITS;
const ABOVE: usize = 2 << probe_common::HIST_SUB_BITS;

/// `range` widened to hold every bucket of `hist` in use, with the margins.
fn widen(range: Option<(usize, usize)>, hist: &[u64]) -> Option<(usize, usize)> {
    let first = hist.iter().position(|&c| c > 0)?.saturating_sub(BELOW);
    let last = (hist.iter().rposition(|&c| c > 0)? + ABOVE).min(hist.len() - 2);
    Some(match range {
        Some((a, b)) => (a.min(first), b.max(last)),
        None => (first, last),
    })
}

/// The label value of a kernel descriptor class.
pub fn class_name(raw: u32) -> &'static str {
    crate::capture::fdkind::FdClass::from_raw(raw)
        .unwrap_or(crate::capture::fdkind::FdClass::Unknown)
        .as_str()
}

/// `a - b`, field by field (saturating: a key deleted and reused starts again from zero).
fn delta(a: &CallSummary, b: &CallSummary) -> CallSummary {
    let mut d = *a;
    for (x, y) in [
        (&mut d.calls, b.calls),
        (&mut d.data_calls, b.data_calls),
        (&mut d.marker_calls, b.marker_calls),
        (&mut d.bytes, b.bytes),
        (&mut d.total_ns, b.total_ns),
        (&mut d.wait_ns, b.wait_ns),
        (&mut d.copy_ns, b.copy_ns),
        (&mut d.blocked_ns, b.blocked_ns),
        (&mut d.runq_ns, b.runq_ns),
        (&mut d.wait_blocked_ns, b.wait_blocked_ns),
        (&mut d.wait_runq_ns, b.wait_runq_ns),
        (&mut d.errors, b.errors),
    ] {
        *x = x.saturating_sub(y);
    }
    for (x, y) in [
        (&mut d.hist_total, &b.hist_total),
        (&mut d.hist_wait, &b.hist_wait),
        (&mut d.hist_copy, &b.hist_copy),
    ] {
        for (p, q) in x.iter_mut().zip(y) {
            *p = p.saturating_sub(*q);
        }
    }
    d
}

impl Series {
    /// No series yet; at most `max` label sets (at least 1: the `other` set).
    pub fn new(max: usize) -> Self {
        Self {
            sums: BTreeMap::new(),
            dropped: 0,
            max: max.max(1),
            ranges: HashMap::new(),
            last: HashMap::new(),
            overflowed: Default::default(),
        }
    }

    /// Adds what each (process, call) pair of `live` gained since the last update.
    pub fn update(&mut self, live: &Summaries, names: &HashMap<u32, String>) {
        let mut per_pid: BTreeMap<u32, Vec<(u32, &CallSummary)>> = BTreeMap::new();
        for (k, v) in live {
            per_pid.entry(k.pid).or_default().push((k.nr, v));
        }
        let models: HashMap<u32, &'static str> = per_pid
            .into_iter()
            .map(|(pid, calls)| (pid, top::model_of(calls).unwrap_or("unknown")))
            .collect();
        for (k, v) in live {
            let d = match self.last.get(k) {
                Some(prev) => delta(v, prev),
                None => *v,
            };
            self.last.insert(*k, *v);
            if d.calls == 0 {
                continue;
            }
            let labels = Labels {
                comm: names.get(&k.pid).cloned().unwrap_or_else(|| "?".into()),
                call: crate::syscalls::name_of(k.nr),
                fd_class: class_name(k.fd_class),
                model: models.get(&k.pid).copied().unwrap_or("unknown"),
            };
            let labels = self.admit(labels);
            let sums = self.sums.entry(labels.clone()).or_default();
            crate::analyze::summary::merge(sums, &d);
            let r = self.ranges.entry(labels).or_default();
            for (r, h) in r
                .iter_mut()
                .zip([&sums.hist_total, &sums.hist_wait, &sums.hist_copy])
            {
                *r = widen(*r, h);
            }
        }
    }

    /// The label set a new one is summed under: itself while there is room (one place is
    /// kept for `other`), else `other`.
    fn admit(&mut self, labels: Labels) -> Labels {
        if self.sums.contains_key(&labels) {
            return labels;
        }
        let other = Labels::other();
        let kept = self.sums.len() - usize::from(self.sums.contains_key(&other));
        if kept + 1 < self.max {
            return labels;
        }
        if self.overflowed.insert(labels) {
            self.dropped += 1;
        }
        other
    }

    /// Forgets the pairs of process `pid` (it ended and its keys left the kernel's map).
    pub fn forget(&mut self, pid: u32) {
        self.last.retain(|k, _| k.pid != pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::fd_class;

    fn live(pairs: &[(u32, i64, u64)]) -> Summaries {
        let file: Vec<_> = pairs
            .iter()
            .map(|&(pid, nr, calls)| (pid, nr, fd_class::FILE, calls))
            .collect();
        live_classes(&file)
    }

    fn live_classes(pairs: &[(u32, i64, u32, u64)]) -> Summaries {
        pairs
            .iter()
            .map(|&(pid, nr, fd_class, calls)| {
                let mut s = CallSummary {
                    calls,
                    wait_ns: 10 * calls,
                    ..CallSummary::default()
                };
                s.hist_wait[probe_common::hist_bucket(10)] = calls;
                let nr = nr as u32;
                (SummaryKey { pid, nr, fd_class }, s)
            })
            .collect()
    }

    fn names(pairs: &[(u32, &str)]) -> HashMap<u32, String> {
        pairs.iter().map(|&(p, n)| (p, n.to_string())).collect()
    }

    #[test]
    fn counters_stay_monotonic_across_renames_and_ends() {
        let mut s = Series::new(100);
        let read = libc::SYS_read;
        s.update(
            &live(&[(1, read, 5), (2, read, 3)]),
            &names(&[(1, "a"), (2, "a")]),
        );
        let a = Labels {
            comm: "a".into(),
            call: "read".into(),
            fd_class: "file",
            model: "unknown",
        };
        assert_eq!(s.sums[&a].calls, 8);
        // Process 1 renamed itself: only what it gained goes to the new name.
        s.update(
            &live(&[(1, read, 7), (2, read, 3)]),
            &names(&[(1, "b"), (2, "a")]),
        );
        assert_eq!(s.sums[&a].calls, 8);
        let b = Labels {
            comm: "b".into(),
            ..a.clone()
        };
        assert_eq!(s.sums[&b].calls, 2);
        assert_eq!(s.sums[&b].hist_wait.iter().sum::<u64>(), 2);
        // Its wait buckets: an octave below its one value, two above; no total, no copy yet.
        let at = probe_common::hist_bucket(10);
        assert_eq!(
            s.ranges[&b],
            [None, Some((at.saturating_sub(8), at + 16)), None]
        );
        // Process 2 ended and its keys were deleted; a new process 2 starts from zero.
        s.forget(2);
        s.update(
            &live(&[(1, read, 7), (2, read, 1)]),
            &names(&[(1, "b"), (2, "a")]),
        );
        assert_eq!(s.sums[&a].calls, 9);
    }

    #[test]
    fn label_sets_beyond_the_limit_go_to_other() {
        let mut s = Series::new(3);
        let read = libc::SYS_read;
        let procs: Vec<(u32, i64, u64)> = (1..=5).map(|p| (p, read, 1)).collect();
        let n = names(&[(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]);
        s.update(&live(&procs), &n);
        assert_eq!(s.sums.len(), 3, "{:?}", s.sums.keys());
        assert_eq!(s.sums[&Labels::other()].calls, 3);
        assert_eq!(s.dropped, 3);
        // The same sets again: counted under other, not dropped twice.
        let more: Vec<(u32, i64, u64)> = (1..=5).map(|p| (p, read, 2)).collect();
        s.update(&live(&more), &n);
        assert_eq!((s.sums.len(), s.dropped), (3, 3));
        assert_eq!(s.sums[&Labels::other()].calls, 6);
        assert_eq!(s.sums.values().map(|v| v.calls).sum::<u64>(), 10);
    }

    #[test]
    fn each_descriptor_class_of_a_call_is_its_own_series() {
        let mut s = Series::new(100);
        let (read, epoll) = (libc::SYS_read, libc::SYS_epoll_wait);
        let live = live_classes(&[
            (1, read, fd_class::FILE, 4),
            (1, read, fd_class::TCP, 6),
            (1, epoll, fd_class::UNKNOWN, 2),
        ]);
        s.update(&live, &names(&[(1, "nginx")]));
        let got: Vec<(&str, &str, &str, u64)> = s
            .sums
            .iter()
            .map(|(l, v)| (l.call.as_str(), l.fd_class, l.model, v.calls))
            .collect();
        assert_eq!(
            got,
            [
                ("epoll_wait", "unknown", "multiplexing", 2),
                ("read", "file", "multiplexing", 4),
                ("read", "tcp", "multiplexing", 6),
            ]
        );
    }
}
