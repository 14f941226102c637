//! The ways of moving a file to a socket (and one file to file), one sender each; the file
//! set-up, the receiver and the truth are shared ([`crate::transfer`]).
use std::{
    fs::File,
    net::TcpStream,
    num::NonZeroUsize,
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::OpenOptionsExt as _,
    },
    path::Path,
    ptr::NonNull,
};

use anyhow::Context as _;
use nix::errno::Errno;

use crate::{
    transfer::{self, CHUNK, FileTransfer, Timer},
    truth::Truth,
};

/// A method of moving a file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `read` into a user buffer, `write` it to the socket: two CPU copies.
    ReadWrite,
    /// `O_DIRECT` `read` (disk → user buffer, no page cache), then `write`.
    DirectIo,
    /// `mmap` the file, `write` from the mapping: page faults instead of the first copy.
    MmapWrite,
    /// `sendfile`: page references move inside the kernel.
    Sendfile,
    /// `splice` file → pipe → socket.
    Splice,
    /// `MSG_ZEROCOPY` sends of the mapped file; completions read from the error queue.
    MsgZerocopy,
    /// io_uring: linked read and send requests, one `io_uring_enter` per chunk.
    IoUring,
    /// `copy_file_range`: file to file inside the kernel.
    CopyFileRange,
    /// A private file mapping, every page written once (copy-on-write), then `write`.
    CowPrivate,
    /// A buffer written by parent and child after a fork (copy-on-write), then `write`.
    CowFork,
    /// `vmsplice(SPLICE_F_GIFT)` of a user buffer to a pipe, `splice` to the socket.
    VmspliceGift,
}

impl Method {
    /// Every method, in the order reports show them.
    pub const ALL: [Method; 11] = [
        Method::ReadWrite,
        Method::DirectIo,
        Method::MmapWrite,
        Method::Sendfile,
        Method::Splice,
        Method::MsgZerocopy,
        Method::IoUring,
        Method::CopyFileRange,
        Method::CowPrivate,
        Method::CowFork,
        Method::VmspliceGift,
    ];

    /// The workload's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ReadWrite => "read-write",
            Self::DirectIo => "direct-io",
            Self::MmapWrite => "mmap-write",
            Self::Sendfile => "sendfile",
            Self::Splice => "splice",
            Self::MsgZerocopy => "msg-zerocopy",
            Self::IoUring => "io-uring-file",
            Self::CopyFileRange => "copy-file-range",
            Self::CowPrivate => "cow-private",
            Self::CowFork => "cow-fork",
            Self::VmspliceGift => "vmsplice-gift",
        }
    }

    /// The method with this workload name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Where the bytes go and who copies them, in one line.
    pub fn copies(self) -> &'static str {
        match self {
            Self::ReadWrite => "page cache → user buffer → socket: 2 CPU copies, 2 calls a chunk",
            Self::DirectIo => "disk → user buffer (DMA, no page cache) → socket: 1 CPU copy",
            Self::MmapWrite => "page cache mapped (page faults) → socket: 1 CPU copy",
            Self::Sendfile => "page cache → socket by page reference: no copy through user memory",
            Self::Splice => {
                "page cache → pipe → socket by page reference: 2 calls a chunk, no user copy"
            }
            Self::MsgZerocopy => {
                "mapped pages pinned for the socket; loopback falls back to a copy"
            }
            Self::IoUring => {
                "read + send requests, the kernel runs both: 2 CPU copies, 1 call a chunk"
            }
            Self::CopyFileRange => "file → file inside the kernel: no user memory, no socket",
            Self::CowPrivate => {
                "page cache mapped private, each page copied by a write fault → socket: 2 copies"
            }
            Self::CowFork => {
                "read into a buffer, fork: the first writer of each page copies it → socket"
            }
            Self::VmspliceGift => {
                "read into a buffer, its pages given to a pipe, spliced → socket: 1 CPU copy"
            }
        }
    }

    /// The calls that move this method's data, as the profiler names them.
    pub fn data_calls(self) -> &'static [&'static str] {
        match self {
            Self::ReadWrite | Self::DirectIo => &["read", "write"],
            Self::MmapWrite => &["write"],
            Self::Sendfile => &["sendfile64"],
            Self::Splice => &["splice"],
            Self::MsgZerocopy => &["sendto"],
            Self::IoUring => &["io_uring_enter"],
            Self::CopyFileRange => &["copy_file_range"],
            Self::CowPrivate => &["write"],
            Self::CowFork => &["read", "write"],
            Self::VmspliceGift => &["read", "vmsplice", "splice"],
        }
    }
}

