//! The readiness I/O models: a paced sender (the blocking workload's) and a receiver that
//! learns of data by polling (`nonblocking`), by a multiplexer (`select`, `poll`, `epoll`) or
//! by `SIGIO` (`sigio`), then reads with non-blocking `recvfrom` until the socket is empty.
use std::{
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;

use crate::{
    blocking::{Paced, finish, paced_truth, raise_nice, raise_priority, spawn_sender},
    clock::now_ns,
    net::{recvfrom, tcp_pair},
    truth::{Truth, gettid},
};

/// How the receiver learns that data is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// It does not: it retries `recvfrom` until it stops failing with `EAGAIN`.
    NonBlocking,
    /// Blocked in `select`.
    Select,
    /// Blocked in `poll`.
    Poll,
    /// Blocked in `epoll_wait`.
    Epoll,
    /// `SIGIO` (`F_SETOWN_EX` to the receiver thread, `O_ASYNC`, `F_SETSIG`); meanwhile it does
    /// counted work of its own.
    Sigio,
}

impl Readiness {
    /// Whether the receiver sleeps while it waits (rather than spinning).
    pub fn sleeps(self) -> bool {
        matches!(self, Self::Select | Self::Poll | Self::Epoll)
    }

    /// The workload's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::NonBlocking => "nonblocking",
            Self::Select => "select",
            Self::Poll => "poll",
            Self::Epoll => "epoll",
            Self::Sigio => "sigio",
        }
    }
}

/// Set by the `SIGIO` handler, cleared by the receiver before it reads.
static SIGIO_READY: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigio(_: libc::c_int) {
    SIGIO_READY.store(true, Ordering::SeqCst);
}

/// One unit of the receiver's own work while it waits for a signal or a completion.
#[inline(never)]
pub fn work_unit(acc: u64) -> u64 {
    std::hint::black_box(acc.wrapping_mul(6364136223846793005).wrapping_add(1))
}

/// Units of own work between two yields of the CPU.
const YIELD_EVERY: u64 = 4096;

/// Spins on counted work until `done()` says stop; returns the units done.
pub fn work_until(mut done: impl FnMut() -> bool) -> u64 {
    let mut units = 0u64;
    let mut acc = 0u64;
    while !done() {
        acc = work_unit(acc);
        units += 1;
        // Own work gives the CPU away now and then, as real work does, so that a sender on
        // the same CPU keeps its pace.
        if units.is_multiple_of(YIELD_EVERY) {
            std::thread::yield_now();
        }
    }
    std::hint::black_box(acc);
    units
}

fn fcntl(fd: i32, cmd: i32, arg: libc::c_long) -> anyhow::Result<i32> {
    // SAFETY: plain fcntl on a descriptor this process owns; `arg` is an integer for every
    // command used here.
    let r = unsafe { libc::fcntl(fd, cmd, arg) };
    anyhow::ensure!(
        r >= 0,
        "fcntl({cmd}) failed: {}",
        std::io::Error::last_os_error()
    );
    Ok(r)
}

// From <linux/fcntl.h> and <asm-generic/fcntl.h>; the libc crate does not carry them.
const F_SETSIG: i32 = 10;
const F_SETOWN_EX: i32 = 15;
const F_OWNER_TID: i32 = 0;

/// `struct f_owner_ex` of <asm-generic/fcntl.h>.
#[repr(C)]
struct FOwnerEx {
    kind: i32,
    pid: i32,
}

/// Makes `fd` send `SIGIO` to the calling thread when data arrives.
fn arm_sigio(fd: i32) -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(
        SigHandler::Handler(on_sigio),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGIO, &act) }.context("failed to install the SIGIO handler")?;
    let owner = FOwnerEx {
        kind: F_OWNER_TID,
        pid: gettid() as i32,
    };
    // SAFETY: F_SETOWN_EX reads one `f_owner_ex`, which lives across the call.
    let r = unsafe { libc::fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx) };
    anyhow::ensure!(
        r >= 0,
        "F_SETOWN_EX failed: {}",
        std::io::Error::last_os_error()
    );
    fcntl(fd, F_SETSIG, libc::SIGIO as libc::c_long)?;
    let flags = fcntl(fd, libc::F_GETFL, 0)?;
    fcntl(
        fd,
        libc::F_SETFL,
        (flags | libc::O_ASYNC | libc::O_NONBLOCK) as libc::c_long,
    )?;
    Ok(())
}

