//! Loopback TCP connections for the workloads.
use std::net::{TcpListener, TcpStream};

use anyhow::Context as _;

/// A connected loopback pair: `(sending end, receiving end)`.
pub fn tcp_pair() -> anyhow::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to listen on loopback")?;
    let addr = listener.local_addr()?;
    let tx = TcpStream::connect(addr).context("failed to connect on loopback")?;
    let (rx, _) = listener.accept().context("failed to accept on loopback")?;
    tx.set_nodelay(true)?;
    Ok((tx, rx))
}

/// `recvfrom(fd, buf, flags)` as the system call, no address. Returns the raw result.
pub fn recvfrom(fd: i32, buf: &mut [u8], flags: i32) -> isize {
    // SAFETY: `buf` is valid for writes of its length; no address is requested.
    unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}
