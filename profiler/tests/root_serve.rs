//! Root tests of the system-wide modes: `--all` (and `--comm`) trace every process but the
//! profiler, in summary mode, and list a workload started after the probes with exactly the
//! calls it made; a scrape of `profiler serve` while a real nginx serves files under curl load
//! shows nginx's series, its model and descriptor classes, within the series limit. Built only with the `root-tests` feature (`cargo xtask test` turns it on);
//! there, a test that cannot run fails.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{
    assert_root,
    nginx::Nginx,
    profiler_bin, scratch,
    serve::{Sample, Server, samples, scalar},
    workloads_bin,
};
use workloads::truth::Truth;

/// One line of the system-wide table.
#[derive(Debug)]
struct Row {
    pid: u32,
    comm: String,
    calls: u64,
    model: String,
}

/// Runs the profiler with `args` (a system-wide run that ends by itself), starts the paced
/// blocking workload once the probes are attached, and returns the table's rows, the
/// profiler's pid and the workload's truth.
fn system_wide(name: &str, args: &[&str]) -> (Vec<Row>, u32, Truth, String) {
    assert_root();
    let dir = scratch(name);
    let truth_path = dir.join("truth.json");
    let mut prof = Command::new(profiler_bin())
        .args(args)
        .args(["--calls", "recvfrom"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the profiler");
    let (tx, rx) = mpsc::channel();
    let err = prof.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.starts_with("Tracing every process") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = prof.kill();
        panic!(
            "the profiler never started tracing: {}",
            reader.join().unwrap_or_default()
        );
    }
    let status = Command::new(workloads_bin())
        .args([
            "blocking",
            "--interval",
            "5ms",
            "--count",
            "100",
            "--size",
            "4096",
        ])
        .arg("--truth")
        .arg(&truth_path)
        .stdout(Stdio::null())
        .status()
        .expect("run the workload");
    assert!(status.success(), "workload failed: {status}");
    let ended = prof.wait().expect("wait for the profiler");
    let stderr = reader.join().unwrap_or_default();
    assert!(ended.success(), "profiler failed: {ended}\n{stderr}");
    let truth = Truth::read(&truth_path).expect("truth");
    let _ = std::fs::remove_dir_all(&dir);
    (rows(&stderr), prof.id(), truth, stderr)
}

/// The rows of the table under its `pid comm calls …` header.
fn rows(report: &str) -> Vec<Row> {
    report
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("pid comm"))
        .skip(1)
        .map_while(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Row {
                pid: f.first()?.parse().ok()?,
                comm: f.get(1)?.to_string(),
                calls: f.get(2)?.parse().ok()?,
                model: f.last()?.to_string(),
            })
        })
        .collect()
}

#[test]
fn all_lists_the_workload_with_every_call_and_never_the_profiler() {
    let (rows, me, truth, report) = system_wide("all", &["--all", "-d", "3s"]);
    assert!(
        rows.iter().all(|r| r.pid != me),
        "the profiler traced itself:\n{report}"
    );
    let w = rows
        .iter()
        .find(|r| r.pid == truth.pid)
        .unwrap_or_else(|| panic!("workload pid {} not listed:\n{report}", truth.pid));
    // The workload started after the probes and ended before the run: every recvfrom it made
    // is counted.
    assert_eq!(w.calls, truth.calls.len() as u64, "{report}");
    assert_eq!(w.comm, "workloads", "{report}");
    assert_eq!(w.model, "blocking", "{report}");
}

#[test]
fn comm_traces_only_processes_of_that_name() {
    let (rows, _, truth, report) = system_wide("comm", &["--comm", "workloads", "-d", "3s"]);
    assert!(!rows.is_empty(), "nothing listed:\n{report}");
    assert!(
        rows.iter().all(|r| r.comm == "workloads"),
        "another command traced:\n{report}"
    );
    let w = rows
        .iter()
        .find(|r| r.pid == truth.pid)
        .unwrap_or_else(|| panic!("workload pid {} not listed:\n{report}", truth.pid));
    assert_eq!(w.calls, truth.calls.len() as u64, "{report}");
}

/// The label sets of a scrape's call counter, after checking that they stay within the limit
/// the profiler reports.
fn within_limit(all: &[Sample]) -> Vec<&Sample> {
    let sets: Vec<&Sample> = all
        .iter()
        .filter(|s| s.name == "ioprof_calls_total" && !s.labels.is_empty())
        .collect();
    let limit = scalar(all, "ioprof_series_limit");
    assert!(limit > 0.0);
    assert_eq!(sets.len() as f64, scalar(all, "ioprof_series"));
    assert!(
        sets.len() as f64 <= limit,
        "{} label sets over a limit of {limit}",
        sets.len()
    );
    sets
}

#[test]
fn a_scrape_under_nginx_load_shows_nginx_multiplexing_within_the_limit() {
    assert_root();
    let nginx = Nginx::start("serve-nginx");
    let server = Server::start(&[]);
    // Four clients fetch the file 128 times each while the endpoint is scraped.
    let load = std::thread::spawn(move || {
        let f = nginx.fetch(4, 128);
        (nginx, f)
    });
    let mut scrapes = 0;
    while !load.is_finished() {
        within_limit(&samples(&server.scrape()));
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (nginx, fetched) = load.join().expect("the load");
    let text = server.scrape();
    let all = samples(&text);
    let sets = within_limit(&all);
    server.stop();
    drop(nginx);
    assert!(scrapes > 0, "the load ended before the first scrape");
    assert_eq!(scalar(&all, "ioprof_records_lost_total"), 0.0);
    let of = |name: &str, f: &dyn Fn(&Sample) -> bool| -> Vec<&Sample> {
        all.iter()
            .filter(|s| s.name == name && s.label("comm") == "nginx" && f(s))
            .collect()
    };
    let calls = of("ioprof_calls_total", &|_| true);
    assert!(!calls.is_empty(), "no series for nginx:\n{text}");
    assert!(
        calls
            .iter()
            .all(|s| sets.iter().any(|t| t.labels == s.labels))
    );
    let waits = of("ioprof_calls_total", &|s| s.label("call") == "epoll_wait");
    assert!(
        waits
            .iter()
            .any(|s| s.label("model") == "multiplexing" && s.value > 0.0),
        "nginx's worker waits in epoll_wait: {waits:?}"
    );
    let receive = |s: &Sample| {
        matches!(s.label("call"), "read" | "recvfrom" | "recvmsg") && s.label("fd_class") == "tcp"
    };
    let reads = of("ioprof_calls_total", &receive);
    assert!(
        reads.iter().any(|s| s.label("model") == "multiplexing"),
        "nginx's worker reads its requests from tcp, multiplexing: {reads:?}"
    );
    // Other nginx processes on the machine may add to the sums, never take from them.
    let bytes = |f: &dyn Fn(&Sample) -> bool| -> f64 {
        of("ioprof_bytes_total", f).iter().map(|s| s.value).sum()
    };
    let requests = bytes(&receive);
    assert!(
        requests >= fetched.request_bytes as f64,
        "nginx read {requests} B from tcp, curl sent {} B",
        fetched.request_bytes
    );
    let body = bytes(&|s| s.label("call") == "sendfile64" && s.label("fd_class") == "file");
    assert!(
        body >= fetched.body_bytes as f64,
        "nginx sent {body} B by sendfile64 from files, curl received {} B of bodies",
        fetched.body_bytes
    );
    eprintln!(
        "{scrapes} scrapes, {} label sets; nginx: {requests} B requests, {body} B bodies",
        sets.len()
    );
}
