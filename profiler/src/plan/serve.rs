//! `profiler serve`: its command line and the plan resolved from it (checked before anything
//! is attached).
use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;

use crate::{
    capture::system::Filter,
    plan::{PlanError, checks},
    syscalls::{self, Call},
};

const EXAMPLES: &str = "\
EXAMPLES:
  profiler serve                                  every process, metrics on 127.0.0.1:9464
  profiler serve --listen 0.0.0.0:9464            reachable from a Prometheus elsewhere
  profiler serve --comm nginx --max-series 500    only nginx, at most 500 label sets

EXIT STATUS:
  0 after SIGTERM or SIGINT; 2: a usage or set-up error (nothing was attached).";

/// Runs until stopped, tracing every process (or those of --comm, --cgroup) in summary mode,
/// and serves their calls' counts, bytes and wait and copy times at /metrics in the Prometheus
/// text format (and `ok` at /healthz).
#[derive(Debug, Parser)]
#[command(name = "profiler serve", bin_name = "profiler serve", after_help = EXAMPLES)]
pub struct ServeCli {
    /// Address and port of the HTTP endpoint (port 0: any free port, printed at the start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,

    /// Trace only these running processes and the children they fork (comma-separated pids).
    #[arg(short, long, value_delimiter = ',', conflicts_with_all = ["comm", "cgroup"])]
    pub pid: Vec<u32>,

    /// Trace only threads of this command name.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,

    /// Trace only processes of this cgroup v2 directory.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,

    /// Calls to trace, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = syscalls::DEFAULT.iter().map(|s| s.to_string()))]
    pub calls: Vec<String>,

    /// The most label sets (command, call, model) exported; the rest are summed under
    /// comm="other".
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub max_series: usize,
}

/// A resolved `serve` run.
#[derive(Clone, Debug)]
pub struct ServePlan {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Which processes: the kernel's filter, or (`None`) the pids and their children.
    pub filter: Option<Filter>,
    /// With no filter, the processes traced.
    pub pids: Vec<u32>,
    /// Calls to trace.
    pub calls: Vec<&'static Call>,
    /// The most label sets.
    pub max_series: usize,
}

impl ServePlan {
    /// Resolves and checks a `serve` command line; touches nothing.
    pub fn resolve(cli: ServeCli) -> Result<Self, PlanError> {
        if cli.max_series < 2 {
            return Err(PlanError::Usage(format!(
                "--max-series must be at least 2 (one label set and comm=\"other\"), not {}",
                cli.max_series
            )));
        }
        Ok(Self {
            listen: cli.listen,
            filter: if cli.pid.is_empty() {
                Some(
                    Filter::resolve(cli.comm.as_deref(), cli.cgroup.as_deref())
                        .map_err(|e| PlanError::Usage(e.to_string()))?,
                )
            } else {
                crate::plan::inputs::check_pids(&cli.pid)
                    .map_err(|e| PlanError::Usage(format!("{e:#}")))?;
                None
            },
            pids: cli.pid.clone(),
            calls: checks::calls(&cli.calls)?,
            max_series: cli.max_series,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_lines_resolve_or_name_what_to_change() {
        let p = ServePlan::resolve(ServeCli::parse_from(["serve", "--listen", "127.0.0.1:0"]))
            .expect("plan");
        assert_eq!(p.listen.port(), 0);
        assert_eq!(p.max_series, 2000);
        assert!(!p.calls.is_empty());
        let e = ServePlan::resolve(ServeCli::parse_from(["serve", "--max-series", "1"]))
            .expect_err("too few");
        assert!(e.to_string().contains("--max-series"), "{e}");
        assert!(p.filter.is_some() && p.pids.is_empty());
        // The test runner's parent: a live process of the same user.
        let parent = nix::unistd::getppid().as_raw() as u32;
        let arg = parent.to_string();
        let p = ServePlan::resolve(ServeCli::parse_from(["serve", "-p", &arg])).expect("plan");
        assert_eq!((p.filter, p.pids), (None, vec![parent]));
        assert!(ServeCli::try_parse_from(["serve", "-p", "1", "--comm", "x"]).is_err());
        assert!(ServeCli::try_parse_from(["serve", "--listen", "nowhere"]).is_err());
    }
}
