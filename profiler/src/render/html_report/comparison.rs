//! The page's section on the file-moving methods: read back from the comparison that
//! `cargo xtask report` ran (every method in interleaved rounds on one warm file made before
//! anything was traced), drawn as medians with their spread, the sender and the receiver apart.
use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use serde::Deserialize;
use workloads::spread::median_min_max;

use super::{
    charts::{self, Layout},
    esc,
};
use crate::render::report::fmt_bytes;

/// Where the comparison is, in the report's folder.
pub const COMPARISON_JSON: &str = "comparison/comparison.json";

/// One run's numbers (the fields drawn here), per GiB moved where it says so.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct RoundNumbers {
    /// Throughput, MiB/s.
    pub mib_s: f64,
    /// The sender's time on CPU in its calls, ns per GiB.
    pub sender_oncpu_ns: f64,
    /// The sender's sampled copy time, ns per GiB.
    pub sender_copy_ns: f64,
    /// The receiver's sampled copy time, ns per GiB.
    pub receiver_copy_ns: f64,
}

/// One method's rounds.
#[derive(Clone, Debug, Deserialize)]
pub struct MethodRounds {
    /// The method.
    pub name: String,
    /// Its rounds.
    pub runs: Vec<RoundNumbers>,
}

/// A method's verdict against read-write (the words only).
#[derive(Clone, Debug, Deserialize)]
pub struct VerdictLine {
    /// The verdict in words.
    pub line: String,
}

/// The comparison's table, already written as cells.
#[derive(Clone, Debug, Deserialize)]
pub struct Grid {
    /// The methods.
    pub columns: Vec<String>,
    /// Title and cells (none: a heading).
    pub rows: Vec<(String, Vec<String>)>,
}

/// What `cargo xtask report` left of the methods' comparison.
#[derive(Clone, Debug, Deserialize)]
pub struct Comparison {
    /// The file's size.
    pub size: u64,
    /// Rounds of each method.
    pub rounds: usize,
    /// CPU sampling rate.
    pub freq_hz: u64,
    /// Every method's rounds.
    pub methods: Vec<MethodRounds>,
    /// The table.
    pub grid: Grid,
    /// Every method against read-write.
    pub verdicts: Vec<VerdictLine>,
}

impl Comparison {
    /// Reads `dir/comparison/comparison.json`; `None` when there is none.
    pub fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let p = dir.join(COMPARISON_JSON);
        if !p.is_file() {
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a comparison", p.display()))
            .map(Some)
    }
}

/// Median and (min, max) of one number over a method's rounds.
fn spread(m: &MethodRounds, f: fn(&RoundNumbers) -> f64) -> (f64, (f64, f64)) {
    let (median, lo, hi) = median_min_max(m.runs.iter().map(f).collect()).unwrap_or_default();
    (median, (lo, hi))
}

/// A series of a chart: its name, the number it draws, and the scale applied to it.
type Series<'a> = (&'a str, fn(&RoundNumbers) -> f64, f64);

/// A grouped chart of the medians of `series` with min–max whiskers.
fn chart(c: &Comparison, title: &str, y_desc: &str, series: &[Series]) -> charts::Svg {
    let names: Vec<String> = c.methods.iter().map(|m| m.name.clone()).collect();
    let cells: Vec<Vec<(f64, (f64, f64))>> = c
        .methods
        .iter()
        .map(|m| {
            series
                .iter()
                .map(|(_, f, k)| {
                    let (med, (lo, hi)) = spread(m, *f);
                    (med * k, (lo * k, hi * k))
                })
                .collect()
        })
        .collect();
    let values: Vec<Vec<f64>> = cells
        .iter()
        .map(|r| r.iter().map(|c| c.0).collect())
        .collect();
    let ranges: Vec<Vec<(f64, f64)>> = cells
        .iter()
        .map(|r| r.iter().map(|c| c.1).collect())
        .collect();
    let labels: Vec<&str> = series.iter().map(|s| s.0).collect();
    charts::bar_chart(
        title,
        y_desc,
        &names,
        &labels,
        &values,
        Layout::Grouped,
        Some(&ranges),
    )
}

/// The section: two charts, the table and the verdicts.
pub fn section(h: &mut String, c: &Comparison) -> anyhow::Result<()> {
    let _ = writeln!(
        h,
        "<p class=\"note\">Every method moved the same {} file, made and read into the page \
         cache before anything was traced, in {} interleaved rounds (one run of each method a \
         round); bars are the medians of the rounds, whiskers their range. Copy times come from \
         CPU samples ({} Hz) in the kernel's copy routines; the sender is the thread that reads \
         the file and sends it, the receiver the loopback thread that receives it.</p>",
        fmt_bytes(c.size),
        c.rounds,
        c.freq_hz
    );
    h.push_str("<div class=\"charts\">");
    h.push_str(&chart(
        c,
        "Throughput",
        "MiB/s (first call to last)",
        &[("MiB/s", |r| r.mib_s, 1.0)],
    )?);
    h.push_str(&chart(
        c,
        "CPU per GiB moved",
        "ms per GiB",
        &[
            ("sender: on CPU in calls", |r| r.sender_oncpu_ns, 1e-6),
            ("sender: copying (sampled)", |r| r.sender_copy_ns, 1e-6),
            ("receiver: copying (sampled)", |r| r.receiver_copy_ns, 1e-6),
        ],
    )?);
    h.push_str("</div>\n<table><tr><th></th>");
    for m in &c.grid.columns {
        let _ = write!(h, "<th>{}</th>", esc(m));
    }
    h.push_str("</tr>\n");
    for (title, cells) in &c.grid.rows {
        if cells.is_empty() {
            let _ = writeln!(
                h,
                "<tr><th colspan=\"{}\" style=\"text-align:left\">{}</th></tr>",
                c.grid.columns.len() + 1,
                esc(title.trim())
            );
            continue;
        }
        let _ = write!(h, "<tr><td>{}</td>", esc(title.trim()));
        for cell in cells {
            let _ = write!(h, "<td>{}</td>", esc(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<ul class=\"note\">\n");
    for v in &c.verdicts {
        let _ = writeln!(h, "<li>{}</li>", esc(&v.line));
    }
    h.push_str("</ul>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_draws_medians_with_their_range() {
        let run = |mib_s| RoundNumbers {
            mib_s,
            sender_oncpu_ns: 3e8,
            ..RoundNumbers::default()
        };
        let c = Comparison {
            size: 64 << 20,
            rounds: 3,
            freq_hz: 4999,
            methods: vec![MethodRounds {
                name: "splice".into(),
                runs: vec![run(1500.0), run(1700.0), run(1600.0)],
            }],
            grid: Grid {
                columns: vec!["splice".into()],
                rows: vec![
                    ("sender, per GiB moved".into(), vec![]),
                    ("  system calls".into(), vec!["32768 (32768–32768)".into()]),
                ],
            },
            verdicts: vec![VerdictLine {
                line: "splice against read-write: …".into(),
            }],
        };
        assert_eq!(
            spread(&c.methods[0], |r| r.mib_s),
            (1600.0, (1500.0, 1700.0))
        );
        let mut h = String::new();
        section(&mut h, &c).expect("section");
        assert_eq!(h.matches("<svg").count(), 2, "{h}");
        for s in [
            "3 interleaved rounds",
            "32768 (32768–32768)",
            "<li>splice against",
        ] {
            assert!(h.contains(s), "missing {s}");
        }
    }
}
