//! Project tasks: installs the eBPF toolchain where it is missing, builds, runs workloads
//! under the profiler, and runs every test. Orchestration only.
mod bench;
mod compare;
mod models;
mod report;
mod setup;
mod soak;
mod zero_copy;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
EXAMPLES:
  cargo xtask profile splice                               splice a 256 MiB file to a socket, show the stages
  cargo xtask profile splice --rounds 5                     5 interleaved rounds of splice and read-write
  cargo xtask profile zero-copy --size 64MiB               every file-moving method, side by side
  cargo xtask profile blocking --interval 5ms --count 200 --csv out.csv
  cargo xtask profile models --interval 5ms --size 16KiB --count 200   one table over every I/O model
  cargo xtask profile --pid 1234 -d 10s                    trace a running process
  cargo xtask profile -- curl -s localhost:8080            trace a command
  cargo xtask test                                         host and root tests
  cargo xtask report --out /tmp/r                          every workload, one HTML page with charts
  cargo xtask bench                                        what tracing costs, written to BENCHMARKS.md

  cargo xtask soak --minutes 10                            trace a flood for 10 minutes, report memory and records
  cargo xtask soak --serve --minutes 10                    the same under `profiler serve`, scraped every second";

/// Tasks of the I/O profiler project.
#[derive(Debug, Parser)]
#[command(after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what building the probes needs (nightly rust-src, bpf-linker) and mount tracefs.
    Setup,
    /// Set up, then build everything in release.
    Build,
    /// Build, then run a workload (or `--pid PID`, or `-- CMD`) under the profiler.
    ///
    /// Profiler options (--csv, --summary-csv, --json, --trace FILE, --ringbuf-size N,
    /// --calls LIST, --mode, --self-stats, --freq HZ, --folded FILE, --flamegraph FILE.svg,
    /// -d, -v) go to
    /// the profiler; every other option goes to the workload (--interval, --size, --count,
    /// --file, --truth). Workloads: see `workloads --help`. A zero-copy method (splice,
    /// sendfile, …) runs against read-write, `zero-copy` runs every method: the file is made
    /// and read into the page cache first, then the methods run in interleaved rounds
    /// (--rounds N, default 3; --comparison-json FILE keeps the numbers and the verdicts).
    /// --bin-dir DIR uses the profiler and workloads in DIR instead of building them.
    #[command(disable_help_flag = true)]
    Profile {
        /// WORKLOAD [OPTIONS], --pid PID [OPTIONS], or [OPTIONS] -- CMD ARGS…
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run every test: host tests, then the root tests that load the probes.
    Test,
    /// Run every bundled workload under the profiler, write its CSVs, JSON lines and trace,
    /// and one HTML page with charts (DIR/report.html).
    Report {
        /// Folder for the runs and the page (default: target/report).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Measure what tracing costs (untraced, our modes, bpftrace, perf trace, strace) and
    /// write BENCHMARKS.md. Installs the other tracers with apt-get when missing.
    Bench {
        /// Interleaved rounds of every run.
        #[arg(long, default_value_t = 4)]
        reps: usize,
    },
    /// Build, then trace the flood workload for a long time: the profiler's memory at start and
    /// end, records sent, seen and lost.
    Soak(soak::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::ensure().map(|_| ExitCode::SUCCESS),
        Task::Build => setup::ensure()
            .and_then(|env| build_release(&env))
            .map(|_| ExitCode::SUCCESS),
        Task::Profile { args } => profile(&args),
        Task::Test => test(),
        Task::Report { out } => report::report(out),
        Task::Bench { reps } => bench(reps),
        Task::Soak(args) => soak_task(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A private scratch folder (mode 0700, random name, made atomically: never one that another
/// user could have made first), removed when dropped unless kept.
pub(crate) fn scratch(kind: &str) -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt as _;
    tempfile::Builder::new()
        .prefix(&format!("ioprof-{kind}-"))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .with_context(|| {
            format!(
                "cannot create a scratch folder in {}",
                std::env::temp_dir().display()
            )
        })
}

/// Creates a file the tool writes for itself: never an existing file or a planted link.
pub(crate) fn create_new(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn cargo(env: &setup::Env) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace()).env("PATH", &env.path);
    c
}

fn run(mut cmd: Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

pub(crate) fn build_release(env: &setup::Env) -> anyhow::Result<()> {
    let mut c = cargo(env);
    c.args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "profiler",
        "-p",
        "workloads",
    ]);
    run(c)
}

/// The pseudo-workload that runs every file-moving method and compares them.
const ZERO_COPY: &str = "zero-copy";

/// Options that belong to the profiler; each takes a value unless listed in `FLAGS`.
const PROFILER_OPTS: &[&str] = &[
    "--mode",
    "--csv",
    "--summary-csv",
    "--json",
    "--trace",
    "--model-json",
    "--ringbuf-size",
    "--calls",
    "-d",
    "--duration",
    "-p",
    "--pid",
    "--freq",
    "--folded",
    "--flamegraph",
    "--movement-json",
    "--label",
    "--compare",
];
const PROFILER_FLAGS: &[&str] = &["-v", "--verbose", "--self-stats"];

/// Splits `profile` arguments into the profiler's and the target's.
fn split_profile_args(
    args: &[String],
) -> anyhow::Result<(Vec<String>, Vec<String>, Option<String>)> {
    let mut prof = Vec::new();
    let mut target = Vec::new();
    let mut workload = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            prof.push(a.clone());
            prof.extend(it.cloned());
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (a.as_str(), None),
        };
        if PROFILER_FLAGS.contains(&name) {
            prof.push(a.clone());
        } else if PROFILER_OPTS.contains(&name) {
            prof.push(name.to_string());
            let v = match inline {
                Some(v) => v.to_string(),
                None => it
                    .next()
                    .with_context(|| format!("{name} needs a value"))?
                    .clone(),
            };
            prof.push(v);
        } else if workload.is_none() && !a.starts_with('-') {
            workload = Some(a.clone());
        } else {
            target.push(a.clone());
        }
    }
    Ok((prof, target, workload))
}

