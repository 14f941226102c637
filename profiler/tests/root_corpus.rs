//! Root tests of the findings on servers this project did not write, checked against what
//! the programs and their clients say of themselves: Python's `http.server` downloaded with
//! curl (bytes equal curl's, the accepting thread waits in a selector and reads nothing, the
//! handler threads block),
//! and a Python asyncio echo server (multiplexing, bytes equal the client's). Built only with
//! the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::{Running, assert_root, ensure_program, free_port, read_complete_csv, scratch, signal};
use profiler::render::export::CallRow;
use serde_json::Value;

/// A server process, killed on every way out of a test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `python3 ARGS…` and waits until it accepts on `port`.
fn python_server(args: &[&str], port: u16, dir: &Path) -> Server {
    ensure_program("python3", "python3");
    let server = Server(
        Command::new("python3")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3"),
    );
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // The probe connection is accepted and closed before the profiler attaches.
            std::thread::sleep(Duration::from_millis(200));
            return server;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("python3 {args:?} did not listen on port {port}");
}

/// A profiler attached to a pid, with the per-call CSV and the findings.
struct Attached {
    running: Running,
    csv: PathBuf,
    findings: PathBuf,
}

fn attach(pid: u32, dir: &Path) -> Attached {
    assert_root();
    let csv = dir.join("calls.csv");
    let findings = dir.join("findings.json");
    let pid = pid.to_string();
    let running = Running::start(&[
        "-p".as_ref(),
        pid.as_ref(),
        "-d".as_ref(),
        "60s".as_ref(),
        "--csv".as_ref(),
        csv.as_os_str(),
        "--findings".as_ref(),
        findings.as_os_str(),
    ]);
    Attached {
        running,
        csv,
        findings,
    }
}

impl Attached {
    /// Ctrl-C ends the run; returns the per-call rows and the findings.
    fn stop(self) -> (Vec<CallRow>, Value) {
        signal(self.running.pid(), nix::sys::signal::Signal::SIGINT);
        let done = self.running.wait(Duration::from_secs(60));
        assert!(
            done.status.success(),
            "profiler failed: {}\n{}",
            done.status,
            done.stderr
        );
        eprintln!("{}", done.stderr);
        let findings: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.findings).expect("findings"))
                .expect("findings JSON");
        (read_complete_csv(&self.csv), findings)
    }
}

/// Every traced thread's (tid, model) from the findings.
fn models(findings: &Value) -> Vec<(u64, String)> {
    findings["threads"]
        .as_array()
        .expect("findings.threads")
        .iter()
        .map(|t| {
            (
                t["tid"].as_u64().expect("tid"),
                t["model"].as_str().expect("model").to_string(),
            )
        })
        .collect()
}

/// Bytes of the rows of `calls` on TCP descriptors (the destination for sends).
fn tcp_bytes(rows: &[CallRow], calls: &[&str]) -> u64 {
    rows.iter()
        .filter(|r| calls.contains(&r.call.as_str()))
        .filter(|r| r.fd_class == "tcp" || r.fd_out_class == "tcp")
        .map(|r| r.bytes)
        .sum()
}

const SENDS: &[&str] = &[
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "sendfile64",
    "sendmmsg",
];
const RECEIVES: &[&str] = &["read", "readv", "recvfrom", "recvmsg", "recvmmsg"];

