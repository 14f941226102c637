//! Root tests of tracing programs the profiler did not start: attach by pid to a running
//! Python program (its threads and the children it forks included), while an identical
//! program runs beside it untraced; and a real server from the distribution (nginx) under
//! load, its bytes matched to what its clients received. Built only with the `root-tests`
//! feature (`cargo xtask test` turns it on); there, a test that cannot run fails.
#![cfg(feature = "root-tests")]

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
};

use profiler::export::CallRow;

fn assert_root() {
    assert!(
        profiler::privilege::missing().is_empty(),
        "root tests need root (or CAP_BPF + CAP_PERFMON): run `sudo cargo xtask test`"
    );
}

/// A scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ioprof-attach-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

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
struct Attached {
    child: Child,
    err: BufReader<ChildStderr>,
    banner: String,
}

fn attach(pids: &str, csv: &Path, calls: &str) -> Attached {
    let mut child = Command::new(env!("CARGO_BIN_EXE_profiler"))
        .args(["-p", pids, "--calls", calls, "-d", "60s", "--csv"])
        .arg(csv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run profiler");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut banner = String::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).expect("profiler stderr");
        banner.push_str(&line);
        assert!(n > 0, "the profiler ended before attaching:\n{banner}");
        if line.contains("Ctrl-C to end") {
            break;
        }
    }
    Attached { child, err, banner }
}

impl Attached {
    /// Waits for the profiler to end by itself (every traced process gone); returns stdout.
    fn finish(mut self) -> String {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.err, &mut rest);
        let out = self.child.wait_with_output().expect("profiler output");
        assert!(
            out.status.success(),
            "profiler failed:\n{}{rest}",
            self.banner
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn rows(csv: &Path) -> Vec<CallRow> {
    csv::Reader::from_path(csv)
        .expect("open csv")
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("csv rows")
}

/// A file of `size` bytes.
fn data_file(dir: &Path, size: usize) -> PathBuf {
    let p = dir.join("data.bin");
    std::fs::write(&p, vec![7u8; size]).expect("data file");
    p
}

#[test]
fn attached_by_pid_counts_its_calls_and_none_of_a_twin() {
    assert_root();
    let dir = scratch("twin");
    let script = dir.join("program.py");
    std::fs::write(&script, PROGRAM).expect("script");
    let (size, chunk, msgs, msg) = (4 * 1024 * 1024 + 123, 65536u64, 400u64, 8192u64);
    let file = data_file(&dir, size);
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
    let stdout = prof.finish();
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
    assert_root();
    let dir = scratch("fork");
    let script = dir.join("program.py");
    std::fs::write(&script, PROGRAM).expect("script");
    let size = 1024 * 1024 + 5;
    let file = data_file(&dir, size);
    let mut traced = Program::start(&script, &file, 65536, 10, 1000, true);
    let pid = traced.child.id();
    let csv = dir.join("calls.csv");
    let prof = attach(&pid.to_string(), &csv, "read,recvfrom");
    traced.go();
    let done = traced.finish();
    prof.finish();
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
    while profiler::target::alive(zpid) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(run(&zpid.to_string()).contains("is a zombie"));
    zombie.wait().expect("reap");
}