/// Runs one method on the file of `t` and returns its truth.
pub fn run(m: Method, t: &FileTransfer) -> anyhow::Result<Truth> {
    let name = m.name();
    let truth = match m {
        Method::ReadWrite => transfer::to_socket(name, t, read_write)?,
        Method::DirectIo => transfer::to_socket(name, t, direct_io)?,
        Method::MmapWrite => transfer::to_socket(name, t, mmap_write)?,
        Method::Sendfile => transfer::to_socket(name, t, sendfile)?,
        Method::Splice => transfer::to_socket(name, t, splice)?,
        Method::MsgZerocopy => transfer::to_socket(name, t, msg_zerocopy)?,
        Method::IoUring => transfer::to_socket(name, t, io_uring)?,
        Method::CopyFileRange => transfer::to_file(name, t, copy_file_range)?,
        Method::CowPrivate => transfer::to_socket(name, t, crate::cow::private)?,
        Method::CowFork => transfer::to_socket(name, t, crate::cow::fork)?,
        Method::VmspliceGift => transfer::to_socket(name, t, crate::cow::gift)?,
    };
    anyhow::ensure!(
        truth.file_bytes == t.size && truth.bytes == t.size,
        "{name}: moved {} bytes and delivered {} of {}",
        truth.file_bytes,
        truth.bytes,
        t.size
    );
    Ok(truth)
}

fn open(path: &Path) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// Writes all of `data` to the socket with `write`.
pub(crate) fn write_all(
    timer: &mut Timer,
    sock: &TcpStream,
    mut data: &[u8],
) -> anyhow::Result<()> {
    let s = sock.as_raw_fd();
    while !data.is_empty() {
        let n = timer
            .call("write", s, || nix::unistd::write(sock, data))
            .context("write to the socket failed")?;
        data = &data[n..];
    }
    Ok(())
}

/// Reads the file chunk by chunk into `buf` with `read`, writing each to the socket.
fn read_then_write(
    f: &File,
    buf: &mut [u8],
    sock: &TcpStream,
    timer: &mut Timer,
) -> anyhow::Result<u64> {
    let fd = f.as_raw_fd();
    let mut sent = 0u64;
    loop {
        let n = timer
            .call("read", fd, || nix::unistd::read(f, buf))
            .context("read of the file failed")?;
        if n == 0 {
            return Ok(sent);
        }
        write_all(timer, sock, &buf[..n])?;
        sent += n as u64;
    }
}

fn read_write(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    read_then_write(&open(path)?, &mut buf, sock, timer)
}

/// Alignment `O_DIRECT` needs for buffers, offsets and lengths (a page covers every device).
const DIRECT_ALIGN: usize = 4096;

fn direct_io(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<u64> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("cannot open {} with O_DIRECT", path.display()))?;
    let mut raw = vec![0u8; CHUNK + DIRECT_ALIGN];
    let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
    anyhow::ensure!(start < DIRECT_ALIGN, "cannot align the O_DIRECT buffer");
    read_then_write(&f, &mut raw[start..start + CHUNK], sock, timer)
}

/// A read-only shared mapping of a whole file, unmapped when dropped.
pub struct Mapping {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `f` read-only and shared.
    pub fn new(f: &impl AsFd, len: usize) -> anyhow::Result<Self> {
        let n = NonZeroUsize::new(len).context("cannot map an empty file")?;
        // SAFETY: a fresh read-only mapping chosen by the kernel; it aliases no Rust memory.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                n,
                nix::sys::mman::ProtFlags::PROT_READ,
                nix::sys::mman::MapFlags::MAP_SHARED,
                f,
                0,
            )
        }
        .context("mmap of the file failed")?;
        Ok(Self { ptr, len })
    }

    /// The mapped bytes. A page past the file's end (after a truncation) raises SIGBUS when
    /// touched from user space.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, readable, and lives as long as `self`; nothing
        // in this process writes to it.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no slice of it outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, self.len) };
    }
}

fn file_len(f: &File) -> anyhow::Result<usize> {
    Ok(f.metadata()?.len() as usize)
}

