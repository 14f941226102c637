//! Asynchronous I/O with io_uring: the receiver submits a receive request per message and
//! learns of its completion through the completion queue, either blocked in `io_uring_enter`
//! or doing counted work of its own and reaping the queue without a system call.
use std::os::fd::AsRawFd;

use anyhow::Context as _;
use io_uring::{IoUring, opcode, types};

use crate::{
    blocking::{Paced, finish, paced_truth, raise_priority, receive_messages, spawn_sender},
    clock::now_ns,
    models::work_until,
    net::tcp_pair,
    truth::{Truth, gettid},
};

/// How the receiver learns of completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reap {
    /// Blocked in `io_uring_enter` until a completion is there.
    Wait,
    /// Submits, does its own work, and reaps the completion queue in user memory.
    Work,
}

impl Reap {
    /// The workload's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wait => "io-uring",
            Self::Work => "io-uring-reap",
        }
    }
}

/// Runs the workload and returns its truth: one `io_uring_recv` entry per completion, from
/// submission to reaping, with the completion's result.
pub fn run(reap: Reap, p: Paced) -> anyhow::Result<Truth> {
    p.validate()?;
    let (tx, rx) = tcp_pair()?;
    let fd = rx.as_raw_fd();
    let mut ring = IoUring::new(8).context("failed to set up an io_uring")?;
    let tid = gettid();
    let sender = spawn_sender(tx, p);
    if reap == Reap::Wait {
        raise_priority();
    }
    let mut buf = vec![0u8; p.size];
    let mut truth = paced_truth(reap.name(), &p);
    let t0 = now_ns();
    receive_messages(&p, &mut truth, |truth, msg, got| {
        let rest = &mut buf[got..];
        let sqe = opcode::Recv::new(types::Fd(fd), rest.as_mut_ptr(), rest.len() as u32)
            .flags(libc::MSG_WAITALL)
            .build()
            .user_data(msg);
        let before_ns = now_ns();
        // SAFETY: the buffer outlives the request: the loop waits for its completion
        // before touching `buf` again.
        unsafe { ring.submission().push(&sqe) }.context("submission queue full")?;
        let cqe = match reap {
            Reap::Wait => {
                ring.submit_and_wait(1).context("io_uring_enter failed")?;
                ring.completion().next()
            }
            Reap::Work => {
                ring.submit().context("io_uring_enter failed")?;
                let mut cqe = None;
                truth.work += work_until(|| {
                    cqe = ring.completion().next();
                    cqe.is_some()
                });
                cqe
            }
        }
        .context("no completion after waiting for one")?;
        let ret = cqe.result();
        truth.record("io_uring_recv", tid, fd, before_ns, now_ns(), ret as i64);
        anyhow::ensure!(
            ret > 0,
            "receive request failed: {}",
            std::io::Error::from_raw_os_error(-ret)
        );
        Ok(ret as usize)
    })?;
    finish(truth, t0, sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn both_variants_receive_every_byte() {
        for r in [Reap::Wait, Reap::Work] {
            let t = run(
                r,
                Paced {
                    interval: Duration::from_millis(1),
                    size: 4096,
                    count: 5,
                },
            )
            .expect("run");
            assert_eq!((t.messages, t.bytes), (5, 5 * 4096), "{r:?}");
            assert_eq!(r == Reap::Work, t.work > 0, "{r:?}");
        }
    }
}
