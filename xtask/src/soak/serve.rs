//! `cargo xtask soak --serve`: runs `profiler serve` on a loopback port, tracing the command
//! name the flood workload runs under (`--comm`, so that the label sets stay the same and
//! memory measures the profiler, not what else the machine runs), while the flood runs;
//! scrapes `/metrics` every second and reports the profiler's memory and the scrape's time at start and end, the
//! records lost and the flood's calls and bytes as served against the workload's own counts.
//! Fails when memory grows past a bound, the scrape time more than doubles, a record is lost or
//! a call of the flood is missing from its series.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{Args, rss_kib};

/// What a serve soak measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServeReport {
    /// Seconds the flood ran.
    pub seconds: u64,
    /// Scrapes while the flood ran (one a second).
    pub scrapes: u64,
    /// The profiler's resident memory at the first scrape, KiB.
    pub rss_start_kib: u64,
    /// Its resident memory at the last scrape while the flood ran, KiB.
    pub rss_end_kib: u64,
    /// The largest resident memory sampled, KiB.
    pub rss_max_kib: u64,
    /// Median time of the first scrapes (up to 10), as the client saw it, microseconds.
    pub scrape_start_us: f64,
    /// Median time of the last scrapes (up to 10), microseconds.
    pub scrape_end_us: f64,
    /// Label sets served at the first and at the last scrape.
    pub series_start: u64,
    pub series_end: u64,
    /// `ioprof_records_lost_total` at the end.
    pub records_lost: u64,
    /// `ioprof_summary_full_total` at the end (calls not summed: the kernel's map was full).
    pub summary_full: u64,
    /// Receive calls and bytes the flood made (its own count).
    pub workload_calls: u64,
    pub workload_bytes: u64,
    /// The flood's calls and bytes as served (its command name's `recvfrom` series).
    pub served_calls: u64,
    pub served_bytes: u64,
}

impl ServeReport {
    /// What is wrong with this run, if anything.
    pub fn problems(&self, max_growth_mib: u64, max_scrape_growth: f64) -> Vec<String> {
        let mut p = Vec::new();
        let growth = self.rss_end_kib.saturating_sub(self.rss_start_kib);
        if growth > max_growth_mib << 10 {
            p.push(format!(
                "the profiler's memory grew by {growth} KiB (more than {max_growth_mib} MiB)"
            ));
        }
        if self.scrape_end_us > max_scrape_growth * self.scrape_start_us {
            p.push(format!(
                "a scrape took {:.0} µs at the end, {:.0} µs at the start (more than \
                 {max_scrape_growth}×)",
                self.scrape_end_us, self.scrape_start_us
            ));
        }
        if self.records_lost > 0 {
            p.push(format!("{} records lost", self.records_lost));
        }
        if (self.served_calls, self.served_bytes) != (self.workload_calls, self.workload_bytes) {
            p.push(format!(
                "the flood made {} calls for {} bytes; its series count {} calls for {} bytes",
                self.workload_calls, self.workload_bytes, self.served_calls, self.served_bytes
            ));
        }
        if self.scrapes < 2 {
            p.push("fewer than two scrapes: the run was too short".into());
        }
        p
    }
}

/// The body of `GET /metrics` from `addr`.
fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut all = String::new();
    s.read_to_string(&mut all)?;
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    anyhow::ensure!(head.contains(" 200"), "/metrics answered {head}");
    Ok(body.to_string())
}

/// The sum of the samples of `name` whose labels include every one of `with`
/// (`comm="x"` …); an unlabelled sample when `with` is empty.
pub fn sum(text: &str, name: &str, with: &[&str]) -> f64 {
    text.lines()
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = match series.strip_prefix(name)? {
                "" => "",
                rest => rest.strip_prefix('{')?.strip_suffix('}')?,
            };
            let matches = if with.is_empty() {
                labels.is_empty()
            } else {
                with.iter().all(|w| labels.split(',').any(|l| l == *w))
            };
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The median of `v` (0 when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Starts `profiler serve` on a free loopback port, tracing command `comm`; the child and the
/// address it serves.
fn start_server(bins: &Path, comm: &str) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(bins.join("profiler"))
        .args(["serve", "--listen", "127.0.0.1:0", "--comm", comm])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {}", bins.join("profiler").display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("http://") {
                let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
            }
            eprintln!("  | {line}");
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => Ok((child, addr)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("profiler serve never said where it listens")
        }
    }
}

