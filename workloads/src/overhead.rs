//! Syscall-heavy loops for measuring what tracing costs: non-blocking `recvfrom` that fails
//! with `EAGAIN` (the traced call at its cheapest), `getppid` (an untraced bystander), and
//! a file read in 4 KiB `read` calls from the page cache.
use std::{os::fd::AsRawFd, path::PathBuf};

use anyhow::Context as _;

use crate::{clock::now_ns, files::ensure_file, net::recvfrom, truth::Truth};

/// A tight loop of `count` non-blocking `recvfrom` calls on a socket that never has data.
/// Every call must fail with `EAGAIN`.
pub fn eagain(count: u64) -> anyhow::Result<Truth> {
    let sock =
        std::net::UdpSocket::bind("127.0.0.1:0").context("failed to bind a loopback socket")?;
    let fd = sock.as_raw_fd();
    let mut buf = [0u8; 64];
    let t0 = now_ns();
    for _ in 0..count {
        let ret = recvfrom(fd, &mut buf, libc::MSG_DONTWAIT);
        if ret >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            anyhow::bail!("recvfrom returned {ret}, not EAGAIN, on a socket without data");
        }
    }
    Ok(Truth {
        workload: "eagain".into(),
        pid: std::process::id(),
        wall_ns: now_ns() - t0,
        loop_calls: count,
        ..Truth::default()
    })
}

/// A tight loop of `count` `getppid` calls: a process the tracer does not trace.
pub fn getppid(count: u64) -> anyhow::Result<Truth> {
    let t0 = now_ns();
    let mut sum = 0i64;
    for _ in 0..count {
        // SAFETY: getppid has no preconditions; the raw call keeps libc from caching it.
        sum = sum.wrapping_add(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    std::hint::black_box(sum);
    Ok(Truth {
        workload: "getppid".into(),
        pid: std::process::id(),
        wall_ns: now_ns() - t0,
        loop_calls: count,
        ..Truth::default()
    })
}

/// Knobs of the file read loop.
#[derive(Clone, Debug)]
pub struct ReadLoop {
    /// The file (made on first use); default: one in the cache folder.
    pub file: Option<PathBuf>,
    /// Its size.
    pub size: u64,
    /// Bytes per `read`.
    pub chunk: usize,
    /// How many times the whole file is read.
    pub passes: u64,
}

/// Reads a file `passes` times in `chunk`-byte `read` calls (from the page cache after the
/// first pass). Every `read` is counted, the one that returns 0 at the end of each pass too.
pub fn readloop(p: &ReadLoop) -> anyhow::Result<Truth> {
    anyhow::ensure!(p.chunk > 0, "--chunk must be at least 1 byte");
    let path = ensure_file(p.file.as_deref(), p.size)?;
    let mut buf = vec![0u8; p.chunk];
    let mut truth = Truth {
        workload: "readloop".into(),
        pid: std::process::id(),
        ..Truth::default()
    };
    let t0 = now_ns();
    for _ in 0..p.passes {
        let f = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let fd = f.as_raw_fd();
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let ret = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            truth.loop_calls += 1;
            anyhow::ensure!(ret >= 0, "read failed: {}", std::io::Error::last_os_error());
            if ret == 0 {
                break;
            }
            truth.bytes += ret as u64;
        }
        truth.file_bytes += p.size;
    }
    truth.wall_ns = now_ns() - t0;
    Ok(truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eagain_loop_makes_every_call() {
        let t = eagain(1000).expect("run");
        assert_eq!((t.loop_calls, t.bytes), (1000, 0));
        assert!(t.wall_ns > 0);
    }

    #[test]
    fn getppid_loop_counts() {
        assert_eq!(getppid(500).expect("run").loop_calls, 500);
    }

    #[test]
    fn readloop_reads_every_byte_in_chunks() {
        let dir = tempfile::Builder::new()
            .prefix("ioprof-readloop-")
            .tempdir()
            .expect("scratch folder")
            .keep();
        let t = readloop(&ReadLoop {
            file: Some(dir.join("f.bin")),
            size: 10_000,
            chunk: 4096,
            passes: 2,
        })
        .expect("run");
        // 3 reads with data and one at the end, per pass.
        assert_eq!((t.bytes, t.loop_calls, t.file_bytes), (20_000, 8, 20_000));
        std::fs::remove_dir_all(dir).expect("clean");
    }
}
