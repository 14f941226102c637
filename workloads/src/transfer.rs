//! What every file-transfer method shares: the file set-up (`--file`, `--size`, `--cold`), the
//! timing of each call, the loopback receiver that discards what arrives, and the truth.
use std::{
    fs::File,
    io::Read as _,
    net::TcpStream,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use nix::errno::Errno;

use crate::{
    clock::now_ns,
    files::ensure_file,
    net::{recvfrom, tcp_pair},
    truth::{CallTruth, Truth, gettid},
};

/// Knobs of a file transfer.
#[derive(Clone, Debug, Default)]
pub struct FileTransfer {
    /// The file to send (made on first use); `None`: one in the cache folder.
    pub file: Option<PathBuf>,
    /// Its size in bytes.
    pub size: u64,
    /// Drop the file from the page cache before the transfer.
    pub cold: bool,
}

/// Bytes each data-moving call asks for: the default pipe capacity, so that every method
/// moves the file in the same steps as `splice` must.
pub const CHUNK: usize = 64 << 10;

/// One timed call, kept without allocating (so that timing makes no page fault of its own).
#[derive(Clone, Copy)]
struct Timed {
    call: &'static str,
    fd: i32,
    before_ns: u64,
    after_ns: u64,
    ret: i64,
}

/// The calls of one thread, each timed with the probes' clock.
pub struct Timer {
    tid: u32,
    calls: Vec<Timed>,
}

impl Timer {
    /// A timer for the calling thread with room for `capacity` calls. The room is touched now,
    /// so that recording a call later makes no page fault of its own.
    pub fn new(capacity: usize) -> Self {
        let blank = Timed {
            call: "",
            fd: 0,
            before_ns: 0,
            after_ns: 0,
            ret: 0,
        };
        let mut calls = vec![blank; capacity];
        calls.clear();
        Self {
            tid: gettid(),
            calls,
        }
    }

    /// Makes and records one call, again while it is interrupted by a signal; returns its
    /// result. `fd` is the descriptor the call is about.
    pub fn call(
        &mut self,
        name: &'static str,
        fd: i32,
        mut f: impl FnMut() -> nix::Result<usize>,
    ) -> nix::Result<usize> {
        loop {
            let before_ns = now_ns();
            let r = f();
            let after_ns = now_ns();
            self.calls.push(Timed {
                call: name,
                fd,
                before_ns,
                after_ns,
                ret: match r {
                    Ok(n) => n as i64,
                    Err(e) => -(e as i64),
                },
            });
            if r != Err(Errno::EINTR) {
                return r;
            }
        }
    }

    /// The calls recorded, as truth.
    pub fn into_calls(self) -> Vec<CallTruth> {
        self.calls
            .into_iter()
            .map(|c| CallTruth {
                call: c.call.into(),
                tid: self.tid,
                fd: c.fd,
                before_ns: c.before_ns,
                after_ns: c.after_ns,
                ret: c.ret,
            })
            .collect()
    }
}

/// A digest of a byte stream, independent of how the stream was cut into pieces: FNV-1a over
/// 8-byte little-endian words, then the tail and the length.
#[derive(Clone, Debug)]
pub struct Digest {
    h: u64,
    tail: [u8; 8],
    tail_len: usize,
    len: u64,
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Digest {
    fn default() -> Self {
        Self {
            h: 0xcbf2_9ce4_8422_2325,
            tail: [0; 8],
            tail_len: 0,
            len: 0,
        }
    }
}

impl Digest {
    fn word(&mut self, w: [u8; 8]) {
        self.h = (self.h ^ u64::from_le_bytes(w)).wrapping_mul(FNV_PRIME);
    }

    /// Adds bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 8 {
                return;
            }
            self.word(self.tail);
            self.tail_len = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.word(a);
        }
        let rest = words.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// The digest of everything added.
    pub fn finish(&self) -> u64 {
        let mut d = self.clone();
        let mut last = [0u8; 8];
        last[..d.tail_len].copy_from_slice(&d.tail[..d.tail_len]);
        d.word(last);
        d.word(d.len.to_le_bytes());
        d.h
    }
}

