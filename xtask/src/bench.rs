//! `cargo xtask bench`: what tracing costs. Interleaved, repeated runs of syscall-heavy and
//! realistic workloads untraced, under the profiler's modes, and under bpftrace, `perf trace`
//! and `strace`; plus the cost to an untraced bystander and each kernel program's ns per run.
//! Writes `BENCHMARKS.md`. A benchmark, never a pass/fail test.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use workloads::spread::median_min_max;
use workloads::truth::Truth;

mod startstop;

/// One benchmark workload.
struct Load {
    /// Name in the tables.
    name: &'static str,
    /// Arguments of the `workloads` binary.
    args: Vec<String>,
    /// Arguments for the slow tracers (`perf trace`, `strace`): fewer calls of the same loop,
    /// so that a run stays within seconds; ratios are per call.
    slow_args: Vec<String>,
    /// Calls traced, comma-separated tracepoint names.
    calls: &'static str,
    /// Syscall-heavy (target ≤ 2×) or realistic (target ≤ 1.05×).
    heavy: bool,
}

/// Who traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    Untraced,
    Floor,
    Summary,
    PerCall,
    Bpftrace,
    PerfTrace,
    Strace,
}

const VARIANTS: [Variant; 7] = [
    Variant::Untraced,
    Variant::Floor,
    Variant::Summary,
    Variant::PerCall,
    Variant::Bpftrace,
    Variant::PerfTrace,
    Variant::Strace,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Floor => "floor (our hooks, empty programs)",
            Self::Summary => "profiler summary mode",
            Self::PerCall => "profiler per-call mode",
            Self::Bpftrace => "bpftrace (enter→exit map)",
            Self::PerfTrace => "perf trace -s",
            Self::Strace => "strace -c -f",
        }
    }

    fn slow(self) -> bool {
        matches!(self, Self::PerfTrace | Self::Strace)
    }

    /// The tool binary it needs and the Debian package that has it.
    fn tool(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Bpftrace => Some(("bpftrace", "bpftrace")),
            Self::PerfTrace => Some(("perf", "linux-perf")),
            Self::Strace => Some(("strace", "strace")),
            _ => None,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
struct Sample {
    /// The workload's own time for its loop, ns.
    wall_ns: u64,
    /// Calls of the traced kinds the workload made.
    calls: u64,
    /// Records the tool reported lost (None: the tool cannot lose any, or does not say).
    lost: Option<u64>,
    /// CPU time of the tool and its child together, ns.
    cpu_ns: u64,
    /// Peak RSS of the tool or its child, KiB.
    max_rss_kib: u64,
    /// The profiler's self-reported CPU ms and peak RSS KiB.
    own: Option<(f64, u64)>,
}

/// Statistics run of one workload under one mode: (program, runs, ns per run) each.
type ProgramRuns = (String, Variant, Vec<(String, u64, f64)>);

struct Bench {
    root: PathBuf,
    bin: PathBuf,
    scratch: PathBuf,
    missing: BTreeMap<Variant, String>,
    /// The CPU every traced workload runs on (the last one; none on a one-CPU machine).
    pin: Option<usize>,
}

/// Runs the benchmark and writes `BENCHMARKS.md`.
pub fn run(reps: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = crate::workspace();
    let bin = root.join("target/release");
    let scratch_dir = crate::scratch("bench")?;
    let scratch = scratch_dir.path().to_path_buf();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut b = Bench {
        missing: ensure_tools(),
        root,
        bin,
        scratch,
        pin: (cpus > 1).then(|| cpus - 1),
    };
    let loads = loads(&b);
    let load_before = loadavg();
    let mut samples: BTreeMap<(usize, Variant), Vec<Sample>> = BTreeMap::new();
    let mut bystander: BTreeMap<Variant, Vec<f64>> = BTreeMap::new();
    let mut bystander_other: BTreeMap<Scope, Vec<f64>> = BTreeMap::new();
    let mut start_stop: BTreeMap<startstop::Starter, Vec<startstop::Timing>> = BTreeMap::new();
    let variants: Vec<Variant> = VARIANTS
        .iter()
        .copied()
        .filter(|v| !b.missing.contains_key(v))
        .collect();
    for rep in 0..reps {
        // Interleaved: every variant of every workload once per round, the order rotated each
        // round, so that the machine's other load falls on all variants alike.
        for (li, load) in loads.iter().enumerate() {
            for k in 0..variants.len() {
                let v = variants[(k + rep + li) % variants.len()];
                eprintln!(
                    "bench: round {}/{reps}, {} under {}",
                    rep + 1,
                    load.name,
                    v.name()
                );
                match b.run_one(load, v, false) {
                    Ok((s, _)) => samples.entry((li, v)).or_default().push(s),
                    Err(e) => eprintln!("bench: {} under {} failed: {e:#}", load.name, v.name()),
                }
            }
        }
        for k in 0..variants.len() {
            let v = variants[(k + rep) % variants.len()];
            match b.bystander(v, Scope::Target) {
                Ok(ns) => bystander.entry(v).or_default().push(ns),
                Err(e) => eprintln!("bench: bystander under {} failed: {e:#}", v.name()),
            }
        }
        for scope in [Scope::TargetTracepoints, Scope::All, Scope::AllOtherCommand] {
            match b.bystander(Variant::Summary, scope) {
                Ok(ns) => bystander_other.entry(scope).or_default().push(ns),
                Err(e) => eprintln!("bench: bystander under {} failed: {e:#}", scope.row()),
            }
        }
        // Start and stop: three times per round, each tool in a rotated order.
        for k in 0..3 * startstop::STARTERS.len() {
            let s = startstop::STARTERS[(k + rep) % startstop::STARTERS.len()];
            if s == startstop::Starter::Bpftrace && b.missing.contains_key(&Variant::Bpftrace) {
                continue;
            }
            match startstop::measure(&b.bin.join("profiler"), s) {
                Ok(t) => start_stop.entry(s).or_default().push(t),
                Err(e) => eprintln!("bench: start and stop under {s:?} failed: {e:#}"),
            }
        }
    }
    // Kernel program statistics: one more run of each profiler mode, statistics on.
    let mut programs: Vec<ProgramRuns> = Vec::new();
    for load in &loads {
        for v in [Variant::Floor, Variant::Summary, Variant::PerCall] {
            match b.run_one(load, v, true) {
                Ok((_, out)) => programs.push((load.name.to_string(), v, parse_programs(&out))),
                Err(e) => eprintln!("bench: statistics run failed: {e:#}"),
            }
        }
    }
    b.missing.retain(|_, m| !m.is_empty());
    let mut md = render(
        &b,
        &loads,
        &samples,
        (&bystander, &bystander_other),
        &programs,
        reps,
        (load_before, loadavg()),
        started.elapsed(),
    );
    let start_stop: Vec<_> = start_stop.into_iter().collect();
    startstop::render(&mut md, &start_stop);
    let path = b.root.join("BENCHMARKS.md");
    std::fs::write(&path, &md).with_context(|| format!("cannot write {}", path.display()))?;
    drop(scratch_dir);
    println!("{md}");
    eprintln!(
        "bench: wrote {} in {:.0}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn loads(b: &Bench) -> Vec<Load> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // Unpaced: the sender sends as fast as the receiver takes.
    let blocking = |size: &str, count: &str| {
        s(&[
            "blocking",
            "--interval",
            "0s",
            "--size",
            size,
            "--count",
            count,
        ])
    };
    let file = b.scratch.join("read.bin");
    let file = file.to_string_lossy().into_owned();
    vec![
        Load {
            name: "eagain: non-blocking recvfrom → EAGAIN",
            args: s(&["eagain", "--count", "200000"]),
            slow_args: s(&["eagain", "--count", "20000"]),
            calls: "recvfrom",
            heavy: true,
        },
        Load {
            name: "blocking 64 B messages, unpaced",
            args: blocking("64", "50000"),
            slow_args: blocking("64", "5000"),
            calls: "recvfrom",
            heavy: true,
        },
        Load {
            name: "readloop: 4 KiB reads of a cached 64 MiB file",
            args: s(&[
                "readloop", "--size", "64MiB", "--passes", "2", "--file", &file,
            ]),
            slow_args: s(&[
                "readloop", "--size", "16MiB", "--passes", "1", "--file", &file,
            ]),
            calls: "read",
            heavy: true,
        },
        Load {
            name: "blocking 64 KiB messages, unpaced",
            args: blocking("64KiB", "20000"),
            slow_args: Vec::new(),
            calls: "recvfrom",
            heavy: false,
        },
        Load {
            name: "splice 256 MiB file → socket",
            args: s(&["splice", "--size", "256MiB"]),
            slow_args: Vec::new(),
            calls: "splice,recvfrom",
            heavy: false,
        },
    ]
}

/// Installs the other tracers when missing; returns what is still missing and why.
fn ensure_tools() -> BTreeMap<Variant, String> {
    let mut missing = BTreeMap::new();
    let absent: Vec<(Variant, &str, &str)> = VARIANTS
        .iter()
        .filter_map(|v| v.tool().map(|(b, p)| (*v, b, p)))
        .filter(|(_, b, _)| !works(b))
        .collect();
    if !absent.is_empty() {
        let pkgs: Vec<&str> = absent.iter().map(|(_, _, p)| *p).collect();
        eprintln!("bench: installing {}", pkgs.join(" "));
        let _ = Command::new("apt-get")
            .args(["install", "-y"])
            .args(&pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status();
    }
    for (v, bin, pkg) in absent {
        if !works(bin) {
            missing.insert(
                v,
                format!("`{bin}` is missing and `apt-get install -y {pkg}` did not install it"),
            );
        }
    }
    missing
}

fn works(bin: &str) -> bool {
    let arg = if bin == "strace" { "-V" } else { "--version" };
    Command::new(bin)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn bpftrace_script(calls: &str) -> String {
    let probes = |dir: &str| {
        calls
            .split(',')
            .map(|c| format!("tracepoint:syscalls:sys_{dir}_{c}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{} /pid == cpid/ {{ @start[tid] = nsecs; }}\n\
         {} /@start[tid]/ {{ @ns[probe] = hist(nsecs - @start[tid]); \
         @bytes[probe] = sum(args->ret > 0 ? args->ret : 0); delete(@start[tid]); }}\n",
        probes("enter"),
        probes("exit")
    )
}

impl Bench {
    /// The command line of `target` traced by `v` (calls: comma-separated call names).
    fn command(&self, v: Variant, calls: &str, target: &[String], stats: bool) -> Command {
        let profiler = |mode: &str| {
            let mut c = Command::new(self.bin.join("profiler"));
            c.args(["--mode", mode, "--calls", calls]);
            if stats {
                c.arg("--self-stats");
            }
            c.arg("--").args(target);
            c
        };
        match v {
            Variant::Untraced => {
                let mut c = Command::new(&target[0]);
                c.args(&target[1..]);
                c
            }
            Variant::Floor => profiler("floor"),
            Variant::Summary => profiler("summary"),
            Variant::PerCall => profiler("per-call"),
            Variant::Bpftrace => {
                let mut c = Command::new("bpftrace");
                c.arg("-e")
                    .arg(bpftrace_script(calls))
                    .arg("-c")
                    .arg(target.join(" "));
                c
            }
            Variant::PerfTrace => {
                let mut c = Command::new("perf");
                c.args(["trace", "-s", "-e", calls, "--"]).args(target);
                c
            }
            Variant::Strace => {
                let mut c = Command::new("strace");
                c.args(["-c", "-f", "-e"])
                    .arg(format!("trace={calls}"))
                    .arg("--")
                    .args(target);
                c
            }
        }
    }

    /// Runs one load under one variant; returns the sample and the tool's output.
    fn run_one(&self, load: &Load, v: Variant, stats: bool) -> anyhow::Result<(Sample, String)> {
        let truth_path = self.scratch.join("truth.json");
        let _ = std::fs::remove_file(&truth_path);
        let args = if v.slow() && !load.slow_args.is_empty() {
            &load.slow_args
        } else {
            &load.args
        };
        let mut target: Vec<String> = vec![self.bin.join("workloads").to_string_lossy().into()];
        target.extend(args.iter().cloned());
        target.push("--truth".into());
        target.push(truth_path.to_string_lossy().into());
        if let Some(cpu) = self.pin {
            target.push("--cpu".into());
            target.push(cpu.to_string());
        }
        let cmd = self.command(v, load.calls, &target, stats);
        let (out, cpu_ns, max_rss_kib) = spawn_measured(cmd, &self.scratch, TIMEOUT)?;
        let truth = Truth::read(&truth_path)
            .with_context(|| format!("no truth from the workload; output:\n{out}"))?;
        let calls = if truth.loop_calls > 0 {
            truth.loop_calls
        } else {
            truth.calls.len() as u64
        };
        Ok((
            Sample {
                wall_ns: truth.wall_ns,
                calls,
                lost: parse_lost(v, &out),
                cpu_ns,
                max_rss_kib,
                own: parse_own(&out),
            },
            out,
        ))
    }

    /// ns per `getppid` of a bystander process while `v` traces a sleeping one (`scope`:
    /// how the profiler is told what to trace).
    fn bystander(&self, v: Variant, scope: Scope) -> anyhow::Result<f64> {
        let truth_path = self.scratch.join("bystander.json");
        let _ = std::fs::remove_file(&truth_path);
        let mut tool = if v == Variant::Untraced {
            None
        } else {
            let mut c = match scope {
                // The traced target: a process that sleeps while the bystander runs.
                // By its full path: bpftrace refuses a `-c` command whose name matches
                // more than one binary (/bin/sleep and /usr/bin/sleep on a merged /usr).
                Scope::Target | Scope::TargetTracepoints => {
                    self.command(v, "recvfrom", &[on_path("sleep")?, "4".into()], false)
                }
                Scope::All | Scope::AllOtherCommand => {
                    let mut c = Command::new(self.bin.join("profiler"));
                    c.args(["--all", "-d", "4s", "--calls", "recvfrom"]);
                    if scope == Scope::AllOtherCommand {
                        c.args(["--comm", "nginx"]);
                    }
                    c
                }
            };
            c.stdout(Stdio::null()).stderr(Stdio::null());
            if scope == Scope::TargetTracepoints {
                c.env("IOPROF_SYSCALL_HOOKS", "tracepoints");
            }
            Some(c.spawn().context("failed to start the tracer")?)
        };
        if let Some(t) = tool.as_mut() {
            // Time for the tracer to attach; one that has already ended measures nothing.
            std::thread::sleep(Duration::from_millis(1500));
            if let Some(status) = t.try_wait()? {
                anyhow::bail!("the tracer ended before the bystander ran ({status})");
            }
        }
        let mut c = Command::new(self.bin.join("workloads"));
        c.args(["getppid", "--count", "1000000", "--truth"])
            .arg(&truth_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = c.status().context("failed to run the bystander")?;
        if let Some(t) = tool.as_mut() {
            let _ = t.wait();
        }
        anyhow::ensure!(status.success(), "bystander failed");
        let t = Truth::read(&truth_path)?;
        Ok(t.wall_ns as f64 / t.loop_calls.max(1) as f64)
    }
}

/// The full path of program `name`, from `PATH`.
fn on_path(name: &str) -> anyhow::Result<String> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .with_context(|| format!("{name} is not on PATH"))
}

/// The bystander's ns per call: under each variant, and under the profiler traced otherwise.
type Bystanders<'a> = (
    &'a BTreeMap<Variant, Vec<f64>>,
    &'a BTreeMap<Scope, Vec<f64>>,
);

/// How the profiler is told what to trace while the bystander runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    /// A sleeping process, by command (the raw `sys_enter`/`sys_exit` pair).
    Target,
    /// A sleeping process, with the per-call tracepoints instead.
    TargetTracepoints,
    /// Every process (`--all`): the bystander is in scope, its call is not traced.
    All,
    /// Every process of another command (`--all --comm nginx`): the bystander is filtered out
    /// in the kernel.
    AllOtherCommand,
}

impl Scope {
    fn row(self) -> &'static str {
        match self {
            Self::Target => "profiler summary mode",
            Self::TargetTracepoints => {
                "profiler summary mode, per-call tracepoints instead of raw sys_enter/sys_exit"
            }
            Self::All => "profiler --all (every process; getppid not a traced call)",
            Self::AllOtherCommand => "profiler --all --comm nginx (the bystander filtered out)",
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a command with its output in a file; returns the output, the CPU time (ns) and peak
/// RSS (KiB) of the process and its children (`wait4`).
fn spawn_measured(
    mut cmd: Command,
    scratch: &Path,
    timeout: Duration,
) -> anyhow::Result<(String, u64, u64)> {
    let out_path = scratch.join("out.txt");
    let out = std::fs::File::create(&out_path)?;
    cmd.stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null());
    let child = cmd
        .spawn()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; `status` and `ru` are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        anyhow::ensure!(r == 0, "wait4 failed: {}", std::io::Error::last_os_error());
        if started.elapsed() > timeout {
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            anyhow::bail!("{cmd:?} took more than {}s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status}):\n{text}"
    );
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Ok((
        text,
        tv(ru.ru_utime) + tv(ru.ru_stime),
        ru.ru_maxrss.max(0) as u64,
    ))
}

/// Records lost, as each tool reports it.
fn parse_lost(v: Variant, out: &str) -> Option<u64> {
    match v {
        Variant::Floor | Variant::Summary | Variant::PerCall => out
            .lines()
            .find_map(|l| l.strip_prefix("profiler cost: records_lost="))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok()),
        // perf: "LOST 45 events!"; bpftrace: "Lost 12 events".
        Variant::PerfTrace | Variant::Bpftrace => Some(
            out.lines()
                .filter_map(|l| {
                    let l = l.trim();
                    let rest = l
                        .strip_prefix("LOST ")
                        .or_else(|| l.strip_prefix("Lost "))?;
                    rest.split_whitespace().next()?.parse::<u64>().ok()
                })
                .sum(),
        ),
        Variant::Untraced | Variant::Strace => None,
    }
}

/// The profiler's self-reported CPU ms and peak RSS KiB.
fn parse_own(out: &str) -> Option<(f64, u64)> {
    let line = out.lines().find(|l| l.starts_with("profiler cost: "))?;
    let get = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    Some((
        get("cpu_ms=")?.parse().ok()?,
        get("peak_rss_kib=")?.parse().ok()?,
    ))
}

/// `program NAME: runs=N ns_per_run=F` lines of a `--self-stats` run.
fn parse_programs(out: &str) -> Vec<(String, u64, f64)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("program ")?;
            let (name, kv) = rest.split_once(": ")?;
            let mut runs = None;
            let mut ns = None;
            for w in kv.split_whitespace() {
                if let Some(v) = w.strip_prefix("runs=") {
                    runs = v.parse().ok();
                } else if let Some(v) = w.strip_prefix("ns_per_run=") {
                    ns = v.parse().ok();
                }
            }
            Some((name.to_string(), runs?, ns?))
        })
        .filter(|(_, runs, _)| *runs > 0)
        .collect()
}

/// Median, min and max.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn machine_facts() -> Vec<(String, String)> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "?".into());
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap_or("0")
                .parse::<u64>()
                .unwrap_or(0)
                >> 20
        })
        .unwrap_or(0);
    let tool = |c: &str, a: &str| {
        Command::new(c)
            .arg(a)
            .output()
            .map(|o| {
                let t = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                t.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_else(|_| "missing".into())
    };
    vec![
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().to_string(),
        ),
        ("CPU".into(), cpu),
        (
            "cores".into(),
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into()),
        ),
        ("memory".into(), format!("{mem} GiB")),
        ("bpftrace".into(), tool("bpftrace", "--version")),
        ("perf".into(), tool("perf", "--version")),
        ("strace".into(), tool("strace", "-V")),
    ]
}

