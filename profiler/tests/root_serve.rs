//! Root tests of the system-wide modes: `--all` (and `--comm`) trace every process but the
//! profiler, in summary mode, and list a workload started after the probes with exactly the
//! calls it made. Built only with the `root-tests` feature (`cargo xtask test` turns it on);
//! there, a test that cannot run fails.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{assert_root, profiler_bin, scratch, workloads_bin};
use workloads::truth::Truth;

/// One line of the system-wide table.
#[derive(Debug)]
struct Row {
    pid: u32,
    comm: String,
    calls: u64,
    model: String,
}

/// Runs the profiler with `args` (a system-wide run that ends by itself), starts the paced
/// blocking workload once the probes are attached, and returns the table's rows, the
/// profiler's pid and the workload's truth.
fn system_wide(name: &str, args: &[&str]) -> (Vec<Row>, u32, Truth, String) {
    assert_root();
    let dir = scratch(name);
    let truth_path = dir.join("truth.json");
    let mut prof = Command::new(profiler_bin())
        .args(args)
        .args(["--calls", "recvfrom"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the profiler");
    let (tx, rx) = mpsc::channel();
    let err = prof.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.starts_with("Tracing every process") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = prof.kill();
        panic!(
            "the profiler never started tracing: {}",
            reader.join().unwrap_or_default()
        );
    }
    let status = Command::new(workloads_bin())
        .args([
            "blocking",
            "--interval",
            "5ms",
            "--count",
            "100",
            "--size",
            "4096",
        ])
        .arg("--truth")
        .arg(&truth_path)
        .stdout(Stdio::null())
        .status()
        .expect("run the workload");
    assert!(status.success(), "workload failed: {status}");
    let ended = prof.wait().expect("wait for the profiler");
    let stderr = reader.join().unwrap_or_default();
    assert!(ended.success(), "profiler failed: {ended}\n{stderr}");
    let truth = Truth::read(&truth_path).expect("truth");
    let _ = std::fs::remove_dir_all(&dir);
    (rows(&stderr), prof.id(), truth, stderr)
}

/// The rows of the table under its `pid comm calls …` header.
fn rows(report: &str) -> Vec<Row> {
    report
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("pid comm"))
        .skip(1)
        .map_while(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Row {
                pid: f.first()?.parse().ok()?,
                comm: f.get(1)?.to_string(),
                calls: f.get(2)?.parse().ok()?,
                model: f.last()?.to_string(),
            })
        })
        .collect()
}

#[test]
fn all_lists_the_workload_with_every_call_and_never_the_profiler() {
    let (rows, me, truth, report) = system_wide("all", &["--all", "-d", "3s"]);
    assert!(
        rows.iter().all(|r| r.pid != me),
        "the profiler traced itself:\n{report}"
    );
    let w = rows
        .iter()
        .find(|r| r.pid == truth.pid)
        .unwrap_or_else(|| panic!("workload pid {} not listed:\n{report}", truth.pid));
    // The workload started after the probes and ended before the run: every recvfrom it made
    // is counted.
    assert_eq!(w.calls, truth.calls.len() as u64, "{report}");
    assert_eq!(w.comm, "workloads", "{report}");
    assert_eq!(w.model, "blocking", "{report}");
}

#[test]
fn comm_traces_only_processes_of_that_name() {
    let (rows, _, truth, report) = system_wide("comm", &["--comm", "workloads", "-d", "3s"]);
    assert!(!rows.is_empty(), "nothing listed:\n{report}");
    assert!(
        rows.iter().all(|r| r.comm == "workloads"),
        "another command traced:\n{report}"
    );
    let w = rows
        .iter()
        .find(|r| r.pid == truth.pid)
        .unwrap_or_else(|| panic!("workload pid {} not listed:\n{report}", truth.pid));
    assert_eq!(w.calls, truth.calls.len() as u64, "{report}");
}
