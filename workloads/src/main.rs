//! Command-line entry of the bundled workloads.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use workloads::{
    aio, blocking, flood,
    methods::{self, Method},
    models::{self, Readiness},
    overhead, tokio_recv,
    transfer::FileTransfer,
    truncate,
    truth::Truth,
    uring,
};

/// Bundled I/O workloads, each with its own ground truth.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "EXAMPLES:\n  workloads blocking --interval 5ms --size 64KiB --count 200 --truth t.json\n  workloads splice --size 256MiB\n  workloads sendfile --size 64MiB --cold\n  workloads mmap-truncate --variant lease"
)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
    /// Run every thread of the workload on this CPU (benchmarks pin it so that runs compare)
    #[arg(long, global = true, value_name = "N")]
    cpu: Option<usize>,
}

#[derive(Debug, clap::Args)]
struct PacedArgs {
    /// Time between two messages.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Bytes per message (e.g. 65536, 64KiB).
    #[arg(long, default_value = "65536", value_parser = parse_size)]
    size: u64,
    /// Number of messages.
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// Write what the workload did as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct FileArgs {
    /// The file to send (made on first use); default: one in ~/.cache/ioprof/files.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Size of the file (e.g. 256MiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    /// Drop the file from the page cache first, so that it is read from the disk.
    #[arg(long)]
    cold: bool,
    /// Write what the workload did as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

impl FileArgs {
    fn transfer(&self) -> FileTransfer {
        FileTransfer {
            file: self.file.clone(),
            size: self.size,
            cold: self.cold,
        }
    }
}

#[derive(Debug, clap::Args)]
struct TruncateArgs {
    #[command(flatten)]
    file: FileArgs,
    /// How the sender survives: a SIGBUS handler, or a file lease that warns it first.
    #[arg(long, value_enum, default_value = "sigbus")]
    variant: truncate::Variant,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Blocking I/O: receiver blocked in recvfrom, paced TCP sender.
    Blocking(PacedArgs),
    /// Zero copy with splice: file → pipe → socket, receiver reads with recvfrom.
    Splice(FileArgs),
    /// Tight loop of non-blocking recvfrom calls that fail with EAGAIN.
    Eagain(LoopArgs),
    /// Tight loop of getppid calls (an untraced bystander for benchmarks).
    Getppid(LoopArgs),
    /// Reads a file again and again in 4 KiB read calls (page cache).
    Readloop(ReadLoopArgs),
    /// Non-blocking I/O: recvfrom retried until it stops failing with EAGAIN.
    Nonblocking(PacedArgs),
    /// Multiplexing: receiver blocked in select, then reads.
    Select(PacedArgs),
    /// Multiplexing: receiver blocked in poll, then reads.
    Poll(PacedArgs),
    /// Multiplexing: receiver blocked in epoll_wait, then reads.
    Epoll(PacedArgs),
    /// Signal-driven I/O: receiver works until SIGIO, then reads.
    Sigio(PacedArgs),
    /// POSIX aio_read through the C library, completion signalled; receiver works meanwhile.
    Aio(PacedArgs),
    /// io_uring receive requests; receiver waits in io_uring_enter for each completion.
    #[command(name = "io-uring")]
    IoUring(PacedArgs),
    /// io_uring receive requests; receiver works and reaps completions without a system call.
    #[command(name = "io-uring-reap")]
    IoUringReap(PacedArgs),
    /// tokio: a task reads the messages from a tokio TcpStream on one worker thread, then
    /// reads a file through tokio::fs (on the runtime's blocking pool).
    TokioRecv(PacedArgs),
    /// read into a buffer, write it to the socket (two CPU copies).
    ReadWrite(FileArgs),
    /// O_DIRECT read into an aligned buffer (no page cache), then write.
    DirectIo(FileArgs),
    /// mmap the file, write from the mapping (page faults instead of the first copy).
    MmapWrite(FileArgs),
    /// sendfile from the file to the socket.
    Sendfile(FileArgs),
    /// MSG_ZEROCOPY sends of the mapped file, completions from the error queue.
    MsgZerocopy(FileArgs),
    /// io_uring: linked read and send requests.
    #[command(name = "io-uring-file")]
    IoUringFile(FileArgs),
    /// copy_file_range: file to file inside the kernel.
    CopyFileRange(FileArgs),
    /// A private file mapping: every page read, then written once (copy-on-write), then sent.
    CowPrivate(FileArgs),
    /// A buffer filled from the file, a fork, parent then child write every page, then sent.
    CowFork(FileArgs),
    /// vmsplice(SPLICE_F_GIFT) of the buffer's pages to a pipe, splice to the socket.
    VmspliceGift(FileArgs),
    /// The file is truncated while mapped: survive SIGBUS, or stop in time with a lease.
    MmapTruncate(TruncateArgs),
    /// Flood: small recvfrom calls as fast as the machine allows, for a set time (soak runs).
    Flood(FloodArgs),
}

#[derive(Debug, clap::Args)]
struct LoopArgs {
    /// Number of calls.
    #[arg(long, default_value_t = 2_000_000)]
    count: u64,
    /// Write what the workload did as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ReadLoopArgs {
    /// The file to read (made on first use); default: one in ~/.cache/ioprof/files.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Size of the file.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    size: u64,
    /// Bytes per read call.
    #[arg(long, default_value = "4096", value_parser = parse_size)]
    chunk: u64,
    /// Times the whole file is read.
    #[arg(long, default_value_t = 4)]
    passes: u64,
    /// Write what the workload did as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

impl PacedArgs {
    fn paced(&self) -> blocking::Paced {
        blocking::Paced {
            interval: self.interval,
            size: self.size as usize,
            count: self.count,
        }
    }
}

#[derive(Debug, clap::Args)]
struct FloodArgs {
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Bytes asked for by each receive call (e.g. 256, 4KiB).
    #[arg(long, default_value = "256", value_parser = parse_size)]
    size: u64,
    /// Write what the workload did as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

use workloads::files::parse_size;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(cpu) = cli.cpu
        && let Err(e) = workloads::pin_to_cpu(cpu)
    {
        eprintln!("workloads: {e:#}");
        return ExitCode::from(2);
    }
    let cpu0 = workloads::truth::cpu_ns();
    let (result, truth_path) = match cli.workload {
        Workload::Blocking(a) => (blocking::run(a.paced()), a.truth),
        Workload::Nonblocking(a) => (models::run(Readiness::NonBlocking, a.paced()), a.truth),
        Workload::Select(a) => (models::run(Readiness::Select, a.paced()), a.truth),
        Workload::Poll(a) => (models::run(Readiness::Poll, a.paced()), a.truth),
        Workload::Epoll(a) => (models::run(Readiness::Epoll, a.paced()), a.truth),
        Workload::Sigio(a) => (models::run(Readiness::Sigio, a.paced()), a.truth),
        Workload::Aio(a) => (aio::run(a.paced()), a.truth),
        Workload::IoUring(a) => (uring::run(uring::Reap::Wait, a.paced()), a.truth),
        Workload::IoUringReap(a) => (uring::run(uring::Reap::Work, a.paced()), a.truth),
        Workload::TokioRecv(a) => (tokio_recv::run(a.paced()), a.truth),
        Workload::Splice(a) => method(Method::Splice, a),
        Workload::Eagain(a) => (overhead::eagain(a.count), a.truth),
        Workload::Getppid(a) => (overhead::getppid(a.count), a.truth),
        Workload::Readloop(a) => (
            overhead::readloop(&overhead::ReadLoop {
                file: a.file,
                size: a.size,
                chunk: a.chunk as usize,
                passes: a.passes,
            }),
            a.truth,
        ),
        Workload::ReadWrite(a) => method(Method::ReadWrite, a),
        Workload::DirectIo(a) => method(Method::DirectIo, a),
        Workload::MmapWrite(a) => method(Method::MmapWrite, a),
        Workload::Sendfile(a) => method(Method::Sendfile, a),
        Workload::MsgZerocopy(a) => method(Method::MsgZerocopy, a),
        Workload::IoUringFile(a) => method(Method::IoUring, a),
        Workload::CopyFileRange(a) => method(Method::CopyFileRange, a),
        Workload::CowPrivate(a) => method(Method::CowPrivate, a),
        Workload::CowFork(a) => method(Method::CowFork, a),
        Workload::VmspliceGift(a) => method(Method::VmspliceGift, a),
        Workload::MmapTruncate(a) => (truncate::run(a.variant, &a.file.transfer()), a.file.truth),
        Workload::Flood(a) => (
            flood::run(flood::Flood {
                duration: a.duration,
                size: a.size as usize,
            }),
            a.truth,
        ),
    };
    let cpu1 = workloads::truth::cpu_ns();
    let result = result.map(|t| Truth {
        cpu_user_ns: cpu1.0.saturating_sub(cpu0.0),
        cpu_sys_ns: cpu1.1.saturating_sub(cpu0.1),
        ..t
    });
    match result.and_then(|t| finish(&t, truth_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workloads: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn method(m: Method, a: FileArgs) -> (anyhow::Result<Truth>, Option<PathBuf>) {
    (methods::run(m, &a.transfer()), a.truth)
}

fn finish(t: &Truth, path: Option<PathBuf>) -> anyhow::Result<()> {
    eprintln!(
        "workload {}: pid {}, {} bytes received, {} timed calls, {:.3}s",
        t.workload,
        t.pid,
        t.bytes,
        t.calls.len(),
        t.wall_ns as f64 / 1e9
    );
    if t.loop_calls > 0 {
        eprintln!(
            "workload {}: {} loop calls, {:.1} ns a call",
            t.workload,
            t.loop_calls,
            t.wall_ns as f64 / t.loop_calls as f64
        );
    }
    if !t.outcome.is_empty() {
        eprintln!("workload {}: {}", t.workload, t.outcome);
    }
    if let Some(p) = path {
        t.write(&p)?;
    }
    Ok(())
}
