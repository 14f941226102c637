//! Root tests of the OTLP push of `profiler serve`: a receiver built on the OTel project's own
//! Python classes (tests/otlp/receiver.py) decodes each push; the pushed counters and
//! histograms of a paced workload equal the same moment's /metrics scrape and the workload's
//! own count, one more push comes at the stop, and a collector that answers 500 is counted
//! without stopping /metrics. Built only with the `root-tests` feature; there, a test that
//! cannot run fails.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{
    assert_root, profiler_bin, scratch,
    serve::{Receiver, Server, get, samples, scalar},
    workloads_bin,
};
use serde_json::Value;
use workloads::truth::Truth;

/// The command name the workload runs under (a link to `workloads`), so that its series are
/// its own whatever else runs on the machine.
const COMM: &str = "ioprof-otlp";

fn text(v: &Value) -> String {
    v["value"]["stringValue"]
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// A number of the OTLP/JSON mapping: 64-bit integers are strings, absent is zero.
fn num(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("a number: {s}")),
        v => v.as_f64().unwrap_or_else(|| panic!("a number: {v}")),
    }
}

/// The pushed series of command `comm` as the exposition's samples would be: name and labels
/// (in the exposition's order) to value.
fn pushed(req: &Value, comm: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let metrics = req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .expect("metrics");
    for m in metrics {
        let name = m["name"].as_str().expect("a name");
        let (points, hist) = if m["histogram"].is_object() {
            (&m["histogram"], true)
        } else {
            (&m["sum"], false)
        };
        for p in points["dataPoints"].as_array().into_iter().flatten() {
            let labels: Vec<(String, String)> = p["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a["key"].as_str().unwrap_or("").to_string(), text(a)))
                .collect();
            if !labels.iter().any(|(k, v)| k == "comm" && v == comm) {
                continue;
            }
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let key = |n: &str, extra: Option<String>| {
                let mut all = l.clone();
                all.extend(extra);
                format!("{n}{{{}}}", all.join(","))
            };
            if !hist {
                out.insert(key(name, None), num(&p["asDouble"]));
                continue;
            }
            let bounds = p["explicitBounds"].as_array().cloned().unwrap_or_default();
            let counts = p["bucketCounts"].as_array().cloned().unwrap_or_default();
            assert_eq!(counts.len(), bounds.len() + 1, "{name}: {p}");
            let mut cum = 0.0;
            for (le, c) in bounds.iter().zip(&counts) {
                cum += num(c);
                let le = format!("le=\"{}\"", num(le));
                out.insert(key(&format!("{name}_bucket"), Some(le)), cum);
            }
            let inf = Some("le=\"+Inf\"".to_string());
            out.insert(key(&format!("{name}_bucket"), inf), num(&p["count"]));
            out.insert(key(&format!("{name}_sum"), None), num(&p["sum"]));
            out.insert(key(&format!("{name}_count"), None), num(&p["count"]));
        }
    }
    out
}

/// The scraped series of command `comm`, keyed like [`pushed`].
fn scraped(exposition: &str, comm: &str) -> BTreeMap<String, f64> {
    samples(exposition)
        .into_iter()
        .filter(|s| s.label("comm") == comm)
        .map(|s| {
            let l: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            (format!("{}{{{}}}", s.name, l.join(",")), s.value)
        })
        .collect()
}

/// The value of the only pushed unlabelled metric `name`.
fn pushed_scalar(req: &Value, name: &str) -> f64 {
    let metrics = req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .expect("metrics");
    let m = metrics
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no {name} pushed"));
    let data = if m["sum"].is_object() {
        &m["sum"]
    } else {
        &m["gauge"]
    };
    num(&data["dataPoints"][0]["asDouble"])
}

fn now_ns() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as f64
}

