//! Command-line entry of the bundled workloads.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use workloads::{
    blocking,
    methods::{self, Method},
    transfer::FileTransfer,
    truncate,
    truth::Truth,
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
    IoUring(FileArgs),
    /// copy_file_range: file to file inside the kernel.
    CopyFileRange(FileArgs),
    /// The file is truncated while mapped: survive SIGBUS, or stop in time with a lease.
    MmapTruncate(TruncateArgs),
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (result, truth_path) = match cli.workload {
        Workload::Blocking(a) => (
            blocking::run(blocking::Paced {
                interval: a.interval,
                size: a.size as usize,
                count: a.count,
            }),
            a.truth,
        ),
        Workload::Splice(a) => method(Method::Splice, a),
        Workload::ReadWrite(a) => method(Method::ReadWrite, a),
        Workload::DirectIo(a) => method(Method::DirectIo, a),
        Workload::MmapWrite(a) => method(Method::MmapWrite, a),
        Workload::Sendfile(a) => method(Method::Sendfile, a),
        Workload::MsgZerocopy(a) => method(Method::MsgZerocopy, a),
        Workload::IoUring(a) => method(Method::IoUring, a),
        Workload::CopyFileRange(a) => method(Method::CopyFileRange, a),
        Workload::MmapTruncate(a) => (truncate::run(a.variant, &a.file.transfer()), a.file.truth),
    };
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
    if !t.outcome.is_empty() {
        eprintln!("workload {}: {}", t.workload, t.outcome);
    }
    if let Some(p) = path {
        t.write(&p)?;
    }
    Ok(())
}
