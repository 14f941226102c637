//! Root test of `profiler serve` with a real Prometheus server (Debian's `prometheus`,
//! installed by .ci/run): a paced blocking workload's wait median and call count as
//! Prometheus computes them from the scraped series, the series limit, a graceful stop on
//! SIGTERM, and every PromQL expression of deploy/grafana-dashboard.json. Built only with the
//! `root-tests` feature; there, a test that cannot run fails.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    assert_root, free_port, scratch,
    serve::{Server, get},
    workloads_bin,
};
use workloads::truth::Truth;

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs a PromQL instant query; the result vector (fails the test on an error status).
fn query(prom: &str, q: &str) -> Vec<serde_json::Value> {
    let (status, body) = get(prom, &format!("/api/v1/query?query={}", encode(q))).expect("query");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{q}: {status} {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The single value of a query's result.
fn value(prom: &str, q: &str) -> f64 {
    let r = query(prom, q);
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    r[0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("a number")
}

fn prometheus(dir: &Path, targets: &[&str]) -> (Child, String) {
    let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("no prometheus server: install Debian's `prometheus` package (.ci/run does)");
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ioprof\n    static_configs:\n      - targets: [{list}]\n"
        ),
    )
    .expect("write the config");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .spawn()
        .expect("start prometheus");
    let t0 = Instant::now();
    while !get(&addr, "/-/ready").is_ok_and(|(s, _)| s.contains(" 200")) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "prometheus never got ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (child, addr)
}

/// Every `expr` of a Grafana dashboard.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[test]
fn prometheus_sees_the_paced_wait_the_calls_and_the_series_limit() {
    assert_root();
    let dir = scratch("prometheus");
    // A name of its own, so that other workloads on the machine do not share its series.
    let comm = format!("paced{}", std::process::id() % 100_000);
    let bin = dir.join(&comm);
    std::fs::copy(workloads_bin(), &bin).expect("copy the workload");
    let paced = Server::start(&["--comm", &comm, "--calls", "recvfrom"]);
    let limited = Server::start(&["--max-series", "3"]);
    let (mut prom, addr) = prometheus(&dir, &[&paced.addr, &limited.addr]);
    let (status, body) = get(&paced.addr, "/healthz").expect("healthz");
    assert!(status.contains(" 200") && body == "ok\n", "{status} {body}");
    // Both servers scraped before the workload starts, so that its rates are seen.
    let t0 = Instant::now();
    while query(&addr, "sum(up)")
        .first()
        .and_then(|r| r["value"][1].as_str())
        != Some("2")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "prometheus never scraped both"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let truth_path = dir.join("truth.json");
    let ok = Command::new(&bin)
        .args([
            "blocking",
            "--interval",
            "5ms",
            "--count",
            "600",
            "--size",
            "4096",
        ])
        .arg("--truth")
        .arg(&truth_path)
        .stdout(Stdio::null())
        .status()
        .expect("run the workload");
    assert!(ok.success());
    let truth = Truth::read(&truth_path).expect("truth");
    // Three more scrapes after its end.
    std::thread::sleep(Duration::from_secs(4));
    let sel = format!("comm=\"{comm}\",call=\"recvfrom\"");
    let calls = value(&addr, &format!("sum(ioprof_calls_total{{{sel}}})"));
    let want = truth.calls.len() as f64;
    assert!(
        (calls - want).abs() <= 0.02 * want,
        "calls {calls}, truth {want}"
    );
    let p50 = value(
        &addr,
        &format!(
            "histogram_quantile(0.5, sum by (le) (rate(ioprof_wait_seconds_bucket{{{sel}}}[1m])))"
        ),
    );
    assert!(
        (p50 - 0.005).abs() <= 0.0005,
        "wait p50 {p50}s, paced at 5 ms"
    );
    let inst = format!("instance=\"{}\"", limited.addr);
    let series = value(&addr, &format!("count(ioprof_calls_total{{{inst}}})"));
    assert!(series <= 3.0, "{series} label sets over a limit of 3");
    let dropped = value(&addr, &format!("ioprof_series_dropped_total{{{inst}}}"));
    assert!(
        dropped > 0.0,
        "nothing beyond 3 label sets on the whole machine?"
    );
    let other = value(
        &addr,
        &format!("sum(ioprof_calls_total{{{inst},comm=\"other\"}})"),
    );
    assert!(other > 0.0, "the rest is not summed under comm=\"other\"");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json"),
        )
        .expect("the dashboard"),
    )
    .expect("dashboard JSON");
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() >= 8, "{all:?}");
    for e in &all {
        query(&addr, e);
    }
    let lost = value(
        &addr,
        &format!("ioprof_records_lost_total{{instance=\"{}\"}}", paced.addr),
    );
    assert_eq!(lost, 0.0);
    paced.stop();
    limited.stop();
    let _ = prom.kill();
    let _ = prom.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
