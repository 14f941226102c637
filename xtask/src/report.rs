//! `cargo xtask report`: runs every bundled workload under the profiler with all its exports,
//! compares the file-moving methods over interleaved rounds on one warm file made before
//! anything is traced, then has `ioprof-report` write one HTML page with SVG charts. A
//! progress bar shows on a terminal and stays quiet otherwise.
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{build_release, nix_is_root, setup, workspace, zero_copy};

/// Export options of the profiler and the file each writes in a workload's folder (the names
/// `ioprof-report` reads back).
const EXPORTS: &[(&str, &str)] = &[
    ("--csv", "calls.csv"),
    ("--summary-csv", "summary.csv"),
    ("--json", "calls.jsonl"),
    ("--trace", "trace.json"),
];

/// The methods' comparison in the report's folder (the name `ioprof-report` reads back).
const COMPARISON: &str = "comparison";

/// The profiler command line for one workload's run into `dir`; a file-moving workload moves
/// `file`, made beforehand.
fn run_args(bin: &Path, name: &str, dir: &Path, file: &Path) -> Vec<String> {
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
        if e.kind == workloads::Kind::Method {
            a.extend(["--file".into(), file.display().to_string()]);
        }
    }
    a.push("--truth".into());
    a.push(dir.join("truth.json").display().to_string());
    a
}

/// The workload options of the file-moving methods' runs (the catalog's).
fn method_args() -> Vec<String> {
    workloads::entry("splice")
        .map(|e| e.report_args.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default()
}

/// Runs every workload into `out/NAME/`, compares the methods into `out/comparison/`, then
/// writes `out/report.html`.
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
    // The methods' file, made and read into the page cache before anything is traced.
    let comparison = out.join(COMPARISON);
    if comparison.exists() {
        std::fs::remove_dir_all(&comparison)
            .with_context(|| format!("cannot remove the old {}", comparison.display()))?;
    }
    std::fs::create_dir(&comparison)
        .with_context(|| format!("cannot create {}", comparison.display()))?;
    let mut plan = zero_copy::Plan::new(&bin, &[], &method_args(), Some(comparison.clone()))?;
    plan.comparison_json = Some(comparison.join("comparison.json"));

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
            .args(run_args(&bin, name, &dir, plan.file()))
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
    pb.set_message("comparing the file-moving methods");
    let compared = pb.suspend(|| {
        plan.rounds(&workloads::methods::Method::ALL)
            .and_then(|runs| plan.finish(&runs))
    });
    if let Err(e) = &compared {
        eprintln!("xtask: the methods' comparison failed: {e:#}");
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
    if !failed.is_empty() || compared.is_err() {
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
        let a = run_args(
            Path::new("/b"),
            "splice",
            Path::new("/o/splice"),
            Path::new("/f.bin"),
        );
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
        assert!(s.contains("--file /f.bin"), "the file made beforehand: {s}");
        assert_eq!(method_args(), ["--size", "64MiB"]);
    }
}
