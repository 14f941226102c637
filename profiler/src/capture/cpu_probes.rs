//! Attaches the CPU sampler and, where the kernel allows, the exact copy timers; decides at
//! start-up how copy time is measured and why; reads the sampler's stacks and the exact
//! timers back. Called from the loader.
use std::{collections::HashMap, path::Path};

use anyhow::Context as _;
use aya::{
    Btf, Ebpf,
    maps::{HashMap as BpfHashMap, MapData, StackTraceMap},
    programs::{
        FEntry, FExit, KProbe, PerfEvent,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
    util::online_cpus,
};
use probe_common::{CallKey, ExactCopy};

/// The copy routines timed exactly, with their entry and exit programs.
pub const COPY_TIMERS: &[(&str, &str, &str)] = &[
    ("_copy_to_user", "copy_to_user_enter", "copy_to_user_exit"),
    ("_copy_to_iter", "copy_to_iter_enter", "copy_to_iter_exit"),
    (
        "copy_page_to_iter",
        "copy_page_to_iter_enter",
        "copy_page_to_iter_exit",
    ),
];

/// How the profiler measures copy time in this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyTiming {
    /// Entry/exit hooks time these copy routines exactly; sampling (if on) adds the stacks.
    Exact {
        /// `fentry/fexit:FUNCTION` of each hook in use.
        hooks: Vec<String>,
        /// Sampling frequency, 0 when off.
        hz: u64,
    },
    /// CPU samples estimate it.
    Sampled {
        /// Sampling frequency.
        hz: u64,
        /// Why the exact hooks are not used.
        why: String,
    },
    /// Neither: sampling is off and no exact hook is allowed.
    Unmeasured {
        /// Why the exact hooks are not used.
        why: String,
    },
}

impl CopyTiming {
    /// Chooses from what start-up found: the exact hooks that attached through fentry and
    /// through kprobes (or why none did), and the sampling frequency asked for (0: off).
    pub fn choose(
        fentry: Result<Vec<String>, String>,
        kprobes: Result<Vec<String>, String>,
        hz: u64,
    ) -> Self {
        let why = |r: Result<Vec<String>, String>, what: &str| match r {
            Ok(_) => format!("{what}: no copy routine could be hooked"),
            Err(e) => format!("{what} refused ({e})"),
        };
        match (fentry, kprobes) {
            (Ok(hooks), _) | (_, Ok(hooks)) if !hooks.is_empty() => Self::Exact { hooks, hz },
            (f, k) => {
                let why = format!("{}; {}", why(f, "fentry"), why(k, "kprobes"));
                if hz > 0 {
                    Self::Sampled { hz, why }
                } else {
                    Self::Unmeasured { why }
                }
            }
        }
    }

    /// The line every run prints: which hooks timed the copy.
    pub fn describe(&self, samples: u64) -> String {
        match self {
            Self::Exact { hooks, .. } => format!("copy time exact ({})", hooks.join(", ")),
            Self::Sampled { hz, why } => {
                format!("copy time sampled at {hz} Hz with {samples} samples (exact hooks: {why})")
            }
            Self::Unmeasured { why } => format!(
                "copy time not measured: sampling is off (--freq 0) and exact hooks are \
                 unavailable ({why})"
            ),
        }
    }

    /// Sampling frequency in use (0: off).
    pub fn hz(&self) -> u64 {
        match self {
            Self::Exact { hz, .. } | Self::Sampled { hz, .. } => *hz,
            Self::Unmeasured { .. } => 0,
        }
    }
}

