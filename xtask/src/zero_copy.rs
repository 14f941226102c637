//! `cargo xtask profile zero-copy` (every file-moving method on the same file, side by side)
//! and the comparison against `read-write` that follows `cargo xtask profile METHOD`.
use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::Context as _;
use workloads::methods::Method;

/// The method a workload name runs, when a run of it is worth comparing with `read-write`.
pub fn compared_method(name: &str) -> Option<Method> {
    Method::from_name(name).filter(|m| *m != Method::ReadWrite)
}

/// Workload options minus `--truth FILE` (each extra run would overwrite the user's file).
fn without_truth(target: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = target.iter();
    while let Some(a) = it.next() {
        if a == "--truth" {
            it.next();
        } else if !a.starts_with("--truth=") {
            out.push(a.clone());
        }
    }
    out
}

fn scratch() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("ioprof-zero-copy-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d)
}

/// Runs `m` under the profiler with its summary kept in `dir/NAME.json`; the report goes to
/// the terminal when `show`, else to `dir/NAME.txt`.
fn run_method(
    bin: &Path,
    dir: &Path,
    m: Method,
    prof: &[String],
    target: &[String],
    show: bool,
) -> anyhow::Result<PathBuf> {
    let json = dir.join(format!("{}.json", m.name()));
    let mut cmd = Command::new(bin.join("profiler"));
    cmd.args(prof)
        .arg("--movement-json")
        .arg(&json)
        .args(["--label", m.name(), "--"])
        .arg(bin.join("workloads"))
        .arg(m.name())
        .args(target);
    if !show {
        let out = dir.join(format!("{}.txt", m.name()));
        let f = std::fs::File::create(&out)
            .with_context(|| format!("cannot write {}", out.display()))?;
        // The report comes on stderr; the workload's own lines on stdout.
        let f2 = f
            .try_clone()
            .with_context(|| format!("cannot write {}", out.display()))?;
        cmd.stdout(f2).stderr(f);
    }
    let status = cmd.status().context("failed to start the profiler")?;
    anyhow::ensure!(
        status.success(),
        "the {} run failed ({status}){}",
        m.name(),
        if show {
            String::new()
        } else {
            format!(
                "; its report: {}",
                dir.join(format!("{}.txt", m.name())).display()
            )
        }
    );
    Ok(json)
}

fn compare(bin: &Path, jsons: &[PathBuf]) -> anyhow::Result<()> {
    let list = jsons
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let status = Command::new(bin.join("profiler"))
        .arg("--compare")
        .arg(list)
        .status()
        .context("failed to start the profiler")?;
    anyhow::ensure!(status.success(), "the comparison failed ({status})");
    Ok(())
}

/// `cargo xtask profile METHOD`: the method's own report, then the same file moved with
/// `read` + `write`, and what the method saves against it.
pub fn against_read_write(
    bin: &Path,
    m: Method,
    prof: &[String],
    target: &[String],
) -> anyhow::Result<ExitCode> {
    let dir = scratch()?;
    let json = run_method(bin, &dir, m, prof, target, true)?;
    println!(
        "\nThe same file moved with read + write, for comparison (report in {}):",
        dir.join("read-write.txt").display()
    );
    let base = run_method(
        bin,
        &dir,
        Method::ReadWrite,
        &[],
        &without_truth(target),
        false,
    )?;
    compare(bin, &[base, json])?;
    println!(
        "\n  {:<16} {}",
        Method::ReadWrite.name(),
        Method::ReadWrite.copies()
    );
    println!("  {:<16} {}", m.name(), m.copies());
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask profile zero-copy`: every method on the same file, then side by side.
pub fn all(bin: &Path, prof: &[String], target: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !prof.iter().any(|a| a == "--csv" || a == "--movement-json"),
        "zero-copy runs several workloads: --csv and --movement-json apply to one workload only"
    );
    let dir = scratch()?;
    let target = without_truth(target);
    let mut jsons = Vec::new();
    for m in Method::ALL {
        eprintln!("xtask: profiling {:<16} {}", m.name(), m.copies());
        jsons.push(run_method(bin, &dir, m, prof, &target, false)?);
    }
    println!(
        "\nEvery method on the same file (full reports in {}):\n",
        dir.display()
    );
    compare(bin, &jsons)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_is_left_out_of_extra_runs() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            without_truth(&s(&[
                "--size",
                "1MiB",
                "--truth",
                "t.json",
                "--truth=u.json",
                "--cold"
            ])),
            s(&["--size", "1MiB", "--cold"])
        );
        assert_eq!(compared_method("splice"), Some(Method::Splice));
        assert_eq!(compared_method("read-write"), None);
        assert_eq!(compared_method("blocking"), None);
    }
}
