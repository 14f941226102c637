//! A tokio receiver: one worker thread runs a task that reads the paced sender's messages from
//! a tokio `TcpStream` (the runtime waits in `epoll_wait`, then the task's read copies), then
//! reads a file with `tokio::fs` (each read done by a thread of tokio's blocking pool, which
//! wakes the worker when it is done). "Async" in name, multiplexing in what the kernel sees.
use std::os::fd::AsRawFd;

use anyhow::Context as _;
use tokio::io::AsyncReadExt as _;

use crate::{
    blocking::{Paced, finish, paced_truth, spawn_sender},
    clock::now_ns,
    files::ensure_file,
    net::tcp_pair,
    truth::{Truth, gettid},
};

/// Bytes of the file read through `tokio::fs` after the messages.
pub const FS_BYTES: u64 = 4 << 20;
/// Bytes asked for by each `tokio::fs` read: each is one job of the blocking pool.
pub const FS_CHUNK: usize = 256 << 10;

/// Runs the workload and returns its truth: one `read` entry per message read (the await of
/// the read, its wait in the runtime included), `file_bytes` for the file phase.
pub fn run(p: Paced) -> anyhow::Result<Truth> {
    p.validate()?;
    let file = ensure_file(None, FS_BYTES)?;
    let (tx, rx) = tcp_pair()?;
    rx.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // One blocking-pool thread does every file read, so that its reads are all one
        // helper's.
        .max_blocking_threads(1)
        // Like the other models' receivers: a woken worker does not queue behind other
        // programs on a loaded machine.
        .on_thread_start(crate::blocking::raise_priority)
        .enable_io()
        .thread_name("tokio-worker")
        .build()
        .context("failed to start the tokio runtime")?;
    let sender = spawn_sender(tx, p);
    let mut truth = paced_truth("tokio-recv", &p);
    let t0 = now_ns();
    truth = rt.block_on(async move {
        let task = tokio::spawn(async move {
            let rx = tokio::net::TcpStream::from_std(rx)?;
            receive(rx, p, &mut truth).await?;
            truth.file_bytes = read_file(&file).await?;
            anyhow::Ok(truth)
        });
        task.await.context("the receiving task panicked")?
    })?;
    rt.shutdown_background();
    finish(truth, t0, sender)
}

/// Reads `p.count` messages of `p.size` bytes from the stream on the runtime's worker.
async fn receive(mut rx: tokio::net::TcpStream, p: Paced, truth: &mut Truth) -> anyhow::Result<()> {
    let fd = rx.as_raw_fd();
    let mut buf = vec![0u8; p.size];
    for _ in 0..p.count {
        let mut got = 0;
        while got < p.size {
            let before_ns = now_ns();
            let n = rx
                .read(&mut buf[got..])
                .await
                .context("receiver: read failed")?;
            truth.record("read", gettid(), fd, before_ns, now_ns(), n as i64);
            anyhow::ensure!(n > 0, "receiver: the stream ended early");
            got += n;
        }
        truth.messages += 1;
        truth.bytes += got as u64;
    }
    Ok(())
}

/// Reads the whole file through `tokio::fs` in [`FS_CHUNK`] reads; returns the bytes read.
async fn read_file(path: &std::path::Path) -> anyhow::Result<u64> {
    let mut f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0u8; FS_CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await.context("file read failed")?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn receives_every_message_and_reads_the_file() {
        let p = Paced {
            interval: Duration::from_millis(1),
            size: 4096,
            count: 5,
        };
        let t = run(p).expect("run");
        assert_eq!((t.messages, t.bytes), (5, 5 * 4096));
        assert_eq!(t.file_bytes, FS_BYTES);
        assert_eq!(t.calls.iter().map(|c| c.ret as u64).sum::<u64>(), t.bytes);
    }
}
