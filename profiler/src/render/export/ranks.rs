//! Exact nearest-rank percentiles of values read twice, in bounded memory: the first pass
//! counts the values in log-linear buckets (one per value below 1024, then 512 to each power
//! of two); the second keeps only the values that fall in the buckets holding the wanted
//! ranks, each distinct value once with its count.
use std::collections::BTreeMap;

use crate::analyze::attribution::Distribution;

/// Buckets to each power of two, as a power of two.
const SUB_BITS: u32 = 9;

/// The bucket of `v`: its lowest and highest value.
fn bucket(v: u64) -> (u64, u64) {
    if v < 1 << (SUB_BITS + 1) {
        return (v, v);
    }
    let shift = (63 - v.leading_zeros()) - SUB_BITS;
    let lo = (v >> shift) << shift;
    (lo, lo + ((1u64 << shift) - 1))
}

/// The nearest rank (from 1) of percentile `p` among `n` values.
fn nearest_rank(p: f64, n: u64) -> u64 {
    (((p / 100.0) * n as f64).ceil() as u64).clamp(1, n.max(1))
}

/// The first pass over one series: counts per bucket, the sum and the largest value.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    buckets: BTreeMap<u64, u64>,
    n: u64,
    sum: u64,
    max: u64,
}

impl Counts {
    /// Takes one value.
    pub fn add(&mut self, v: u64) {
        *self.buckets.entry(bucket(v).0).or_default() += 1;
        self.n += 1;
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
    }

    /// What the second pass looks for: the buckets of the 50th and 99th percentiles.
    pub fn second_pass(self) -> Picks {
        let wanted = [50.0, 99.0].map(|p| {
            let rank = nearest_rank(p, self.n);
            let mut below = 0;
            for (&lo, &c) in &self.buckets {
                if below + c >= rank {
                    return Pick {
                        lo,
                        hi: bucket(lo).1,
                        rank: rank - below,
                        values: BTreeMap::new(),
                    };
                }
                below += c;
            }
            Pick::default()
        });
        Picks {
            n: self.n,
            sum: self.sum,
            max: self.max,
            wanted,
        }
    }
}

/// One wanted rank: its bucket, its rank within the bucket (from 1), and the bucket's values
/// seen in the second pass.
#[derive(Clone, Debug, Default)]
struct Pick {
    lo: u64,
    hi: u64,
    rank: u64,
    values: BTreeMap<u64, u64>,
}

impl Pick {
    fn value(&self) -> u64 {
        let mut seen = 0;
        for (&v, &c) in &self.values {
            seen += c;
            if seen >= self.rank {
                return v;
            }
        }
        // A bucket of one value needs no second look.
        self.lo
    }
}

/// The second pass over one series.
#[derive(Clone, Debug)]
pub struct Picks {
    n: u64,
    sum: u64,
    max: u64,
    wanted: [Pick; 2],
}

impl Picks {
    /// Takes one value, the same as in the first pass and in the same series.
    pub fn add(&mut self, v: u64) {
        for p in &mut self.wanted {
            if p.lo < p.hi && (p.lo..=p.hi).contains(&v) {
                *p.values.entry(v).or_default() += 1;
            }
        }
    }

    /// The series' distribution, as [`Distribution::of`] gives it from every value.
    pub fn distribution(&self) -> Distribution {
        if self.n == 0 {
            return Distribution::default();
        }
        Distribution {
            mean: self.sum as f64 / self.n as f64,
            p50: self.wanted[0].value(),
            p99: self.wanted[1].value(),
            max: self.max,
            sum: self.sum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both passes over `values`.
    fn two_passes(values: &[u64]) -> Distribution {
        let mut c = Counts::default();
        values.iter().for_each(|&v| c.add(v));
        let mut p = c.second_pass();
        values.iter().for_each(|&v| p.add(v));
        p.distribution()
    }

    #[test]
    fn buckets_hold_their_values_and_are_exact_below_1024() {
        assert_eq!(bucket(0), (0, 0));
        assert_eq!(bucket(1023), (1023, 1023));
        assert_eq!(bucket(1024), (1024, 1025));
        for v in [1025, 4_999, 1 << 20, 123_456_789, u64::MAX] {
            let (lo, hi) = bucket(v);
            assert!(lo <= v && v <= hi, "{v}: {lo}..={hi}");
            assert_eq!(bucket(lo), (lo, hi));
            assert!((hi - lo) as f64 <= v as f64 / 512.0, "{v}: {lo}..={hi}");
        }
    }

    #[test]
    fn percentiles_equal_those_of_every_value() {
        // A spread over nine orders of magnitude, repeats, one value, two values.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut spread = Vec::new();
        for i in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            spread.push(match i % 4 {
                0 => x % 1_000,
                1 => x % 5_000_000,
                2 => 700,
                _ => x % 2_000_000_000,
            });
        }
        for values in [spread, vec![42], vec![5_000_000, 7], vec![0; 1000]] {
            assert_eq!(two_passes(&values), Distribution::of(values.clone()));
        }
    }

    #[test]
    fn the_second_pass_keeps_only_the_wanted_buckets() {
        let values: Vec<u64> = (0..100_000u64).map(|i| 1_000_000 + i * 37).collect();
        let mut c = Counts::default();
        values.iter().for_each(|&v| c.add(v));
        let mut p = c.second_pass();
        values.iter().for_each(|&v| p.add(v));
        let kept: usize = p.wanted.iter().map(|w| w.values.len()).sum();
        assert!(
            kept < values.len() / 100,
            "{kept} values kept of {}",
            values.len()
        );
        assert_eq!(p.distribution(), Distribution::of(values));
    }
}