#[test]
fn python_http_server_sends_what_curl_downloads() {
    ensure_program("curl", "curl");
    let dir = scratch("corpus-http");
    let size = 3 * 1024 * 1024 + 17;
    let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("f.bin"), &body).expect("file");
    let port = free_port();
    let server = python_server(
        &[
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ],
        port,
        &dir,
    );
    let pid = server.0.id();
    let prof = attach(pid, &dir);
    let fetches = 6u64;
    let url = format!("http://127.0.0.1:{port}/f.bin");
    let (mut body_bytes, mut header_bytes) = (0u64, 0u64);
    for _ in 0..fetches {
        // One connection per fetch, a moment apart, so the server waits between them.
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{size_header}",
            ])
            .arg(&url)
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl failed");
        let v: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|x| x.parse().expect("curl number"))
            .collect();
        assert_eq!(v[0], size as u64, "a short body");
        body_bytes += v[0];
        header_bytes += v[1];
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (rows, findings) = prof.stop();
    drop(server);

    assert!(
        rows.iter().all(|r| r.pid == pid),
        "rows only from the server"
    );
    assert_eq!(
        tcp_bytes(&rows, SENDS),
        body_bytes + header_bytes,
        "the server sent what curl received, headers included"
    );
    let moved = findings["data"]["bytes_moved"]
        .as_u64()
        .expect("data.bytes_moved");
    assert!(
        moved >= body_bytes,
        "data moved {moved} B, curl downloaded {body_bytes} B"
    );
    let threads = models(&findings);
    // The main thread waits in a selector for connections and hands each to a new thread: it
    // reads no data itself.
    let main = findings["threads"]
        .as_array()
        .expect("findings.threads")
        .iter()
        .find(|t| t["tid"].as_u64() == Some(u64::from(pid)))
        .unwrap_or_else(|| panic!("no finding for the main thread: {threads:?}"));
    assert_eq!(
        main["model"], "no-input",
        "the accepting thread reads nothing: {main}"
    );
    assert!(
        main["counts"]["ready_waits"].as_u64() >= Some(fetches),
        "serve_forever waits in a selector once per connection: {main}"
    );
    let handlers: Vec<_> = threads
        .iter()
        .filter(|(tid, m)| *tid != u64::from(pid) && m != "no-input")
        .collect();
    assert!(
        !handlers.is_empty(),
        "a handler thread per request read its request: {threads:?}"
    );
    for (tid, m) in &handlers {
        assert_eq!(
            m, "blocking",
            "handler thread {tid} reads its request with blocking recv: {threads:?}"
        );
    }
    assert!(
        threads.iter().all(|(_, m)| m != "signal-driven"),
        "no signal was sent: {threads:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// An asyncio echo server: one event loop thread, epoll.
const ECHO: &str = r#"
import asyncio, sys
async def echo(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

#[test]
fn python_asyncio_server_multiplexes_and_echoes_every_byte() {
    let dir = scratch("corpus-asyncio");
    std::fs::write(dir.join("echo.py"), ECHO).expect("script");
    let port = free_port();
    let server = python_server(&["echo.py", &port.to_string()], port, &dir);
    let pid = server.0.id();
    let prof = attach(pid, &dir);
    let (messages, size) = (40, 1000usize);
    let mut sent = 0u64;
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut buf = vec![0u8; size];
    for i in 0..messages {
        let msg = vec![b'a' + (i % 26) as u8; size];
        conn.write_all(&msg).expect("send");
        conn.read_exact(&mut buf).expect("echo");
        assert_eq!(buf, msg, "the echo differs");
        sent += size as u64;
        // Paced, so that the server waits for each message.
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(conn);
    std::thread::sleep(Duration::from_millis(200));
    let (rows, findings) = prof.stop();
    drop(server);

    assert_eq!(
        tcp_bytes(&rows, RECEIVES),
        sent,
        "received what the client sent"
    );
    assert_eq!(tcp_bytes(&rows, SENDS), sent, "echoed what the client sent");
    let threads = models(&findings);
    let main = threads
        .iter()
        .find(|(tid, _)| *tid == u64::from(pid))
        .unwrap_or_else(|| panic!("no finding for the event loop thread: {threads:?}"));
    assert_eq!(
        main.1, "multiplexing",
        "the event loop waits in epoll_wait, then reads: {threads:?}"
    );
    assert!(
        rows.iter().any(|r| r.call == "epoll_wait" && r.tid == pid),
        "the loop waits in epoll_wait"
    );
    let _ = std::fs::remove_dir_all(dir);
}
