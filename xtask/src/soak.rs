//! `cargo xtask soak`: traces the flood workload (small receive calls as fast as the machine
//! makes them) for minutes, samples the profiler's memory, and reports memory at start and end
//! and the records sent, seen and lost. Fails when the profiler fails, when a record the kernel
//! sent did not reach it, when its CSV misses a call, or when its memory grows past a bound.
//! With `--serve`, [`serve`] soaks `profiler serve` instead.
pub mod serve;

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Options of `cargo xtask soak`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Minutes to run (added to --seconds).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1440))]
    minutes: u64,
    /// Seconds to run (added to --minutes).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86400))]
    seconds: u64,
    /// Bytes asked for by each receive call of the flood.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    size: u64,
    /// Keep the per-call CSV here (default: rows are written to /dev/null).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Soak `profiler serve` (the whole machine traced, /metrics scraped every second) instead
    /// of a per-call run.
    #[arg(long, conflicts_with = "csv")]
    pub serve: bool,
    /// Also write the soak's report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Largest growth of the profiler's resident memory allowed from start to end, MiB.
    #[arg(long, default_value_t = 16)]
    max_growth_mib: u64,
    /// With --serve: the most a scrape's time may grow from start to end, as a factor.
    #[arg(long, default_value_t = 2.0, requires = "serve")]
    max_scrape_growth: f64,
    /// Use the profiler and workloads binaries in DIR instead of building them in release.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

impl Args {
    /// The soak's length in seconds; fails when it is too short to measure.
    pub fn secs(&self) -> anyhow::Result<u64> {
        let secs = self.minutes * 60 + self.seconds;
        anyhow::ensure!(
            secs >= 3,
            "give the soak's length with --minutes N or --seconds N (at least 3 seconds)"
        );
        Ok(secs)
    }

    /// The folder of prebuilt binaries, when given.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }
}

/// What a soak measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Seconds traced.
    pub seconds: u64,
    /// The profiler's resident memory once tracing had settled, KiB.
    pub rss_start_kib: u64,
    /// Its resident memory at the last sample while the workload ran, KiB.
    pub rss_end_kib: u64,
    /// The largest resident memory sampled, KiB.
    pub rss_max_kib: u64,
    /// Memory samples taken while the workload ran (one a second).
    pub samples: u64,
    /// Call records the profiler read.
    pub calls_seen: u64,
    /// Other records it read (signals, copies outside calls).
    pub events_seen: u64,
    /// Records it could not decode.
    pub undecodable: u64,
    /// Records the kernel sent.
    pub records_sent: u64,
    /// Records the kernel lost (ring buffer full).
    pub records_lost: u64,
    /// Receive calls the workload made (its own count).
    pub workload_calls: u64,
    /// Rows in the CSV, when one was kept.
    pub csv_rows: Option<u64>,
}

impl Report {
    /// What is wrong with this run, if anything.
    pub fn problems(&self, max_growth_mib: u64) -> Vec<String> {
        let mut p = Vec::new();
        let seen = self.calls_seen + self.events_seen + self.undecodable;
        if seen != self.records_sent {
            p.push(format!(
                "the kernel sent {} records but the profiler read {seen}",
                self.records_sent
            ));
        }
        if self.calls_seen + self.records_lost < self.workload_calls {
            p.push(format!(
                "the workload made {} receive calls; the profiler saw {} and lost {}",
                self.workload_calls, self.calls_seen, self.records_lost
            ));
        }
        if let Some(rows) = self.csv_rows
            && rows != self.calls_seen
        {
            p.push(format!(
                "the CSV has {rows} rows for {} calls",
                self.calls_seen
            ));
        }
        let growth = self.rss_end_kib.saturating_sub(self.rss_start_kib);
        if growth > max_growth_mib << 10 {
            p.push(format!(
                "the profiler's memory grew by {growth} KiB (more than {max_growth_mib} MiB)"
            ));
        }
        if self.samples < 2 {
            p.push("fewer than two memory samples: the run was too short".into());
        }
        p
    }
}

/// Resident memory of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The counts in the profiler's closing lines:
/// `N calls in Xs; records sent S, lost L[, undecodable U]` and
/// `other events: A signal events, B copies outside traced calls, …` (every record that is not
/// a call, summed).
pub fn parse_summary(stdout: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let num = |s: &str| s.split_whitespace().next()?.parse::<u64>().ok();
    let line = stdout
        .lines()
        .find(|l| l.contains(" calls in ") && l.contains("records sent"))?;
    let calls = num(line.split(" calls in ").next()?)?;
    let sent = num(line.split("records sent ").nth(1)?.split(',').next()?)?;
    let lost = num(line.split("lost ").nth(1)?.split(',').next()?)?;
    let undecodable = line.split("undecodable ").nth(1).and_then(num).unwrap_or(0);
    let events = stdout
        .lines()
        .find_map(|l| l.strip_prefix("other events: "))
        .map(|l| l.split(", ").filter_map(num).sum::<u64>())
        .unwrap_or(0);
    Some((calls, sent, lost, undecodable, events))
}

/// Rows of a CSV file with a header, checking that it ends on a whole row.
fn csv_rows(path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        text.last() == Some(&b'\n'),
        "{} does not end on a whole row",
        path.display()
    );
    Ok(text
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        .saturating_sub(1) as u64)
}

