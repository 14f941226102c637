//! Command-line entry of the profiler: plan → capture → analyze → render.
use std::process::ExitCode;

use clap::Parser as _;
use profiler::{
    analyze::{findings, movement::Cpu},
    capture::{self, launch::Exit, progress::Progress, session::EndReason},
    plan::{
        Job, Plan,
        cli::Cli,
        serve::{ServeCli, ServePlan},
    },
    render::{self, Writers},
};

/// The command line of either mode.
enum Parsed {
    Trace(Box<Cli>),
    Serve(Box<ServeCli>),
}

fn main() -> ExitCode {
    // `profiler serve …` is a mode of its own, with its own options.
    let serving = std::env::args_os().nth(1).is_some_and(|a| a == "serve");
    let parsed = if serving {
        ServeCli::try_parse_from(std::env::args_os().skip(1)).map(|c| Parsed::Serve(Box::new(c)))
    } else {
        Cli::try_parse().map(|c| Parsed::Trace(Box::new(c)))
    };
    let parsed = match parsed {
        Ok(p) => p,
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
    let job = match parsed {
        Parsed::Serve(cli) => ServePlan::resolve(*cli).map(|p| Job::Serve(Box::new(p))),
        Parsed::Trace(cli) => Job::resolve(*cli),
    };
    let job = match job {
        Ok(j) => j,
        Err(e) => {
            eprintln!("profiler: error: {e}");
            return ExitCode::from(2);
        }
    };
    let run = match job {
        Job::Compare(files) => render::compare(&files).map(|_| ExitCode::SUCCESS),
        Job::Trace(plan) => trace(&plan),
        Job::Serve(plan) => profiler::serve::run(&plan).map(|_| ExitCode::SUCCESS),
    };
    run.unwrap_or_else(|e| {
        eprintln!("profiler: error: {e:#}");
        ExitCode::from(2)
    })
}

fn trace(plan: &Plan) -> anyhow::Result<ExitCode> {
    let mut writers = Writers::open(plan)?;
    let mut progress = None;
    let mut data = capture::capture(plan, writers.csv_stream.take(), |hooks, pids| {
        render::banner(plan, hooks, pids, &profiler::plan::target::comm_of);
        // A traced command may write to the terminal too: the progress line is for `-p` runs.
        progress = Some(Progress::start(matches!(
            plan.target,
            capture::session::Target::Pids(_)
        )));
    })?;
    drop(progress);
    let cpu = match data.result.end {
        EndReason::CommandExited(_) => children_cpu(),
        _ => None,
    };
    let found = findings::analyze(plan, &data, cpu);
    let failed = render::render(plan, &found, &mut data, writers)?;
    if !failed.is_empty() {
        for e in &failed {
            eprintln!("profiler: error: {e:#}");
        }
        return Ok(ExitCode::from(OUTPUT_FAILED));
    }
    Ok(match data.result.end {
        EndReason::CommandExited(Exit::Code(c)) => ExitCode::from(c.clamp(0, 255) as u8),
        EndReason::CommandExited(Exit::Signal(s)) => ExitCode::from(128 + (s as u8 & 0x7f)),
        EndReason::TargetsGone | EndReason::Duration | EndReason::Interrupted => ExitCode::SUCCESS,
    })
}

/// Exit status of a run that was traced and reported, but whose output could not be written.
const OUTPUT_FAILED: u8 = 3;

/// CPU time of the finished children of the profiler: the traced command.
fn children_cpu() -> Option<Cpu> {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).ok()?;
    let ns =
        |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1_000;
    Some(Cpu {
        user_ns: ns(u.user_time()),
        system_ns: ns(u.system_time()),
    })
}
