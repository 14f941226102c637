//! Plan: what to trace and where to write, resolved once from the command line. Every check
//! happens here, before any output file is touched and before anything is attached, so that a
//! rejected command line changes nothing.

pub mod checks;
pub mod cli;
pub mod inputs;
pub mod privilege;
pub mod serve;
pub mod target;

use std::{path::PathBuf, time::Duration};

use crate::{
    capture::{launch::RunAs, session::Target},
    syscalls::Call,
};

/// Largest ring buffer the profiler asks the kernel for.
pub const MAX_RINGBUF_BYTES: u32 = 1 << 30;

/// What the kernel does per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Sums and histograms per process and call in the kernel; no per-call record.
    Summary,
    /// One record per call through the ring buffer.
    PerCall,
    /// Both at once.
    Both,
    /// The call hooks attached with programs that return at once: nothing is measured.
    Floor,
}

impl Mode {
    /// The kernel's mode bits (`probe_common::mode`), for the loader.
    pub fn kernel_bits(self) -> u32 {
        use probe_common::mode::{AGGREGATE, FLOOR, RECORDS};
        match self {
            Self::Summary => AGGREGATE,
            Self::PerCall => RECORDS,
            Self::Both => RECORDS | AGGREGATE,
            Self::Floor => FLOOR,
        }
    }

    /// True when the kernel sends one record per call.
    pub fn per_call(self) -> bool {
        matches!(self, Self::PerCall | Self::Both)
    }

    /// True when the kernel keeps per-process sums.
    pub fn summed(self) -> bool {
        matches!(self, Self::Summary | Self::Both)
    }

    /// Words for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Floor => "floor (hooks attached, programs empty: nothing is measured)",
            Self::PerCall => "per-call (one record per call)",
            Self::Summary => "summary (sums and histograms in the kernel, no per-call record)",
            Self::Both => "per-call and summary",
        }
    }
}

/// A detail of the report that is shown only on request (`--show`, `-v`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Detail {
    /// The kernel hooks in use (a missing one is named among the warnings anyway).
    Hooks,
    /// Every thread with its model and evidence, and the per-descriptor-class call table.
    Threads,
    /// The stage table of every call kind, and the kernel's summary table.
    Calls,
    /// The data-movement breakdown per call kind.
    Movement,
    /// The per-message table (wait kind, copier) and the signals.
    Messages,
    /// CPU samples per call kind and stage.
    Samples,
}

/// Where an output goes: a file, or standard output (`-`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// Standard output.
    Stdout,
    /// A file, created or truncated when the run starts.
    File(PathBuf),
}

impl Dest {
    fn of(p: &std::path::Path) -> Self {
        if crate::render::export::output::is_stdout(p) {
            Self::Stdout
        } else {
            Self::File(p.to_path_buf())
        }
    }

    /// The path as given (`-` for standard output).
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Stdout => PathBuf::from(crate::render::export::output::STDOUT),
            Self::File(p) => p.clone(),
        }
    }
}

/// The outputs of a run: checked and distinct, not yet opened.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    /// The terminal report (`-o`); `None`: standard error.
    pub report: Option<Dest>,
    /// `--findings`.
    pub findings: Option<Dest>,
    /// `--csv`.
    pub csv: Option<Dest>,
    /// `--summary-csv`.
    pub summary_csv: Option<Dest>,
    /// `--json`.
    pub json: Option<Dest>,
    /// `--trace`.
    pub trace: Option<Dest>,
    /// `--model-json`.
    pub model_json: Option<Dest>,
    /// `--movement-json`.
    pub movement_json: Option<Dest>,
    /// `--folded`.
    pub folded: Option<Dest>,
    /// `--flamegraph`.
    pub flamegraph: Option<Dest>,
}

impl Outputs {
    /// Every output with the option that names it.
    pub fn all(&self) -> Vec<(&'static str, &Dest)> {
        [
            ("-o", &self.report),
            ("--findings", &self.findings),
            ("--csv", &self.csv),
            ("--summary-csv", &self.summary_csv),
            ("--json", &self.json),
            ("--trace", &self.trace),
            ("--model-json", &self.model_json),
            ("--movement-json", &self.movement_json),
            ("--folded", &self.folded),
            ("--flamegraph", &self.flamegraph),
        ]
        .into_iter()
        .filter_map(|(o, d)| d.as_ref().map(|d| (o, d)))
        .collect()
    }

    /// True when an export writes one row per call (`--csv`, `--summary-csv`, `--json`,
    /// `--trace`): then every call is put aside in a temporary file as it arrives, none dropped
    /// from the rows.
    pub fn per_call_rows(&self) -> bool {
        self.csv.is_some()
            || self.summary_csv.is_some()
            || self.json.is_some()
            || self.trace.is_some()
    }

    /// True when an output needs one record per call.
    fn need_records(&self) -> bool {
        self.all().iter().any(|(o, _)| *o != "-o")
    }
}