/// Stops `child` with SIGTERM; fails unless it ends with status 0 within 10 seconds.
fn stop(mut child: Child) -> anyhow::Result<()> {
    // SAFETY: kill(2) with a pid this process spawned and has not reaped; no memory is shared.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait()? {
            anyhow::ensure!(s.success(), "profiler serve ended badly on SIGTERM ({s})");
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            anyhow::bail!("profiler serve did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the serve soak; returns its report, or fails with every problem found.
pub fn run(args: &Args, bins: &Path) -> anyhow::Result<ServeReport> {
    let secs = args.secs()?;
    let scratch = crate::scratch("soak-serve")?;
    // A command name of its own, so that its series are the flood's alone.
    let comm = format!("soak{}", std::process::id() % 100_000);
    let flood_bin = scratch.path().join(&comm);
    std::fs::copy(bins.join("workloads"), &flood_bin)
        .with_context(|| format!("cannot copy the workload to {}", flood_bin.display()))?;
    let truth = scratch.path().join("truth.json");
    let (server, addr) = start_server(bins, &comm)?;
    let pid = server.id();
    let mut flood = Command::new(&flood_bin)
        .args(["flood", "--duration", &format!("{secs}s")])
        .args(["--size", &args.size.to_string()])
        .arg("--truth")
        .arg(&truth)
        .stdout(Stdio::null())
        .spawn()
        .context("failed to start the flood")?;
    let mut r = ServeReport {
        seconds: secs,
        ..ServeReport::default()
    };
    let sampled = sample(&addr, pid, &mut flood, secs, &mut r);
    let flooded = flood.wait()?;
    let last = sampled.and_then(|()| scrape(&addr));
    let stopped = stop(server);
    let text = last?;
    stopped?;
    anyhow::ensure!(flooded.success(), "the flood failed ({flooded})");
    let t = workloads::truth::Truth::read(&truth)?;
    let flood_series = [format!("comm=\"{comm}\""), "call=\"recvfrom\"".to_string()];
    let with: Vec<&str> = flood_series.iter().map(String::as_str).collect();
    r.served_calls = sum(&text, "ioprof_calls_total", &with) as u64;
    r.served_bytes = sum(&text, "ioprof_bytes_total", &with) as u64;
    r.workload_calls = t.messages;
    r.workload_bytes = t.bytes;
    r.records_lost = sum(&text, "ioprof_records_lost_total", &[]) as u64;
    r.summary_full = sum(&text, "ioprof_summary_full_total", &[]) as u64;
    println!(
        "soak --serve: {secs}s, {} scrapes; profiler memory at start {} KiB, at end {} KiB \
         (max {} KiB); scrape time at start {:.0} µs, at end {:.0} µs; label sets {} → {}; \
         records lost {}, calls not summed {}; flood: {} calls, {} bytes, served {} calls, {} bytes",
        r.scrapes,
        r.rss_start_kib,
        r.rss_end_kib,
        r.rss_max_kib,
        r.scrape_start_us,
        r.scrape_end_us,
        r.series_start,
        r.series_end,
        r.records_lost,
        r.summary_full,
        r.workload_calls,
        r.workload_bytes,
        r.served_calls,
        r.served_bytes
    );
    if let Some(p) = &args.report {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    let problems = r.problems(args.max_growth_mib, args.max_scrape_growth);
    anyhow::ensure!(problems.is_empty(), "soak failed: {}", problems.join("; "));
    Ok(r)
}

/// Scrapes once a second while the flood runs (after it settled), sampling the profiler's
/// memory beside each scrape.
fn sample(
    addr: &str,
    pid: u32,
    flood: &mut Child,
    secs: u64,
    r: &mut ServeReport,
) -> anyhow::Result<()> {
    let started = Instant::now();
    // Let the kernel's map and the series fill once before the first sample.
    std::thread::sleep(Duration::from_secs(2).min(Duration::from_secs(secs) / 4));
    let mut times = Vec::new();
    let mut next_note = 30;
    while flood.try_wait()?.is_none() && started.elapsed() < Duration::from_secs(secs) {
        let t0 = Instant::now();
        let text = scrape(addr)?;
        times.push(t0.elapsed().as_secs_f64() * 1e6);
        let series = sum(&text, "ioprof_series", &[]) as u64;
        let kib = rss_kib(pid).context("the profiler's memory is unreadable")?;
        if r.scrapes == 0 {
            (r.rss_start_kib, r.series_start) = (kib, series);
        }
        (r.rss_end_kib, r.series_end) = (kib, series);
        r.rss_max_kib = r.rss_max_kib.max(kib);
        r.scrapes += 1;
        let el = started.elapsed().as_secs();
        if el >= next_note {
            eprintln!(
                "soak --serve: {el}s of {secs}s, memory {kib} KiB (start {} KiB), \
                 scrape {:.0} µs, {series} label sets",
                r.rss_start_kib,
                times.last().copied().unwrap_or(0.0)
            );
            next_note += 30;
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t0.elapsed()));
    }
    let k = (times.len() / 2).clamp(1, 10);
    r.scrape_start_us = median(&times[..k.min(times.len())]);
    r.scrape_end_us = median(&times[times.len().saturating_sub(k)..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_pick_the_labelled_or_the_bare_samples() {
        let text = "# HELP x y\nioprof_calls_total{comm=\"a\",call=\"recvfrom\",model=\"m\"} 3\n\
                    ioprof_calls_total{comm=\"a\",call=\"read\",model=\"m\"} 4\n\
                    ioprof_calls_total{comm=\"ab\",call=\"recvfrom\",model=\"m\"} 5\n\
                    ioprof_calls_total_x 9\nioprof_series 3\n";
        let a = ["comm=\"a\"", "call=\"recvfrom\""];
        assert_eq!(sum(text, "ioprof_calls_total", &a), 3.0);
        assert_eq!(sum(text, "ioprof_calls_total", &["comm=\"a\""]), 7.0);
        assert_eq!(sum(text, "ioprof_series", &[]), 3.0);
        assert_eq!(sum(text, "ioprof_calls_total", &[]), 0.0);
    }

    #[test]
    fn problems_are_found() {
        let ok = ServeReport {
            scrapes: 5,
            rss_start_kib: 10_000,
            rss_end_kib: 12_000,
            scrape_start_us: 800.0,
            scrape_end_us: 1500.0,
            workload_calls: 10,
            workload_bytes: 100,
            served_calls: 10,
            served_bytes: 100,
            ..ServeReport::default()
        };
        assert!(
            ok.problems(16, 2.0).is_empty(),
            "{:?}",
            ok.problems(16, 2.0)
        );
        for (bad, what) in [
            (
                ServeReport {
                    rss_end_kib: 30_000,
                    ..ok.clone()
                },
                "grew",
            ),
            (
                ServeReport {
                    scrape_end_us: 1700.0,
                    ..ok.clone()
                },
                "2×",
            ),
            (
                ServeReport {
                    records_lost: 1,
                    ..ok.clone()
                },
                "lost",
            ),
            (
                ServeReport {
                    served_calls: 9,
                    ..ok.clone()
                },
                "series count",
            ),
        ] {
            let p = bad.problems(16, 2.0);
            assert!(p.len() == 1 && p[0].contains(what), "{what}: {p:?}");
        }
    }
}
