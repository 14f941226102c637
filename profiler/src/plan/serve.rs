//! `profiler serve`: its command line and the plan resolved from it (checked before anything
//! is attached).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

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
  profiler serve --otlp-endpoint http://collector:4318/v1/metrics
                                                  also push OTLP metrics every 10s

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

    /// Also push the same metrics to an OpenTelemetry collector: OTLP/HTTP protobuf, POST to
    /// this full URL (http:// only), e.g. http://127.0.0.1:4318/v1/metrics.
    #[arg(long, value_name = "URL", value_parser = Endpoint::parse)]
    pub otlp_endpoint: Option<Endpoint>,

    /// Time between two OTLP pushes (one more is sent at the stop).
    #[arg(long, value_name = "DURATION", default_value = "10s", requires = "otlp_endpoint",
          value_parser = crate::plan::inputs::parse_duration)]
    pub otlp_interval: Duration,
}

/// An OTLP/HTTP endpoint: where to connect and what to POST to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given.
    pub url: String,
    /// Host name or address to connect to (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header: the URL's authority.
    pub authority: String,
    /// The request target: the URL's path and query (`/` when it has none).
    pub path: String,
}

impl Endpoint {
    /// Parses an `http://host[:port][/path]` URL; names what to change otherwise.
    pub fn parse(url: &str) -> Result<Self, String> {
        let example = "such as http://127.0.0.1:4318/v1/metrics";
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(format!(
                "https is not supported: give an http:// URL ({example}), e.g. of a collector on this host"
            ));
        }
        if !lower.starts_with("http://") {
            return Err(format!("`{url}` is not an http:// URL ({example})"));
        }
        let rest = &url["http://".len()..];
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.contains('@') || url.contains(char::is_whitespace) || url.contains('#') {
            return Err(format!(
                "`{url}` has user info, spaces or a fragment: give a plain URL ({example})"
            ));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, p) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("`{url}`: an IPv6 address needs its closing `]`"))?;
                (h, p.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(format!("`{url}` names no host ({example})"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("`{url}`: `{p}` is not a port (1-65535)"))?,
        };
        Ok(Self {
            url: url.to_string(),
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            path,
        })
    }
}

/// Where and how often to push OTLP metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpPlan {
    pub endpoint: Endpoint,
    pub interval: Duration,
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
    /// With `--otlp-endpoint`, the OTLP push.
    pub otlp: Option<OtlpPlan>,
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
            otlp: cli.otlp_endpoint.map(|endpoint| OtlpPlan {
                endpoint,
                interval: cli.otlp_interval,
            }),
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
        assert_eq!(p.otlp, None);
    }

    #[test]
    fn otlp_endpoints_are_plain_http_urls() {
        let p = ServePlan::resolve(ServeCli::parse_from([
            "serve",
            "--otlp-endpoint",
            "http://127.0.0.1:4318/v1/metrics",
            "--otlp-interval",
            "1s",
        ]))
        .expect("plan");
        let o = p.otlp.expect("an OTLP push");
        assert_eq!(o.interval, Duration::from_secs(1));
        let e = o.endpoint;
        assert_eq!(
            (
                e.host.as_str(),
                e.port,
                e.authority.as_str(),
                e.path.as_str()
            ),
            ("127.0.0.1", 4318, "127.0.0.1:4318", "/v1/metrics")
        );
        let e = Endpoint::parse("HTTP://[::1]:9/x?y=1").expect("v6");
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 9, "/x?y=1")
        );
        let e = Endpoint::parse("http://collector").expect("no port");
        assert_eq!((e.port, e.path.as_str()), (80, "/"));
        let p = ServePlan::resolve(ServeCli::parse_from([
            "serve",
            "--otlp-endpoint",
            "http://c",
        ]))
        .expect("plan");
        assert_eq!(p.otlp.map(|o| o.interval), Some(Duration::from_secs(10)));
        for (bad, says) in [
            ("https://c:4318/v1/metrics", "https is not supported"),
            ("c:4318/v1/metrics", "not an http:// URL"),
            ("http://:4318/v1/metrics", "names no host"),
            ("http://c:0/", "not a port"),
            ("http://c:99999/", "not a port"),
            ("http://u@c/", "user info"),
            ("http://[::1/", "closing"),
        ] {
            let e = Endpoint::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        // The interval needs an endpoint, and is never zero.
        assert!(ServeCli::try_parse_from(["serve", "--otlp-interval", "1s"]).is_err());
        let zero = [
            "serve",
            "--otlp-endpoint",
            "http://c/",
            "--otlp-interval",
            "0s",
        ];
        assert!(ServeCli::try_parse_from(zero).is_err());
    }
}
