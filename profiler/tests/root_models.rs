//! Root tests of the I/O models: each model's workload runs under the real probes with a
//! sender paced at 5 ms, and the per-message attribution must show the model's way of
//! waiting and copying. Built only with the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use common::{assert_root, scratch, workloads_bin};
use profiler::{
    analyze::helpers::Helper,
    analyze::models::{self, Copier, Message, WaitKind},
};
use workloads::truth::Truth;

const INTERVAL_NS: f64 = 5e6;
const COUNT: u64 = 100;
/// One message fits one loopback segment, so one arrival brings one message.
const SIZE: u64 = 16384;

/// Runs a model's workload under the probes; returns its messages, its truth and the helper
/// threads found in its process.
fn run_model(model: &str) -> (Vec<Message>, Truth, Vec<Helper>) {
    assert_root();
    let dir = scratch(model);
    let truth_path = dir.join("truth.json");
    let argv = vec![
        workloads_bin().display().to_string(),
        model.to_string(),
        "--interval".into(),
        "5ms".into(),
        "--size".into(),
        SIZE.to_string(),
        "--count".into(),
        COUNT.to_string(),
        "--truth".into(),
        truth_path.display().to_string(),
    ];
    let (calls, r) = common::trace_command(argv);
    let truth = Truth::read(&truth_path).expect("truth");
    let _ = std::fs::remove_dir_all(dir);
    let msgs = models::messages(&calls, &r.events);
    let helpers = profiler::analyze::helpers::helpers(&calls, &r.events)
        .into_iter()
        .filter(|h| h.pid == truth.pid)
        .collect();
    (
        msgs.into_iter().filter(|m| m.pid == truth.pid).collect(),
        truth,
        helpers,
    )
}

/// The checks every model shares; returns the messages, the model's summary row and the
/// helper threads.
fn check(
    model: &str,
    kinds: &[WaitKind],
    name: &str,
) -> (Vec<Message>, models::ModelRow, Vec<Helper>, Truth) {
    let (msgs, truth, helpers) = run_model(model);
    assert_eq!(truth.messages, COUNT);
    // Bytes equal the truth's.
    assert_eq!(
        msgs.iter().map(|m| m.bytes).sum::<u64>(),
        truth.bytes,
        "{model}: bytes"
    );
    // A message is the data one wait brought: on a loaded machine a receiver kept off the
    // CPU can find two messages at once (the mean wait below bounds how often).
    assert!(
        msgs.len() as u64 <= COUNT && msgs.len() as u64 >= COUNT * 3 / 4,
        "{model}: {} messages for {COUNT} sent",
        msgs.len()
    );
    for m in &msgs {
        assert!(m.copy_ns() > 0, "{model}: no copy in {m:?}");
        assert!(m.bytes > 0, "{model}: no bytes in {m:?}");
        if m.notification_ns().is_some() {
            assert!(
                m.notified_ns >= m.arrival_ns,
                "{model}: told before the data came: {m:?}"
            );
        }
    }
    let row = models::model_row(&msgs);
    assert!(
        (row.wait_ns - INTERVAL_NS).abs() <= 0.25 * INTERVAL_NS,
        "{model}: mean wait {} ns is not within 25% of 5 ms",
        row.wait_ns
    );
    let share: f64 = kinds.iter().map(|k| row.wait_pct[*k as usize]).sum();
    assert!(
        share >= 90.0,
        "{model}: only {share:.1}% of the wait was {kinds:?}: {row:?}"
    );
    assert_eq!(row.model, name, "{model}: {row:?}");
    let told = msgs
        .iter()
        .filter(|m| m.notification_ns().is_some())
        .count();
    assert!(
        told * 10 >= msgs.len() * 8,
        "{model}: notification measured for {told} of {} messages",
        msgs.len()
    );
    (msgs, row, helpers, truth)
}

#[test]
fn blocking_waits_in_the_read_call() {
    let (msgs, row, _, _) = check("blocking", &[WaitKind::Call], "blocking");
    assert!(msgs.iter().all(|m| m.copier == Copier::Caller));
    // A message whose data was ready when the thread looked is still its thread's: blocking.
    let other: Vec<_> = msgs.iter().filter(|m| m.model() != "blocking").collect();
    assert!(other.is_empty(), "{other:?}");
    assert!(row.blocker.contains("in recvfrom"), "{row:?}");
}