/// The digest of a file's content.
pub fn digest_file(path: &Path) -> anyhow::Result<u64> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut d = Digest::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(d.finish());
        }
        d.update(&buf[..n]);
    }
}

/// Page faults (minor + major) of the calling thread so far, from the kernel's accounting
/// (`getrusage(RUSAGE_THREAD)`: no file to read, so the count itself makes no fault or call
/// that the profiler traces).
pub fn thread_faults() -> anyhow::Result<u64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_THREAD).context("getrusage(RUSAGE_THREAD) failed")?;
    Ok((u.minor_page_faults() + u.major_page_faults()) as u64)
}

/// The file to move, made if missing, dropped from the page cache when `cold`.
pub fn prepare(t: &FileTransfer) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(t.size > 0, "--size must be at least 1 byte");
    let path = ensure_file(t.file.as_deref(), t.size)?;
    let len = std::fs::metadata(&path)?.len();
    anyhow::ensure!(
        len == t.size,
        "{} has {len} bytes, not the {} asked for",
        path.display(),
        t.size
    );
    if t.cold {
        drop_cache(&path)?;
    }
    Ok(path)
}

/// Drops a file's pages from the page cache (they are clean: `ensure_file` synced them).
pub fn drop_cache(path: &Path) -> anyhow::Result<()> {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    f.sync_all()?;
    posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .with_context(|| format!("cannot drop {} from the page cache", path.display()))
}

/// What the sending side of a transfer did.
struct Sent {
    faults: u64,
    calls: Vec<CallTruth>,
    out: SendOutcome,
}

/// What a sender reports: bytes sent and, when it has more to say, what happened.
#[derive(Clone, Debug, Default)]
pub struct SendOutcome {
    /// Bytes handed to the socket.
    pub bytes: u64,
    /// What happened, in words (empty: nothing beyond the numbers).
    pub outcome: String,
    /// Pages each process wrote to make copy-on-write faults (0: none).
    pub pages: u64,
    /// A child process the sender forked (0: none).
    pub child_pid: u32,
}

impl From<u64> for SendOutcome {
    fn from(bytes: u64) -> Self {
        Self {
            bytes,
            ..Self::default()
        }
    }
}

/// Moves the file of `t` to a loopback TCP receiver with `send`, run on its own thread with
/// the file's path, the connected socket and a timer for its calls. The receiver reads with
/// `recvfrom`, digests what arrives and discards it. Checks that every byte sent arrived.
pub fn to_socket<F, O>(workload: &str, t: &FileTransfer, send: F) -> anyhow::Result<Truth>
where
    F: FnOnce(&Path, &TcpStream, &mut Timer) -> anyhow::Result<O> + Send + 'static,
    O: Into<SendOutcome>,
{
    let path = prepare(t)?;
    let (tx, rx) = tcp_pair()?;
    let room = (t.size / CHUNK as u64) as usize * 2 + 64;
    let t0 = now_ns();
    let sender = std::thread::spawn(move || -> anyhow::Result<Sent> {
        let mut timer = Timer::new(room);
        let f0 = thread_faults()?;
        let out: SendOutcome = send(&path, &tx, &mut timer)?.into();
        let faults = thread_faults()? - f0;
        tx.shutdown(std::net::Shutdown::Write)?;
        Ok(Sent {
            faults,
            calls: timer.into_calls(),
            out,
        })
    });
    let received = receive(&rx, room);
    let wall_ns = now_ns() - t0;
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    let (bytes, digest, mut calls) = received?;
    anyhow::ensure!(
        bytes == sent.out.bytes,
        "sent {} bytes but {bytes} arrived",
        sent.out.bytes
    );
    let messages = sent.calls.iter().filter(|c| c.ret > 0).count() as u64;
    calls.extend(sent.calls);
    calls.sort_by_key(|c| c.before_ns);
    Ok(Truth {
        workload: workload.into(),
        pid: std::process::id(),
        messages,
        bytes,
        file_bytes: sent.out.bytes,
        wall_ns,
        calls,
        digest,
        sender_faults: sent.faults,
        outcome: sent.out.outcome,
        pages: sent.out.pages,
        child_pid: sent.out.child_pid,
        ..Truth::default()
    })
}

