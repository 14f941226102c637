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

use profiler::render::export::{CallRow, summary::SummaryRow};
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

/// Calls `each` with every line of a file (its line end included) and its index; fails on a
/// last line cut short.
fn each_line(path: &Path, mut each: impl FnMut(u64, &str)) {
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).expect("open"));
    let mut line = Vec::new();
    for i in 0.. {
        line.clear();
        if input.read_until(b'\n', &mut line).expect("read a line") == 0 {
            break;
        }
        assert_eq!(
            line.last(),
            Some(&b'\n'),
            "{}: the last line is cut",
            path.display()
        );
        each(i, std::str::from_utf8(&line).expect("utf-8 line"));
    }
}

/// Rows of the CSV, rows of `pid`'s `recvfrom` calls; one row in [`SAMPLE_EVERY`] is read
/// back whole into the documented record.
fn count_rows(path: &Path, pid: u32) -> (u64, u64) {
    let prefix = format!("{pid},");
    let mut header = String::new();
    let (mut rows, mut recv) = (0u64, 0u64);
    each_line(path, |i, text| {
        if i == 0 {
            assert!(text.starts_with("pid,tid,call,fd,"), "{text}");
            header = text.to_string();
            return;
        }
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
    });
    (rows, recv)
}

/// A finished profiler run of `workloads eagain`.
struct Run {
    ended: Ended,
    report: String,
    truth: Truth,
}

/// Runs `workloads eagain --count calls` under the profiler with `outputs`, calling `during`
/// while it runs; checks that it ended well and stayed under [`LIMIT_KIB`].
fn run_eagain(dir: &Path, calls: u64, outputs: &[(&str, &Path)], during: impl FnMut()) -> Run {
    let (truth_path, report) = (dir.join("truth.json"), dir.join("report.txt"));
    let mut cmd = Command::new(common::profiler_bin());
    for (option, path) in outputs {
        cmd.arg(option).arg(path);
    }
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait4, which gives its resource usage"
    )]
    let child = cmd
        .arg("-o")
        .arg(&report)
        .arg("--")
        .arg(common::workloads_bin())
        .args(["eagain", "--count", &calls.to_string(), "--truth"])
        .arg(&truth_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the profiler");
    let ended = wait_rusage(child.id(), RUN_LIMIT, during);
    let report = std::fs::read_to_string(&report).expect("the report");
    assert!(
        libc::WIFEXITED(ended.status) && libc::WEXITSTATUS(ended.status) == 0,
        "the profiler failed ({:#x}):\n{report}",
        ended.status
    );
    assert!(
        ended.maxrss_kib < LIMIT_KIB,
        "peak resident memory {} KiB, limit {LIMIT_KIB} KiB:\n{report}",
        ended.maxrss_kib
    );
    let truth: Truth =
        serde_json::from_str(&std::fs::read_to_string(&truth_path).expect("the workload's truth"))
            .expect("truth JSON");
    assert_eq!(truth.loop_calls, calls);
    for (option, path) in outputs {
        let (seen, _) = calls_and_lost(&report);
        let line = format!("wrote {} ({option}) for {seen} calls", path.display());
        assert!(report.contains(&line), "no `{line}` in:\n{report}");
    }
    Run {
        ended,
        report,
        truth,
    }
}

/// A scratch folder, deleted even when the test fails: the outputs take gigabytes.
fn big_scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ioprof-root-memory-")
        .tempdir()
        .expect("scratch folder")
}

#[test]
fn ten_million_calls_with_csv_stay_under_256_mib() {
    common::assert_root();
    let dir = big_scratch();
    let csv = dir.path().join("calls.csv");
    let mut checked_early = false;
    let run = run_eagain(dir.path(), CALLS, &[("--csv", &csv)], || {
        if !checked_early && csv.metadata().is_ok_and(|m| m.len() > 0) {
            check_csv_now(&csv);
            checked_early = true;
        }
    });
    let report = &run.report;
    assert!(checked_early, "the CSV was never seen during the run");
    let (calls, lost) = calls_and_lost(report);
    let (rows, recv) = count_rows(&csv, run.truth.pid);
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
    eprintln!(
        "{CALLS} calls with --csv: peak {} KiB, {rows} rows, {lost} records lost",
        run.ended.maxrss_kib
    );
}

#[test]
fn a_million_calls_with_every_other_per_call_export_stay_under_256_mib() {
    common::assert_root();
    const N: u64 = 1_000_000;
    let dir = big_scratch();
    let (summary, json, trace) = (
        dir.path().join("summary.csv"),
        dir.path().join("calls.jsonl"),
        dir.path().join("trace.json"),
    );
    let outputs = [
        ("--summary-csv", summary.as_path()),
        ("--json", json.as_path()),
        ("--trace", trace.as_path()),
    ];
    let run = run_eagain(dir.path(), N, &outputs, || {});
    let report = &run.report;
    let (calls, lost) = calls_and_lost(report);
    // A debug build loses records at this rate; a quarter of the calls still make
    // gigabytes of exports that the profiler used to hold whole.
    assert!(calls > N / 4, "only {calls} calls seen:\n{report}");
    // JSON lines: one per call, one in SAMPLE_EVERY read back whole.
    let mut lines = 0;
    each_line(&json, |i, text| {
        if i % SAMPLE_EVERY == 0 {
            serde_json::from_str::<CallRow>(text)
                .unwrap_or_else(|e| panic!("line {i} does not read back: {e}: {text}"));
        }
        lines += 1;
    });
    assert_eq!(lines, calls, "a line per call seen:\n{report}");
    // The summary: every call in one group, the workload's receives all there or lost.
    let groups: Vec<SummaryRow> = csv::Reader::from_path(&summary)
        .expect("summary")
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("summary rows read back");
    let totals: Vec<&SummaryRow> = groups.iter().filter(|g| g.stage == "total").collect();
    assert_eq!(totals.iter().map(|g| g.calls).sum::<u64>(), calls);
    let recv = totals
        .iter()
        .find(|g| g.pid == run.truth.pid && g.call == "recvfrom")
        .map_or(0, |g| g.calls);
    assert!(
        recv <= N && recv + lost >= N,
        "{recv} receives, {lost} lost"
    );
    // The trace: one JSON object, opened and closed (its content is checked on small runs).
    let mut ends = (Vec::new(), [0u8; 26]);
    let mut f = File::open(&trace).expect("trace");
    f.by_ref()
        .take(16)
        .read_to_end(&mut ends.0)
        .expect("trace start");
    let len = f.metadata().expect("trace size").len();
    assert!(len > calls * 100, "{len} bytes for {calls} calls");
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(-26)).expect("seek");
    f.read_exact(&mut ends.1).expect("trace end");
    assert_eq!(ends.0, b"{\"traceEvents\":[");
    assert_eq!(&ends.1, b"],\"displayTimeUnit\":\"ns\"}\n");
    eprintln!(
        "{N} calls with --summary-csv --json --trace: peak {} KiB, {lost} records lost",
        run.ended.maxrss_kib
    );
}