#[allow(clippy::too_many_arguments)]
fn render(
    b: &Bench,
    loads: &[Load],
    samples: &BTreeMap<(usize, Variant), Vec<Sample>>,
    (bystander, bystander_other): Bystanders,
    programs: &[ProgramRuns],
    reps: usize,
    load_avg: (String, String),
    took: Duration,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks: what tracing costs\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` ({reps} interleaved rounds, {:.0} s). Numbers are \
         medians with [min–max] over the rounds. A benchmark, not a test: nothing here passes \
         or fails.\n",
        took.as_secs_f64()
    );
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "| fact | value |\n|---|---|");
    for (k, v) in machine_facts() {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(
        md,
        "| load average (1, 5, 15 min) before → after | {} → {} |\n",
        load_avg.0, load_avg.1
    );
    let _ = writeln!(
        md,
        "Runs are interleaved (each round runs every variant of every workload once, in a \
         rotated order), so other load on the machine falls on all variants alike. A load \
         average well above the core count means the absolute numbers are noisy; compare \
         ratios within one table.\n"
    );
    if let Some(cpu) = b.pin {
        let _ = writeln!(
            md,
            "Every traced workload runs pinned to CPU {cpu} (`workloads --cpu {cpu}`: its \
             sender and receiver threads share it), under every variant alike; the tools run \
             unpinned. Unpinned, a two-thread workload's time depends on whether its threads \
             happen to share a CPU, which varied runs of the same variant by 4× here.\n"
        );
    }
    if !b.missing.is_empty() {
        let _ = writeln!(md, "Not measured:\n");
        for (v, why) in &b.missing {
            let _ = writeln!(md, "- {}: {why}", v.name());
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Traced workloads\n");
    let _ = writeln!(
        md,
        "Time is the workload's own clock around its loop. `ratio` is the median time per \
         call over the untraced median; `+ns/call` is what tracing added to each traced call; \
         `lost` is records the tool reported lost (`-`: the tool cannot lose records or does \
         not say); `CPU` is the CPU time of the tool and the workload together minus the \
         untraced workload's; `peak RSS` is the larger of the tool's and the workload's. \
         `perf trace` and `strace` run a tenth of the calls on the loop workloads (marked *), \
         so that a run takes seconds; per-call figures compare directly.\n"
    );
    let _ = writeln!(
        md,
        "| workload | variant | ns/call | ratio | +ns/call | calls/s | lost | CPU ms | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|"
    );
    let mut ratios: BTreeMap<(usize, Variant), f64> = BTreeMap::new();
    for (li, load) in loads.iter().enumerate() {
        let per_call = |s: &Sample| s.wall_ns as f64 / s.calls.max(1) as f64;
        let base = samples
            .get(&(li, Variant::Untraced))
            .and_then(|v| median_min_max(v.iter().map(per_call).collect()));
        let base_cpu = samples.get(&(li, Variant::Untraced)).and_then(|v| {
            median_min_max(
                v.iter()
                    .map(|s| s.cpu_ns as f64 / s.calls.max(1) as f64)
                    .collect(),
            )
        });
        for v in VARIANTS {
            let Some(ss) = samples.get(&(li, v)) else {
                continue;
            };
            let Some((med, lo, hi)) = median_min_max(ss.iter().map(per_call).collect()) else {
                continue;
            };
            let ratio = base.map(|(b, _, _)| med / b);
            if let Some(r) = ratio {
                ratios.insert((li, v), r);
            }
            let added = base.map(|(b, _, _)| med - b);
            let calls = ss[0].calls;
            let lost = ss
                .iter()
                .filter_map(|s| s.lost)
                .max()
                .map_or("-".to_string(), |l| l.to_string());
            let cpu = median_min_max(ss.iter().map(|s| s.cpu_ns as f64).collect())
                .map(|(c, _, _)| c)
                .unwrap_or(0.0);
            // The untraced CPU for the same number of calls.
            let cpu_extra = base_cpu.map_or(cpu, |(bc, _, _)| cpu - bc * calls as f64) / 1e6;
            let rss = ss.iter().map(|s| s.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
            let star = if v.slow() && !load.slow_args.is_empty() {
                "*"
            } else {
                ""
            };
            let _ = writeln!(
                md,
                "| {} | {}{star} | {med:.0} [{lo:.0}–{hi:.0}] | {} | {} | {:.0} | {lost} | {} | {rss:.1} |",
                load.name,
                v.name(),
                ratio.map_or("-".into(), |r| format!("{r:.2}×")),
                match (v, added) {
                    (Variant::Untraced, _) | (_, None) => "-".to_string(),
                    (_, Some(a)) => format!("{a:.0}"),
                },
                1e9 / med,
                if v == Variant::Untraced {
                    "-".to_string()
                } else {
                    format!("{cpu_extra:.1}")
                },
            );
        }
    }
    md.push('\n');

    let _ = writeln!(md, "## The profiler's own cost, self-reported\n");
    let _ = writeln!(
        md,
        "`profiler cost:` line of each run (`getrusage` of the profiler alone, without its \
         target).\n\n| workload | mode | profiler CPU ms | peak RSS MiB |\n|---|---|---|---|"
    );
    for (li, load) in loads.iter().enumerate() {
        for v in [Variant::Floor, Variant::Summary, Variant::PerCall] {
            let Some(ss) = samples.get(&(li, v)) else {
                continue;
            };
            let own: Vec<(f64, u64)> = ss.iter().filter_map(|s| s.own).collect();
            if let Some((cpu, lo, hi)) = median_min_max(own.iter().map(|o| o.0).collect()) {
                let rss = own.iter().map(|o| o.1).max().unwrap_or(0) as f64 / 1024.0;
                let _ = writeln!(
                    md,
                    "| {} | {} | {cpu:.1} [{lo:.1}–{hi:.1}] | {rss:.1} |",
                    load.name,
                    v.name()
                );
            }
        }
    }
    md.push('\n');

    let _ = writeln!(md, "## Cost to an untraced bystander\n");
    let _ = writeln!(
        md,
        "A `getppid` loop (1M calls) in a process nobody traces, while each tool traces a \
         sleeping process with the same call list (recvfrom).\n\n| variant | ns/getppid | added ns |\n|---|---|---|"
    );
    let by_base = bystander
        .get(&Variant::Untraced)
        .and_then(|v| median_min_max(v.clone()));
    for v in VARIANTS {
        let Some((med, lo, hi)) = bystander.get(&v).and_then(|x| median_min_max(x.clone())) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {} | {med:.0} [{lo:.0}–{hi:.0}] | {} |",
            v.name(),
            match (v, by_base) {
                (Variant::Untraced, _) | (_, None) => "-".to_string(),
                (_, Some((b, _, _))) => format!("{:.0}", med - b),
            }
        );
    }
    for (scope, ns) in bystander_other {
        if let (Some((med, lo, hi)), Some((b, _, _))) = (median_min_max(ns.clone()), by_base) {
            let _ = writeln!(
                md,
                "| {} | {med:.0} [{lo:.0}–{hi:.0}] | {:.0} |",
                scope.row(),
                med - b
            );
        }
    }
    md.push('\n');

    let _ = writeln!(md, "## Kernel programs: runs and ns per run\n");
    let _ = writeln!(
        md,
        "One extra run per workload and mode with `--self-stats` (the kernel's BPF run-time \
         statistics, on for that run only; they add their own clock reads to each run, so the \
         timed runs above are made without them). A call program runs for the traced calls of every process on the machine and returns at once for untraced ones, so its runs can exceed the workload's calls. Programs that did not run are left out.\n\n\
         | workload | mode | program | runs | ns/run |\n|---|---|---|---|---|"
    );
    for (load, v, progs) in programs {
        for (name, runs, ns) in progs {
            let _ = writeln!(md, "| {load} | {} | {name} | {runs} | {ns:.0} |", v.name());
        }
    }
    md.push('\n');

    let _ = writeln!(md, "## Against the targets\n");
    let _ = writeln!(
        md,
        "Where each missed target's time goes, measured, and what was tried: \
         [docs/overhead.md](docs/overhead.md#the-cost-targets-where-the-time-goes).\n"
    );
    let r = |li: usize, v: Variant| ratios.get(&(li, v)).copied();
    let fmt = |x: Option<f64>| x.map_or("not measured".into(), |x| format!("{x:.2}×"));
    for (li, load) in loads.iter().enumerate() {
        let (s, p) = (r(li, Variant::Summary), r(li, Variant::PerCall));
        let (ts, tp) = if load.heavy { (2.0, 2.5) } else { (1.05, 1.05) };
        let met = |x: Option<f64>, t: f64| match x {
            Some(x) if x <= t => "met",
            Some(_) => "NOT met",
            None => "not measured",
        };
        let fastest_other = [Variant::Bpftrace, Variant::PerfTrace, Variant::Strace]
            .iter()
            .filter_map(|v| r(li, *v).map(|x| (x, *v)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let faster = |x: Option<f64>| match (x, fastest_other) {
            (Some(x), Some((o, _))) if x < o => "yes",
            (Some(_), Some(_)) => "no",
            _ => "not measured",
        };
        let _ = writeln!(
            md,
            "- {}: summary {} (target ≤ {ts}×: {}), per-call {} (target ≤ {tp}×: {}); \
             faster than every other tool ({}): summary {}, per-call {}",
            load.name,
            fmt(s),
            met(s, ts),
            fmt(p),
            met(p, tp),
            fastest_other.map_or("none measured".into(), |(o, v)| format!(
                "the fastest, {}, {o:.2}×",
                v.name()
            )),
            faster(s),
            faster(p),
        );
    }
    if let (Some(b0), Some(s)) = (
        by_base,
        bystander
            .get(&Variant::Summary)
            .and_then(|x| median_min_max(x.clone())),
    ) {
        let added = s.0 - b0.0;
        let _ = writeln!(
            md,
            "- bystander: +{added:.0} ns per syscall under summary mode (target ≤ 100 ns: {})",
            if added <= 100.0 { "met" } else { "NOT met" }
        );
    }
    let lost_summary: u64 = samples
        .iter()
        .filter(|((_, v), _)| *v == Variant::Summary)
        .flat_map(|(_, ss)| ss.iter().filter_map(|s| s.lost))
        .sum();
    let _ = writeln!(
        md,
        "- records lost in summary mode, all runs: {lost_summary} (target 0)"
    );
    // Per-call losses depend on the rate: the target is none at 200k calls/s, so a workload
    // that runs at least that fast and loses nothing meets it.
    let mut clean_at_rate: Option<(&str, f64)> = None;
    for (li, load) in loads.iter().enumerate() {
        let Some(ss) = samples.get(&(li, Variant::PerCall)) else {
            continue;
        };
        let lost: u64 = ss.iter().filter_map(|s| s.lost).sum();
        let rate = median_min_max(
            ss.iter()
                .map(|s| s.calls as f64 * 1e9 / s.wall_ns.max(1) as f64)
                .collect(),
        )
        .map_or(0.0, |(m, _, _)| m);
        if lost == 0 && rate >= 200e3 && clean_at_rate.is_none_or(|(_, r)| rate > r) {
            clean_at_rate = Some((load.name, rate));
        }
        let _ = writeln!(
            md,
            "- records lost in per-call mode, {}: {lost} over {} runs at a median {:.0}k calls/s",
            load.name,
            ss.len(),
            rate / 1e3,
        );
    }
    let _ = writeln!(
        md,
        "- none lost in per-call mode at 200k calls/s: {}",
        clean_at_rate.map_or(
            "NOT shown (no workload ran that fast without loss)".into(),
            |(n, r)| { format!("met ({n}: none lost at {:.0}k calls/s)", r / 1e3) }
        )
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_outputs_are_parsed() {
        let out = "x\nprofiler cost: records_lost=7 cpu_ms=12.5 peak_rss_kib=2048\n\
                   program call_enter: runs=10 ns_per_run=99.5\nprogram idle: runs=0 ns_per_run=0.0\n";
        assert_eq!(parse_lost(Variant::Summary, out), Some(7));
        assert_eq!(parse_own(out), Some((12.5, 2048)));
        assert_eq!(
            parse_programs(out),
            vec![("call_enter".to_string(), 10, 99.5)]
        );
        assert_eq!(
            parse_lost(Variant::PerfTrace, "LOST 45 events!\nfoo\nLOST 5 events!"),
            Some(50)
        );
        assert_eq!(parse_lost(Variant::Strace, "LOST 45 events!"), None);
    }

    #[test]
    fn bpftrace_script_covers_every_call() {
        let s = bpftrace_script("splice,recvfrom");
        assert!(s.contains(
            "tracepoint:syscalls:sys_enter_splice,tracepoint:syscalls:sys_enter_recvfrom"
        ));
        assert!(s.contains("sys_exit_recvfrom /@start[tid]/"));
    }
}
