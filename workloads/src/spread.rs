//! The median and range of repeated measurements: how the comparisons of rounds (terminal and
//! HTML page alike) sum up each number.

/// Median, smallest and largest of `v`; `None` when it is empty.
pub fn median_min_max(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median_min_max(vec![3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(median_min_max(vec![4.0, 1.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(median_min_max(vec![]), None);
    }
}
