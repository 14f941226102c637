//! Root tests of the exports on real runs: every export of one run reads back into its
//! documented record type with its documented units, the trace nests every stage in its call,
//! signals land on their thread's track, and a closed pipe on stdout is not an error. Built
//! only with the `root-tests` feature (`cargo xtask test`); there, a test that cannot run fails.
#![cfg(feature = "root-tests")]

use std::{
    path::Path,
    process::{Command, Stdio},
};

use profiler::render::export::{
    CallRow,
    summary::{STAGES, SummaryRow},
    trace::{self, Trace},
};
use workloads::truth::Truth;

mod common;
use common::{assert_root, scratch, workloads_bin};

/// Reads a CSV into its record type, after checking that no cell is empty.
fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let mut rdr = csv::Reader::from_path(path).expect("open csv");
    let header = rdr.headers().expect("header").clone();
    for rec in rdr.records() {
        let rec = rec.expect("record");
        for (name, cell) in header.iter().zip(rec.iter()) {
            assert!(
                !cell.is_empty(),
                "empty `{name}` in {}: {rec:?}",
                path.display()
            );
        }
    }
    csv::Reader::from_path(path)
        .expect("open csv")
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{} does not read back: {e}", path.display()))
}

fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run profiler");
    assert!(
        out.status.success(),
        "profiler failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

#[test]
fn every_export_of_a_run_reads_back_with_its_units() {
    assert_root();
    // Laid out as `cargo xtask report` leaves a run: DIR/WORKLOAD/{calls.csv,truth.json,…}.
    let top = scratch("all");
    let d = top.join("blocking");
    std::fs::create_dir_all(&d).expect("run folder");
    let (csv, sum, json, tr, truth) = (
        d.join("calls.csv"),
        d.join("summary.csv"),
        d.join("calls.jsonl"),
        d.join("trace.json"),
        d.join("truth.json"),
    );
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_profiler"))
            .arg("-v")
            .arg("--csv")
            .arg(&csv)
            .arg("--summary-csv")
            .arg(&sum)
            .arg("--json")
            .arg(&json)
            .arg("--trace")
            .arg(&tr)
            .arg("--")
            .arg(workloads_bin())
            .args([
                "blocking",
                "--interval",
                "2ms",
                "--size",
                "16384",
                "--count",
                "50",
            ])
            .arg("--truth")
            .arg(&truth),
    );
    let truth = Truth::read(&truth).expect("truth");

    // Per-call CSV: every cell filled, rows read into CallRow.
    let rows: Vec<CallRow> = read_csv(&csv);
    let recv: Vec<&CallRow> = rows.iter().filter(|r| r.call == "recvfrom").collect();
    let truth_recv: Vec<_> = truth.calls_named("recvfrom").collect();
    assert_eq!(recv.len(), truth_recv.len());
    // Nanoseconds of CLOCK_MONOTONIC: each row inside the workload's own readings.
    for (r, t) in recv.iter().zip(&truth_recv) {
        assert!(
            t.before_ns <= r.start_ns && r.start_ns + r.total_ns <= t.after_ns,
            "{r:?} {t:?}"
        );
    }

    // JSON lines: the same rows.
    let text = std::fs::read_to_string(&json).expect("json");
    let from_json: Vec<CallRow> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(from_json, rows);

    // Summary CSV: every cell filled, every stage of every group, sums agree with the rows.
    let summary: Vec<SummaryRow> = read_csv(&sum);
    assert_eq!(summary.len() % STAGES.len(), 0);
    let wait = summary
        .iter()
        .find(|s| s.call == "recvfrom" && s.fd_kind == "socket" && s.stage == "wait")
        .expect("recvfrom wait row");
    assert_eq!(wait.calls, recv.len() as u64);
    assert_eq!(wait.bytes, truth.bytes);
    assert_eq!(wait.sum_ns, recv.iter().map(|r| r.wait_ns).sum::<u64>());
    // The 2 ms pacing shows as the mean wait (±20%).
    assert!(
        (wait.mean_ns - 2e6).abs() <= 0.2 * 2e6,
        "mean wait {} ns",
        wait.mean_ns
    );

    // Trace: parses, one call slice per row at the row's time (µs), stages inside their calls.
    let t: Trace = serde_json::from_slice(&std::fs::read(&tr).expect("trace")).expect("parses");
    let calls: Vec<_> = t.trace_events.iter().filter(|e| e.cat == "call").collect();
    assert_eq!(calls.len(), rows.len());
    for (c, r) in calls.iter().zip(&rows) {
        assert_eq!(
            (trace::ns(c.ts), c.dur.map(trace::ns)),
            (r.start_ns, Some(r.total_ns))
        );
        assert_eq!((c.pid, c.tid), (r.pid, r.tid));
    }
    let stages = trace::check_nesting(&t).expect("stages nest");
    assert!(
        stages >= 2 * recv.len(),
        "{stages} stage slices for {} receives",
        recv.len()
    );

    // The HTML report reads the run back and charts it.
    let page = profiler::render::html_report::write_report(&top).expect("report");
    let html = std::fs::read_to_string(page).expect("page");
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "the model bar and one latency chart"
    );
    assert!(
        html.contains(&format!("recvfrom socket ({} calls)", recv.len())),
        "latency line per call kind"
    );
    let _ = std::fs::remove_dir_all(top);
}

#[test]
fn signals_are_instants_on_their_thread_in_the_trace() {
    assert_root();
    let d = scratch("signals");
    let tr = d.join("trace.json");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_profiler"))
            .arg("-v")
            .args(["--calls", "read", "--trace"])
            .arg(&tr)
            .args([
                "--",
                "sh",
                "-c",
                "trap 'echo got' USR1; kill -USR1 $$; kill -USR1 $$",
            ]),
    );
    let t: Trace = serde_json::from_slice(&std::fs::read(&tr).expect("trace")).expect("parses");
    let delivered: Vec<_> = t
        .trace_events
        .iter()
        .filter(|e| e.ph == "i" && e.name == "SIGUSR1 delivered")
        .collect();
    assert_eq!(delivered.len(), 2, "{:?}", t.trace_events);
    // The thread has a named track.
    assert!(
        t.trace_events
            .iter()
            .any(|e| e.name == "thread_name" && e.tid == delivered[0].tid)
    );
    let _ = std::fs::remove_dir_all(d);
}

/// The profiler writing JSON lines to stdout for a blocking run of `count` messages.
fn json_to_stdout(count: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_profiler"));
    c.arg("-v");
    c.args(["--json", "-", "--"]).arg(workloads_bin()).args([
        "blocking",
        "--interval",
        "1ms",
        "--size",
        "4096",
        "--count",
        count,
    ]);
    c
}

#[test]
fn a_closed_pipe_on_stdout_is_not_an_error() {
    assert_root();
    let mut child = json_to_stdout("400")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader goes away before the profiler writes anything, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("profiler: error"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    // The report went to stderr, since stdout carried the export.
    assert!(err.contains("recvfrom socket: 400 calls"), "{err}");
}

#[test]
fn json_on_stdout_is_one_call_per_line() {
    assert_root();
    let out = run_ok(&mut json_to_stdout("20"));
    let text = String::from_utf8(out.stdout).expect("utf8");
    let rows: Vec<CallRow> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        rows.iter().filter(|r| r.call == "recvfrom").count(),
        20,
        "{text}"
    );
}
