//! Stage attribution: pure functions from call records to the time each call spent waiting
//! for data and copying it, and summaries over many calls. No I/O, no BPF.
use probe_common::SplitBy;

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

impl From<SplitBy> for StageSource {
    fn from(by: SplitBy) -> Self {
        match by {
            SplitBy::Marker => Self::Marker,
            SplitBy::OnCpu => Self::OnCpu,
            SplitBy::NoData => Self::NoData,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_split_names_its_source() {
        assert_eq!(StageSource::from(SplitBy::Marker).as_str(), "marker");
        assert_eq!(StageSource::from(SplitBy::OnCpu).as_str(), "oncpu");
        assert_eq!(StageSource::from(SplitBy::NoData).as_str(), "nodata");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let d = Distribution::of((1..=100).collect());
        assert_eq!((d.p50, d.p99, d.max, d.sum), (50, 99, 100, 5050));
        assert!((d.mean - 50.5).abs() < 1e-9);
        assert_eq!(Distribution::of(vec![]), Distribution::default());
        assert_eq!(Distribution::of(vec![7]).p99, 7);
    }
}
