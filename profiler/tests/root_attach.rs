//! Root tests of tracing programs the profiler did not start: attach by pid to a running
//! Python program (its threads and the children it forks included), while an identical
//! program runs beside it untraced; and a real server from the distribution (nginx) under
//! load, its bytes matched to what its clients received; a receiver asleep in a call at
//! attach, that call counted. Built only with the `root-tests` feature (`cargo xtask test`
//! turns it on); there, a test that cannot run fails.
#![cfg(feature = "root-tests")]

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

mod common;
use common::{assert_root, scratch};

use profiler::render::export::CallRow;

/// The program traced by pid. It prints `ready`, waits for a line on stdin (so that it is
/// attached before it does anything), then:
/// - reads FILE in CHUNK-byte `read`s to the end;
/// - receives, in the main thread, what a second thread sends over TCP loopback (MSGS
///   messages of MSG bytes, `sendto` from the thread, `recvfrom` in the main thread);
/// - with `fork`, forks a child that reads FILE again and exits; the parent waits for it.
///
/// It prints `done FD FILE_BYTES RECV_BYTES SENDER_TID CHILD_PID` and exits.
const PROGRAM: &str = r#"
import os, socket, sys, threading
path, chunk, msgs, msg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fork = len(sys.argv) > 5 and sys.argv[5] == "fork"
payload = b"x" * msg
print("ready", flush=True)
sys.stdin.readline()

def read_all():
    fd = os.open(path, os.O_RDONLY)
    n = 0
    while True:
        b = os.read(fd, chunk)
        if not b:
            break
        n += len(b)
    os.close(fd)
    return fd, n

fd, file_bytes = read_all()
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
sender = {}
def send():
    sender["tid"] = threading.get_native_id()
    c = socket.create_connection(listener.getsockname())
    for _ in range(msgs):
        c.sendall(payload)
    c.close()
t = threading.Thread(target=send)
t.start()
conn, _ = listener.accept()
got = 0
while True:
    b = conn.recv(65536)
    if not b:
        break
    got += len(b)
t.join()
child = 0
if fork:
    child = os.fork()
    if child == 0:
        read_all()
        os._exit(0)
    os.waitpid(child, 0)
print("done", fd, file_bytes, got, sender["tid"], child, flush=True)
"#;

/// What the program reported.
#[derive(Debug)]
struct Done {
    fd: i64,
    file_bytes: u64,
    recv_bytes: u64,
    sender_tid: u32,
    child: u32,
}

/// A started copy of the program, waiting for its go.
struct Program {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Program {
    fn start(script: &Path, file: &Path, chunk: u64, msgs: u64, msg: u64, fork: bool) -> Self {
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(file)
            .args([chunk.to_string(), msgs.to_string(), msg.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if fork {
            cmd.arg("fork");
        }
        let mut child = cmd
            .spawn()
            .expect("python3 must be installed (Debian: apt-get install python3)");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready", "the program did not start");
        Self { child, out }
    }

    fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").expect("go");
        stdin.flush().expect("flush");
    }

    fn finish(mut self) -> Done {
        let mut line = String::new();
        self.out.read_line(&mut line).expect("done line");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "program failed: {line}");
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"done"), "{line}");
        let n = |i: usize| f[i].parse::<u64>().expect("number");
        Done {
            fd: n(1) as i64,
            file_bytes: n(2),
            recv_bytes: n(3),
            sender_tid: n(4) as u32,
            child: n(5) as u32,
        }
    }
}

/// A profiler attached by pid, once it says that it traces.
fn attach(pids: &str, csv: &Path, calls: &str) -> common::Running {
    let args = ["-p", pids, "--calls", calls, "-d", "60s", "--csv"].map(OsStr::new);
    let mut args = args.to_vec();
    args.push(csv.as_os_str());
    common::Running::start(&args)
}

/// Waits for a profiler attached by pid to end by itself (every traced process gone); returns
/// its report.
fn finish(prof: common::Running) -> String {
    let done = prof.wait(Duration::from_secs(120));
    assert!(done.status.success(), "profiler failed:\n{}", done.stderr);
    done.stderr
}