/// Tries the exact copy timers as kprobes/kretprobes (where fentry is refused); returns the
/// hooks in use, or why none.
pub fn attach_exact_kprobes(ebpf: &mut Ebpf) -> Result<Vec<String>, String> {
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return Err("no kprobe PMU: CONFIG_KPROBES is off".into());
    }
    let mut hooks = Vec::new();
    let mut first_error = None;
    for (prog, what) in [("copy_kprobe", "kprobe"), ("copy_kretprobe", "kretprobe")] {
        let p: &mut KProbe = match ebpf.program_mut(prog).map(TryInto::try_into) {
            Some(Ok(p)) => p,
            _ => return Err(format!("program {prog} missing from the probe object")),
        };
        p.load().map_err(|e| short_error(&e.into()))?;
        for &(func, _, _) in COPY_TIMERS {
            match p.attach(func, 0) {
                Ok(_) if what == "kprobe" => hooks.push(format!("kprobe/kretprobe:{func}")),
                Ok(_) => {}
                Err(e) => {
                    first_error.get_or_insert(format!("{func}: {}", short_error(&e.into())));
                }
            }
        }
    }
    match (hooks.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(hooks),
    }
}

/// Tries to load and attach the exact copy timers as fentry/fexit programs with the kernel's
/// BTF (or why there is none); returns the hooks in use, or why none.
pub fn attach_exact(ebpf: &mut Ebpf, btf: Result<Btf, String>) -> Result<Vec<String>, String> {
    let btf = btf?;
    let mut hooks = Vec::new();
    let mut first_error = None;
    for &(func, enter, exit) in COPY_TIMERS {
        match attach_pair(ebpf, &btf, func, enter, exit) {
            Ok(()) => hooks.push(format!("fentry/fexit:{func}")),
            Err(e) => {
                first_error.get_or_insert(format!("{func}: {}", short_error(&e)));
            }
        }
    }
    match (hooks.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(hooks),
    }
}

/// The first sentence of an error chain, without the verifier log the kernel appends.
fn short_error(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let text = text.split(". Verifier output").next().unwrap_or(&text);
    text.replace("the BPF_PROG_LOAD syscall returned ", "")
}

fn attach_pair(
    ebpf: &mut Ebpf,
    btf: &Btf,
    func: &str,
    enter: &str,
    exit: &str,
) -> anyhow::Result<()> {
    let p: &mut FEntry = ebpf
        .program_mut(enter)
        .with_context(|| format!("program {enter} missing"))?
        .try_into()?;
    p.load(func, btf)?;
    p.attach()?;
    let p: &mut FExit = ebpf
        .program_mut(exit)
        .with_context(|| format!("program {exit} missing"))?
        .try_into()?;
    p.load(func, btf)?;
    p.attach()?;
    Ok(())
}

/// Attaches the CPU sampler at `hz` on every online CPU; returns the number of CPUs.
pub fn attach_sampler(ebpf: &mut Ebpf, hz: u64) -> anyhow::Result<usize> {
    let max = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(max) = max {
        anyhow::ensure!(
            hz <= max,
            "--freq {hz} is above this kernel's limit of {max} Hz \
             (kernel.perf_event_max_sample_rate): ask for less"
        );
    }
    let prog: &mut PerfEvent = ebpf
        .program_mut("cpu_sample")
        .context("program cpu_sample missing from the probe object")?
        .try_into()?;
    prog.load()
        .context("the kernel refused the CPU sampling program")?;
    let cpus = online_cpus().map_err(|(path, e)| anyhow::anyhow!("failed to read {path}: {e}"))?;
    for &cpu in &cpus {
        prog.attach(
            PerfEventConfig::Software(SoftwareEvent::CpuClock),
            PerfEventScope::AllProcessesOneCpu { cpu },
            SamplePolicy::Frequency(hz),
            false,
        )
        .with_context(|| format!("failed to start CPU sampling at {hz} Hz on CPU {cpu}"))?;
    }
    Ok(cpus.len())
}

/// The stacks with these ids, frames leaf first (an id not in the map is left out).
pub fn read_stacks(
    ebpf: &Ebpf,
    ids: impl IntoIterator<Item = u32>,
) -> anyhow::Result<HashMap<u32, Vec<u64>>> {
    let map: StackTraceMap<&MapData> =
        StackTraceMap::try_from(ebpf.map("STACKS").context("no STACKS map")?)?;
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        if let Ok(st) = map.get(&id, 0) {
            out.insert(id, st.frames().iter().map(|f| f.ip).collect());
        }
    }
    Ok(out)
}

