//! A `profiler serve` run in the background by a root test, and plain HTTP requests to it.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::{profiler_bin, signal};

/// A `profiler serve` in the background and the address it serves.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// Starts `profiler serve` on a free loopback port with `args`; returns once it listens.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(profiler_bin())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start profiler serve");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split_once("http://").map(|(_, r)| r) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("profiler serve never said where it listens");
        Self { child, addr }
    }

    /// The body of `/metrics`.
    pub fn scrape(&self) -> String {
        let (status, body) = get(&self.addr, "/metrics").expect("scrape /metrics");
        assert!(status.contains(" 200"), "/metrics: {status}");
        body
    }

    /// Stops it with SIGTERM; it must end at once with status 0.
    pub fn stop(mut self) {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                assert!(s.success(), "profiler serve ended badly on SIGTERM: {s}");
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "no stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A GET over HTTP/1.0; the status line and the body.
pub fn get(addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut all = String::new();
    s.read_to_string(&mut all)?;
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

/// One sample of a Prometheus text exposition: its name, labels and value.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `k` ("" when absent).
    pub fn label(&self, k: &str) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The samples of an exposition (comments skipped; label values without escaped quotes).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").expect("a label");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("a number: {l}")),
            }
        })
        .collect()
}

/// The value of the unlabelled sample `name`.
pub fn scalar(all: &[Sample], name: &str) -> f64 {
    all.iter()
        .find(|s| s.name == name && s.labels.is_empty())
        .unwrap_or_else(|| panic!("no {name} in the exposition"))
        .value
}