/// A resolved run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// What to trace.
    pub target: Target,
    /// Calls to trace.
    pub calls: Vec<&'static Call>,
    /// What the kernel does per call.
    pub mode: Mode,
    /// Ring buffer size in bytes.
    pub ringbuf_bytes: u32,
    /// Per-program statistics.
    pub self_stats: bool,
    /// Slots of the kernel's per-thread tables.
    pub thread_slots: u32,
    /// Entries of the kernel's copy-on-write table.
    pub cow_threads: u32,
    /// CPU sampling frequency (0: off).
    pub freq: u64,
    /// End after this long.
    pub duration: Option<Duration>,
    /// Keep no call in memory.
    pub bounded: bool,
    /// Loader details.
    pub verbose: bool,
    /// Details shown in the report.
    pub show: Vec<Detail>,
    /// The run's name in the data-movement summary.
    pub label: String,
    /// Outputs, checked, not opened.
    pub outputs: Outputs,
    /// The user a launched command runs as (`None`: the profiler's own).
    pub run_as: Option<RunAs>,
}

/// What the command line asks for.
#[derive(Clone, Debug)]
pub enum Job {
    /// Trace.
    Trace(Box<Plan>),
    /// Print earlier runs' data-movement summaries side by side.
    Compare(Vec<PathBuf>),
    /// Serve metrics until stopped.
    Serve(Box<serve::ServePlan>),
}

/// Why a command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A one-line reason that names what to change.
    #[error("{0}")]
    Usage(String),
}

fn usage<T>(msg: impl Into<String>) -> Result<T, PlanError> {
    Err(PlanError::Usage(msg.into()))
}

impl Job {
    /// Resolves and checks a command line; touches no file.
    pub fn resolve(cli: cli::Cli) -> Result<Self, PlanError> {
        if !cli.compare.is_empty() {
            for p in &cli.compare {
                checks::readable(p)?;
            }
            return Ok(Self::Compare(cli.compare));
        }
        Ok(Self::Trace(Box::new(Plan::resolve(cli)?)))
    }
}

impl Plan {
    /// Resolves and checks a tracing command line; touches no file.
    pub fn resolve(cli: cli::Cli) -> Result<Self, PlanError> {
        let calls = checks::calls(&cli.calls)?;
        if !(4096..=MAX_RINGBUF_BYTES).contains(&cli.ringbuf_size)
            || !cli.ringbuf_size.is_power_of_two()
        {
            return usage(format!(
                "--ringbuf-size must be a power of two from 4096 to {MAX_RINGBUF_BYTES} bytes, \
                 not {}",
                cli.ringbuf_size
            ));
        }
        let system_wide = cli.system_wide();
        let target = target(&cli)?;
        checks::freq(cli.freq)?;
        let outputs = outputs(&cli)?;
        checks::distinct(&outputs)?;
        if cli.bounded {
            let others: Vec<_> = outputs
                .all()
                .iter()
                .map(|(o, _)| *o)
                .filter(|o| !matches!(*o, "-o" | "--csv" | "--findings"))
                .collect();
            if !others.is_empty() {
                return usage(format!(
                    "--bounded keeps no call in memory: of the per-call outputs it writes only \
                     --csv and --findings, not {}",
                    others.join(", ")
                ));
            }
        }
        if cli.freq == 0 && (outputs.folded.is_some() || outputs.flamegraph.is_some()) {
            return usage("--folded and --flamegraph need CPU samples: drop --freq 0");
        }
        let mode = mode(&cli, &outputs)?;
        let mut show = if cli.verbose {
            <Detail as clap::ValueEnum>::value_variants().to_vec()
        } else {
            cli.show.clone()
        };
        show.sort();
        show.dedup();
        let run_as = match &cli.user {
            Some(u) => Some(RunAs::named(u)),
            None => RunAs::default_for(
                std::env::var("SUDO_UID").ok().as_deref(),
                std::env::var("SUDO_GID").ok().as_deref(),
            )
            .transpose(),
        }
        .transpose()
        .map_err(|e| PlanError::Usage(format!("{e:#}")))?
        .filter(|_| matches!(target, Target::Command(_)));
        let label = cli.label.clone().unwrap_or_else(|| match &target {
            Target::Command(argv) => run_label(argv),
            Target::All(f) => f.describe(),
            Target::Pids(p) => format!(
                "pid {}",
                p.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ),
        });
        Ok(Self {
            target,
            calls,
            mode,
            ringbuf_bytes: cli.ringbuf_size,
            self_stats: cli.self_stats,
            thread_slots: cli.thread_slots,
            cow_threads: cli.cow_threads,
            // CPU samples of every process would flood the record buffer.
            freq: if system_wide { 0 } else { cli.freq },
            duration: cli.duration,
            bounded: cli.bounded,
            verbose: cli.verbose,
            show,
            label,
            outputs,
            run_as,
        })
    }

    /// True when the report shows `d`.
    pub fn shows(&self, d: Detail) -> bool {
        self.show.contains(&d)
    }
}

