//! Command-line entry of the profiler.
use std::{io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use profiler::{
    export::exports::{Exports, Format},
    inputs,
    launch::Exit,
    loader::LoadOptions,
    models, movement,
    progress::Progress,
    report, selfcost,
    session::{self, EndReason, RunOptions, Target},
    sink::{CallSink as _, CsvStream, Failsafe, Interruptible},
    stats::CallStats,
    summary, syscalls,
    traced::TracedCall,
};

const EXAMPLES: &str = "\
EXAMPLES:
  profiler -- ./server --port 8080          start a command and trace it
  profiler -p 1234 -d 10s                   trace a running process for 10 seconds
  profiler -p 1234,5678 --csv calls.csv     two processes, one CSV row per call
  profiler --trace run.json -- ./client     a Perfetto trace (open it in ui.perfetto.dev)
  profiler --json - -- ./client | head      JSON lines on stdout, the report on stderr
  profiler --calls read,recvfrom -- cat f   trace only these calls
  profiler --self-stats -p 1234 -d 5s       summary mode, with each kernel program's ns per run
  profiler --mode per-call -- ./client      per-call records without writing a CSV
  profiler --freq 999 --flamegraph f.svg -- cat big.file
                                            sample CPU stacks at 999 Hz, draw a flame graph
  profiler --movement-json a.json -- ./a    keep the data-movement summary of a run
  profiler --compare a.json,b.json          two runs side by side";

/// What the kernel does per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Per-call records when a per-call output (--csv, --summary-csv, --json, --trace) is
    /// asked for, else summary.
    Auto,
    /// Sums and histograms per process and call, kept in the kernel: no per-call record.
    Summary,
    /// One record per call through the ring buffer; summaries computed in user space.
    PerCall,
    /// Both at once (to check one against the other).
    Both,
    /// Benchmark floor: the call hooks attached with programs that return at once.
    Floor,
}

/// Default CPU sampling frequency: cheap enough to stay on (see the README).
const DEFAULT_FREQ: u64 = 99;

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

    /// Write one CSV row per call to FILE (columns in the README; `-`: stdout).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,

    /// Write one CSV row per process × call kind × stage to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    summary_csv: Option<PathBuf>,

    /// Write one JSON object per call, one a line, to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Write a Chrome trace event file for Perfetto to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write the per-message summary (the model table's row) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    model_json: Option<PathBuf>,

    /// Size of the kernel's call record buffer in bytes (a power of two, at least 4096).
    #[arg(long, value_name = "BYTES", default_value_t = probe_common::DEFAULT_RINGBUF_BYTES)]
    ringbuf_size: u32,

    /// What the kernel does per call (auto: per-call records when a per-call output is asked
    /// for, else in-kernel summaries).
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,

    /// Report each kernel program's run count and ns per run (switches the kernel's BPF
    /// run-time statistics on for this run only).
    #[arg(long)]
    self_stats: bool,
    /// Slots of the kernel's per-thread and per-process tables (a power of two; ids that
    /// share a slot go to hash tables). For tests of that path.
    #[arg(long, hide = true, default_value_t = probe_common::THREAD_SLOTS)]
    thread_slots: u32,
    /// CPU sampling frequency in Hz for kernel and user stacks inside traced calls (0: off).
    #[arg(long, value_name = "HZ", default_value_t = DEFAULT_FREQ)]
    freq: u64,

    /// Write the CPU samples as folded stacks to FILE (call kind and stage as root frames).
    #[arg(long, value_name = "FILE")]
    folded: Option<PathBuf>,

    /// Draw the CPU samples as an SVG flame graph to FILE.
    #[arg(long, value_name = "FILE.svg")]
    flamegraph: Option<PathBuf>,

    /// Keep no call in memory: CSV rows are written as calls arrive and the stage table comes
    /// from streaming statistics, so memory stays flat however long the run; the analyses that
    /// need every call (models, data movement, groups, other exports) are off.
    #[arg(long)]
    bounded: bool,

    /// Print loader details.
    #[arg(short, long)]
    verbose: bool,

    /// Write the run's data-movement summary as JSON to FILE (for `--compare`).
    #[arg(long, value_name = "FILE")]
    movement_json: Option<PathBuf>,

    /// Name of the run in the data-movement summary (default: the command's name and first
    /// argument, or the pids).
    #[arg(long, value_name = "NAME")]
    label: Option<String>,

    /// Trace nothing: print the data-movement summaries of earlier runs (comma-separated JSON
    /// files written with --movement-json) side by side.
    #[arg(long, value_name = "FILE,…", value_delimiter = ',', conflicts_with_all = ["pid", "command"])]
    compare: Vec<PathBuf>,

    /// Run the command as USER (a name or uid). Under sudo the command runs as the user who
    /// ran sudo unless `--user root` is given.
    #[arg(short, long, value_name = "USER", requires = "command")]
    user: Option<String>,

    /// The command to start and trace.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `workloads sendfile` → `sendfile`; any other command → its file name and first argument.
