//! `cargo xtask profile METHOD` (the method against `read-write`) and `cargo xtask profile
//! zero-copy` (every file-moving method): the file is made and brought into the page cache
//! before anything is traced, every method then runs on it in interleaved rounds, and the
//! rounds are compared ([`crate::compare`]).
use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::Context as _;
use serde::Serialize;
use workloads::{clock::fmt_bytes, files, methods::Method, truth::Truth};

use crate::compare::{self, MethodRuns, RunNumbers, Verdict};

/// CPU samples a second per CPU for a 256 MiB file unless `--freq` is given: its transfer
/// takes a few tenths of a second here, so this gives some hundreds of samples, enough to count
/// the copies. A smaller file is sampled faster, up to [`MAX_HZ`].
const DEFAULT_HZ: u64 = 4999;
/// The fastest default rate (the kernel's limit is usually 100000; each sample costs the
/// traced threads a few microseconds).
const MAX_HZ: u64 = 19_999;

/// The sampling rate for a file of `size` bytes: about as many samples as 256 MiB at
/// [`DEFAULT_HZ`].
fn default_hz(size: u64) -> u64 {
    (DEFAULT_HZ * (256 << 20) / size.max(1)).clamp(DEFAULT_HZ, MAX_HZ)
}
/// Fewer samples than this in a run: the copy counts are too coarse to trust.
const MIN_SAMPLES: f64 = 200.0;
/// Rounds unless `--rounds` is given.
const DEFAULT_ROUNDS: usize = 3;
/// Profiler options the comparison sets itself for every run.
const OWN_OUTPUTS: [&str; 2] = ["--movement-json", "--folded"];
/// Profiler options that write files of one run: given by the user, they apply to the first
/// run of the first method only (the rounds after it would write over them).
const USER_OUTPUTS: [&str; 6] = [
    "--csv",
    "--summary-csv",
    "--json",
    "--trace",
    "--model-json",
    "--flamegraph",
];

/// The method a workload name runs, when a run of it is worth comparing with `read-write`.
pub fn compared_method(name: &str) -> Option<Method> {
    Method::from_name(name).filter(|m| *m != Method::ReadWrite)
}

/// Removes every `NAME VALUE` and `NAME=VALUE` from `args`; returns the last value.
pub fn take_option(args: &mut Vec<String>, name: &str) -> Option<String> {
    let mut value = None;
    let mut out = Vec::new();
    let mut it = std::mem::take(args).into_iter();
    while let Some(a) = it.next() {
        if a == name {
            value = it.next();
        } else if let Some(v) = a.strip_prefix(&format!("{name}=")) {
            value = Some(v.to_string());
        } else {
            out.push(a);
        }
    }
    *args = out;
    value
}

/// A comparison, set up: the file made, the options sorted.
pub(crate) struct Plan {
    bin: PathBuf,
    dir: PathBuf,
    file: PathBuf,
    size: u64,
    cold: bool,
    rounds: usize,
    hz: u64,
    /// The user's profiler options for every run.
    prof: Vec<String>,
    /// The user's output options, for the first run of the first method only.
    outputs: Vec<String>,
    /// Where the user asked for the workload's truth (of that same run).
    truth: Option<PathBuf>,
    /// Workload options for every run (`--file`, `--size` included).
    target: Vec<String>,
    /// Where `finish` writes the numbers and the verdicts as JSON.
    pub(crate) comparison_json: Option<PathBuf>,
}

