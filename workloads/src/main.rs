//! Command-line entry of the bundled workloads.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use workloads::{blocking, flood, splice, truth::Truth};

/// Bundled I/O workloads, each with its own ground truth.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "EXAMPLES:\n  workloads blocking --interval 5ms --size 64KiB --count 200 --truth t.json\n  workloads splice --size 256MiB"
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
    /// Write what the workload did as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Blocking I/O: receiver blocked in recvfrom, paced TCP sender.
    Blocking(PacedArgs),
    /// Zero copy with splice: file → pipe → socket, receiver reads with recvfrom.
    Splice(FileArgs),
    /// Flood: small recvfrom calls as fast as the machine allows, for a set time (soak runs).
    Flood(FloodArgs),
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
        Workload::Splice(a) => (
            splice::run(&splice::FileTransfer {
                file: a.file,
                size: a.size,
            }),
            a.truth,
        ),
        Workload::Flood(a) => (
            flood::run(flood::Flood {
                duration: a.duration,
                size: a.size as usize,
            }),
            a.truth,
        ),
    };
    match result.and_then(|t| finish(&t, truth_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workloads: error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    if let Some(p) = path {
        t.write(&p)?;
    }
    Ok(())
}
