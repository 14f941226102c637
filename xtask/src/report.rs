//! `cargo xtask report`: runs every bundled workload under the profiler with all its exports,
//! then has `ioprof-report` write one HTML page with SVG charts. A progress bar shows on a
//! terminal and stays quiet otherwise.
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{build_release, nix_is_root, setup, workspace};

/// Export options of the profiler and the file each writes in a workload's folder (the names
/// `ioprof-report` reads back).
const EXPORTS: &[(&str, &str)] = &[
    ("--csv", "calls.csv"),
    ("--summary-csv", "summary.csv"),
    ("--json", "calls.jsonl"),
    ("--trace", "trace.json"),
];

/// The profiler command line for one workload's run into `dir`.
fn run_args(bin: &Path, name: &str, dir: &Path) -> Vec<String> {
    let mut a = Vec::new();
    for (opt, file) in EXPORTS {
        a.push(opt.to_string());
        a.push(dir.join(file).display().to_string());
    }
    a.push("--".into());
    a.push(bin.join("workloads").display().to_string());
    a.push(name.into());
    if let Some(e) = workloads::entry(name) {
        a.extend(e.report_args.iter().map(|s| s.to_string()));
    }
    a.push("--truth".into());
    a.push(dir.join("truth.json").display().to_string());
    a
}

/// Runs every workload into `out/NAME/`, then writes `out/report.html`.
pub fn report(out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let out = out.unwrap_or_else(|| workspace().join("target/report"));
    anyhow::ensure!(
        nix_is_root(),
        "the report loads kernel probes: run `cargo xtask report` as root (sudo -E cargo xtask report)"
    );
    let env = setup::ensure()?;
    build_release(&env)?;
    let bin = workspace().join("target/release");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;

    // Every workload but the benchmark's tight loops.
    let names: Vec<&str> = workloads::NAMES
        .iter()
        .copied()
        .filter(|n| workloads::entry(n).is_none_or(|e| e.kind != workloads::Kind::Loop))
        .collect();
    // indicatif draws only on a terminal: piped or in CI the bar is hidden.
    let pb = ProgressBar::new(names.len() as u64 + 1);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .context("bad progress template")?,
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    let mut failed = Vec::new();
    for name in &names {
        pb.set_message(format!("profiling {name}"));
        let dir = out.join(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let log_path = dir.join("profiler.txt");
        let log = File::create(&log_path)
            .with_context(|| format!("cannot write {}", log_path.display()))?;
        let status = Command::new(bin.join("profiler"))
            .args(run_args(&bin, name, &dir))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("failed to start the profiler")?;
        if !status.success() {
            pb.suspend(|| {
                eprintln!(
                    "xtask: {name} failed ({status}): see {}",
                    log_path.display()
                )
            });
            // A half-written run must not reach the page.
            let _ = std::fs::remove_file(dir.join("calls.csv"));
            failed.push(*name);
        }
        pb.inc(1);
    }
    pb.set_message("writing the HTML report");
    let html = Command::new(bin.join("ioprof-report"))
        .arg(&out)
        .stderr(Stdio::inherit())
        .output()
        .context("failed to start ioprof-report")?;
    pb.finish_and_clear();
    anyhow::ensure!(
        html.status.success(),
        "ioprof-report failed ({})",
        html.status
    );
    println!(
        "wrote {} ({} workloads; per-workload CSV, JSON lines and Perfetto traces beside it)",
        String::from_utf8_lossy(&html.stdout).trim(),
        names.len() - failed.len()
    );
    if !failed.is_empty() {
        eprintln!("xtask: failed workloads: {}", failed.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_writes_every_export_and_its_truth() {
        let a = run_args(Path::new("/b"), "splice", Path::new("/o/splice"));
        let s = a.join(" ");
        assert!(
            s.starts_with(
                "--csv /o/splice/calls.csv --summary-csv /o/splice/summary.csv --json \
                 /o/splice/calls.jsonl --trace /o/splice/trace.json -- /b/workloads splice"
            ),
            "{s}"
        );
        assert!(s.ends_with("--truth /o/splice/truth.json"), "{s}");
        assert!(s.contains("--size 64MiB"), "catalog options: {s}");
    }
}
