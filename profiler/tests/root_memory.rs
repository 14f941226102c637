//! Root test of the profiler's memory on a long per-call run: 10 million calls with `--csv`
//! stay under 256 MiB of resident memory (the kernel's own account of the profiler's peak),
//! the CSV has its header from the start and every call the kernel saw as a whole row at the
//! end. Built only with the `root-tests` feature (`cargo xtask test`); there, a test that
//! cannot run fails.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead as _, BufReader, Read},
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

/// How the profiler ended and its peak resident memory.
struct Ended {
    status: i32,
    maxrss_kib: i64,
}

/// The peak resident memory of `pid`'s program so far (`VmHWM`): the high-water mark of the
/// memory it mapped since its exec. (`ru_maxrss` would not do: it also keeps the size of the
/// process that forked it, this test, as it was at the exec.)
fn vm_hwm_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    profiler::capture::selfcost::vm_hwm_kib(&status).map(|kib| kib as i64)
}

/// Waits for `pid` at most `limit`, polling its peak memory; calls `during` at each poll.
/// Kills it and fails the test when it does not end in time.
fn wait_rusage(pid: u32, limit: Duration, mut during: impl FnMut()) -> Ended {
    let t0 = Instant::now();
    let mut maxrss_kib = 0;
    loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            maxrss_kib = maxrss_kib.max(kib);
        }
        let mut status = 0;
        // SAFETY: `pid` is our own child, not yet reaped; the pointer is to a live local.
        let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid as i32 {
            return Ended { status, maxrss_kib };
        }
        if t0.elapsed() > limit {
            common::signal(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("the profiler did not end within {limit:?}");
        }
        during();
        std::thread::sleep(Duration::from_millis(20));
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

/// Calls `each` with every line of `input` (its line end included) and its index; fails on a
/// last line cut short. Returns the lines, the bytes, the first 16 bytes and the last 32.
fn each_line(input: impl Read, name: &str, mut each: impl FnMut(u64, &str)) -> Drained {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::new();
    let mut seen = Drained::default();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).expect("read a line") == 0 {
            break;
        }
        assert_eq!(line.last(), Some(&b'\n'), "{name}: the last line is cut");
        if seen.head.len() < 16 {
            let want = (16 - seen.head.len()).min(line.len());
            seen.head.extend_from_slice(&line[..want]);
        }
        seen.tail.extend_from_slice(&line);
        let cut = seen.tail.len().saturating_sub(32);
        seen.tail.drain(..cut);
        each(seen.lines, std::str::from_utf8(&line).expect("utf-8 line"));
        seen.lines += 1;
        seen.bytes += line.len() as u64;
    }
    seen
}

/// What a reader of an output saw.
#[derive(Default)]
struct Drained {
    lines: u64,
    bytes: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
}

/// An output read as the profiler writes it, through a FIFO made at `path`, so that the
/// gigabytes a long run writes never reach the disk: `each` sees every line with `state`.
fn through_fifo<S: Send + 'static>(
    path: &Path,
    mut state: S,
    each: fn(&mut S, u64, &str),
) -> std::thread::JoinHandle<(Drained, S)> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let f = File::open(&path).expect("open the FIFO");
        let seen = each_line(f, &path.display().to_string(), |i, l| {
            each(&mut state, i, l)
        });
        (seen, state)
    })
}

/// A per-call CSV read line by line: the header first, one row in [`SAMPLE_EVERY`] read back
/// whole into the documented record, and the rows of `recvfrom` calls per pid.
#[derive(Default)]
struct CsvCheck {
    header: String,
    recv: HashMap<u32, u64>,
}

