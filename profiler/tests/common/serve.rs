//! A `profiler serve` run in the background by a root test, plain HTTP requests to it, and an
//! OTLP receiver that decodes its pushes with the OTel project's Python classes.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use super::{profiler_bin, signal};

/// A `profiler serve` in the background and the address it serves.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Its standard error so far.
    pub log: Arc<Mutex<String>>,
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
        let log = Arc::new(Mutex::new(String::new()));
        let all = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split_once("http://").map(|(_, r)| r) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                }
                if let Ok(mut all) = all.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("profiler serve never said where it listens");
        Self { child, addr, log }
    }

    /// The body of `/metrics`.
    pub fn scrape(&self) -> String {
        let (status, body) = get(&self.addr, "/metrics").expect("scrape /metrics");
        assert!(status.contains(" 200"), "/metrics: {status}");
        body
    }

    /// Stops it with SIGTERM; it must end at once with status 0. Its standard error.
    pub fn stop(mut self) -> String {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                assert!(s.success(), "profiler serve ended badly on SIGTERM: {s}");
                // The reader thread sees the end of the pipe soon after the exit.
                std::thread::sleep(Duration::from_millis(100));
                return self.log.lock().map(|l| l.clone()).unwrap_or_default();
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

/// Where the receiver's Python packages are installed (`pip install --target`), as .ci/run
/// does: under the user's cache, per requirements file.
fn otlp_python() -> PathBuf {
    let requirements = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp/requirements.txt");
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let dir = cache.join("ioprof/otlp-python");
    let pinned = std::fs::read_to_string(requirements).expect("requirements");
    let stamp = dir.join("requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(pinned.as_str()) {
        let ok = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
            ])
            .args(["--break-system-packages", "--upgrade", "--target"])
            .arg(&dir)
            .args(["-r", requirements])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot install the OTLP receiver's Python packages: `python3 -m pip install --target {} -r {requirements}` failed (Debian: apt-get install python3-pip; .ci/run does both)",
            dir.display()
        );
        std::fs::write(&stamp, pinned).expect("write the stamp");
    }
    dir
}

/// The OTLP receiver (tests/otlp/receiver.py) in the background.
pub struct Receiver {
    child: Child,
    /// The full metrics URL to push to.
    pub url: String,
    out: PathBuf,
    /// Deleted when the test passes.
    _dir: super::Scratch,
}

impl Receiver {
    /// Starts it on a free loopback port; it answers each push with `status`.
    pub fn start(status: u16) -> Self {
        let dir = super::scratch("otlp-receiver");
        let out = dir.join("pushes.jsonl");
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/otlp/receiver.py"
            ))
            .arg(&out)
            .arg(status.to_string())
            .env("PYTHONPATH", otlp_python())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3 (.ci/run installs it)");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the receiver's port");
        let port: u16 = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the receiver did not start: {first:?}"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}/v1/metrics"),
            out,
            _dir: dir,
        }
    }

    /// The requests received so far, decoded (the OTLP/JSON mapping).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Waits until at least `n` requests arrived (at most `limit`); the requests.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<serde_json::Value> {
        let t0 = Instant::now();
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                t0.elapsed() < limit,
                "{} OTLP pushes in {limit:?}, wanted {n}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