/// The receiver: reads until the sender closes; returns bytes, digest and its calls.
fn receive(rx: &TcpStream, room: usize) -> anyhow::Result<(u64, u64, Vec<CallTruth>)> {
    let fd = rx.as_raw_fd();
    let mut timer = Timer::new(room);
    let mut buf = vec![0u8; CHUNK];
    let mut digest = Digest::default();
    let mut received = 0u64;
    loop {
        let n = timer
            .call("recvfrom", fd, || {
                Errno::result(recvfrom(fd, &mut buf, 0)).map(|n| n as usize)
            })
            .context("receiver: recvfrom failed")?;
        if n == 0 {
            return Ok((received, digest.finish(), timer.into_calls()));
        }
        digest.update(&buf[..n]);
        received += n as u64;
    }
}

/// Copies the file of `t` to a scratch file beside it with `copy` (given source and
/// destination), then digests the copy and removes it.
pub fn to_file<F>(workload: &str, t: &FileTransfer, copy: F) -> anyhow::Result<Truth>
where
    F: FnOnce(&File, &File, &mut Timer) -> anyhow::Result<u64>,
{
    let path = prepare(t)?;
    let src = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    // A fresh file under a random name beside the source (never an existing file or a planted
    // link), removed when dropped.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scratch = tempfile::Builder::new()
        .prefix(".copy-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let dest = scratch.path().to_path_buf();
    let dst = scratch.as_file().try_clone()?;
    let mut timer = Timer::new((t.size / CHUNK as u64) as usize + 64);
    let t0 = now_ns();
    let f0 = thread_faults()?;
    let copied = copy(&src, &dst, &mut timer);
    let faults = thread_faults()? - f0;
    let wall_ns = now_ns() - t0;
    drop(dst);
    let digest = copied.and_then(|_| digest_file(&dest));
    drop(scratch);
    let calls = timer.into_calls();
    let copied = calls.iter().map(|c| c.ret.max(0) as u64).sum();
    Ok(Truth {
        workload: workload.into(),
        pid: std::process::id(),
        messages: calls.iter().filter(|c| c.ret > 0).count() as u64,
        bytes: copied,
        file_bytes: copied,
        wall_ns,
        calls,
        digest: digest?,
        sender_faults: faults,
        ..Truth::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_how_the_stream_is_cut() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = Digest::default();
        whole.update(&data);
        let mut pieces = Digest::default();
        for p in data.chunks(3) {
            pieces.update(p);
        }
        assert_eq!(whole.finish(), pieces.finish());
        let mut other = Digest::default();
        other.update(&data[..999]);
        assert_ne!(whole.finish(), other.finish());
    }

    #[test]
    fn thread_faults_are_read() {
        // Fresh anonymous pages (not the allocator's, which may reuse touched memory).
        let len = 1 << 20;
        // SAFETY: a new private anonymous mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let a = thread_faults().expect("faults");
        for off in (0..len).step_by(4096) {
            // SAFETY: inside the mapping made above.
            unsafe { std::ptr::write_volatile(p.cast::<u8>().add(off), 1) };
        }
        let b = thread_faults().expect("faults");
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, len) };
        assert!(
            b > a,
            "touching 1 MiB of new memory made no fault ({a} → {b})"
        );
    }

    #[test]
    fn timer_records_errors_as_negative_errno() {
        let mut t = Timer::new(4);
        let r = t.call("read", -1, || Err(Errno::EBADF));
        assert_eq!(r, Err(Errno::EBADF));
        let calls = t.into_calls();
        assert_eq!(
            (calls[0].ret, calls[0].call.as_str()),
            (-(libc::EBADF as i64), "read")
        );
    }
}