fn mmap_write(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<u64> {
    let f = open(path)?;
    let map = Mapping::new(&f, file_len(&f)?)?;
    for chunk in map.bytes().chunks(CHUNK) {
        write_all(timer, sock, chunk)?;
    }
    Ok(map.bytes().len() as u64)
}

fn sendfile(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<u64> {
    let f = open(path)?;
    let fd = f.as_raw_fd();
    let mut off: libc::off_t = 0;
    loop {
        let n = timer
            .call("sendfile64", fd, || {
                nix::sys::sendfile::sendfile(sock, &f, Some(&mut off), CHUNK)
            })
            .context("sendfile failed")?;
        if n == 0 {
            return Ok(off as u64);
        }
    }
}

fn splice(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<u64> {
    use nix::fcntl::{SpliceFFlags, splice};
    let f = open(path)?;
    let (pipe_r, pipe_w) = nix::unistd::pipe().context("failed to create a pipe")?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
    let mut off: i64 = 0;
    loop {
        let n = timer
            .call("splice", f.as_raw_fd(), || {
                splice(&f, Some(&mut off), &pipe_w, None, CHUNK, flags)
            })
            .context("splice file→pipe failed")?;
        if n == 0 {
            return Ok(off as u64);
        }
        let mut left = n;
        while left > 0 {
            let m = timer
                .call("splice", pipe_r.as_raw_fd(), || {
                    splice(&pipe_r, None, sock, None, left, flags)
                })
                .context("splice pipe→socket failed")?;
            anyhow::ensure!(m > 0, "splice pipe→socket moved nothing");
            left -= m;
        }
    }
}

/// `SO_EE_ORIGIN_ZEROCOPY`: an error-queue message that completes zero-copy sends.
const EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel copied the data after all.
const EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// Completions of `MSG_ZEROCOPY` sends read so far.
#[derive(Default)]
struct Completions {
    done: u64,
    copied: u64,
}

impl Completions {
    /// Reads every completion waiting on the socket's error queue; returns how many arrived.
    fn read(&mut self, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<u64> {
        let fd = sock.as_raw_fd();
        let before = self.done;
        loop {
            let mut control = [0u64; 16];
            // SAFETY: an all-zero msghdr is valid (no name, no data).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            let r = timer.call("recvmsg", fd, || {
                // SAFETY: `msg` points to a control buffer that lives across the call.
                let n =
                    unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
                Errno::result(n).map(|n| n as usize)
            });
            match r {
                Ok(_) => {}
                Err(Errno::EAGAIN) => return Ok(self.done - before),
                Err(e) => return Err(e).context("reading the error queue failed"),
            }
            // SAFETY: the kernel filled `msg`'s control buffer; the CMSG macros walk it within
            // `msg_controllen`, and the payload of an IP_RECVERR message is a sock_extended_err.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_IP && (*c).cmsg_type == libc::IP_RECVERR {
                        let ee = std::ptr::read_unaligned(
                            libc::CMSG_DATA(c).cast::<libc::sock_extended_err>(),
                        );
                        if ee.ee_origin == EE_ORIGIN_ZEROCOPY {
                            let n = u64::from(ee.ee_data.wrapping_sub(ee.ee_info)) + 1;
                            self.done += n;
                            if ee.ee_code & EE_CODE_ZEROCOPY_COPIED != 0 {
                                self.copied += n;
                            }
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
        }
    }

    /// Waits until `sends` completions have arrived.
    fn wait_for(&mut self, sends: u64, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<()> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        while self.done < sends {
            if self.read(sock, timer)? == 0 {
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::empty())];
                poll(&mut fds, PollTimeout::from(1000u16)).context("poll failed")?;
            }
        }
        Ok(())
    }
}

fn msg_zerocopy(
    path: &Path,
    sock: &TcpStream,
    timer: &mut Timer,
) -> anyhow::Result<transfer::SendOutcome> {
    let fd = sock.as_raw_fd();
    let one: libc::c_int = 1;
    // SAFETY: passes a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).context("setsockopt(SO_ZEROCOPY) failed")?;
    let f = open(path)?;
    let map = Mapping::new(&f, file_len(&f)?)?;
    let mut sends = 0u64;
    let mut done = Completions::default();
    for chunk in map.bytes().chunks(CHUNK) {
        let mut data = chunk;
        while !data.is_empty() {
            let send = || {
                // SAFETY: `data` is readable for its length (a slice of the live mapping).
                let n =
                    unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_ZEROCOPY) };
                Errno::result(n).map(|n| n as usize)
            };
            match timer.call("sendto", fd, send) {
                Ok(n) => {
                    sends += 1;
                    data = &data[n..];
                }
                // Too many sends wait for completion (optmem is full): collect some.
                Err(Errno::ENOBUFS) => done.wait_for(done.done + 1, sock, timer)?,
                Err(e) => return Err(e).context("MSG_ZEROCOPY send failed"),
            }
        }
        done.read(sock, timer)?;
    }
    done.wait_for(sends, sock, timer)?;
    Ok(transfer::SendOutcome {
        bytes: map.bytes().len() as u64,
        outcome: format!(
            "{sends} zero-copy sends completed, {} of them copied by the kernel after all",
            done.copied
        ),
        ..Default::default()
    })
}