fn profile(args: &[String]) -> anyhow::Result<ExitCode> {
    if args.iter().any(|a| a == "-h" || a == "--help") && !args.iter().any(|a| a == "--") {
        println!(
            "Usage: cargo xtask profile WORKLOAD [OPTIONS]\n       cargo xtask profile models [OPTIONS]\n       cargo xtask profile --pid PID [OPTIONS]\n       cargo xtask profile [OPTIONS] -- CMD ARGS…\n\nWorkloads: {}, {ZERO_COPY} (every method side by side)\n\n{EXAMPLES}",
            workloads::NAMES.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (prof, mut target, workload) = split_profile_args(args)?;
    // Prebuilt binaries (the tests' own): nothing is set up or built.
    let bin_dir = zero_copy::take_option(&mut target, "--bin-dir").map(PathBuf::from);
    if workload.as_deref() == Some("models") {
        return models::profile_all(&prof, &target);
    }
    let has_target = prof.iter().any(|a| a == "--" || a == "-p" || a == "--pid");
    if let Some(w) = &workload {
        anyhow::ensure!(
            workloads::NAMES.contains(&w.as_str()) || w == ZERO_COPY,
            "unknown workload `{w}`; workloads: {}",
            workloads::NAMES.join(", ")
        );
        anyhow::ensure!(
            !has_target,
            "give a workload, or --pid, or -- CMD: not several"
        );
    } else {
        anyhow::ensure!(
            has_target,
            "say what to profile: a workload ({}), --pid PID, or -- CMD ARGS…",
            workloads::NAMES.join(", ")
        );
        anyhow::ensure!(
            target.is_empty(),
            "unexpected arguments: {}",
            target.join(" ")
        );
    }
    let bin = match bin_dir {
        Some(d) => d,
        None => {
            let env = setup::ensure()?;
            build_release(&env)?;
            workspace().join("target/release")
        }
    };
    if let Some(w) = &workload {
        if w == ZERO_COPY {
            return zero_copy::all(&bin, &prof, &target);
        }
        if let Some(m) = zero_copy::compared_method(w) {
            return zero_copy::against_read_write(&bin, m, &prof, &target);
        }
    }
    let mut cmd = Command::new(bin.join("profiler"));
    match workload {
        Some(w) => {
            // A bundled workload is short: per-call records give the table by descriptor
            // kind (`splice file→pipe`), which the in-kernel summary cannot.
            if !prof.iter().any(|a| a == "--mode") {
                cmd.args(["--mode", "per-call"]);
            }
            cmd.args(&prof)
                .arg("--")
                .arg(bin.join("workloads"))
                .arg(w)
                .args(&target);
        }
        None => {
            cmd.args(&prof);
        }
    }
    let status = cmd.status().context("failed to start the profiler")?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

fn bench(reps: usize) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(reps > 0, "--reps must be at least 1");
    let env = setup::ensure()?;
    anyhow::ensure!(
        nix_is_root(),
        "the benchmark loads kernel probes: run `cargo xtask bench` as root"
    );
    build_release(&env)?;
    bench::run(reps)?;
    Ok(ExitCode::SUCCESS)
}

fn soak_task(args: &soak::Args) -> anyhow::Result<ExitCode> {
    // Checked before anything is built.
    args.secs()?;
    let bins = match args.bin_dir() {
        Some(d) => d.to_path_buf(),
        None => {
            let env = setup::ensure()?;
            build_release(&env)?;
            workspace().join("target/release")
        }
    };
    if args.serve {
        soak::serve::run(args, &bins)?;
    } else {
        soak::run(args, &bins)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn test() -> anyhow::Result<ExitCode> {
    let env = setup::ensure()?;
    anyhow::ensure!(
        nix_is_root(),
        "the root tests load kernel probes: run `cargo xtask test` as root (sudo -E cargo xtask test)"
    );
    eprintln!("xtask: building the workspace");
    let mut c = cargo(&env);
    c.args(["build"]);
    run(c)?;
    eprintln!("xtask: host tests");
    let mut c = cargo(&env);
    c.args(["test"]);
    run(c)?;
    eprintln!("xtask: root tests (real probes, one at a time)");
    let mut c = cargo(&env);
    c.args([
        "test",
        "-p",
        "profiler",
        "--features",
        "root-tests",
        "--no-fail-fast",
    ]);
    for name in root_test_files()? {
        c.args(["--test", &name]);
    }
    c.args(["--", "--test-threads=1"]);
    run(c)?;
    Ok(ExitCode::SUCCESS)
}

/// Every root test file: `profiler/tests/root*.rs`, by name without `.rs`.
fn root_test_files() -> anyhow::Result<Vec<String>> {
    let dir = workspace().join("profiler/tests");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("root")
                .is_some()
                .then_some(name)
                .and_then(|n| n.strip_suffix(".rs").map(str::to_string))
        })
        .collect();
    names.sort();
    anyhow::ensure!(!names.is_empty(), "no root test file in {}", dir.display());
    Ok(names)
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn profile_args_split_between_profiler_and_workload() {
        let (p, t, w) = split_profile_args(&s(&[
            "blocking",
            "--interval",
            "5ms",
            "--csv",
            "o.csv",
            "--count=3",
            "-v",
        ]))
        .expect("split");
        assert_eq!(w.as_deref(), Some("blocking"));
        assert_eq!(p, s(&["--csv", "o.csv", "-v"]));
        assert_eq!(t, s(&["--interval", "5ms", "--count=3"]));
    }

    #[test]
    fn command_after_dashes_goes_to_the_profiler() {
        let (p, t, w) =
            split_profile_args(&s(&["--csv=x.csv", "--", "cat", "--x"])).expect("split");
        assert_eq!(w, None);
        assert!(t.is_empty());
        assert_eq!(p, s(&["--csv", "x.csv", "--", "cat", "--x"]));
    }

    #[test]
    fn pid_options_go_to_the_profiler() {
        let (p, t, w) = split_profile_args(&s(&["--pid", "12,13", "-d", "2s"])).expect("split");
        assert_eq!(w, None);
        assert!(t.is_empty());
        assert_eq!(p, s(&["--pid", "12,13", "-d", "2s"]));
    }

    #[test]
    fn every_root_test_file_runs() {
        let files = root_test_files().expect("list");
        assert!(files.contains(&"root".to_string()), "{files:?}");
        assert!(files.contains(&"root_attach".to_string()), "{files:?}");
    }

    #[test]
    fn scratch_folders_are_private_and_unguessable() {
        use std::os::unix::fs::PermissionsExt as _;
        let (a, b) = (scratch("t").expect("a"), scratch("t").expect("b"));
        assert_ne!(a.path(), b.path());
        for d in [&a, &b] {
            let mode = std::fs::metadata(d.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.path().display());
        }
        let f = a.path().join("x");
        create_new(&f).expect("new file");
        assert!(create_new(&f).is_err(), "an existing file is not reused");
    }

    #[test]
    fn a_profiler_option_without_value_is_an_error() {
        assert!(split_profile_args(&s(&["splice", "--csv"])).is_err());
    }
}
