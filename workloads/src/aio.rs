//! POSIX asynchronous I/O through the C library: the receiver starts an `aio_read` per message
//! with a completion signal (`SIGUSR1`), then does counted work of its own until the signal
//! arrives. The C library serves the request on a helper thread of its own.
use std::{
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Context as _;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, sigaction,
};

use crate::{
    blocking::{Paced, finish, paced_truth, receive_messages, spawn_sender},
    clock::now_ns,
    models::work_until,
    net::tcp_pair,
    truth::{Truth, gettid},
};

/// The signal the C library sends when a request completes.
pub const COMPLETION_SIGNAL: Signal = Signal::SIGUSR1;

static DONE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_done(_: libc::c_int) {
    DONE.store(true, Ordering::SeqCst);
}

/// Runs the workload and returns its truth: one `aio_read` entry per request, from the start
/// of the request to the receiver learning of its end, with `aio_return`'s result.
pub fn run(p: Paced) -> anyhow::Result<Truth> {
    p.validate()?;
    let act = SigAction::new(
        SigHandler::Handler(on_done),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(COMPLETION_SIGNAL, &act) }.context("failed to install the handler")?;
    let (tx, rx) = tcp_pair()?;
    let fd = rx.as_raw_fd();
    // The sender thread must not take the completion signal: it starts with it blocked.
    let only = SigSet::from(COMPLETION_SIGNAL);
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&only), None)?;
    let sender = spawn_sender(tx, p);
    pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None)?;
    let tid = gettid();
    let mut buf = vec![0u8; p.size];
    let mut truth = paced_truth("aio", &p);
    let t0 = now_ns();
    receive_messages(&p, &mut truth, |truth, _, got| {
        let rest = &mut buf[got..];
        // SAFETY: an `aiocb` is plain data; all-zero is its documented initial state.
        let mut cb: libc::aiocb = unsafe { std::mem::zeroed() };
        cb.aio_fildes = fd;
        cb.aio_buf = rest.as_mut_ptr().cast();
        cb.aio_nbytes = rest.len();
        cb.aio_sigevent.sigev_notify = libc::SIGEV_SIGNAL;
        cb.aio_sigevent.sigev_signo = COMPLETION_SIGNAL as i32;
        DONE.store(false, Ordering::SeqCst);
        let before_ns = now_ns();
        // SAFETY: `cb` and the buffer it points to live until the request has completed:
        // the loop below waits for its completion signal and `aio_error` before both go.
        let r = unsafe { libc::aio_read(&mut cb) };
        anyhow::ensure!(
            r == 0,
            "aio_read failed: {}",
            std::io::Error::last_os_error()
        );
        truth.work += work_until(|| {
            // SAFETY: `cb` is the live request started above.
            DONE.load(Ordering::SeqCst) && unsafe { libc::aio_error(&cb) } != libc::EINPROGRESS
        });
        // SAFETY: the request has completed; `aio_return` is called once for it.
        let ret = unsafe { libc::aio_return(&mut cb) };
        truth.record("aio_read", tid, fd, before_ns, now_ns(), ret as i64);
        anyhow::ensure!(ret > 0, "aio_read returned {ret} before the stream ended");
        Ok(ret as usize)
    })?;
    finish(truth, t0, sender)
}
