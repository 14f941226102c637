//! The command line as the user types it (clap). [`crate::plan::Plan::resolve`] turns it into
//! a checked plan; nothing here touches a file or the kernel.
use std::{path::PathBuf, time::Duration};

use clap::Parser;

use crate::{plan::inputs, syscalls};

const EXAMPLES: &str = "\
EXAMPLES:
  profiler -- ./server --port 8080          start a command and trace it
  profiler -p 1234 -d 10s                   trace a running process for 10 seconds
  profiler -p 1234,5678 --csv calls.csv     two processes, one CSV row per call
  profiler -o report.txt -- ./client        the report to a file instead of stderr
  profiler --show calls,threads -- ./client the report with its call and thread tables
  profiler --findings f.json -- ./client    the findings (models, data moved) as JSON
  profiler --trace run.json -- ./client     a Perfetto trace (open it in ui.perfetto.dev)
  profiler --json - -- ./client | head      JSON lines on stdout, the report on stderr
  profiler --calls read,recvfrom -- cat f   trace only these calls
  profiler --self-stats -p 1234 -d 5s       summary mode, with each kernel program's ns per run
  profiler --mode per-call -- ./client      per-call records without writing a CSV
  profiler --freq 999 --flamegraph f.svg -- cat big.file
                                            sample CPU stacks at 999 Hz, draw a flame graph
  profiler --movement-json a.json -- ./a    keep the data-movement summary of a run
  profiler --compare a.json,b.json          two runs side by side
  profiler --all -d 10s                     every process for 10 s: the busiest in I/O calls
  profiler --comm nginx -d 10s              every process named nginx
  profiler --cgroup /sys/fs/cgroup/system.slice/x.service -d 10s
                                            every process of one cgroup (v2)
  profiler serve --listen 127.0.0.1:9464    Prometheus metrics of every process (serve --help)

EXIT STATUS:
  with -- COMMAND: the command's own status (128+N when signal N killed it); with -p or
  --compare: 0; 2: a usage or set-up error (nothing was attached and no file was changed);
  3: the run was traced and reported, but an output could not be written; 128+N: a second
  SIGINT or SIGTERM (signal N) ended the profiler at once.";

/// What the kernel does per call, as asked on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CliMode {
    /// Per-call records (the report's thread models need them); summary with --self-stats
    /// when no per-call output is asked for.
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

/// Default CPU sampling frequency: cheap enough to stay on (see docs/sampling.md).
pub const DEFAULT_FREQ: u64 = 99;

/// Splits every I/O call of a process into waiting for data and copying it, with eBPF.
///
/// The report goes to standard error (or to -o FILE); standard output stays the traced
/// command's.
#[derive(Debug, Parser)]
#[command(name = "profiler", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Trace these running processes (comma-separated pids).
    #[arg(short, long, value_delimiter = ',', conflicts_with = "command")]
    pub pid: Vec<u32>,

    /// Trace every process but the profiler, in summary mode, and list the processes that
    /// spent the most time waiting and copying in I/O calls.
    #[arg(long, conflicts_with_all = ["pid", "command"])]
    pub all: bool,

    /// Trace every thread of this command name (as in /proc/PID/comm; implies --all).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["pid", "command"])]
    pub comm: Option<String>,

    /// Trace every process of this cgroup v2 directory (implies --all).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["pid", "command"])]
    pub cgroup: Option<PathBuf>,

    /// End the run after this long (e.g. 500ms, 10s, 2m).
    #[arg(short, long, value_parser = inputs::parse_duration)]
    pub duration: Option<Duration>,

    /// Calls to trace, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = syscalls::DEFAULT.iter().map(|s| s.to_string()))]
    pub calls: Vec<String>,

    /// Write the report to FILE instead of standard error.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Details to add to the report, comma-separated: hooks, threads, calls, movement,
    /// messages, samples (-v: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "WHAT")]
    pub show: Vec<crate::plan::Detail>,

    /// Write the findings (threads and their models, calls, data moved, warnings) as JSON to
    /// FILE (keys in docs/findings.md).
    #[arg(long, value_name = "FILE")]
    pub findings: Option<PathBuf>,

    /// Write one CSV row per call to FILE (columns in docs/outputs.md; `-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Write one CSV row per process × call kind × stage to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub summary_csv: Option<PathBuf>,

    /// Write one JSON object per call, one a line, to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write a Chrome trace event file for Perfetto to FILE (`-`: stdout).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// Write the per-message summary (the model table's row) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub model_json: Option<PathBuf>,

    /// Size of the kernel's call record buffer in bytes (a power of two, from 4096 to 1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = probe_common::DEFAULT_RINGBUF_BYTES)]
    pub ringbuf_size: u32,

    /// What the kernel does per call (auto: per-call records, or in-kernel summaries with
    /// --self-stats and no per-call output).
    #[arg(long, value_enum, default_value_t = CliMode::Auto)]
    pub mode: CliMode,

    /// Report each kernel program's run count and ns per run (switches the kernel's BPF
    /// run-time statistics on for this run only).
    #[arg(long)]
    pub self_stats: bool,

    /// Slots of the kernel's per-thread and per-process tables (a power of two; ids that
    /// share a slot go to hash tables). For tests of that path.
    #[arg(long, hide = true, default_value_t = probe_common::THREAD_SLOTS)]
    pub thread_slots: u32,

    /// Entries of the kernel's per-thread copy-on-write table. For tests of a full table.
    #[arg(long, hide = true, default_value_t = probe_common::MAX_COW_THREADS)]
    pub cow_threads: u32,

    /// CPU sampling frequency in Hz for kernel and user stacks inside traced calls (0: off; at
    /// most the kernel's perf_event_max_sample_rate).
    #[arg(long, value_name = "HZ", default_value_t = DEFAULT_FREQ)]
    pub freq: u64,

    /// Write the CPU samples as folded stacks to FILE (call kind and stage as root frames).
    #[arg(long, value_name = "FILE")]
    pub folded: Option<PathBuf>,

    /// Draw the CPU samples as an SVG flame graph to FILE.
    #[arg(long, value_name = "FILE.svg")]
    pub flamegraph: Option<PathBuf>,

    /// Keep no call in memory: CSV rows are written as calls arrive and the stage table comes
    /// from streaming statistics, so memory stays flat however long the run; the analyses that
    /// need every call (models, data movement, groups, other exports) are off.
    #[arg(long)]
    pub bounded: bool,

    /// Show every detail of the report (as --show with all of them) and the loader's details.
    #[arg(short, long)]
    pub verbose: bool,

    /// Write the run's data-movement summary as JSON to FILE (for `--compare`).
    #[arg(long, value_name = "FILE")]
    pub movement_json: Option<PathBuf>,

    /// Name of the run in the data-movement summary (default: the command's name and first
    /// argument, or the pids).
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,

    /// Trace nothing: print the data-movement summaries of earlier runs (comma-separated JSON
    /// files written with --movement-json) side by side.
    #[arg(long, value_name = "FILE,…", value_delimiter = ',', conflicts_with_all = ["pid", "command"])]
    pub compare: Vec<PathBuf>,

    /// Run the command as USER (a name or uid). Under sudo the command runs as the user who
    /// ran sudo unless `--user root` is given.
    #[arg(short, long, value_name = "USER", requires = "command")]
    pub user: Option<String>,

    /// The command to start and trace.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl Cli {
    /// True when the run traces by a filter (`--all`, `--comm`, `--cgroup`).
    pub fn system_wide(&self) -> bool {
        self.all || self.comm.is_some() || self.cgroup.is_some()
    }
}