/// Exact copy time per call, keyed by (thread, call entry time).
pub fn read_exact(ebpf: &Ebpf) -> anyhow::Result<HashMap<(u32, u64), ExactCopy>> {
    let map: BpfHashMap<&MapData, CallKey, ExactCopy> =
        BpfHashMap::try_from(ebpf.map("EXACT").context("no EXACT map")?)?;
    Ok(map
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| ((k.tid, k.start_ns), v))
        .collect())
}

/// Reads back, at the end of a run, the stacks the samples refer to, the exact copy times
/// and the sampler's counters.
pub fn finish(
    probes: &crate::capture::loader::Probes,
    set: &mut crate::analyze::sampling::SampleSet,
) -> anyhow::Result<()> {
    use probe_common::Counter;
    if !set.records.is_empty() {
        set.stacks = read_stacks(probes.ebpf(), set.stack_ids())?;
    }
    if matches!(set.timing, CopyTiming::Exact { .. }) {
        set.exact = read_exact(probes.ebpf())?;
    }
    set.lost = probes.counter(Counter::SamplesLost)?;
    set.kernel_stack_missing = probes.counter(Counter::KernelStackMissing)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_when_fentry_or_kprobes_attach() {
        let t = CopyTiming::choose(
            Ok(vec!["fentry/fexit:_copy_to_iter".into()]),
            Err("not tried".into()),
            99,
        );
        assert_eq!(
            t,
            CopyTiming::Exact {
                hooks: vec!["fentry/fexit:_copy_to_iter".into()],
                hz: 99
            }
        );
        assert_eq!(
            t.describe(5),
            "copy time exact (fentry/fexit:_copy_to_iter)"
        );
        let t = CopyTiming::choose(
            Err("EPERM".into()),
            Ok(vec!["kprobe/kretprobe:_copy_to_user".into()]),
            0,
        );
        assert!(matches!(t, CopyTiming::Exact { hz: 0, .. }), "{t:?}");
    }

    #[test]
    fn falls_back_to_sampling_and_says_why() {
        let t = CopyTiming::choose(
            Err("EPERM".into()),
            Err("no kprobe PMU: CONFIG_KPROBES is off".into()),
            999,
        );
        let line = t.describe(1234);
        assert!(
            line.starts_with("copy time sampled at 999 Hz with 1234 samples"),
            "{line}"
        );
        assert!(line.contains("fentry refused (EPERM)"), "{line}");
        assert!(line.contains("kprobes refused (no kprobe PMU"), "{line}");
        assert_eq!(t.hz(), 999);
        // Hooks that load but attach to no copy routine: still sampled, and it says so.
        let t = CopyTiming::choose(Ok(vec![]), Ok(vec![]), 99);
        assert!(matches!(t, CopyTiming::Sampled { hz: 99, .. }));
        assert!(
            t.describe(0)
                .contains("kprobes: no copy routine could be hooked"),
            "{}",
            t.describe(0)
        );
    }

    #[test]
    fn nothing_measures_when_sampling_is_off_and_no_hook_is_allowed() {
        let t = CopyTiming::choose(Err("EPERM".into()), Err("none".into()), 0);
        assert!(matches!(t, CopyTiming::Unmeasured { .. }));
        assert!(t.describe(0).contains("--freq 0"));
        assert_eq!(t.hz(), 0);
    }

    #[test]
    fn verifier_logs_are_cut_from_errors() {
        let e = anyhow::anyhow!(
            "the BPF_PROG_LOAD syscall returned Operation not permitted (os error 1). \
             Verifier output: : lots"
        );
        assert_eq!(short_error(&e), "Operation not permitted (os error 1)");
    }
}
