//! Root tests of the soak: `cargo xtask soak` run briefly on the binaries built beside the
//! tests; the profiler's memory stays flat while it streams a flood of calls, and every record
//! the kernel sent reaches the CSV; with `--serve`, `profiler serve` scraped every second while
//! the flood runs loses nothing and serves every call of it. Built only with the `root-tests`
//! feature.
#![cfg(feature = "root-tests")]

mod common;

use std::{ffi::OsStr, path::Path, process::Command};

use common::*;

/// Runs `xtask soak` for 8 seconds with `args` on the binaries beside the tests; its report.
fn soak(dir: &Path, args: &[&OsStr]) -> serde_json::Value {
    let report = dir.join("report.json");
    let bins = profiler_bin()
        .parent()
        .expect("binary folder")
        .to_path_buf();
    let out = Command::new(sibling_bin("xtask"))
        .args(["soak", "--seconds", "8", "--max-growth-mib", "16"])
        .args(args)
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run xtask soak");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "soak {args:?} failed:\n{text}");
    serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json")
}

#[test]
fn a_short_soak_keeps_memory_flat_and_loses_nothing_in_user_space() {
    assert_root();
    let dir = scratch("soak");
    let csv = dir.join("calls.csv");
    let r = soak(&dir, &["--csv".as_ref(), csv.as_os_str()]);
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    // A flood: far more calls than a list of them could hold in 16 MiB.
    assert!(n("calls_seen") > 100_000, "{r}");
    assert!(n("samples") >= 3, "{r}");
    assert!(
        n("rss_end_kib") <= n("rss_start_kib") + (16 << 10),
        "memory grew: {r}"
    );
    assert_eq!(
        n("calls_seen") + n("events_seen") + n("undecodable"),
        n("records_sent"),
        "{r}"
    );
    assert!(
        n("calls_seen") + n("records_lost") >= n("workload_calls"),
        "{r}"
    );
    let rows = read_complete_csv(&csv);
    assert_eq!(rows.len() as u64, n("calls_seen"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_short_serve_soak_keeps_memory_flat_loses_nothing_and_serves_every_call() {
    assert_root();
    let dir = scratch("soak-serve");
    // A few seconds' scrape times on a shared machine are noise: the 10-minute soak judges
    // their growth; this run checks the counts, the memory and that times were measured.
    let r = soak(
        &dir,
        &[
            "--serve".as_ref(),
            "--max-scrape-growth".as_ref(),
            "1000".as_ref(),
        ],
    );
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    assert!(n("scrapes") >= 3, "{r}");
    // A flood: far more calls than the scrapes could have missed by chance.
    assert!(n("workload_calls") > 100_000, "{r}");
    assert_eq!(n("served_calls"), n("workload_calls"), "{r}");
    assert_eq!(n("served_bytes"), n("workload_bytes"), "{r}");
    assert_eq!(n("records_lost"), 0, "{r}");
    assert!(
        n("rss_end_kib") <= n("rss_start_kib") + (16 << 10),
        "memory grew: {r}"
    );
    assert!(
        f("scrape_start_us") > 0.0 && f("scrape_end_us") > 0.0,
        "{r}"
    );
    assert!(n("series_end") >= 1, "{r}");
    let _ = std::fs::remove_dir_all(dir);
}
