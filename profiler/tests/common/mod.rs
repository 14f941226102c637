//! Helpers shared by the root test files: scratch folders, the binaries built beside the
//! tests, running the profiler in the background and reading what it wrote.
#![allow(dead_code)]

pub mod nginx;
pub mod serve;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use profiler::render::export::CallRow;
use workloads::truth::Truth;

/// A private scratch folder for one test (mode 0700, unpredictable name). It is deleted when
/// the test passes and kept, with its path printed, when the test fails.
pub struct Scratch(Option<tempfile::TempDir>);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.as_ref().expect("scratch folder present").path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!(
                "scratch folder kept for inspection: {}",
                dir.keep().display()
            );
        }
    }
}

/// A scratch folder for one test, named after it.
pub fn scratch(name: &str) -> Scratch {
    Scratch(Some(
        tempfile::Builder::new()
            .prefix(&format!("ioprof-test-{name}-"))
            .tempdir()
            .expect("scratch folder"),
    ))
}

/// A binary built beside the tests (`cargo xtask test` builds the workspace first).
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target folder");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo xtask test`, which builds it",
        bin.display()
    );
    bin
}

/// The `workloads` binary.
pub fn workloads_bin() -> PathBuf {
    sibling_bin("workloads")
}

/// The `profiler` binary.
pub fn profiler_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_profiler"))
}

/// Fails unless the tests run with the privileges the probes need.
pub fn assert_root() {
    assert!(
        profiler::plan::privilege::missing().is_empty(),
        "root tests need root (or CAP_BPF + CAP_PERFMON): run `sudo cargo xtask test`"
    );
}

/// A profiler running in the background, its output collected.
pub struct Running {
    pub child: Child,
    /// The pid the profiler traces, from its banner.
    pub target: u32,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// What a finished profiler left.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Running {
    /// Starts the profiler with `args` and waits until its probes are attached and the target
    /// runs (its `Tracing … (pid N)` banner).
    pub fn start(args: &[&std::ffi::OsStr]) -> Self {
        let mut child = Command::new(profiler_bin())
            .arg("-v")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the profiler");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(pid) = banner_pid(&line) {
                    let _ = tx.send(pid);
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let target = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the profiler never started tracing: {}",
                    stderr.join().unwrap_or_default()
                );
            }
        };
        Self {
            child,
            target,
            stdout,
            stderr,
        }
    }

    /// The profiler's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the profiler to end, at most `limit`, and collects its output; fails the test
    /// when it does not end.
    pub fn wait(mut self, limit: Duration) -> Finished {
        let status = self.wait_exit(limit);
        Finished {
            status,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }

    /// Waits for the profiler's own exit, at most `limit`, without waiting for its output
    /// to close (a command it launched may still hold it).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the profiler did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The target pid in the banner `Tracing … (pid N)… Ctrl-C to end.`
fn banner_pid(line: &str) -> Option<u32> {
    let rest = line.strip_prefix("Tracing ")?;
    let (_, tail) = rest.rsplit_once("(pid ")?;
    tail.split([')', ',']).next()?.parse().ok()
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("send a signal");
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()) != Some('Z'))
        .unwrap_or(false)
}