/// Blocks until `fd` is readable, in the model's multiplexer.
fn wait_readable(model: Readiness, fd: i32, epfd: i32) -> anyhow::Result<()> {
    let r = match model {
        Readiness::NonBlocking | Readiness::Sigio => 1,
        Readiness::Select => {
            // SAFETY: an `fd_set` is plain data; FD_ZERO/FD_SET write inside it; `fd` is
            // below FD_SETSIZE (checked at set-up).
            unsafe {
                let mut set: libc::fd_set = std::mem::zeroed();
                libc::FD_ZERO(&mut set);
                libc::FD_SET(fd, &mut set);
                libc::select(
                    fd + 1,
                    &mut set,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            }
        }
        Readiness::Poll => {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid `pollfd`.
            unsafe { libc::poll(&mut p, 1, -1) }
        }
        Readiness::Epoll => {
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: room for one event.
            unsafe { libc::epoll_wait(epfd, &mut ev, 1, -1) }
        }
    };
    if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
        anyhow::bail!(
            "{} failed: {}",
            model.name(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn epoll_for(fd: i32) -> anyhow::Result<i32> {
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        let epfd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        anyhow::ensure!(
            epfd >= 0,
            "epoll_create1 failed: {}",
            std::io::Error::last_os_error()
        );
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        anyhow::ensure!(
            libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) == 0,
            "epoll_ctl failed: {}",
            std::io::Error::last_os_error()
        );
        Ok(epfd)
    }
}

/// Runs the workload and returns its truth. Its calls are the receives that moved data;
/// `attempts` counts the receives that failed with `EAGAIN`, `work` the units of own work.
pub fn run(model: Readiness, p: Paced) -> anyhow::Result<Truth> {
    p.validate()?;
    let (tx, rx) = tcp_pair()?;
    let fd = rx.as_raw_fd();
    anyhow::ensure!(fd < libc::FD_SETSIZE as i32, "descriptor {fd} too large");
    rx.set_nonblocking(true)?;
    let epfd = if model == Readiness::Epoll {
        epoll_for(fd)?
    } else {
        -1
    };
    if model == Readiness::Sigio {
        arm_sigio(fd)?;
    }
    let tid = gettid();
    let sender = spawn_sender(tx, p);
    if model.sleeps() {
        raise_priority();
    } else {
        raise_nice();
    }
    // Room for more than one message: a drain may find the next one already there.
    let mut buf = vec![0u8; 2 * p.size];
    let mut truth = paced_truth(model.name(), &p);
    let t0 = now_ns();
    let total = p.size as u64 * p.count;
    while truth.bytes < total {
        if model == Readiness::Sigio {
            truth.work += work_until(|| SIGIO_READY.swap(false, Ordering::SeqCst));
        } else {
            wait_readable(model, fd, epfd)?;
        }
        // Drain the socket: readiness is reported once per arrival, and an empty socket
        // sends the receiver back to waiting.
        while truth.bytes < total {
            let want = buf.len().min((total - truth.bytes) as usize);
            let before_ns = now_ns();
            let ret = recvfrom(fd, &mut buf[..want], libc::MSG_DONTWAIT);
            let after_ns = now_ns();
            if ret < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock => {
                        truth.attempts += 1;
                        break;
                    }
                    std::io::ErrorKind::Interrupted => continue,
                    _ => return Err(e).context("receiver: recvfrom failed"),
                }
            }
            anyhow::ensure!(ret > 0, "receiver: the stream ended early");
            truth.record("recvfrom", tid, fd, before_ns, after_ns, ret as i64);
            truth.bytes += ret as u64;
        }
    }
    truth.messages = p.count;
    if epfd >= 0 {
        // SAFETY: closes the epoll descriptor made above, used no more.
        unsafe { libc::close(epfd) };
    }
    finish(truth, t0, sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn paced() -> Paced {
        Paced {
            interval: Duration::from_millis(1),
            size: 4096,
            count: 5,
        }
    }

    #[test]
    fn every_readiness_model_receives_every_byte() {
        for m in [
            Readiness::NonBlocking,
            Readiness::Select,
            Readiness::Poll,
            Readiness::Epoll,
        ] {
            let t = run(m, paced()).expect("run");
            assert_eq!((t.messages, t.bytes), (5, 5 * 4096), "{m:?}");
            assert_eq!(
                t.calls.iter().map(|c| c.ret as u64).sum::<u64>(),
                t.bytes,
                "{m:?}"
            );
        }
    }

    #[test]
    fn sigio_receives_every_byte_and_works_meanwhile() {
        let t = run(Readiness::Sigio, paced()).expect("run");
        assert_eq!((t.messages, t.bytes), (5, 5 * 4096));
        assert!(t.work > 0, "{t:?}");
    }

    #[test]
    fn nonblocking_fails_before_it_succeeds() {
        let t = run(Readiness::NonBlocking, paced()).expect("run");
        assert!(t.attempts > 0, "{t:?}");
    }

    #[test]
    fn work_until_counts_units() {
        let mut n = 0;
        let units = work_until(|| {
            n += 1;
            n > 10
        });
        assert_eq!(units, 10);
    }
}
