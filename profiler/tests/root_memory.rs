//! Root test of the profiler's memory on a long per-call run: 10 million calls with `--csv`
//! stay under 256 MiB of resident memory (the kernel's own account of the profiler's peak),
//! the CSV has its header from the start and every call the kernel saw as a whole row at the
//! end. Built only with the `root-tests` feature (`cargo xtask test`); there, a test that
//! cannot run fails.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use profiler::render::export::CallRow;
use workloads::truth::Truth;

/// Calls the workload makes.
const CALLS: u64 = 10_000_000;
/// The most resident memory the profiler may reach.
const LIMIT_KIB: i64 = 256 << 10;
/// The longest the run may take.
const RUN_LIMIT: Duration = Duration::from_secs(240);
/// Every how many rows one is read back whole.
const SAMPLE_EVERY: u64 = 100_000;

/// How the profiler ended and its peak resident memory, from `wait4`.
struct Ended {
    status: i32,
    maxrss_kib: i64,
}

/// Waits for `pid` at most `limit`, polling; checks `during` at each poll. Kills it and fails
/// the test when it does not end in time.
fn wait_rusage(pid: u32, limit: Duration, mut during: impl FnMut()) -> Ended {
    let t0 = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own child, not yet reaped; both pointers are to live locals.
        let r = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid as i32 {
            return Ended {
                status,
                maxrss_kib: usage.ru_maxrss,
            };
        }
        if t0.elapsed() > limit {
            common::signal(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("the profiler did not end within {limit:?}");
        }
        during();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `(calls, lost)` from the report's line `N calls in Xs; records sent S, lost L`.
fn calls_and_lost(report: &str) -> (u64, u64) {
    let line = report
        .lines()
        .find(|l| l.contains(" calls in ") && l.contains("records sent"))
        .unwrap_or_else(|| panic!("no summary line in:\n{report}"));
    let num = |s: Option<&str>| -> u64 {
        s.and_then(|s| s.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
            .unwrap_or_else(|| panic!("bad summary line {line}"))
    };
    let calls = num(line.split_whitespace().next());
    let lost = num(line.rsplit("lost ").next());
    (calls, lost)
}

/// The CSV as it is now: its header, and whole rows only (it ends on a line end).
fn check_csv_now(path: &Path) {
    let mut head = Vec::new();
    File::open(path)
        .expect("open the CSV")
        .take(1 << 20)
        .read_to_end(&mut head)
        .expect("read the CSV");
    let text = String::from_utf8_lossy(&head);
    assert!(
        text.starts_with("pid,tid,call,fd,"),
        "the CSV has no header yet: {text:?}"
    );
    if head.len() < 1 << 20 {
        assert_eq!(head.last(), Some(&b'\n'), "the CSV ends mid-row");
    }
}

/// Rows of the CSV, rows of `pid`'s `recvfrom` calls; one row in [`SAMPLE_EVERY`] is read
/// back whole into the documented record.
fn count_rows(path: &Path, pid: u32) -> (u64, u64) {
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).expect("open the CSV"));
    let mut line = Vec::new();
    input.read_until(b'\n', &mut line).expect("header");
    let header = String::from_utf8(line.clone()).expect("utf-8 header");
    assert!(header.starts_with("pid,tid,call,fd,"), "{header}");
    let prefix = format!("{pid},");
    let (mut rows, mut recv) = (0u64, 0u64);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).expect("read a row") == 0 {
            break;
        }
        assert_eq!(line.last(), Some(&b'\n'), "the last row is cut");
        let text = std::str::from_utf8(&line).expect("utf-8 row");
        if text.starts_with(&prefix) && text.split(',').nth(2) == Some("recvfrom") {
            recv += 1;
        }
        if rows % SAMPLE_EVERY == 0 {
            let whole = format!("{header}{text}");
            let row: CallRow = csv::Reader::from_reader(whole.as_bytes())
                .deserialize()
                .next()
                .expect("a row")
                .unwrap_or_else(|e| panic!("row {rows} does not read back: {e}: {text}"));
            assert!(row.total_ns > 0 || row.start_ns > 0, "{text}");
        }
        rows += 1;
    }
    (rows, recv)
}

#[test]
fn ten_million_calls_with_csv_stay_under_256_mib() {
    common::assert_root();
    // Deleted even when the test fails: the CSV of 10 million calls takes 1.3 GB.
    let dir = tempfile::Builder::new()
        .prefix("ioprof-root-memory-")
        .tempdir()
        .expect("scratch folder");
    let (csv, truth_path, report) = (
        dir.path().join("calls.csv"),
        dir.path().join("truth.json"),
        dir.path().join("report.txt"),
    );
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait4, which gives its resource usage"
    )]
    let child = Command::new(common::profiler_bin())
        .arg("--csv")
        .arg(&csv)
        .arg("-o")
        .arg(&report)
        .arg("--")
        .arg(common::workloads_bin())
        .args(["eagain", "--count", &CALLS.to_string(), "--truth"])
        .arg(&truth_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the profiler");
    let mut checked_early = false;
    let ended = wait_rusage(child.id(), RUN_LIMIT, || {
        if !checked_early && csv.metadata().is_ok_and(|m| m.len() > 0) {
            check_csv_now(&csv);
            checked_early = true;
        }
    });
    let report = std::fs::read_to_string(&report).expect("the report");
    assert!(
        libc::WIFEXITED(ended.status) && libc::WEXITSTATUS(ended.status) == 0,
        "the profiler failed ({:#x}):\n{report}",
        ended.status
    );
    assert!(checked_early, "the CSV was never seen during the run");
    assert!(
        ended.maxrss_kib < LIMIT_KIB,
        "peak resident memory {} KiB, limit {LIMIT_KIB} KiB:\n{report}",
        ended.maxrss_kib
    );
    let truth: Truth =
        serde_json::from_str(&std::fs::read_to_string(&truth_path).expect("the workload's truth"))
            .expect("truth JSON");
    assert_eq!(truth.loop_calls, CALLS);
    let (calls, lost) = calls_and_lost(&report);
    let (rows, recv) = count_rows(&csv, truth.pid);
    assert_eq!(rows, calls, "a row per call seen:\n{report}");
    // Well past the calls the analyses keep, or the peak says little.
    assert!(
        rows > 4 * profiler::capture::KEEP_LIMIT as u64,
        "only {rows} calls seen:\n{report}"
    );
    // Every call of the workload is a row or counted lost (the lost count covers every kind
    // of record, so it may be larger).
    assert!(
        recv <= CALLS && recv + lost >= CALLS,
        "{recv} recvfrom rows, {lost} lost, {CALLS} made:\n{report}"
    );
    assert!(
        report.contains(&format!(
            "wrote {} (--csv) for {calls} calls",
            csv.display()
        )),
        "{report}"
    );
    eprintln!(
        "{CALLS} calls: peak {} KiB, {rows} rows, {lost} records lost",
        ended.maxrss_kib
    );
}
