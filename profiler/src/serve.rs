//! `profiler serve`: the probes in summary mode on the plan's filter, and on one tokio runtime
//! an HTTP/1.1 endpoint (`/metrics`, `/healthz`), a periodic read of the kernel's records, the
//! periodic OTLP push and the stop on SIGTERM or SIGINT. The kernel's hot path is the one of
//! `--all`.
pub mod otlp;
pub mod push;
pub mod series;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use probe_common::{COUNTER_SUMMARY_FULL, Counter, SummaryKey};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
};

use crate::{
    capture::{
        decode::{self, Record},
        loader::{LoadOptions, Probes},
    },
    plan::{Mode, serve::ServePlan},
    render::prometheus::{self, Health},
};

/// How often the record buffer (process exits) is read.
const DRAIN_EVERY: Duration = Duration::from_secs(1);

/// The size of the pieces of a `/metrics` answer: what a scrape holds of the text at once.
pub const CHUNK: usize = 64 * 1024;

/// The longest a client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until SIGTERM or SIGINT.
pub fn run(plan: &ServePlan) -> anyhow::Result<()> {
    let opts = LoadOptions {
        calls: plan.calls.clone(),
        mode: Mode::Summary.kernel_bits(),
        message_events: false,
        filter: plan.filter.clone(),
        summary_classes: true,
        ..LoadOptions::default()
    };
    let mut probes = Probes::load(&opts)?;
    for &p in &plan.pids {
        probes.trace_pid(p)?;
    }
    let events = probes.take_events()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let mut state = State {
        series: series::Series::new(plan.max_series),
        names: HashMap::new(),
        exited: HashMap::new(),
        events,
        last_scrape: 0.0,
        programs: probes.hooks.iter().filter(|h| h.error.is_none()).count() as u64,
        probes,
        pusher: plan
            .otlp
            .as_ref()
            .map(|o| push::Pusher::new(o.endpoint.clone(), o.interval)),
        start_ns: unix_ns(),
        host: otlp::host_name(),
    };
    let r = rt.block_on(serve(plan, &mut state));
    state.probes.detach();
    r
}

struct State {
    probes: Probes,
    events: RingBuf<MapData>,
    series: series::Series,
    /// Command names of the processes summed, read at each scrape while they live.
    names: HashMap<u32, String>,
    /// Names of processes that ended, from their exit records, not yet forgotten.
    exited: HashMap<u32, String>,
    last_scrape: f64,
    programs: u64,
    /// With an OTLP endpoint, its pusher.
    pusher: Option<Arc<push::Pusher>>,
    /// When the cumulative sums started, ns since the epoch.
    start_ns: u64,
    host: String,
}

/// Now, ns since the epoch.
fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn serve(plan: &ServePlan, state: &mut State) -> anyhow::Result<()> {
    let listener = TcpListener::bind(plan.listen)
        .await
        .with_context(|| format!("failed to listen on {}", plan.listen))?;
    let addr = listener
        .local_addr()
        .context("failed to read the bound address")?;
    let who = plan.filter.as_ref().map_or_else(
        || format!("pid {:?} and its children", plan.pids),
        |f| f.describe(),
    );
    let push = match &plan.otlp {
        Some(o) => format!(
            ", pushing OTLP to {} every {}",
            o.endpoint.url,
            humantime::format_duration(o.interval)
        ),
        None => String::new(),
    };
    eprintln!("Serving {who} at http://{addr}/metrics{push}… SIGTERM or Ctrl-C to end.");
    let mut term = signal(SignalKind::terminate()).context("failed to handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("failed to handle SIGINT")?;
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    // Without an endpoint the push's timer is never polled.
    let every = plan.otlp.as_ref().map_or(DRAIN_EVERY, |o| o.interval);
    let mut push_tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    push_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pushing: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => state.drain(),
            _ = push_tick.tick(), if plan.otlp.is_some() => {
                if pushing.as_ref().is_some_and(|h| !h.is_finished()) {
                    if let Some(p) = &state.pusher {
                        p.record(Err(push::PushError::Busy));
                    }
                } else if let Some((p, body)) = state.otlp_body() {
                    pushing = Some(tokio::spawn(async move { p.push(body).await }));
                }
            }
            conn = listener.accept() => {
                if let Ok((sock, _)) = conn {
                    // One client at a time: a scrape reads the kernel's maps, which are ours.
                    let _ = tokio::time::timeout(CLIENT_TIMEOUT, state.answer(sock)).await;
                }
            }
        }
    }
    // A last push, so that the collector has what came after the previous one.
    if let Some(h) = pushing {
        let _ = h.await;
    }
    if let Some((p, body)) = state.otlp_body() {
        p.push(body).await;
    }
    eprintln!("profiler serve: stopped");
    Ok(())
}