/// The calls count from the profiler's closing line `N calls in Xs; records sent S, lost L`.
pub fn summary_calls(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.contains(" calls in ") && l.contains("records sent"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad summary line {line}"))
}

/// Reads a per-call CSV and checks that it is complete: it ends on a whole row and every row
/// reads back into the documented record.
pub fn read_complete_csv(path: &Path) -> Vec<CallRow> {
    let bytes = std::fs::read(path).expect("read the CSV");
    assert!(
        bytes.last() == Some(&b'\n'),
        "{} does not end on a whole row",
        path.display()
    );
    read_rows(bytes)
}

/// Reads the CSV of a profiler killed with SIGKILL: the kernel may have cut its last write
/// short, so the text after the last line end is at most a prefix of a row; every line before
/// it reads back whole.
pub fn read_killed_csv(path: &Path) -> Vec<CallRow> {
    let mut bytes = std::fs::read(path).expect("read the CSV");
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let tail = bytes.split_off(end);
    assert!(
        tail.len() < 512 && !tail.contains(&b'\n'),
        "more than a cut row after the last line end"
    );
    read_rows(bytes)
}

fn read_rows(bytes: Vec<u8>) -> Vec<CallRow> {
    let text = String::from_utf8(bytes).expect("utf-8 CSV");
    assert!(text.starts_with("pid,tid,call,fd,"), "no header");
    let rows: Vec<CallRow> = csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("every row reads back");
    assert_eq!(
        rows.len(),
        text.lines().count() - 1,
        "a row did not read back"
    );
    rows
}

#[test]
fn banner_pid_is_read() {
    assert_eq!(
        banner_pid("Tracing `x y` (pid 7027)… Ctrl-C to end."),
        Some(7027)
    );
    assert_eq!(
        banner_pid("Tracing pid 5 (pid 5,6)… Ctrl-C to end."),
        Some(5)
    );
    assert_eq!(banner_pid("hooks:"), None);
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
    pub movement: profiler::analyze::movement::Movement,
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
        .arg("-v")
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

/// Runs `argv` under the probes in per-call mode (the default calls, a 64 MiB ring buffer, at
/// most a minute); fails the test unless the command exits 0 with no record lost. Returns the
/// calls and the run's result.
pub fn trace_command(
    argv: Vec<String>,
) -> (
    Vec<profiler::capture::traced::TracedCall>,
    profiler::capture::session::RunResult,
) {
    use profiler::capture::{launch::Exit, loader::LoadOptions, session};
    assert_root();
    let what = argv.join(" ");
    let opts = session::RunOptions {
        target: session::Target::Command(argv),
        load: LoadOptions {
            calls: profiler::syscalls::DEFAULT
                .iter()
                .map(|n| profiler::syscalls::by_name(n).expect("known call"))
                .collect(),
            // A polling receiver makes a record every few microseconds.
            ringbuf_bytes: 64 << 20,
            ..LoadOptions::default()
        },
        duration: Some(Duration::from_secs(60)),
        run_as: None,
    };
    let mut calls = Vec::new();
    let r = session::run(&opts, &mut calls, |_, _| {}).expect("profiling run");
    assert!(
        matches!(r.end, session::EndReason::CommandExited(Exit::Code(0))),
        "`{what}` failed: {:?}",
        r.end
    );
    assert_eq!(r.lost, 0, "`{what}`: records lost");
    (calls, r)
}

/// Ids of every BPF program and link loaded in the kernel.
pub fn kernel_ids() -> (BTreeSet<u32>, BTreeSet<u32>) {
    let progs = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect();
    let links = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .map(|l| l.id())
        .collect();
    (progs, links)
}

/// The flood for `duration` under the profiler, its CSV streamed to `csv` as calls arrive
/// (`--bounded`: a flood makes far more calls than a run should keep).
pub fn flood_into(csv: &Path, duration: &str) -> Running {
    let wl = workloads_bin();
    Running::start(&[
        std::ffi::OsStr::new("--bounded"),
        std::ffi::OsStr::new("--csv"),
        csv.as_os_str(),
        std::ffi::OsStr::new("--"),
        wl.as_os_str(),
        std::ffi::OsStr::new("flood"),
        std::ffi::OsStr::new("--duration"),
        std::ffi::OsStr::new(duration),
    ])
}

/// Installs a Debian package when its program is missing (CI starts from a bare machine).
pub fn ensure_program(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
        || (Command::new("apt-get")
            .args(["update", "-qq"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("apt-get")
                .args(["install", "-y", "-qq", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success()));
    assert!(
        ok,
        "`{program}` is missing and `apt-get install {package}` failed"
    );
}

/// A free loopback port (the listener is closed before the server binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