/// What to trace: pids that exist and may be traced, or a command that can be started.
fn target(cli: &cli::Cli) -> Result<Target, PlanError> {
    let target = match (cli.pid.is_empty(), cli.command.is_empty()) {
        _ if cli.system_wide() => Target::All(
            crate::capture::system::Filter::resolve(cli.comm.as_deref(), cli.cgroup.as_deref())
                .map_err(|e| PlanError::Usage(e.to_string()))?,
        ),
        (false, true) => Target::Pids(cli.pid.clone()),
        (true, false) => Target::Command(cli.command.clone()),
        _ => return usage("say what to trace: -p PID, -- COMMAND ARGS…, or --all (see --help)"),
    };
    match &target {
        Target::All(_) => {}
        Target::Pids(p) => inputs::check_pids(p).map_err(|e| PlanError::Usage(format!("{e:#}")))?,
        Target::Command(argv) => checks::command(&argv[0])?,
    }
    Ok(target)
}

/// The kernel's mode: per-call records unless asked otherwise, and never a mode that cannot
/// feed the outputs asked for.
fn mode(cli: &cli::Cli, outputs: &Outputs) -> Result<Mode, PlanError> {
    let mode = match cli.mode {
        // Every process on the machine: sums in the kernel, never a record per call.
        _ if cli.system_wide() && (outputs.need_records() || cli.mode != cli::CliMode::Auto) => {
            return usage(
                "--all, --comm and --cgroup run in summary mode: drop --mode and the per-call \
                 outputs",
            );
        }
        _ if cli.system_wide() => Mode::Summary,
        cli::CliMode::Auto if cli.self_stats && !outputs.need_records() => Mode::Summary,
        cli::CliMode::Auto | cli::CliMode::PerCall => Mode::PerCall,
        cli::CliMode::Summary => Mode::Summary,
        cli::CliMode::Both => Mode::Both,
        cli::CliMode::Floor => Mode::Floor,
    };
    if outputs.need_records() && !mode.per_call() {
        return usage(
            "--findings, --csv, --summary-csv, --json, --trace, --model-json, \
             --movement-json, --folded and --flamegraph need per-call records: use --mode \
             auto, per-call or both",
        );
    }
    Ok(mode)
}

fn outputs(cli: &cli::Cli) -> Result<Outputs, PlanError> {
    let d = |p: &Option<PathBuf>| -> Result<Option<Dest>, PlanError> {
        p.as_deref()
            .map(|p| {
                let d = Dest::of(p);
                if let Dest::File(f) = &d {
                    checks::writable(f)?;
                }
                Ok(d)
            })
            .transpose()
    };
    Ok(Outputs {
        report: d(&cli.output)?,
        findings: d(&cli.findings)?,
        csv: d(&cli.csv)?,
        summary_csv: d(&cli.summary_csv)?,
        json: d(&cli.json)?,
        trace: d(&cli.trace)?,
        model_json: d(&cli.model_json)?,
        movement_json: d(&cli.movement_json)?,
        folded: d(&cli.folded)?,
        flamegraph: d(&cli.flamegraph)?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn plan(args: &[&str]) -> Result<Plan, PlanError> {
        let cli = cli::Cli::try_parse_from(std::iter::once("profiler").chain(args.iter().copied()))
            .expect("parses");
        Plan::resolve(cli)
    }

    #[test]
    fn the_mode_is_typed_and_its_bits_come_last() {
        let p = plan(&["--", "true"]).expect("plan");
        assert_eq!(p.mode, Mode::PerCall);
        assert_eq!(p.mode.kernel_bits(), probe_common::mode::RECORDS);
        let p = plan(&["--self-stats", "--", "true"]).expect("plan");
        assert_eq!(p.mode, Mode::Summary);
        assert_eq!(
            Mode::Both.kernel_bits(),
            probe_common::mode::RECORDS | probe_common::mode::AGGREGATE
        );
        let e = plan(&["--mode", "summary", "--findings", "f.json", "--", "true"])
            .expect_err("summary cannot feed --findings");
        assert!(e.to_string().contains("need per-call records"), "{e}");
    }

    #[test]
    fn dash_is_stdout_and_bounded_keeps_only_csv_and_findings() {
        let p = plan(&["--bounded", "--csv", "-", "--", "true"]).expect("plan");
        assert_eq!(p.outputs.csv, Some(Dest::Stdout));
        assert!(plan(&["--bounded", "--findings", "f.json", "--", "true"]).is_ok());
        let e = plan(&["--bounded", "--json", "j", "--", "true"]).expect_err("json");
        assert!(e.to_string().contains("not --json"), "{e}");
    }

    #[test]
    fn verbose_shows_every_detail() {
        let p = plan(&["-v", "--", "true"]).expect("plan");
        assert!(p.shows(Detail::Hooks) && p.shows(Detail::Samples));
        let p = plan(&["--show", "calls,threads", "--", "true"]).expect("plan");
        assert!(p.shows(Detail::Calls) && p.shows(Detail::Threads));
        assert!(!p.shows(Detail::Hooks));
        assert_eq!(plan(&["--", "true"]).expect("plan").show, vec![]);
    }
}