#[test]
fn nonblocking_polls_with_failed_attempts() {
    let (msgs, row, _, truth) = check("nonblocking", &[WaitKind::Polling], "non-blocking");
    // Every receive that failed with EAGAIN is seen, and counted before the message it
    // waited for.
    assert_eq!(
        msgs.iter().map(|m| m.failed_attempts).sum::<u64>(),
        truth.attempts,
        "{row:?}"
    );
    assert!(row.failed > 1.0, "{row:?}");
    // Most messages were polled for; a receiver kept off the CPU past the sender's pace
    // finds the next one waiting, which a loaded machine makes more frequent.
    let polled = msgs.iter().filter(|m| m.failed_attempts > 0).count();
    assert!(polled * 2 >= msgs.len(), "{polled} of {}", msgs.len());
    assert!(msgs.iter().all(|m| m.copier == Copier::Caller));
}

#[test]
fn select_waits_in_the_multiplexer() {
    let (_, row, _, _) = check("select", &[WaitKind::Mux], "multiplexing");
    assert!(
        row.blocker.contains("select"),
        "select or pselect6: {row:?}"
    );
}

#[test]
fn poll_waits_in_the_multiplexer() {
    let (_, row, _, _) = check("poll", &[WaitKind::Mux], "multiplexing");
    assert!(row.blocker.contains("poll"), "{row:?}");
}

#[test]
fn epoll_waits_in_the_multiplexer_and_the_csv_says_so() {
    let (_, row, _, _) = check("epoll", &[WaitKind::Mux], "multiplexing");
    assert!(row.blocker.contains("epoll"), "{row:?}");
    // The per-call CSV carries the model, the message and how each call waited.
    let (out, rows, truth) = common::profile(
        "epoll-csv",
        &[
            "epoll",
            "--interval",
            "5ms",
            "--size",
            "16384",
            "--count",
            "20",
        ],
    );
    let waits: Vec<_> = rows
        .iter()
        .filter(|r| r.call.starts_with("epoll"))
        .collect();
    assert!(!waits.is_empty());
    assert!(
        waits
            .iter()
            .all(|r| r.wait_kind == "mux" && r.model == "multiplexing" && r.message >= 0),
        "{waits:?}"
    );
    let data: u64 = rows
        .iter()
        .filter(|r| r.call == "recvfrom" && r.fd_kind == "socket")
        .map(|r| r.bytes)
        .sum();
    assert_eq!(data, truth.bytes);
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("model: multiplexing"), "{stdout}");
}

#[test]
fn sigio_runs_free_until_the_signal() {
    let (msgs, _, _, _) = check("sigio", &[WaitKind::Free], "signal-driven");
    assert!(msgs.iter().all(|m| m.copier == Copier::Caller));
}

#[test]
fn aio_names_the_helper_thread_that_blocked() {
    let (msgs, row, _, _) = check("aio", &[WaitKind::Free], "asynchronous");
    let pid = msgs[0].pid;
    assert!(
        msgs.iter()
            .all(|m| m.copier == Copier::Helper && m.copier_tid != pid && m.waiter == pid),
        "{:?}",
        msgs.first()
    );
    // The C library's helper thread blocked in `read` for the caller.
    assert!(row.blocker.contains("(helper thread) in read"), "{row:?}");
}

#[test]
fn io_uring_waits_for_completions_in_enter() {
    let (msgs, row, _, _) = check("io-uring", &[WaitKind::Completion], "asynchronous");
    assert!(msgs.iter().all(|m| m.copier == Copier::TaskWork));
    assert!(row.blocker.contains("io_uring_enter"), "{row:?}");
}

#[test]
fn io_uring_reaped_later_leaves_the_process_free() {
    let (msgs, _, _, _) = check("io-uring-reap", &[WaitKind::Free], "asynchronous");
    assert!(
        msgs.iter()
            .all(|m| matches!(m.copier, Copier::TaskWork | Copier::Worker)),
        "{:?}",
        msgs.first()
    );
}

#[test]
fn tokio_waits_in_epoll_and_its_blocking_pool_reads_the_file() {
    let (msgs, row, helpers, _) = check("tokio-recv", &[WaitKind::Mux], "multiplexing");
    let pid = msgs[0].pid;
    // The runtime's worker thread waits and copies; the main thread only waits for the task.
    let worker = msgs[0].waiter;
    assert_ne!(worker, pid, "the messages were read on the main thread");
    assert!(
        msgs.iter()
            .all(|m| m.copier == Copier::Caller && m.waiter == worker),
        "{:?}",
        msgs.first()
    );
    assert_eq!(
        row.blocker,
        format!("tid {worker} (waiting thread) in epoll_wait")
    );
    // The file phase: a thread of the blocking pool read the file and woke the worker.
    let h = helpers
        .iter()
        .find(|h| h.helped == worker)
        .unwrap_or_else(|| panic!("no helper thread of the worker: {helpers:?}"));
    assert_ne!(h.tid, worker);
    assert_eq!(h.bytes, workloads::tokio_recv::FS_BYTES, "{h:?}");
    assert!(h.reads >= 16, "one read per 256 KiB: {h:?}");
}
