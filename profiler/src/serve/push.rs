//! The OTLP/HTTP push: a protobuf body POSTed over HTTP/1.1 to the collector's endpoint, each
//! push under a time limit. Successes and failures are counted for the health metrics; a
//! failure is logged in one line, at most once a minute per kind (no connection, no answer in
//! time, each error status, a broken exchange), and never stops the serving.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::{plan::serve::Endpoint, render::prometheus::PushCounts, serve::otlp::Encoded};

/// The longest a push may take, whatever the interval.
const MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// The least time between two log lines of one kind of failure.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the collector answered {0}")]
    Status(String),
    #[error("the exchange broke off: {0}")]
    Io(#[from] std::io::Error),
    #[error("the previous push was still under way")]
    Busy,
}

impl PushError {
    /// The kind of failure, for the log's rate limit.
    fn kind(&self) -> String {
        match self {
            Self::Connect(_) => "connect".into(),
            Self::Timeout(_) => "timeout".into(),
            // A three-digit code each, so that a collector cannot make kinds without end.
            Self::Status(s) => match s.split(' ').next() {
                Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("status {code}")
                }
                _ => "status other".into(),
            },
            Self::Io(_) => "io".into(),
            Self::Busy => "busy".into(),
        }
    }
}

/// Pushes to one endpoint and keeps their account.
#[derive(Debug)]
pub struct Pusher {
    endpoint: Endpoint,
    timeout: Duration,
    ok: AtomicU64,
    failed: AtomicU64,
    /// Per kind of failure: when it was last logged, and how many were not logged since.
    logged: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Pusher {
    /// A pusher to `endpoint`; a push may take as long as the interval, at most 10 s.
    pub fn new(endpoint: Endpoint, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            timeout: interval.min(MAX_TIMEOUT),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            logged: Mutex::new(HashMap::new()),
        })
    }

    /// Pushes so far.
    pub fn counts(&self) -> PushCounts {
        PushCounts {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// POSTs `body` within the time limit and counts the outcome.
    pub async fn push(&self, body: Encoded) {
        let r = match tokio::time::timeout(self.timeout, post(&self.endpoint, &body)).await {
            Ok(r) => r,
            Err(_) => Err(PushError::Timeout(self.timeout)),
        };
        self.record(r);
    }

    /// Counts a push's outcome; logs a failure unless one of its kind was logged lately.
    pub fn record(&self, r: Result<(), PushError>) {
        let e = match r {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) => e,
        };
        self.failed.fetch_add(1, Ordering::Relaxed);
        let Ok(mut logged) = self.logged.lock() else {
            return;
        };
        let now = Instant::now();
        match logged.get_mut(&e.kind()) {
            Some((at, quiet)) if now.duration_since(*at) < LOG_EVERY => *quiet += 1,
            entry => {
                let quiet = entry.map_or(0, |(_, q)| *q);
                let since = match quiet {
                    0 => String::new(),
                    n => format!("; {n} more of this kind since the last line"),
                };
                eprintln!(
                    "profiler serve: OTLP push to {} failed: {e}{since} (logged at most once a minute per kind)",
                    self.endpoint.url
                );
                logged.insert(e.kind(), (now, 0));
            }
        }
    }
}

/// One POST of a protobuf body; `Ok` on a 2xx answer.
async fn post(to: &Endpoint, body: &Encoded) -> Result<(), PushError> {
    let mut sock = TcpStream::connect((to.host.as_str(), to.port))
        .await
        .map_err(PushError::Connect)?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ioprof/{}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        to.path,
        to.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&body.head).await?;
    for f in &body.families {
        sock.write_all(f).await?;
    }
    let mut answer = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !answer.contains(&b'\n') && answer.len() < 8192 {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1."))
        .and_then(|l| l.get(2..))
        .map(str::trim)
        .unwrap_or_default()
        // The collector's words reach the log: printable ASCII only, and short.
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect::<String>();
    if status.starts_with('2') {
        Ok(())
    } else if status.is_empty() {
        Err(PushError::Status("nothing readable as HTTP".into()))
    } else {
        Err(PushError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-request server that answers `status` and hands back what it was sent.
    async fn collector(status: &'static str) -> (Endpoint, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            // The head, then as many body bytes as it announced.
            loop {
                let n = s.read(&mut chunk).await.expect("read");
                got.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.parse().ok())
                        .expect("a length");
                    if body.len() >= len || n == 0 {
                        break;
                    }
                }
            }
            let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            s.write_all(answer.as_bytes()).await.expect("answer");
            got
        });
        let url = format!("http://127.0.0.1:{port}/v1/metrics");
        (Endpoint::parse(&url).expect("url"), task)
    }

    fn body(head: &[u8], family: &[u8]) -> Encoded {
        Encoded {
            head: head.to_vec(),
            families: vec![family.to_vec()],
        }
    }

    #[tokio::test]
    async fn pushes_are_posted_and_their_outcomes_counted() {
        let (to, server) = collector("200 OK").await;
        let p = Pusher::new(to, Duration::from_secs(5));
        p.push(body(b"\x0a", b"\x00")).await;
        let got = String::from_utf8_lossy(&server.await.expect("server")).to_string();
        assert!(got.starts_with("POST /v1/metrics HTTP/1.1\r\n"), "{got}");
        assert!(
            got.contains("\r\nContent-Type: application/x-protobuf\r\n"),
            "{got}"
        );
        assert!(
            got.ends_with("\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\n\0"),
            "{got:?}"
        );
        assert_eq!(p.counts(), PushCounts { ok: 1, failed: 0 });

        let (to, server) = collector("500 Internal Server Error").await;
        let p = Pusher::new(to.clone(), Duration::from_secs(5));
        p.push(body(&[1], &[2, 3])).await;
        server.await.expect("server");
        // Nobody listens there any more: no connection.
        p.push(body(&[1], &[2, 3])).await;
        assert_eq!(p.counts(), PushCounts { ok: 0, failed: 2 });
        let kinds: Vec<String> = {
            let mut k: Vec<String> = p.logged.lock().expect("lock").keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(kinds, ["connect", "status 500"]);
    }

    #[tokio::test]
    async fn a_collectors_status_reaches_the_log_as_short_printable_text() {
        let (to, server) = collector(
            "503 \x1b[31mred\x07 and a very long reason that goes on and on and on and on",
        )
        .await;
        let r = post(&to, &body(&[1], &[2])).await;
        server.await.expect("server");
        let Err(e @ PushError::Status(_)) = r else {
            panic!("{r:?}")
        };
        let text = e.to_string();
        assert!(
            text.starts_with("the collector answered 503 [31mred and a very long"),
            "{text:?}"
        );
        assert!(
            text.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{text:?}"
        );
        assert!(
            text.len() <= "the collector answered ".len() + 64,
            "{text:?}"
        );
        assert_eq!(e.kind(), "status 503");
        assert_eq!(PushError::Status("5xx?".into()).kind(), "status other");
    }
}
