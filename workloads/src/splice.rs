//! Zero-copy send with `splice`: a file goes file → pipe → TCP socket without passing through
//! user memory; a receiver reads the stream with `recvfrom` and discards it.
use std::{
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::Context as _;

use crate::{
    clock::now_ns,
    files::ensure_file,
    net::{recvfrom, tcp_pair},
    truth::{CallTruth, Truth, gettid},
};

/// Knobs of a file transfer.
#[derive(Clone, Debug)]
pub struct FileTransfer {
    /// The file to send (made on first use); `None`: one in the cache folder.
    pub file: Option<PathBuf>,
    /// Its size in bytes.
    pub size: u64,
}

/// Bytes moved per `splice` call (the default pipe capacity).
const CHUNK: usize = 64 << 10;

fn splice(fd_in: i32, off_in: Option<&mut i64>, fd_out: i32, len: usize) -> isize {
    let off = off_in.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    // SAFETY: plain descriptors; `off` is null or points to a live i64.
    unsafe {
        libc::splice(
            fd_in,
            off,
            fd_out,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE,
        ) as isize
    }
}

fn timed(calls: &Mutex<Vec<CallTruth>>, call: &str, fd: i32, f: impl FnOnce() -> isize) -> isize {
    let tid = gettid();
    let before_ns = now_ns();
    let ret = f();
    let after_ns = now_ns();
    if let Ok(mut c) = calls.lock() {
        c.push(CallTruth {
            call: call.into(),
            tid,
            fd,
            before_ns,
            after_ns,
            ret: ret as i64,
        });
    }
    ret
}

fn send_file(
    path: &Path,
    sock: std::net::TcpStream,
    calls: &Mutex<Vec<CallTruth>>,
) -> anyhow::Result<u64> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let (pipe_r, pipe_w): (OwnedFd, OwnedFd) =
        nix::unistd::pipe().context("failed to create a pipe")?;
    let (f, pr, pw, s) = (
        file.as_raw_fd(),
        pipe_r.as_raw_fd(),
        pipe_w.as_raw_fd(),
        sock.as_raw_fd(),
    );
    let mut off: i64 = 0;
    loop {
        let n = timed(calls, "splice", f, || splice(f, Some(&mut off), pw, CHUNK));
        anyhow::ensure!(
            n >= 0,
            "splice file→pipe failed: {}",
            std::io::Error::last_os_error()
        );
        if n == 0 {
            break;
        }
        let mut left = n as usize;
        while left > 0 {
            let m = timed(calls, "splice", pr, || splice(pr, None, s, left));
            anyhow::ensure!(
                m > 0,
                "splice pipe→socket failed: {}",
                std::io::Error::last_os_error()
            );
            left -= m as usize;
        }
    }
    sock.shutdown(std::net::Shutdown::Write)?;
    Ok(off as u64)
}

/// Runs the workload and returns its truth.
pub fn run(t: &FileTransfer) -> anyhow::Result<Truth> {
    let path = ensure_file(t.file.as_deref(), t.size)?;
    let (tx, rx) = tcp_pair()?;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let t0 = now_ns();
    let sender = {
        let calls = Arc::clone(&calls);
        let path = path.clone();
        std::thread::spawn(move || send_file(&path, tx, &calls))
    };
    let fd = rx.as_raw_fd();
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        let n = timed(&calls, "recvfrom", fd, || recvfrom(fd, &mut buf, 0));
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        anyhow::ensure!(
            n >= 0,
            "receiver: recvfrom failed: {}",
            std::io::Error::last_os_error()
        );
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let wall_ns = now_ns() - t0;
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    anyhow::ensure!(
        sent == t.size && received == t.size,
        "moved {sent} bytes and received {received} of {}",
        t.size
    );
    let calls = std::mem::take(&mut *calls.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(Truth {
        workload: "splice".into(),
        pid: std::process::id(),
        messages: calls
            .iter()
            .filter(|c| c.call == "splice" && c.fd != fd)
            .count() as u64
            / 2,
        bytes: received,
        file_bytes: sent,
        wall_ns,
        calls,
        ..Truth::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("ioprof-splice-{}", std::process::id()));
        let t = FileTransfer {
            file: Some(dir.join("f.bin")),
            size: (1 << 20) + 123,
        };
        let truth = run(&t).expect("run");
        assert_eq!(
            (truth.bytes, truth.file_bytes),
            ((1 << 20) + 123, (1 << 20) + 123)
        );
        let spliced: i64 = truth.calls_named("splice").map(|c| c.ret).sum();
        assert_eq!(spliced, 2 * ((1 << 20) + 123));
        std::fs::remove_dir_all(dir).expect("clean");
    }
}