fn io_uring(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<u64> {
    use io_uring::{IoUring, opcode, squeue, types};
    let f = open(path)?;
    let len = file_len(&f)? as u64;
    let mut ring = IoUring::new(8).context("io_uring_setup failed")?;
    let ring_fd = ring.as_raw_fd();
    let mut buf = vec![0u8; CHUNK];
    let (file, s) = (types::Fd(f.as_raw_fd()), types::Fd(sock.as_raw_fd()));
    let mut off = 0u64;
    while off < len {
        let want = (len - off).min(CHUNK as u64) as u32;
        let read = opcode::Read::new(file, buf.as_mut_ptr(), want)
            .offset(off)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(1);
        let send = opcode::Send::new(s, buf.as_ptr(), want)
            .flags(libc::MSG_WAITALL)
            .build()
            .user_data(2);
        // SAFETY: `buf` lives and is not touched until both requests have completed below.
        unsafe { ring.submission().push_multiple(&[read, send]) }
            .map_err(|_| anyhow::anyhow!("io_uring submission queue full"))?;
        timer
            .call("io_uring_enter", ring_fd, || {
                ring.submit_and_wait(2)
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
            })
            .context("io_uring_enter failed")?;
        let results: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        anyhow::ensure!(
            results.len() == 2,
            "expected 2 completions, got {results:?}"
        );
        for (what, r) in results {
            anyhow::ensure!(
                r == want as i32,
                "io_uring {} of {want} bytes at {off} returned {r}",
                if what == 1 { "read" } else { "send" }
            );
        }
        off += u64::from(want);
    }
    Ok(off)
}

fn copy_file_range(src: &File, dst: &File, timer: &mut Timer) -> anyhow::Result<u64> {
    let mut copied = 0u64;
    loop {
        let n = timer
            .call("copy_file_range", src.as_raw_fd(), || {
                nix::fcntl::copy_file_range(src, None, dst, None, CHUNK)
            })
            .context("copy_file_range failed")?;
        if n == 0 {
            return Ok(copied);
        }
        copied += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_moves_the_whole_file() {
        let dir = tempfile::Builder::new()
            .prefix("ioprof-methods-")
            .tempdir()
            .expect("scratch folder")
            .keep();
        let file = dir.join("f.bin");
        let t = FileTransfer {
            file: Some(file.clone()),
            size: (1 << 20) + 4096 * 3,
            cold: false,
        };
        crate::files::ensure_file(Some(&file), t.size).expect("file");
        let want = transfer::digest_file(&file).expect("digest");
        for m in Method::ALL {
            let truth = run(m, &t).unwrap_or_else(|e| panic!("{}: {e:#}", m.name()));
            assert_eq!(truth.bytes, t.size, "{}", m.name());
            assert_eq!(truth.digest, want, "{}: other bytes arrived", m.name());
            assert_eq!(truth.workload, m.name());
            for call in m.data_calls() {
                assert!(
                    truth.calls_named(call).count() > 0,
                    "{}: no {call}",
                    m.name()
                );
            }
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        std::fs::remove_dir_all(dir).expect("clean");
    }

    #[test]
    fn cold_start_drops_the_file_and_still_moves_it() {
        let dir = tempfile::Builder::new()
            .prefix("ioprof-cold-")
            .tempdir()
            .expect("scratch folder")
            .keep();
        let t = FileTransfer {
            file: Some(dir.join("f.bin")),
            size: 1 << 20,
            cold: true,
        };
        let truth = run(Method::Sendfile, &t).expect("run");
        assert_eq!(truth.bytes, 1 << 20);
        std::fs::remove_dir_all(dir).expect("clean");
    }
}
