//! Blocking I/O: a paced sender writes fixed-size messages over loopback TCP; the receiver
//! blocks in `recvfrom(MSG_WAITALL)` until each message is whole.
use std::{io::Write, os::fd::AsRawFd, time::Duration};

use anyhow::Context as _;

use crate::{
    clock::{now_ns, sleep_until},
    net::{recvfrom, tcp_pair},
    truth::{Truth, gettid},
};

/// Knobs of a paced message stream.
#[derive(Clone, Copy, Debug)]
pub struct Paced {
    /// Time between two messages.
    pub interval: Duration,
    /// Bytes per message.
    pub size: usize,
    /// Number of messages.
    pub count: u64,
}

impl Paced {
    /// Rejects knobs that cannot make a stream.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.size > 0, "--size must be at least 1 byte");
        anyhow::ensure!(self.size <= 64 << 20, "--size must be at most 64 MiB");
        anyhow::ensure!(self.count > 0, "--count must be at least 1");
        Ok(())
    }
}

/// Nice value a thread asks for when it may not have a real-time priority.
const HIGH_NICE: libc::c_int = -10;

/// Gives the calling thread a real-time priority, else a higher nice value, so that on a
/// loaded machine the pacing stays exact and a woken receiver does not queue behind other
/// programs. Only for threads that sleep between short bursts of work. Without the privilege
/// for either, the thread keeps its priority: timings are only less exact.
pub fn raise_priority() {
    // SAFETY: acts on the calling thread only (id 0).
    let rt = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &RT_PARAM) };
    if rt != 0 {
        raise_nice();
    }
}

const RT_PARAM: libc::sched_param = libc::sched_param { sched_priority: 1 };

/// Gives the calling thread a higher nice value (no real-time priority): for a thread that
/// spins, which must share the CPU, but not queue behind other programs.
pub fn raise_nice() {
    // SAFETY: acts on the calling thread only (its own id).
    unsafe { libc::setpriority(libc::PRIO_PROCESS, crate::truth::gettid(), HIGH_NICE) };
}

/// Starts a thread that sends `p.count` messages of `p.size` bytes, message `i` at
/// `start + (i + 1) * interval`, then closes the stream.
pub fn spawn_sender(
    mut tx: std::net::TcpStream,
    p: Paced,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || {
        // A receiver that spins (polling, or working while it waits for a signal or a
        // completion) must not delay the sender when both share a busy CPU.
        raise_priority();
        let msg = vec![0x5au8; p.size];
        let start = now_ns();
        for i in 0..p.count {
            sleep_until(start + (i + 1) * p.interval.as_nanos() as u64);
            tx.write_all(&msg).context("sender: write failed")?;
        }
        tx.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    })
}

/// The truth of a paced workload before it runs.
pub fn paced_truth(workload: &str, p: &Paced) -> Truth {
    Truth {
        workload: workload.into(),
        pid: std::process::id(),
        interval_ns: p.interval.as_nanos() as u64,
        ..Truth::default()
    }
}

/// Receives `p.count` messages of `p.size` bytes, each in as many receives as it takes:
/// `receive(truth, message, got)` makes one into the message's buffer from offset `got`
/// (noting it in the truth) and returns the bytes it got, 0 to try again (an interrupted call).
pub fn receive_messages(
    p: &Paced,
    truth: &mut Truth,
    mut receive: impl FnMut(&mut Truth, u64, usize) -> anyhow::Result<usize>,
) -> anyhow::Result<()> {
    for msg in 0..p.count {
        let mut got = 0;
        while got < p.size {
            got += receive(truth, msg, got)?;
        }
        truth.messages += 1;
        truth.bytes += got as u64;
    }
    Ok(())
}

/// Ends a paced workload: the wall time since `t0`, and the sender's own result.
pub fn finish(
    mut truth: Truth,
    t0: u64,
    sender: std::thread::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<Truth> {
    truth.wall_ns = now_ns() - t0;
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    Ok(truth)
}

/// Runs the workload and returns its truth.
pub fn run(p: Paced) -> anyhow::Result<Truth> {
    p.validate()?;
    let (tx, rx) = tcp_pair()?;
    let fd = rx.as_raw_fd();
    let tid = gettid();
    let sender = spawn_sender(tx, p);
    raise_priority();
    let mut buf = vec![0u8; p.size];
    let mut truth = paced_truth("blocking", &p);
    let t0 = now_ns();
    receive_messages(&p, &mut truth, |truth, _, got| {
        let before_ns = now_ns();
        let ret = recvfrom(fd, &mut buf[got..], libc::MSG_WAITALL);
        let after_ns = now_ns();
        truth.record("recvfrom", tid, fd, before_ns, after_ns, ret as i64);
        if ret < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            return Ok(0);
        }
        anyhow::ensure!(
            ret > 0,
            "receiver: recvfrom returned {ret} before the stream ended"
        );
        Ok(ret as usize)
    })?;
    finish(truth, t0, sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_every_message_whole() {
        let p = Paced {
            interval: Duration::from_millis(1),
            size: 70_000,
            count: 5,
        };
        let t = run(p).expect("run");
        assert_eq!(t.messages, 5);
        assert_eq!(t.bytes, 350_000);
        assert!(t.calls.len() >= 5);
        assert!(
            t.calls
                .iter()
                .all(|c| c.after_ns >= c.before_ns && c.call == "recvfrom")
        );
        assert_eq!(
            t.calls.iter().map(|c| c.ret.max(0) as u64).sum::<u64>(),
            350_000
        );
    }

    #[test]
    fn bad_knobs_are_refused() {
        let p = Paced {
            interval: Duration::from_millis(1),
            size: 0,
            count: 5,
        };
        assert!(format!("{:#}", run(p).expect_err("error")).contains("--size"));
    }
}
