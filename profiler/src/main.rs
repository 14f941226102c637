//! Command-line entry of the profiler.
use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use profiler::{
    inputs,
    launch::Exit,
    loader::LoadOptions,
    report,
    session::{self, EndReason, RunOptions, Target},
    sink::{CallSink as _, CsvStream},
    stats::CallStats,
    syscalls,
};

const EXAMPLES: &str = "\
EXAMPLES:
  profiler -- ./server --port 8080          start a command and trace it
  profiler -p 1234 -d 10s                   trace a running process for 10 seconds
  profiler -p 1234,5678 --csv calls.csv     two processes, one CSV row per call
  profiler --calls read,recvfrom -- cat f   trace only these calls";

/// Splits every I/O call of a process into waiting for data and copying it, with eBPF.
#[derive(Debug, Parser)]
#[command(version, after_help = EXAMPLES)]
struct Cli {
    /// Trace these running processes (comma-separated pids).
    #[arg(short, long, value_delimiter = ',', conflicts_with = "command")]
    pid: Vec<u32>,

    /// End the run after this long (e.g. 500ms, 10s, 2m).
    #[arg(short, long, value_parser = inputs::parse_duration)]
    duration: Option<Duration>,

    /// Calls to trace, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = syscalls::DEFAULT.iter().map(|s| s.to_string()))]
    calls: Vec<String>,

    /// Write one CSV row per call to FILE (columns in the README).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,

    /// Size of the kernel's call record buffer in bytes (a power of two, at least 4096).
    #[arg(long, value_name = "BYTES", default_value_t = probe_common::DEFAULT_RINGBUF_BYTES)]
    ringbuf_size: u32,

    /// Print loader details.
    #[arg(short, long)]
    verbose: bool,

    /// The command to start and trace.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("profiler: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let calls = cli
        .calls
        .iter()
        .map(|n| {
            syscalls::by_name(n).with_context(|| {
                let known: Vec<_> = syscalls::ALL.iter().map(|c| c.name).collect();
                format!("unknown call `{n}`; known calls: {}", known.join(", "))
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        cli.ringbuf_size >= 4096 && cli.ringbuf_size.is_power_of_two(),
        "--ringbuf-size must be a power of two of at least 4096 bytes, not {}",
        cli.ringbuf_size
    );
    let target = match (cli.pid.is_empty(), cli.command.is_empty()) {
        (false, true) => Target::Pids(cli.pid.clone()),
        (true, false) => Target::Command(cli.command.clone()),
        _ => anyhow::bail!("say what to trace: -p PID, or -- COMMAND ARGS… (see --help)"),
    };
    // Pids and outputs are checked before anything is attached.
    inputs::check_pids(&cli.pid)?;
    let csv_file = cli.csv.as_deref().map(session::check_output).transpose()?;
    // Rows are written as calls arrive; the table is built from bounded statistics.
    let mut stats = CallStats::default();
    let mut csv = csv_file.map(CsvStream::new).transpose()?;

    let opts = RunOptions {
        target: target.clone(),
        load: LoadOptions {
            calls,
            ringbuf_bytes: cli.ringbuf_size,
        },
        duration: cli.duration,
    };
    let what = match &target {
        Target::Command(argv) => format!("`{}`", argv.join(" ")),
        Target::Pids(p) => format!(
            "pid {}",
            p.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        ),
    };
    let verbose = cli.verbose;
    let result = session::run(&opts, &mut (&mut stats, &mut csv), |hooks, pids| {
        eprintln!(
            "Tracing {what} (pid {})… Ctrl-C to end.",
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        eprintln!("hooks:");
        for h in hooks {
            eprintln!("  {h}");
        }
        if verbose {
            eprintln!(
                "probe object loaded; ring buffer {} bytes",
                opts.load.ringbuf_bytes
            );
        }
    })?;
    csv.finish()?;

    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{}", report::stage_table_of(&stats));
    let _ = writeln!(
        out,
        "{} calls in {:.2}s; records sent {}, lost {}{}",
        result.calls,
        result.wall.as_secs_f64(),
        result.sent,
        result.lost,
        if result.undecodable > 0 {
            format!(", undecodable {}", result.undecodable)
        } else {
            String::new()
        }
    );
    if !result.events.is_empty() {
        let signals = result
            .events
            .iter()
            .filter(|e| matches!(e, profiler::decode::Record::Signal(_)))
            .count();
        let copies = result.events.len() - signals;
        let _ = writeln!(
            out,
            "other events: {signals} signal events, {copies} copies outside traced calls"
        );
    }
    if result.lost > 0 {
        let _ = writeln!(
            out,
            "warning: {} call records were lost (ring buffer full): raise --ringbuf-size",
            result.lost
        );
    }
    if let (Some(s), Some(p)) = (&csv, &cli.csv) {
        let _ = writeln!(out, "wrote {} rows to {}", s.rows(), p.display());
    }
    Ok(match result.end {
        EndReason::CommandExited(Exit::Code(0)) => ExitCode::SUCCESS,
        EndReason::CommandExited(Exit::Code(c)) => {
            let _ = writeln!(out, "command exited with code {c}");
            ExitCode::from(c.clamp(1, 255) as u8)
        }
        EndReason::CommandExited(Exit::Signal(s)) => {
            let _ = writeln!(out, "command killed by signal {s}");
            ExitCode::from(128 + (s as u8 & 0x7f))
        }
        EndReason::TargetsGone | EndReason::Duration | EndReason::Interrupted => ExitCode::SUCCESS,
    })
}