/// When a push's values were read, ns since the epoch.
fn push_time(req: &Value) -> f64 {
    let metrics = req["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .expect("metrics");
    let series = metrics
        .iter()
        .find(|m| m["name"] == "ioprof_series")
        .expect("ioprof_series pushed");
    num(&series["gauge"]["dataPoints"][0]["timeUnixNano"])
}

/// Runs the paced blocking workload under [`COMM`]; its truth.
fn paced_workload() -> Truth {
    let dir = scratch("otlp-workload");
    let exe = dir.join(COMM);
    std::os::unix::fs::symlink(workloads_bin(), &exe).expect("link the workload");
    let truth_path = dir.join("truth.json");
    let status = Command::new(&exe)
        .args(["blocking", "--interval", "5ms", "--count", "100"])
        .args(["--size", "4096", "--truth"])
        .arg(&truth_path)
        .stdout(Stdio::null())
        .status()
        .expect("run the workload");
    assert!(status.success(), "workload failed: {status}");
    Truth::read(&truth_path).expect("truth")
}

/// A receiver answering `status` and a `profiler serve` of [`COMM`] pushing to it every second.
fn pushing_to(status: u16) -> (Receiver, Server) {
    assert_root();
    let rx = Receiver::start(status);
    let args = [
        "--comm",
        COMM,
        "--otlp-endpoint",
        &rx.url,
        "--otlp-interval",
        "1s",
    ];
    let server = Server::start(&args);
    (rx, server)
}

#[test]
fn the_push_equals_the_scrape_and_the_workload_and_a_last_one_comes_at_the_stop() {
    let (rx, server) = pushing_to(200);
    let truth = paced_workload();
    // The workload has ended: every later read of the kernel's sums finds the same series.
    let ended = now_ns();
    let exposition = server.scrape();
    let t0 = Instant::now();
    let last = loop {
        // A push read after the end (one read before may still be on its way).
        if let Some(r) = rx.requests().into_iter().find(|r| push_time(r) > ended) {
            break r;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no push after the workload"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let last = &last;
    let (p, s) = (pushed(last, COMM), scraped(&exposition, COMM));
    assert!(!s.is_empty(), "no series of {COMM} scraped:\n{exposition}");
    let differ: Vec<_> = s
        .iter()
        .filter(|(k, v)| p.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: scraped {v}, pushed {:?}", p.get(k)))
        .chain(
            p.keys()
                .filter(|k| !s.contains_key(*k))
                .map(|k| format!("{k}: only pushed")),
        )
        .collect();
    assert!(
        differ.is_empty(),
        "push and scrape differ:\n{}",
        differ.join("\n")
    );
    // The workload's own count: every recvfrom it timed, and the bytes it received.
    let of = |name: &str| -> f64 {
        p.iter()
            .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains("call=\"recvfrom\""))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(of("ioprof_calls_total"), truth.calls.len() as f64);
    assert_eq!(of("ioprof_bytes_total"), truth.bytes as f64);
    assert_eq!(of("ioprof_wait_seconds_count"), truth.calls.len() as f64);
    // What only OTLP says.
    let resource: BTreeMap<String, String> = last["resourceMetrics"][0]["resource"]["attributes"]
        .as_array()
        .expect("resource attributes")
        .iter()
        .map(|a| (a["key"].as_str().unwrap_or("").to_string(), text(a)))
        .collect();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(resource["service.name"], "ioprof");
    assert_eq!(resource["host.name"], host.trim());
    let metrics = last["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .expect("metrics");
    for m in metrics.iter().filter(|m| m["name"] == "ioprof_calls_total") {
        assert_eq!(m["sum"]["isMonotonic"], true, "{m}");
        assert_eq!(
            m["sum"]["aggregationTemporality"],
            "AGGREGATION_TEMPORALITY_CUMULATIVE"
        );
    }
    for m in metrics
        .iter()
        .filter(|m| m["name"] == "ioprof_wait_seconds")
    {
        let t = &m["histogram"]["aggregationTemporality"];
        assert_eq!(t, "AGGREGATION_TEMPORALITY_CUMULATIVE", "{m}");
    }
    assert_eq!(pushed_scalar(last, "ioprof_otlp_push_failures_total"), 0.0);
    assert_eq!(
        scalar(&samples(&exposition), "ioprof_otlp_push_failures_total"),
        0.0
    );
    // The stop sends one more push, with the same series. Once the server has ended, every
    // push it made has been received (the receiver writes before it answers).
    let stopping = now_ns();
    let log = server.stop();
    let reqs = rx.requests();
    let times: Vec<f64> = reqs.iter().map(push_time).collect();
    let last = reqs.last().expect("pushes");
    assert!(
        push_time(last) >= stopping,
        "no push at the stop: {times:?}\n{log}"
    );
    assert_eq!(pushed(last, COMM), s);
    // Each push is a later moment of the same cumulative sums.
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(reqs.iter().all(|r| r.get("error").is_none()), "{reqs:?}");
    eprintln!(
        "{} pushes; {} samples of {COMM} equal in push and scrape; {} recvfrom",
        reqs.len(),
        s.len(),
        truth.calls.len()
    );
}

#[test]
fn a_collector_answering_500_is_counted_and_metrics_go_on() {
    let (rx, server) = pushing_to(500);
    rx.wait_for(3, Duration::from_secs(15));
    // At most one push is under way: the first two have their answer.
    let all = samples(&server.scrape());
    assert!(scalar(&all, "ioprof_otlp_push_failures_total") >= 2.0);
    assert_eq!(scalar(&all, "ioprof_otlp_pushes_total"), 0.0);
    let (status, body) = get(&server.addr, "/healthz").expect("healthz");
    assert!(status.contains(" 200") && body == "ok\n", "{status} {body}");
    let log = server.stop();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("OTLP push")).collect();
    assert_eq!(failures.len(), 1, "one line per kind of failure:\n{log}");
    assert!(failures[0].contains("answered 500"), "{log}");
}

#[test]
fn an_https_or_malformed_endpoint_is_refused_before_anything_is_attached() {
    assert_root();
    for (url, says) in [
        (
            "https://127.0.0.1:4318/v1/metrics",
            "https is not supported",
        ),
        ("127.0.0.1:4318", "not an http:// URL"),
    ] {
        let out = Command::new(profiler_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--otlp-endpoint", url])
            .output()
            .expect("run profiler serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert_eq!(err.lines().count(), 1, "{url}: {err}");
        assert!(
            err.contains(says) && !err.contains("Serving"),
            "{url}: {err}"
        );
    }
}