fn rows(csv: &Path) -> Vec<CallRow> {
    csv::Reader::from_path(csv)
        .expect("open csv")
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("csv rows")
}

/// A scratch folder with a Python `script` and a data file of `size` bytes in it:
/// `(folder, script path, data file path)`.
fn setup(name: &str, script: &str, size: usize) -> (common::Scratch, PathBuf, PathBuf) {
    assert_root();
    let dir = scratch(name);
    let script_path = dir.join("program.py");
    std::fs::write(&script_path, script).expect("script");
    let file = dir.join("data.bin");
    std::fs::write(&file, vec![7u8; size]).expect("data file");
    (dir, script_path, file)
}

#[test]
fn attached_by_pid_counts_its_calls_and_none_of_a_twin() {
    let (size, chunk, msgs, msg) = (4 * 1024 * 1024 + 123, 65536u64, 400u64, 8192u64);
    let (dir, script, file) = setup("twin", PROGRAM, size);
    let mut traced = Program::start(&script, &file, chunk, msgs, msg, false);
    let mut twin = Program::start(&script, &file, chunk, msgs, msg, false);
    let pid = traced.child.id();
    let twin_pid = twin.child.id();
    let csv = dir.join("calls.csv");
    let prof = attach(&pid.to_string(), &csv, "read,recvfrom,sendto");
    traced.go();
    twin.go();
    let done = traced.finish();
    let twin_done = twin.finish();
    let stdout = finish(prof);
    let rows = rows(&csv);

    assert_eq!(done.file_bytes, size as u64);
    assert_eq!(twin_done.file_bytes, size as u64);
    assert!(
        rows.iter().all(|r| r.pid == pid),
        "a row from another process (the twin is {twin_pid})"
    );
    // The file: one read per chunk, and one at the end that returns 0.
    let file_reads: Vec<&CallRow> = rows
        .iter()
        .filter(|r| r.call == "read" && r.fd == done.fd && r.fd_class == "file")
        .collect();
    let expect_reads = (size as u64).div_ceil(chunk) + 1;
    assert_eq!(file_reads.len() as u64, expect_reads, "{file_reads:?}");
    assert_eq!(file_reads.iter().map(|r| r.bytes).sum::<u64>(), size as u64);
    assert!(file_reads.iter().all(|r| r.tid == pid));
    // TCP: the main thread received everything the sender thread sent.
    let recv: u64 = rows
        .iter()
        .filter(|r| r.call == "recvfrom" && r.fd_class == "tcp" && r.tid == pid)
        .map(|r| r.bytes)
        .sum();
    assert_eq!(recv, msgs * msg);
    assert_eq!(done.recv_bytes, msgs * msg);
    assert_ne!(done.sender_tid, pid);
    let sent: Vec<&CallRow> = rows
        .iter()
        .filter(|r| r.call == "sendto" && r.fd_class == "tcp")
        .collect();
    assert!(
        sent.iter().all(|r| r.tid == done.sender_tid),
        "every send comes from the sender thread"
    );
    assert_eq!(sent.iter().map(|r| r.bytes).sum::<u64>(), msgs * msg);
    // The summary groups them per process and thread, with the thread's model.
    assert!(stdout.contains(&format!("pid {pid} (python3)")), "{stdout}");
    assert!(
        stdout.contains(&format!("tid {}:", done.sender_tid)),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_child_forked_after_attach_is_traced_with_its_own_pid() {
    let size = 1024 * 1024 + 5;
    let (dir, script, file) = setup("fork", PROGRAM, size);
    let mut traced = Program::start(&script, &file, 65536, 10, 1000, true);
    let pid = traced.child.id();
    let csv = dir.join("calls.csv");
    let prof = attach(&pid.to_string(), &csv, "read,recvfrom");
    traced.go();
    let done = traced.finish();
    finish(prof);
    let rows = rows(&csv);
    assert!(done.child > 0 && done.child != pid);
    let child_rows: Vec<&CallRow> = rows.iter().filter(|r| r.pid == done.child).collect();
    assert!(
        child_rows.iter().all(|r| r.tid == done.child),
        "the child is single-threaded"
    );
    let child_file: u64 = child_rows
        .iter()
        .filter(|r| r.call == "read" && r.fd_class == "file")
        .map(|r| r.bytes)
        .sum();
    // Its descriptor number differs from the parent's (the parent holds sockets by then).
    assert_eq!(child_file, size as u64, "the child read the file once");
    let parent_file: u64 = rows
        .iter()
        .filter(|r| r.pid == pid && r.call == "read" && r.fd_class == "file" && r.fd == done.fd)
        .map(|r| r.bytes)
        .sum();
    assert_eq!(parent_file, size as u64, "the parent read it once too");
    assert!(
        rows.iter().all(|r| r.pid == pid || r.pid == done.child),
        "rows only from the process and its child"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_pids_fail_with_the_reason() {
    assert_root();
    let run = |pid: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_profiler"))
            .arg("-v")
            .args(["-p", pid, "-d", "1s"])
            .output()
            .expect("run profiler");
        assert_eq!(out.status.code(), Some(2), "pid {pid} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run("4194305").contains("no process with pid 4194305"));
    assert!(run("0").contains("pid 0 is not a process"));
    assert!(run("2").contains("kernel thread"));
    let mut zombie = Command::new("true").spawn().expect("spawn");
    let zpid = zombie.id();
    while profiler::plan::target::alive(zpid) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(run(&zpid.to_string()).contains("is a zombie"));
    zombie.wait().expect("reap");
}

/// Ends a server on every way out of a test: SIGTERM to the master, which ends its workers
/// and exits; then whatever is left of the listed workers is killed.
#[test]
fn nginx_under_load_sends_what_its_clients_receive() {
    assert_root();
    let server = common::nginx::Nginx::start("nginx");
    let (master, worker) = (server.master, server.worker);
    let dir = server.dir.to_path_buf();

    let csv = dir.join("calls.csv");
    let prof = attach(
        &format!("{master},{worker}"),
        &csv,
        "read,recvfrom,recvmsg,write,writev,sendto,sendmsg,sendfile64,epoll_wait",
    );
    // Load: four clients at once, each fetching the file eight times on one connection.
    let common::nginx::Fetched {
        transfers,
        body_bytes,
        header_bytes,
        request_bytes,
    } = server.fetch(4, 8);
    // Ctrl-C ends the run: it detaches, writes the CSV and prints the summary.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(prof.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("interrupt the profiler");
    let stdout = finish(prof);
    let rows = rows(&csv);
    drop(server);

    assert!(
        rows.iter().all(|r| r.pid == master || r.pid == worker),
        "rows only from nginx"
    );
    let sum = |f: &dyn Fn(&CallRow) -> bool| -> u64 {
        rows.iter().filter(|r| f(r)).map(|r| r.bytes).sum()
    };
    let sendfile =
        sum(&|r| r.call == "sendfile64" && r.fd_class == "file" && r.fd_out_class == "tcp");
    assert_eq!(
        sendfile, body_bytes,
        "the body goes out by sendfile, file→tcp"
    );
    let headers = sum(&|r| {
        matches!(r.call.as_str(), "write" | "writev" | "sendto" | "sendmsg") && r.fd_class == "tcp"
    });
    assert_eq!(headers, header_bytes, "the headers go out by write/writev");
    let requests =
        sum(&|r| matches!(r.call.as_str(), "read" | "recvfrom" | "recvmsg") && r.fd_class == "tcp");
    assert_eq!(requests, request_bytes, "nginx read what curl sent");
    assert!(
        rows.iter()
            .any(|r| r.call == "epoll_wait" && r.pid == worker)
    );
    assert!(stdout.contains("sendfile64   file→tcp"), "{stdout}");
    assert!(
        stdout.contains(&format!("tid {worker}: multiplexing")),
        "nginx's worker waits in epoll_wait, then reads:\n{stdout}"
    );
    eprintln!(
        "nginx: {transfers} transfers, body {body_bytes} B by sendfile64, headers {header_bytes} B, requests {request_bytes} B\n{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads a file, closes it, reads a pipe that gets the same descriptor number, then a Unix
/// and a UDP socket, and exits at once: prints the file's and the pipe's descriptors.
const CLASSES: &str = r#"
import os, socket, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.read(fd, 100)
os.close(fd)
r, w = os.pipe()
os.write(w, b"abc")
os.read(r, 3)
a, b = socket.socketpair()
a.send(b"u" * 11)
b.recv(11)
d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d.bind(("127.0.0.1", 0))
d.sendto(b"d" * 13, d.getsockname())
d.recvfrom(13)
print(fd, r, flush=True)
"#;

/// Runs the profiler with `args` and `--csv` on a Python `script` given a 4 KiB data file:
/// the scratch folder, the CSV and the profiler's output, which must be a success.
fn profile_script(name: &str, script: &str, args: &[&str]) -> (common::Scratch, PathBuf, Output) {
    let (dir, script, file) = setup(name, script, 4096);
    let csv = dir.join("calls.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_profiler"))
        .args(args)
        .arg("--csv")
        .arg(&csv)
        .arg("--")
        .arg("python3")
        .arg(&script)
        .arg(&file)
        .output()
        .expect("run profiler");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, csv, out)
}

/// The numbers on the traced program's first line, the first of the profiler's stdout (the
/// program inherits it).
fn first_line_numbers(out: &Output) -> Vec<i64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .expect("program output")
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

#[test]
fn descriptor_classes_survive_exit_and_reuse() {
    let (dir, csv, out) = profile_script("classes", CLASSES, &["-v", "--calls", "read,recvfrom"]);
    let fds = first_line_numbers(&out);
    assert_eq!(
        fds[0], fds[1],
        "the pipe reuses the file's descriptor number"
    );
    // Records are read after the process has gone: only classes taken at entry are right.
    let rows = rows(&csv);
    let on = |fd: i64, class: &str, bytes: u64| {
        rows.iter()
            .any(|r| r.call == "read" && r.fd == fd && r.fd_class == class && r.bytes == bytes)
    };
    assert!(on(fds[0], "file", 100), "{rows:?}");
    assert!(on(fds[1], "pipe", 3), "{rows:?}");
    let recv = |class: &str| -> u64 {
        rows.iter()
            .filter(|r| r.call == "recvfrom" && r.fd_class == class)
            .map(|r| r.bytes)
            .sum()
    };
    assert_eq!((recv("unix"), recv("udp")), (11, 13));
    assert!(rows.iter().all(|r| r.fd_class != "unknown"), "{rows:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// One descriptor number that a process closes and reuses in every way that can change what
/// it refers to: a file; a pipe put over it by `dup2`; a Unix socket after `close_range`; a
/// pipe after `exec`. Each read has its own size. Prints the number, which must be the same
/// in every step.
const REUSED: &str = r#"
import os, socket, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDONLY)
os.read(fd, 5)
os.read(fd, 5)
r, w = os.pipe()
os.write(w, b"p" * 6)
os.dup2(r, fd)
os.read(fd, 6)
os.closerange(fd, fd + 1)
a, b = socket.socketpair()
assert a.fileno() == fd, (a.fileno(), fd)
b.send(b"u" * 7)
os.read(fd, 7)
b.send(b"u" * 8)
os.read(fd, 8)
print(os.getpid(), fd, flush=True)
# After exec the number is free again (close-on-exec): a pipe's read end takes it, through
# dup (which closes nothing).
child = "import os, sys\nfd = int(sys.argv[1])\nr, w = os.pipe()\nassert w != fd, (r, w, fd)\nsrc = r\nwhile r != fd:\n    r = os.dup(src)\nos.write(w, b'e' * 9)\nos.read(fd, 9)\n"
os.execv(sys.executable, [sys.executable, "-c", child, str(fd)])
"#;

#[test]
fn cached_descriptor_classes_follow_dup2_close_range_and_exec() {
    let (_dir, csv, out) =
        profile_script("reused", REUSED, &["--show", "hooks", "--calls", "read"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("descriptor classes cached per process")
                && !l.contains("unavailable")),
        "the class cache was not in use:\n{stderr}"
    );
    let ids = first_line_numbers(&out);
    let (pid, fd) = (ids[0] as u32, ids[1]);
    // The program's reads of that descriptor from its first (exec keeps the pid; the reads
    // before are the interpreter's start-up), by size: their classes.
    let rows: Vec<(u64, String)> = rows(&csv)
        .into_iter()
        .filter(|r| r.pid == pid && r.call == "read" && r.fd == fd)
        .map(|r| (r.bytes, r.fd_class))
        .skip_while(|r| r.0 != 5)
        .collect();
    let class_of = |bytes: u64| -> Vec<&str> {
        rows.iter()
            .filter(|r| r.0 == bytes)
            .map(|r| r.1.as_str())
            .collect()
    };
    assert_eq!(class_of(5), ["file", "file"], "{rows:?}");
    assert_eq!(class_of(6), ["pipe"], "after dup2: {rows:?}");
    assert_eq!(class_of(7), ["unix"], "after close_range: {rows:?}");
    assert_eq!(class_of(8), ["unix"], "{rows:?}");
    assert_eq!(class_of(9), ["pipe"], "after exec: {rows:?}");
}

/// A paced receiver: a thread sends MSGS messages of 64 bytes, one every 300 ms, over TCP
/// loopback; the main thread receives them with `recvfrom` and, at the end, prints one line
/// per call: `call BEFORE_NS AFTER_NS RET` (CLOCK_MONOTONIC, as the probes read it).
const PACED: &str = r#"
import socket, sys, threading, time
msgs = int(sys.argv[1])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
def send():
    s = socket.create_connection(listener.getsockname())
    for _ in range(msgs):
        time.sleep(0.3)
        s.sendall(b"m" * 64)
    s.close()
threading.Thread(target=send).start()
conn, _ = listener.accept()
print("ready", flush=True)
calls = []
while True:
    before = time.monotonic_ns()
    b = conn.recv(64)
    calls.append((before, time.monotonic_ns(), len(b)))
    if not b:
        break
for c in calls:
    print("call", *c)
"#;

#[test]
fn a_call_in_flight_at_attach_is_counted_with_its_start_unknown() {
    let (dir, script, _) = setup("inflight", PACED, 0);
    let mut receiver = Command::new("python3")
        .arg(&script)
        .arg("8")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut out = BufReader::new(receiver.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready");
    // Attach while the receiver sleeps in recvfrom, waiting for a message.
    std::thread::sleep(Duration::from_millis(450));
    let csv = dir.join("calls.csv");
    let prof = attach(&receiver.id().to_string(), &csv, "recvfrom");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut out, &mut text).expect("receiver output");
    assert!(receiver.wait().expect("receiver").success());
    finish(prof);
    let truth: Vec<(u64, u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .strip_prefix("call ")?
                .split(' ')
                .map(|v| v.parse().expect("number"))
                .collect();
            Some((f[0], f[1], f[2]))
        })
        .collect();
    let rows: Vec<CallRow> = rows(&csv)
        .into_iter()
        .filter(|r| r.call == "recvfrom" && r.fd_class == "tcp")
        .collect();
    let unknown: Vec<&CallRow> = rows.iter().filter(|r| !r.start_known).collect();
    assert_eq!(
        unknown.len(),
        1,
        "the receiver was asleep in recvfrom at attach: one call of unknown start: {rows:?}"
    );
    let attach_ns = unknown[0].start_ns;
    assert!(
        truth
            .iter()
            .any(|&(before, after, _)| before < attach_ns && after > attach_ns),
        "the call of unknown start began before the run and ended after: {truth:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r.start_known)
            .all(|r| r.start_ns > attach_ns),
        "{rows:?}"
    );
    // Every call that ended after tracing began is counted, with its bytes.
    let ended_after: Vec<&(u64, u64, u64)> = truth
        .iter()
        .filter(|&&(_, after, _)| after > attach_ns)
        .collect();
    assert_eq!(rows.len(), ended_after.len(), "{rows:?}\n{truth:?}");
    assert_eq!(
        rows.iter().map(|r| r.bytes).sum::<u64>(),
        ended_after.iter().map(|c| c.2).sum::<u64>()
    );
    let _ = std::fs::remove_dir_all(dir);
}
