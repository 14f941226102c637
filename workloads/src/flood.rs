//! Flood: as many receive calls as the machine can make, for a set time. A sender writes
//! without pause over loopback TCP; the receiver drains it with small `recvfrom` calls that
//! find data ready. Made for soak runs: it keeps no per-call truth, only counts.
use std::{io::Write, os::fd::AsRawFd, time::Duration};

use anyhow::Context as _;

use crate::{
    clock::now_ns,
    net::{recvfrom, tcp_pair},
    truth::Truth,
};

/// Knobs of a flood.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    /// How long the sender sends.
    pub duration: Duration,
    /// Bytes asked for by each receive call.
    pub size: usize,
}

impl Flood {
    /// Rejects knobs that cannot make a flood.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be longer than 0");
        anyhow::ensure!(self.size > 0, "--size must be at least 1 byte");
        anyhow::ensure!(self.size <= 64 << 20, "--size must be at most 64 MiB");
        Ok(())
    }
}

/// Runs the flood. Its truth: `messages` is the number of receive calls made (the last one
/// returns 0 at the end of the stream), `bytes` the bytes received.
pub fn run(f: Flood) -> anyhow::Result<Truth> {
    f.validate()?;
    let (mut tx, rx) = tcp_pair()?;
    let deadline = now_ns() + f.duration.as_nanos() as u64;
    let sender = std::thread::spawn(move || -> anyhow::Result<u64> {
        let chunk = vec![0xa5u8; 64 << 10];
        let mut sent = 0u64;
        while now_ns() < deadline {
            tx.write_all(&chunk).context("sender: write failed")?;
            sent += chunk.len() as u64;
        }
        tx.shutdown(std::net::Shutdown::Write)?;
        Ok(sent)
    });
    let fd = rx.as_raw_fd();
    let mut buf = vec![0u8; f.size];
    let mut truth = Truth {
        workload: "flood".into(),
        pid: std::process::id(),
        ..Truth::default()
    };
    let t0 = now_ns();
    loop {
        let ret = recvfrom(fd, &mut buf, 0);
        truth.messages += 1;
        if ret < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        anyhow::ensure!(
            ret >= 0,
            "receiver: recvfrom failed: {}",
            std::io::Error::last_os_error()
        );
        if ret == 0 {
            break;
        }
        truth.bytes += ret as u64;
    }
    truth.wall_ns = now_ns() - t0;
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    anyhow::ensure!(
        sent == truth.bytes,
        "sent {sent} bytes but received {}",
        truth.bytes
    );
    Ok(truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_everything_sent_in_small_calls() {
        let t = run(Flood {
            duration: Duration::from_millis(50),
            size: 1000,
        })
        .expect("run");
        assert!(t.bytes > 0);
        // Every call but the last moved at most `size` bytes.
        assert!(t.messages > t.bytes / 1000, "{t:?}");
    }

    #[test]
    fn bad_knobs_are_refused() {
        let f = Flood {
            duration: Duration::ZERO,
            size: 10,
        };
        assert!(format!("{:#}", run(f).expect_err("error")).contains("--duration"));
    }
}