impl CsvCheck {
    fn line(&mut self, i: u64, text: &str) {
        if i == 0 {
            assert!(text.starts_with("pid,tid,call,fd,"), "{text}");
            self.header = text.to_string();
            return;
        }
        let mut fields = text.splitn(4, ',');
        let pid = fields.next().and_then(|p| p.parse().ok());
        if let (Some(pid), Some("recvfrom")) = (pid, fields.nth(1)) {
            *self.recv.entry(pid).or_default() += 1;
        }
        if (i - 1).is_multiple_of(SAMPLE_EVERY) {
            let whole = format!("{}{text}", self.header);
            let row: CallRow = csv::Reader::from_reader(whole.as_bytes())
                .deserialize()
                .next()
                .expect("a row")
                .unwrap_or_else(|e| panic!("row {i} does not read back: {e}: {text}"));
            assert!(row.total_ns > 0 || row.start_ns > 0, "{text}");
        }
    }
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
        reason = "reaped by waitpid while its memory is watched"
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
    // The profiler's own account, taken after its exports are written: the same bound.
    let own: i64 = report
        .rsplit("peak_rss_kib=")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak_rss_kib in:\n{report}"));
    assert!(
        own < LIMIT_KIB,
        "the profiler reports a peak of {own} KiB, limit {LIMIT_KIB} KiB:\n{report}"
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
    let reader = through_fifo(&csv, CsvCheck::default(), CsvCheck::line);
    let run = run_eagain(dir.path(), CALLS, &[("--csv", &csv)], || {});
    let (seen, check) = reader.join().expect("the CSV reader");
    let report = &run.report;
    let (calls, lost) = calls_and_lost(report);
    let rows = seen.lines - 1;
    assert_eq!(rows, calls, "a row per call seen:\n{report}");
    // Well past the calls the analyses keep, or the peak says little.
    assert!(
        rows > 4 * profiler::capture::KEEP_LIMIT as u64,
        "only {rows} calls seen:\n{report}"
    );
    // Every call of the workload is a row or counted lost (the lost count covers every kind
    // of record, so it may be larger).
    let recv = check.recv.get(&run.truth.pid).copied().unwrap_or(0);
    assert!(
        recv <= CALLS && recv + lost >= CALLS,
        "{recv} recvfrom rows, {lost} lost, {CALLS} made:\n{report}"
    );
    eprintln!(
        "{CALLS} calls with --csv: peak {} KiB, {rows} rows ({} MB), {lost} records lost",
        run.ended.maxrss_kib,
        seen.bytes >> 20
    );
}

#[test]
fn a_million_calls_with_every_per_call_export_stay_under_256_mib() {
    common::assert_root();
    const N: u64 = 1_000_000;
    let dir = big_scratch();
    let (summary, json, trace, csv) = (
        dir.path().join("summary.csv"),
        dir.path().join("calls.jsonl"),
        dir.path().join("trace.json"),
        dir.path().join("calls.csv"),
    );
    let json_reader = through_fifo(&json, (), |(), i, text| {
        if i.is_multiple_of(SAMPLE_EVERY) {
            serde_json::from_str::<CallRow>(text)
                .unwrap_or_else(|e| panic!("line {i} does not read back: {e}: {text}"));
        }
    });
    let trace_reader = through_fifo(&trace, (), |(), _, _| {});
    let outputs = [
        ("--summary-csv", summary.as_path()),
        ("--json", json.as_path()),
        ("--trace", trace.as_path()),
        ("--csv", csv.as_path()),
    ];
    // The CSV, a file: whole rows under its header whenever it is looked at.
    let mut looked = false;
    let run = run_eagain(dir.path(), N, &outputs, || {
        if csv.metadata().is_ok_and(|m| m.len() > 0) {
            check_csv_now(&csv);
            looked = true;
        }
    });
    assert!(looked, "the CSV was never seen during the run");
    let report = &run.report;
    let (calls, lost) = calls_and_lost(report);
    // A debug build loses records at this rate; a quarter of the calls still make
    // gigabytes of exports that the profiler used to hold whole.
    assert!(calls > N / 4, "only {calls} calls seen:\n{report}");
    // JSON lines: one per call, one in SAMPLE_EVERY read back whole.
    let (lines, ()) = json_reader.join().expect("the JSON reader");
    assert_eq!(lines.lines, calls, "a line per call seen:\n{report}");
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
    let (t, ()) = trace_reader.join().expect("the trace reader");
    assert!(t.bytes > calls * 100, "{} bytes for {calls} calls", t.bytes);
    assert_eq!(t.head, b"{\"traceEvents\":[");
    assert!(
        t.tail.ends_with(b"],\"displayTimeUnit\":\"ns\"}\n"),
        "{:?}",
        String::from_utf8_lossy(&t.tail)
    );
    // The CSV at the end: a row per call.
    let rows = each_line(File::open(&csv).expect("the CSV"), "the CSV", |_, _| {}).lines;
    assert_eq!(
        rows,
        calls + 1,
        "a header and a row per call seen:\n{report}"
    );
    eprintln!(
        "{N} calls with --summary-csv --json --trace --csv: peak {} KiB, {lost} records lost",
        run.ended.maxrss_kib
    );
}