impl Plan {
    /// Sorts the options, makes the file and brings it into the page cache; the runs go to
    /// `dir`, else to a new private folder that is kept.
    pub(crate) fn new(
        bin: &Path,
        prof: &[String],
        target: &[String],
        dir: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let mut prof = prof.to_vec();
        for o in OWN_OUTPUTS {
            anyhow::ensure!(
                take_option(&mut prof.clone(), o).is_none(),
                "{o}: the comparison writes its own for every run; see the folder it prints"
            );
        }
        let hz = take_option(&mut prof, "--freq")
            .map(|v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|&h| h > 0)
                    .with_context(|| format!("--freq {v}: give samples a second, at least 1"))
            })
            .transpose()?;
        let mut outputs = Vec::new();
        for o in USER_OUTPUTS {
            if let Some(v) = take_option(&mut prof, o) {
                outputs.extend([o.to_string(), v]);
            }
        }
        let mut target = target.to_vec();
        let truth = take_option(&mut target, "--truth").map(PathBuf::from);
        let rounds = match take_option(&mut target, "--rounds") {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1)
                .with_context(|| format!("--rounds {v}: give a number of rounds, at least 1"))?,
            None => DEFAULT_ROUNDS,
        };
        let comparison_json = take_option(&mut target, "--comparison-json").map(PathBuf::from);
        let size = match take_option(&mut target, "--size") {
            Some(s) => files::parse_size(&s).map_err(anyhow::Error::msg)?,
            None => 256 << 20,
        };
        let hz = hz.unwrap_or_else(|| default_hz(size));
        let file = take_option(&mut target, "--file").map(PathBuf::from);
        let cold = target.iter().any(|a| a == "--cold");
        // Made before anything is traced: no run ever pays for the making.
        let existed = match &file {
            Some(f) => f.exists(),
            None => files::cached_file(size)?.exists(),
        };
        let file = files::ensure_file(file.as_deref(), size)?;
        if !cold {
            files::warm(&file)?;
        }
        eprintln!(
            "xtask: the file to move: {} ({}, {}{}); nothing traced yet",
            file.display(),
            fmt_bytes(size),
            if existed { "already there" } else { "made now" },
            if cold {
                ", dropped from the page cache by every run"
            } else {
                ", read into the page cache"
            }
        );
        target.extend([
            "--file".to_string(),
            file.display().to_string(),
            "--size".to_string(),
            size.to_string(),
        ]);
        Ok(Self {
            bin: bin.to_path_buf(),
            dir: match dir {
                Some(d) => d,
                None => crate::scratch("zero-copy")?.keep(),
            },
            file,
            size,
            cold,
            rounds,
            hz,
            prof,
            outputs,
            truth,
            target,
            comparison_json,
        })
    }

    /// The file every run moves.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// The report of round `round` of `m`.
    fn report_path(&self, m: Method, round: usize) -> PathBuf {
        self.dir.join(format!("{}-{round}.txt", m.name()))
    }

    /// Runs `m` once under the profiler (its report, on either stream, kept in the folder)
    /// and reads its numbers.
    fn run(&self, m: Method, round: usize, user_outputs: bool) -> anyhow::Result<RunNumbers> {
        let stem = self.dir.join(format!("{}-{round}", m.name()));
        let json = stem.with_extension("json");
        let folded = stem.with_extension("folded");
        let report = self.report_path(m, round);
        let out = crate::create_new(&report)?;
        let mut cmd = Command::new(self.bin.join("profiler"));
        cmd.args(&self.prof);
        if user_outputs {
            cmd.args(&self.outputs);
        }
        cmd.args(["--freq", &self.hz.to_string()])
            .arg("--movement-json")
            .arg(&json)
            .arg("--folded")
            .arg(&folded)
            .args(["--label", m.name(), "--"])
            .arg(self.bin.join("workloads"))
            .arg(m.name())
            .args(&self.target)
            .arg("--truth")
            .arg(stem.with_extension("truth.json"))
            .stdout(out.try_clone()?)
            .stderr(out);
        let status = cmd.status().context("failed to start the profiler")?;
        anyhow::ensure!(
            status.success(),
            "the {} run failed ({status}); its report: {}",
            m.name(),
            report.display()
        );
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        let truth = Truth::read(&stem.with_extension("truth.json"))?;
        RunNumbers::read(
            m,
            &read(&json)?,
            &read(&folded)?,
            self.hz,
            (truth.bytes, truth.wall_ns),
        )
        .with_context(|| format!("{} is not a data-movement summary", json.display()))
    }

    /// Every method in every round, interleaved: round 1 runs each once in order, then round 2…
    pub(crate) fn rounds(&self, methods: &[Method]) -> anyhow::Result<Vec<MethodRuns>> {
        let mut out: Vec<MethodRuns> = methods
            .iter()
            .map(|m| MethodRuns {
                name: m.name().into(),
                runs: Vec::new(),
            })
            .collect();
        for round in 1..=self.rounds {
            for (i, &m) in methods.iter().enumerate() {
                let first = round == 1 && i == 0;
                let r = self.run(m, round, first)?;
                if let (true, Some(to)) = (first, &self.truth) {
                    let from = self.dir.join(format!("{}-1.truth.json", m.name()));
                    std::fs::copy(&from, to)
                        .with_context(|| format!("cannot write {}", to.display()))?;
                }
                eprintln!(
                    "xtask: round {round}/{}: {:<16} {:>5.0} MiB/s, {:.0} CPU samples",
                    self.rounds,
                    m.name(),
                    r.mib_s,
                    r.samples
                );
                out[i].runs.push(r);
            }
        }
        Ok(out)
    }

    /// The heading of the comparison.
    fn heading(&self, methods: usize) -> String {
        format!(
            "{} on the same {} {} file ({}), {} interleaved round{} each; median (min–max) of \
             the rounds; CPU sampled at {} Hz; every run's report in {}",
            if methods == 2 {
                "Against read + write"
            } else {
                "Every method"
            },
            if self.cold { "cold" } else { "warm" },
            fmt_bytes(self.size),
            self.file.display(),
            self.rounds,
            if self.rounds == 1 { "" } else { "s" },
            self.hz,
            self.dir.display()
        )
    }

    /// Prints the table and the verdicts, and writes them as JSON when asked.
    pub(crate) fn finish(&self, runs: &[MethodRuns]) -> anyhow::Result<()> {
        println!("\n{}\n", self.heading(runs.len()));
        let grid = compare::grid(runs);
        print!("{}", grid.text());
        let Some((base, rest)) = runs.split_first() else {
            return Ok(());
        };
        let verdicts: Vec<Verdict> = rest.iter().map(|m| compare::verdict(base, m)).collect();
        println!();
        for v in &verdicts {
            println!("{}", v.line);
        }
        let few = runs
            .iter()
            .filter(|m| m.spread(|r| r.samples).min < MIN_SAMPLES)
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>();
        if !few.is_empty() {
            println!(
                "note: fewer than {MIN_SAMPLES} CPU samples in a run of {}: the sampled copy \
                 times are coarse; give a higher --freq or a larger --size",
                few.join(", ")
            );
        }
        if let Some(path) = &self.comparison_json {
            let doc = Comparison {
                size: self.size,
                rounds: self.rounds,
                freq_hz: self.hz,
                methods: runs,
                grid: &grid,
                verdicts: &verdicts,
            };
            std::fs::write(path, serde_json::to_string_pretty(&doc)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// What `--comparison-json FILE` holds.
#[derive(Serialize)]
struct Comparison<'a> {
    size: u64,
    rounds: usize,
    freq_hz: u64,
    methods: &'a [MethodRuns],
    grid: &'a compare::Grid,
    verdicts: &'a [Verdict],
}

/// `cargo xtask profile METHOD`: the method and `read-write` in interleaved rounds; the
/// method's first report, then the comparison.
pub fn against_read_write(
    bin: &Path,
    m: Method,
    prof: &[String],
    target: &[String],
) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(bin, prof, target, None)?;
    let runs = plan.rounds(&[m, Method::ReadWrite])?;
    let report = plan.report_path(m, 1);
    println!("{}'s report (round 1 of {}):\n", m.name(), plan.rounds,);
    print!(
        "{}",
        std::fs::read_to_string(&report)
            .with_context(|| format!("cannot read {}", report.display()))?
    );
    // The baseline first: the verdict reads "METHOD against read-write".
    let runs: Vec<MethodRuns> = runs.into_iter().rev().collect();
    plan.finish(&runs)?;
    println!(
        "\n  {:<16} {}\n  {:<16} {}",
        Method::ReadWrite.name(),
        Method::ReadWrite.copies(),
        m.name(),
        m.copies()
    );
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask profile zero-copy`: every method on the same file, then side by side.
pub fn all(bin: &Path, prof: &[String], target: &[String]) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(bin, prof, target, None)?;
    let runs = plan.rounds(&Method::ALL)?;
    plan.finish(&runs)?;
    println!();
    for m in Method::ALL {
        println!("  {:<16} {}", m.name(), m.copies());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_taken_out_in_both_spellings() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut a = s(&[
            "--size",
            "1MiB",
            "--truth",
            "t.json",
            "--truth=u.json",
            "--cold",
        ]);
        assert_eq!(take_option(&mut a, "--truth").as_deref(), Some("u.json"));
        assert_eq!(a, s(&["--size", "1MiB", "--cold"]));
        assert_eq!(take_option(&mut a, "--rounds"), None);
        assert_eq!(compared_method("splice"), Some(Method::Splice));
        assert_eq!(compared_method("read-write"), None);
        assert_eq!(compared_method("blocking"), None);
        assert_eq!(default_hz(256 << 20), DEFAULT_HZ);
        assert_eq!(default_hz(64 << 20), 19_996);
        assert_eq!(default_hz(1 << 20), MAX_HZ);
        assert_eq!(default_hz(4 << 30), DEFAULT_HZ);
    }
}