impl State {
    /// Reads the records the kernel sent (process exits, with their final names).
    fn drain(&mut self) {
        while let Some(item) = self.events.next() {
            if let Ok(Record::Proc(p)) = decode::decode(&item)
                && p.event == probe_common::ProcEvent::Exit as u32
            {
                self.exited
                    .insert(p.pid, crate::plan::target::comm_str(&p.comm));
            }
        }
    }

    async fn answer(&mut self, mut sock: TcpStream) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf);
        let mut words = head.split_whitespace();
        let (status, body) = match (words.next(), words.next()) {
            (Some("GET"), Some("/metrics")) => {
                let t0 = std::time::Instant::now();
                match self.refresh() {
                    Ok(health) => return self.stream_metrics(sock, t0, &health).await,
                    Err(e) => ("500 Internal Server Error", format!("{e:#}\n")),
                }
            }
            (Some("GET"), Some("/healthz")) => ("200 OK", "ok\n".to_string()),
            (Some("GET"), _) => ("404 Not Found", "not found\n".to_string()),
            _ => ("405 Method Not Allowed", "GET only\n".to_string()),
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(answer.as_bytes()).await?;
        sock.shutdown().await?;
        Ok(())
    }

    /// Writes the exposition of the series as it is rendered, a piece of about [`CHUNK`]
    /// bytes at a time; the body ends when the connection closes. The scrape's time, for the
    /// next one, is the reading and the rendering, not the client's pace.
    async fn stream_metrics(
        &mut self,
        mut sock: TcpStream,
        t0: std::time::Instant,
        health: &Health,
    ) -> anyhow::Result<()> {
        let mut busy = t0.elapsed();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nConnection: close\r\n\r\n";
        let mut buf = String::with_capacity(CHUNK + 64 * 1024);
        buf.push_str(head);
        let mut text = prometheus::Exposition::new(&self.series, health);
        let result = loop {
            let t = std::time::Instant::now();
            let more = text.fill(&mut buf, CHUNK);
            busy += t.elapsed();
            if let Err(e) = sock.write_all(buf.as_bytes()).await {
                break Err(e);
            }
            buf.clear();
            if !more {
                break sock.shutdown().await;
            }
        };
        self.last_scrape = busy.as_secs_f64();
        Ok(result?)
    }

    /// The pusher and the encoded OTLP request of the series now (`None` without an
    /// endpoint). A failure to read the kernel's sums counts as a failed push.
    fn otlp_body(&mut self) -> Option<(Arc<push::Pusher>, otlp::Encoded)> {
        let pusher = self.pusher.clone()?;
        // The values are those of this moment or later: the kernel's sums are read after it.
        let now_ns = unix_ns();
        let health = match self.refresh() {
            Ok(h) => h,
            Err(e) => {
                pusher.record(Err(push::PushError::Io(std::io::Error::other(format!(
                    "{e:#}"
                )))));
                return None;
            }
        };
        let cx = otlp::Context {
            host: self.host.clone(),
            start_ns: self.start_ns,
            now_ns,
        };
        Some((pusher, otlp::encode(&self.series, &health, &cx)))
    }

    /// Reads the kernel's sums, extends the series, forgets processes that ended; the health.
    fn refresh(&mut self) -> anyhow::Result<Health> {
        self.drain();
        let live = self.probes.summaries()?;
        let mut gone = Vec::new();
        for k in live.keys() {
            if k.pid == gone.last().map_or(0, |g: &SummaryKey| g.pid) {
                gone.push(*k);
                continue;
            }
            match crate::plan::target::proc_comm(k.pid) {
                Some(c) if !self.exited.contains_key(&k.pid) => {
                    self.names.insert(k.pid, c);
                }
                _ => {
                    if let Some(n) = self.exited.get(&k.pid) {
                        self.names.insert(k.pid, n.clone());
                    }
                    gone.push(*k);
                }
            }
        }
        self.series.update(&live, &self.names);
        // Their sums are in the series now: the kernel's map keeps room for the living.
        self.probes.forget_summaries(&gone)?;
        for k in &gone {
            self.series.forget(k.pid);
            self.names.remove(&k.pid);
            self.exited.remove(&k.pid);
        }
        Ok(Health {
            records_lost: self.probes.counter(Counter::Lost)?,
            summary_full: self.probes.counter_slot(COUNTER_SUMMARY_FULL)?,
            programs_attached: self.programs,
            scrape_seconds: self.last_scrape,
            cpu_seconds: own_cpu_seconds(),
            rss_bytes: own_rss_bytes(),
            otlp: self.pusher.as_ref().map(|p| p.counts()),
        })
    }
}

/// CPU time of this process, user and system, seconds.
fn own_cpu_seconds() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        s(u.user_time()) + s(u.system_time())
    })
}

/// Resident memory of this process, bytes (`/proc/self/statm`).
fn own_rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page
}