/// Runs the soak; returns its report, or fails with every problem found.
pub fn run(args: &Args, bins: &Path) -> anyhow::Result<Report> {
    let secs = args.secs()?;
    let scratch = crate::scratch("soak")?;
    let truth = scratch.path().join("soak-truth.json");
    let csv = args
        .csv
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev/null"));
    let mut child = Command::new(bins.join("profiler"))
        .arg("--bounded")
        .args(["--show", "calls"])
        .arg("--csv")
        .arg(&csv)
        .arg("--")
        .arg(bins.join("workloads"))
        .args([
            "flood",
            "--duration",
            &format!("{secs}s"),
            "--size",
            &args.size.to_string(),
        ])
        .arg("--truth")
        .arg(&truth)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {}", bins.join("profiler").display()))?;
    let pid = child.id();
    let (tx, started) = mpsc::channel();
    let stderr = child.stderr.take().context("no stderr")?;
    // The report comes on stderr, after the banner.
    let err_thread = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("Tracing ") {
                let _ = tx.send(());
            }
            eprintln!("  | {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut stdout = child.stdout.take().context("no stdout")?;
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });

    let mut report = Report {
        seconds: secs,
        ..Report::default()
    };
    let attached = started.recv_timeout(Duration::from_secs(60)).is_ok();
    if attached {
        let traced_at = Instant::now();
        // Let the ring buffer and the tables fill once before the first sample.
        std::thread::sleep(Duration::from_secs(2).min(Duration::from_secs(secs) / 4));
        let t0 = Instant::now();
        let mut next_note = 30;
        while child.try_wait()?.is_none() {
            // Samples count while the workload runs; after it the profiler tears down.
            let flooding = traced_at.elapsed() < Duration::from_secs(secs);
            if let Some(kib) = rss_kib(pid).filter(|_| flooding) {
                if report.samples == 0 {
                    report.rss_start_kib = kib;
                    eprintln!("soak: profiler pid {pid}, memory at start {kib} KiB");
                }
                report.rss_end_kib = kib;
                report.rss_max_kib = report.rss_max_kib.max(kib);
                report.samples += 1;
            }
            let el = t0.elapsed().as_secs();
            if el >= next_note {
                eprintln!(
                    "soak: {el}s of {secs}s, profiler memory {} KiB (start {} KiB)",
                    report.rss_end_kib, report.rss_start_kib
                );
                next_note += 30;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let status = child.wait()?;
    let text = err_thread.join().unwrap_or_default();
    let stdout = out_thread.join().unwrap_or_default();
    println!("{stdout}");
    anyhow::ensure!(attached, "the profiler never started tracing ({status})");
    anyhow::ensure!(status.success(), "the profiler failed ({status})");
    let (calls, sent, lost, undecodable, events) = parse_summary(&text).context(
        "the profiler's summary line (`N calls in …; records sent S, lost L`) is missing",
    )?;
    report.calls_seen = calls;
    report.records_sent = sent;
    report.records_lost = lost;
    report.undecodable = undecodable;
    report.events_seen = events;
    report.workload_calls = workloads::truth::Truth::read(&truth)?.messages;
    if args.csv.is_some() {
        report.csv_rows = Some(csv_rows(&csv)?);
    }
    println!(
        "soak: {secs}s; profiler memory at start {} KiB, at end {} KiB (max {} KiB, {} samples); \
         records sent {sent}, seen {}, lost {lost}; workload receive calls {}",
        report.rss_start_kib,
        report.rss_end_kib,
        report.rss_max_kib,
        report.samples,
        calls + events + undecodable,
        report.workload_calls
    );
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let problems = report.problems(args.max_growth_mib);
    anyhow::ensure!(problems.is_empty(), "soak failed: {}", problems.join("; "));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_parse() {
        let out = "recvfrom socket: 3 calls\n\n1234 calls in 2.00s; records sent 1300, lost 60, undecodable 1\nother events: 2 signal events, 3 copies outside traced calls\n";
        assert_eq!(parse_summary(out), Some((1234, 1300, 60, 1, 5)));
        assert_eq!(
            parse_summary("7 calls in 0.10s; records sent 7, lost 0\n"),
            Some((7, 7, 0, 0, 0))
        );
        assert_eq!(parse_summary("nothing\n"), None);
    }

    #[test]
    fn problems_are_found() {
        let ok = Report {
            rss_start_kib: 10_000,
            rss_end_kib: 10_500,
            samples: 5,
            calls_seen: 100,
            records_sent: 110,
            records_lost: 3,
            events_seen: 10,
            workload_calls: 103,
            csv_rows: Some(100),
            ..Report::default()
        };
        assert!(ok.problems(16).is_empty(), "{:?}", ok.problems(16));
        let grown = Report {
            rss_end_kib: 40_000,
            ..ok.clone()
        };
        assert!(grown.problems(16)[0].contains("grew"));
        let missing = Report {
            calls_seen: 90,
            csv_rows: Some(90),
            ..ok.clone()
        };
        assert_eq!(missing.problems(16).len(), 2, "{:?}", missing.problems(16));
        let short_csv = Report {
            csv_rows: Some(99),
            ..ok
        };
        assert!(short_csv.problems(16)[0].contains("CSV"));
    }
}
