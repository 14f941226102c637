//! Helpers shared by the root test files: scratch folders, the workloads binary, the root
//! check, and a workload run under the profiler with its CSV rows and truth.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use profiler::export::CallRow;
use workloads::truth::Truth;

/// A scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ioprof-root-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

/// The `workloads` binary built beside this test (`cargo xtask test` builds it first).
pub fn workloads_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target folder");
    let bin = dir.join("workloads");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo xtask test`, which builds it",
        bin.display()
    );
    bin
}

pub fn assert_root() {
    assert!(
        profiler::privilege::missing().is_empty(),
        "root tests need root (or CAP_BPF + CAP_PERFMON): run `sudo cargo xtask test`"
    );
}

/// What one profiled workload run left behind.
pub struct Run {
    /// The profiler's output and exit status.
    pub out: Output,
    /// The per-call CSV.
    pub rows: Vec<CallRow>,
    /// The workload's truth.
    pub truth: Truth,
    /// The data-movement summary (`--movement-json`).
    pub movement: profiler::movement::Movement,
}

/// Runs a workload under the profiler; returns its output, the CSV rows and the truth.
pub fn profile(name: &str, workload_args: &[&str]) -> (Output, Vec<CallRow>, Truth) {
    let r = profile_run(name, workload_args);
    (r.out, r.rows, r.truth)
}

/// Runs a workload under the profiler and keeps everything it wrote.
pub fn profile_run(name: &str, workload_args: &[&str]) -> Run {
    assert_root();
    let dir = scratch(name);
    let csv = dir.join("calls.csv");
    let truth = dir.join("truth.json");
    let movement = dir.join("movement.json");
    let out = Command::new(env!("CARGO_BIN_EXE_profiler"))
        .arg("--csv")
        .arg(&csv)
        .arg("--movement-json")
        .arg(&movement)
        .arg("--")
        .arg(workloads_bin())
        .args(workload_args)
        .arg("--truth")
        .arg(&truth)
        .output()
        .expect("run profiler");
    assert!(
        out.status.success(),
        "profiler failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let rows: Vec<CallRow> = csv::Reader::from_path(&csv)
        .expect("open csv")
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("csv rows");
    let truth = Truth::read(&truth).expect("truth");
    let movement = serde_json::from_str(&std::fs::read_to_string(&movement).expect("movement"))
        .expect("movement json");
    let _ = std::fs::remove_dir_all(dir);
    Run {
        out,
        rows,
        truth,
        movement,
    }
}