fn run_label(argv: &[String]) -> String {
    let name = std::path::Path::new(&argv[0])
        .file_name()
        .map_or_else(|| argv[0].clone(), |n| n.to_string_lossy().into_owned());
    match argv.get(1) {
        Some(a) if name == "workloads" && !a.starts_with('-') => a.clone(),
        Some(a) if !a.starts_with('-') => format!("{name} {a}"),
        _ => name,
    }
}

/// CPU time of the finished children of the profiler: the traced command.
fn children_cpu() -> Option<movement::Cpu> {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok()?;
    let ns =
        |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1_000;
    Some(movement::Cpu {
        user_ns: ns(u.user_time()),
        system_ns: ns(u.system_time()),
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error in one line (clap's first), exit 2; --help and --version as clap
        // prints them.
        Err(e) if e.use_stderr() => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: bad command line");
            eprintln!("profiler: {first} (see --help)");
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("profiler: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The user a launched command runs as, for the report.
fn run_as_name(run_as: Option<&profiler::launch::RunAs>) -> String {
    run_as.map_or_else(
        || {
            let uid = nix::unistd::getuid();
            let name = nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name);
            format!("{name} (uid {uid}, the profiler's own user)")
        },
        ToString::to_string,
    )
}

fn mode_name(m: u32) -> &'static str {
    use probe_common::mode::{AGGREGATE, FLOOR, RECORDS};
    match m {
        FLOOR => "floor (hooks attached, programs empty: nothing is measured)",
        RECORDS => "per-call (one record per call)",
        AGGREGATE => "summary (sums and histograms in the kernel, no per-call record)",
        _ => "per-call and summary",
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !cli.compare.is_empty() {
        let runs = cli
            .compare
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                serde_json::from_str::<movement::Movement>(&text)
                    .with_context(|| format!("{} is not a --movement-json file", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        print!("{}", movement::side_by_side(&runs));
        if let Some((base, rest)) = runs.split_first()
            && !rest.is_empty()
        {
            println!();
            for m in rest {
                println!("{}", movement::savings(base, m));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
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
        cli.ringbuf_size >= 4096
            && cli.ringbuf_size.is_power_of_two()
            && cli.ringbuf_size <= profiler::loader::MAX_RINGBUF_BYTES,
        "--ringbuf-size must be a power of two from 4096 bytes to 1 GiB, not {}",
        cli.ringbuf_size
    );
    let target = match (cli.pid.is_empty(), cli.command.is_empty()) {
        (false, true) => Target::Pids(cli.pid.clone()),
        (true, false) => Target::Command(cli.command.clone()),
        _ => anyhow::bail!("say what to trace: -p PID, or -- COMMAND ARGS… (see --help)"),
    };
    // Pids and outputs are checked before anything is attached.
    inputs::check_pids(&cli.pid)?;
    anyhow::ensure!(
        !cli.bounded
            || (cli.summary_csv.is_none()
                && cli.json.is_none()
                && cli.trace.is_none()
                && cli.model_json.is_none()
                && cli.movement_json.is_none()),
        "--bounded keeps no call in memory: of the per-call outputs it writes only --csv"
    );
    // With --bounded the CSV rows are written as calls arrive; otherwise at the end, with the
    // columns that need the whole run (model, message).
    let exports = Exports::open(&[
        (Format::Csv, cli.csv.as_ref().filter(|_| !cli.bounded)),
        (Format::SummaryCsv, cli.summary_csv.as_ref()),
        (Format::Json, cli.json.as_ref()),
        (Format::Trace, cli.trace.as_ref()),
    ])?;
    anyhow::ensure!(
        cli.freq > 0 || (cli.folded.is_none() && cli.flamegraph.is_none()),
        "--folded and --flamegraph need CPU samples: drop --freq 0"
    );
    let check = |p: &Option<PathBuf>| -> anyhow::Result<_> {
        p.as_ref()
            .map(|p| session::check_output(p).map(|f| (p.clone(), f)))
            .transpose()
    };
    let sample_outputs = profiler::sampling::Outputs {
        folded: check(&cli.folded)?,
        flamegraph: check(&cli.flamegraph)?,
    };
    let model_file = cli
        .model_json
        .as_deref()
        .map(session::check_output)
        .transpose()?;
    let movement_file = cli
        .movement_json
        .as_deref()
        .map(session::check_output)
        .transpose()?;
    let csv_file = if cli.bounded {
        cli.csv.as_deref().map(session::check_output).transpose()?
    } else {
        None
    };
    let mut csv = csv_file
        .map(|f| CsvStream::new(Interruptible(f)))
        .transpose()?
        .map(Failsafe::new);
    // The stage table comes from bounded statistics; analyses that need every call (models,
    // data movement, groups, exports) read the kept calls.
    let mut stats = CallStats::default();
    let mut kept: Option<Vec<TracedCall>> = (!cli.bounded).then(Vec::new);

    let per_call_output = cli.csv.is_some()
        || cli.summary_csv.is_some()
        || cli.json.is_some()
        || cli.trace.is_some()
        || cli.model_json.is_some()
        || cli.movement_json.is_some()
        || cli.folded.is_some()
        || cli.flamegraph.is_some();
    let kernel_mode = match (cli.mode, per_call_output) {
        (Mode::Auto, true) | (Mode::PerCall, _) => probe_common::mode::RECORDS,
        (Mode::Auto, false) | (Mode::Summary, _) => probe_common::mode::AGGREGATE,
        (Mode::Both, _) => probe_common::mode::RECORDS | probe_common::mode::AGGREGATE,
        (Mode::Floor, _) => probe_common::mode::FLOOR,
    };
    anyhow::ensure!(
        !per_call_output || kernel_mode & probe_common::mode::RECORDS != 0,
        "--csv, --summary-csv, --json, --trace, --model-json, --movement-json, --folded and --flamegraph need per-call records: use --mode auto, per-call or both"
    );
    let run_as = match &cli.user {
        Some(u) => Some(profiler::launch::RunAs::named(u)?),
        None => profiler::launch::RunAs::default_for(
            std::env::var("SUDO_UID").ok().as_deref(),
            std::env::var("SUDO_GID").ok().as_deref(),
        )?,
    };
    let opts = RunOptions {
        run_as,
        target: target.clone(),
        load: LoadOptions {
            calls,
            ringbuf_bytes: cli.ringbuf_size,
            mode: kernel_mode,
            self_stats: cli.self_stats,
            sample_hz: cli.freq,
            // One record per socket event: only for per-call runs, whose analyses read them.
            message_events: !cli.bounded && kernel_mode & probe_common::mode::RECORDS != 0,
            thread_slots: cli.thread_slots,
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
    // A traced command may write to the terminal too: the progress line is for `-p` runs.
    let mut progress = None;
    let result = session::run(
        &opts,
        &mut (&mut stats, (&mut csv, &mut kept)),
        |hooks, pids| {
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
            eprintln!("mode: {}", mode_name(opts.load.mode));
            if let Target::Command(_) = &target {
                eprintln!("command runs as {}", run_as_name(opts.run_as.as_ref()));
            }
            if verbose {
                eprintln!(
                    "probe object loaded; ring buffer {} bytes",
                    opts.load.ringbuf_bytes
                );
            }
            progress = Some(Progress::start(matches!(target, Target::Pids(_))));
        },
    )?;
    drop(progress);
    // An output that fails stops nothing else: its error is reported at the end.
    let mut failed: Vec<anyhow::Error> = Vec::new();
    csv.finish()?;
    let csv_error = csv.as_mut().and_then(Failsafe::take_error);
    failed.extend(csv_error.map(|e| {
        let path = cli.csv.as_deref().unwrap_or(std::path::Path::new("-"));
        e.context(format!("failed to write {}", path.display()))
    }));
    let calls: &[TracedCall] = kept.as_deref().unwrap_or(&[]);

    // With an export on stdout, the report goes to stderr. A reader that leaves (closes the
    // pipe) ends the report quietly.
    let mut out = profiler::export::output::Output::new(
        if exports.uses_stdout() {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        },
        true,
    );
    let per_call = opts.load.mode & probe_common::mode::RECORDS != 0;
    let summed = opts.load.mode & probe_common::mode::AGGREGATE != 0;
    if per_call {
        let _ = writeln!(out, "\n{}", report::stage_table_of(&stats));
        if !cli.bounded {
            let verdicts = profiler::infer::infer_run(calls, &result.events);
            let _ = write!(
                out,
                "{}",
                profiler::groups::table(calls, &verdicts, &result.names)
            );
        }
    }
    if summed {
        let _ = writeln!(
            out,
            "\nsummary (in-kernel):\n{}",
            summary::table(&result.summaries)
        );
    }
    let ncalls = if per_call {
        result.calls
    } else {
        result.summaries.values().map(|s| s.calls).sum()
    };
    let _ = writeln!(
        out,
        "{} calls in {:.2}s; records sent {}, lost {}{}",
        ncalls,
        result.wall.as_secs_f64(),
        result.sent,
        result.lost,
        if result.undecodable > 0 {
            format!(", undecodable {}", result.undecodable)
        } else {
            String::new()
        }
    );
    if let Target::Command(_) = &target {
        let _ = writeln!(out, "command ran as {}", run_as_name(opts.run_as.as_ref()));
    }
    let untraced = result.counter(probe_common::Counter::InFlightFull);
    if untraced > 0 {
        let _ = writeln!(
            out,
            "{untraced} calls not traced: no room left in the kernel's table of calls in flight"
        );
    }
    {
        use profiler::decode::Record;
        let count = |f: fn(&Record) -> bool| result.events.iter().filter(|e| f(e)).count();
        let signals = count(|e| matches!(e, Record::Signal(_)));
        let copies = count(|e| matches!(e, Record::Copy(_)));
        let sockets = count(|e| matches!(e, Record::Sock(_)));
        let rings = count(|e| matches!(e, Record::Uring(_)));
        let procs = result.procs.len() + result.events.len() - signals - copies - sockets - rings;
        let samples = result.samples.records.len();
        if procs + signals + copies + sockets + rings + samples > 0 {
            // Every record that is not a call, so that calls + these = records read.
            let _ = writeln!(
                out,
                "other events: {signals} signal events, {copies} copies outside traced calls, \
                 {sockets} socket events, {rings} io_uring events, {procs} process events, \
                 {samples} CPU samples"
            );
        }
    }
    let label = cli.label.clone().unwrap_or_else(|| match &target {
        Target::Command(argv) => run_label(argv),
        Target::Pids(_) => what.clone(),
    });
    let moved = movement::summarize(
        &label,
        calls,
        &result.counters,
        result.wall.as_nanos() as u64,
        match result.end {
            EndReason::CommandExited(_) => children_cpu(),
            _ => None,
        },
    );
    // Per-call analyses need the calls: not in summary mode, not with --bounded.
    let analyses = per_call && !cli.bounded;
    if analyses {
        let _ = write!(out, "\n{}", movement::report(&moved));
    }
    let signals: Vec<_> = result
        .events
        .iter()
        .filter_map(|e| match e {
            profiler::decode::Record::Signal(s) => Some(*s),
            _ => None,
        })
        .collect();
    if !signals.is_empty() {
        let t0 = calls
            .iter()
            .map(|c| c.rec.start_ns)
            .chain(signals.iter().map(|s| s.time_ns))
            .min()
            .unwrap_or(0);
        let _ = write!(
            out,
            "signals (time after the first traced event):\n{}",
            movement::signal_lines(&signals, t0)
        );
    }
    if let (Some(f), Some(p)) = (movement_file, &cli.movement_json) {
        failed.extend(write_json(f, p, &moved).err());
    }
    if result.lost > 0 {
        let _ = writeln!(
            out,
            "warning: {} records were lost (ring buffer full): raise --ringbuf-size, or use --bounded or summary mode",
            result.lost
        );
    }
    if result.summary_full > 0 {
        let _ = writeln!(
            out,
            "warning: {} calls were not summed (summary map full: more than {} process × call pairs)",
            result.summary_full,
            probe_common::MAX_SUMMARY_KEYS
        );
    }
    if let (Some(s), Some(p)) = (&csv, &cli.csv)
        && failed.is_empty()
    {
        let _ = writeln!(out, "wrote {} rows to {}", s.inner().rows(), p.display());
    }
    let msgs = models::messages(calls, &result.events);
    if analyses && !msgs.is_empty() {
        let _ = write!(out, "\n{}", models::report(&msgs));
    }
    if let (Some(f), Some(p)) = (model_file, &cli.model_json) {
        failed.extend(write_json(f, p, &models::model_row(&msgs)).err());
    }
    profiler::sampling::report(
        calls,
        &result.samples,
        sample_outputs,
        &mut out,
        &mut failed,
    )?;
    exports.write(
        &models::rows(calls, &msgs),
        &result.events,
        &mut out,
        &mut failed,
    );
    // Last, so that the cost covers the analyses and exports as well as the run.
    let _ = write!(
        out,
        "{}",
        selfcost::report(
            result.lost,
            &selfcost::own_usage(),
            result.programs.as_deref()
        )
    );
    let status = match result.end {
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
    };
    let _ = out.flush();
    if failed.is_empty() {
        return Ok(status);
    }
    for e in &failed {
        eprintln!("profiler: error: {e:#}");
    }
    Ok(ExitCode::from(OUTPUT_FAILED))
}

/// Exit status of a run whose report was printed but an output could not be written.
const OUTPUT_FAILED: u8 = 3;

/// Writes `value` as pretty JSON to the output `f` (at `path`), flushed.
fn write_json(
    f: std::fs::File,
    path: &std::path::Path,
    value: &impl serde::Serialize,
) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(Interruptible(f));
    serde_json::to_writer_pretty(&mut w, value)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(w.flush()?))
        .with_context(|| format!("failed to write {}", path.display()))
}
