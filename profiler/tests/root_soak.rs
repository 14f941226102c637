//! Root test of the soak: `cargo xtask soak` run briefly on the binaries built beside the
//! tests; the profiler's memory stays flat while it streams a flood of calls, and every record
//! the kernel sent reaches the CSV. Built only with the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_short_soak_keeps_memory_flat_and_loses_nothing_in_user_space() {
    assert_root();
    let dir = scratch("soak");
    let csv = dir.join("calls.csv");
    let report = dir.join("report.json");
    let bins = profiler_bin()
        .parent()
        .expect("binary folder")
        .to_path_buf();
    let out = Command::new(sibling_bin("xtask"))
        .args(["soak", "--seconds", "8", "--max-growth-mib", "16"])
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--csv")
        .arg(&csv)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run xtask soak");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "soak failed:\n{text}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
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
