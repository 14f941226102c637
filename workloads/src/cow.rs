//! Copy-on-write senders: pages shared until someone writes, then copied by the kernel in a
//! page fault. `cow-private` writes every page of a private file mapping once; `cow-fork`
//! fills a buffer, forks, and parent then child write every page of it; `vmsplice-gift` gives
//! its pages to a pipe with `vmsplice(SPLICE_F_GIFT)` and splices them to the socket, then
//! shows what a write to a gifted page does. Each counts the pages it wrote.
use std::{
    fs::File,
    net::TcpStream,
    num::NonZeroUsize,
    os::fd::{AsFd, AsRawFd},
    path::Path,
    ptr::NonNull,
};

use anyhow::Context as _;
use nix::{
    errno::Errno,
    sys::mman::{MapFlags, ProtFlags, mmap, mmap_anonymous, munmap},
};

use crate::transfer::{CHUNK, SendOutcome, Timer};

/// Bytes of one page.
pub const PAGE: usize = 4096;

/// A private, writable mapping: of a file (copy-on-write of its page-cache pages) or
/// anonymous. Unmapped when dropped.
struct Private {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

impl Private {
    /// Maps `len` bytes of `f` private and writable.
    fn file(f: &impl AsFd, len: usize) -> anyhow::Result<Self> {
        let n = NonZeroUsize::new(len).context("cannot map an empty file")?;
        // SAFETY: a fresh private mapping chosen by the kernel; it aliases no Rust memory.
        let ptr = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
                f,
                0,
            )
        }
        .context("mmap MAP_PRIVATE of the file failed")?;
        Ok(Self { ptr, len })
    }

    /// `len` bytes of fresh anonymous memory, in small pages (no transparent huge page), so
    /// that every page faults on its own.
    fn anonymous(len: usize) -> anyhow::Result<Self> {
        let n = NonZeroUsize::new(len).context("cannot map 0 bytes")?;
        // SAFETY: a fresh anonymous mapping chosen by the kernel; it aliases no Rust memory.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .context("anonymous mmap failed")?;
        let m = Self { ptr, len };
        // SAFETY: advice on the mapping made above.
        unsafe { nix::sys::mman::madvise(ptr, len, nix::sys::mman::MmapAdvise::MADV_NOHUGEPAGE) }
            .context("madvise(MADV_NOHUGEPAGE) failed")?;
        Ok(m)
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`; writes go
        // through `touch_pages` only, never while this slice is borrowed.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this borrow the only one.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }

    /// Reads one byte of every page; returns their xor (kept, so that the reads happen).
    fn read_pages(&self) -> u8 {
        let p = self.ptr.as_ptr().cast::<u8>();
        let mut acc = 0u8;
        for off in (0..self.len).step_by(PAGE) {
            // SAFETY: `off` is inside the mapping.
            acc ^= unsafe { std::ptr::read_volatile(p.add(off)) };
        }
        acc
    }

    /// Writes one byte of every page, with the value it holds (the content stays the same);
    /// returns the pages written. Async-signal-safe: a forked child may call it.
    fn touch_pages(&mut self) -> u64 {
        let p = self.ptr.as_ptr().cast::<u8>();
        let mut pages = 0;
        for off in (0..self.len).step_by(PAGE) {
            // SAFETY: `off` is inside the mapping, which is writable.
            unsafe { std::ptr::write_volatile(p.add(off), std::ptr::read_volatile(p.add(off))) };
            pages += 1;
        }
        pages
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in the constructor; no slice outlives `self`.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

fn open(path: &Path) -> anyhow::Result<(File, usize)> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = f.metadata()?.len() as usize;
    Ok((f, len))
}

/// Writes all of `data` to the socket with `write` calls of [`CHUNK`] bytes.
fn write_all(timer: &mut Timer, sock: &TcpStream, data: &[u8]) -> anyhow::Result<()> {
    data.chunks(CHUNK)
        .try_for_each(|chunk| crate::methods::write_all(timer, sock, chunk))
}

/// Reads the whole file into `buf` with `read` calls of [`CHUNK`] bytes.
fn read_into(f: &File, buf: &mut [u8], timer: &mut Timer) -> anyhow::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let end = (got + CHUNK).min(buf.len());
        let n = timer
            .call("read", f.as_raw_fd(), || {
                nix::unistd::read(f, &mut buf[got..end])
            })
            .context("read of the file failed")?;
        anyhow::ensure!(n > 0, "the file ended early");
        got += n;
    }
    Ok(())
}

/// `cow-private`: the file mapped `MAP_PRIVATE`, every page read (page-cache pages mapped
/// read-only, no copy), then every page written once (one copy-on-write fault a page), then
/// the private copy written to the socket.
pub fn private(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<SendOutcome> {
    let (f, len) = open(path)?;
    let mut map = Private::file(&f, len)?;
    std::hint::black_box(map.read_pages());
    let t0 = crate::clock::now_ns();
    let pages = map.touch_pages();
    let pass = crate::clock::now_ns() - t0;
    write_all(timer, sock, map.bytes())?;
    Ok(SendOutcome {
        bytes: len as u64,
        outcome: format!(
            "{pages} pages of a private file mapping read, then each written once: {}",
            pass_time(pass, pages)
        ),
        pages,
        ..SendOutcome::default()
    })
}

/// `cow-fork`: the file read into fresh anonymous memory, a fork, the parent writes every page
/// (it takes the copies: the pages are still shared), then the child writes every page (its
/// faults find pages no one else maps and reuse them), then the parent sends the buffer.
pub fn fork(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<SendOutcome> {
    use nix::unistd::{ForkResult, fork};
    let (f, len) = open(path)?;
    let mut buf = Private::anonymous(len)?;
    read_into(&f, buf.bytes_mut(), timer)?;
    let (go_r, go_w) = nix::unistd::pipe().context("failed to create a pipe")?;
    // SAFETY: the child only calls async-signal-safe functions (read, volatile writes, _exit)
    // on memory it inherited.
    let child = match unsafe { fork() }.context("fork failed")? {
        ForkResult::Child => {
            let mut b = [0u8; 1];
            // SAFETY: reads one byte into a local buffer; a plain system call.
            let r = unsafe { libc::read(go_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
            let code = if r == 1 {
                buf.touch_pages();
                0
            } else {
                1
            };
            // SAFETY: ends the child at once, without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(go_r);
    let t0 = crate::clock::now_ns();
    let pages = buf.touch_pages();
    let pass = crate::clock::now_ns() - t0;
    nix::unistd::write(&go_w, &[1]).context("failed to start the child")?;
    let status = nix::sys::wait::waitpid(child, None).context("waitpid failed")?;
    anyhow::ensure!(
        status == nix::sys::wait::WaitStatus::Exited(child, 0),
        "the child ended with {status:?}"
    );
    write_all(timer, sock, buf.bytes())?;
    Ok(SendOutcome {
        bytes: len as u64,
        outcome: format!(
            "{pages} pages filled, then written after a fork by the parent (pid {}; {}) and \
             then by the child (pid {child})",
            std::process::id(),
            pass_time(pass, pages)
        ),
        pages,
        child_pid: child.as_raw() as u32,
    })
}

/// The time of a write pass over `pages` pages, in words (the workload's own clock).
fn pass_time(ns: u64, pages: u64) -> String {
    format!(
        "the write pass took {} ({} a page, faults included)",
        crate::clock::fmt_ns(ns as f64),
        crate::clock::fmt_ns(ns as f64 / pages.max(1) as f64)
    )
}

/// `vmsplice(fd, data, SPLICE_F_GIFT)`: hands the pages of `data` to the pipe; returns the
/// bytes taken.
fn vmsplice_gift(pipe_w: &impl AsFd, data: &[u8]) -> nix::Result<usize> {
    let iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: one iovec over readable memory that outlives the call; the caller never writes
    // these pages again while the pipe or a socket may hold them.
    let n = unsafe { libc::vmsplice(pipe_w.as_fd().as_raw_fd(), &iov, 1, libc::SPLICE_F_GIFT) };
    Errno::result(n).map(|n| n as usize)
}

/// `vmsplice-gift`: the file read into fresh anonymous memory, each chunk given to a pipe with
/// `vmsplice(SPLICE_F_GIFT)` and spliced to the socket; the pages are never written again.
/// Then one more page is given to a pipe and written before it is read back: what arrives.
pub fn gift(path: &Path, sock: &TcpStream, timer: &mut Timer) -> anyhow::Result<SendOutcome> {
    use nix::fcntl::{SpliceFFlags, splice};
    let (f, len) = open(path)?;
    let mut buf = Private::anonymous(len)?;
    read_into(&f, buf.bytes_mut(), timer)?;
    let (pipe_r, pipe_w) = nix::unistd::pipe().context("failed to create a pipe")?;
    for chunk in buf.bytes().chunks(CHUNK) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let n = timer
                .call("vmsplice", pipe_w.as_raw_fd(), || {
                    vmsplice_gift(&pipe_w, rest)
                })
                .context("vmsplice to the pipe failed")?;
            let mut left = n;
            while left > 0 {
                let m = timer
                    .call("splice", pipe_r.as_raw_fd(), || {
                        splice(&pipe_r, None, sock, None, left, SpliceFFlags::SPLICE_F_MORE)
                    })
                    .context("splice pipe→socket failed")?;
                anyhow::ensure!(m > 0, "splice pipe→socket moved nothing");
                left -= m;
            }
            rest = &rest[n..];
        }
    }
    let rewrite = rewrite_after_gift()?;
    Ok(SendOutcome {
        bytes: len as u64,
        outcome: rewrite,
        pages: len.div_ceil(PAGE) as u64,
        ..SendOutcome::default()
    })
}

/// Gives one page to a pipe, writes the page again, then reads the pipe: says how many of the
/// bytes that came out were the rewritten ones, and how many page faults the write took.
fn rewrite_after_gift() -> anyhow::Result<String> {
    let mut page = Private::anonymous(PAGE)?;
    page.bytes_mut().fill(0xaa);
    let (pipe_r, pipe_w) = nix::unistd::pipe().context("failed to create a pipe")?;
    let n = vmsplice_gift(&pipe_w, page.bytes()).context("vmsplice of the test page failed")?;
    let f0 = crate::transfer::thread_faults()?;
    page.bytes_mut().fill(0x55);
    let faults = crate::transfer::thread_faults()? - f0;
    let mut back = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let m = nix::unistd::read(&pipe_r, &mut back[got..]).context("read of the pipe failed")?;
        anyhow::ensure!(m > 0, "the pipe ended early");
        got += m;
    }
    let changed = back.iter().filter(|&&b| b == 0x55).count();
    Ok(format!(
        "rewrite after the gift: {changed} of {n} bytes read from the pipe were the rewritten \
         ones, and the write took {faults} page faults: {}",
        if changed == n {
            "the pipe held the page itself, shared and not copied"
        } else {
            "the pipe held a copy"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_pages_are_counted_and_written_with_their_own_value() {
        let scratch = tempfile::tempdir().expect("a private folder");
        let dir = scratch.path().to_path_buf();
        let path = crate::files::ensure_file(Some(&dir.join("f.bin")), 10 * PAGE as u64 + 1)
            .expect("file");
        let (f, len) = open(&path).expect("open");
        let mut m = Private::file(&f, len).expect("map");
        let before = m.bytes().to_vec();
        assert_eq!(m.touch_pages(), 11);
        assert_eq!(m.bytes(), &before[..]);
        drop(m);
        // The file itself is untouched: the writes went to private copies.
        assert_eq!(std::fs::read(&path).expect("read"), before);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_rewritten_gift_is_described() {
        let s = rewrite_after_gift().expect("rewrite");
        assert!(s.contains("of 4096 bytes"), "{s}");
    }
}
