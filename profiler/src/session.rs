//! One profiling run: attach, start or find the target, read records until the run ends
//! (target gone, duration over, Ctrl-C or SIGTERM), then hand back everything collected.
use std::{
    os::fd::AsRawFd,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use probe_common::Counter;

use crate::{
    decode::{self, Record},
    fdkind::FdKinds,
    launch::{Exit, Gated, Running},
    loader::{Hook, LoadOptions, Probes},
    sampling::SampleSet,
    traced::TracedCall,
};

/// What to trace.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start this command and trace it.
    Command(Vec<String>),
    /// Trace these running processes.
    Pids(Vec<u32>),
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The launched command ended.
    CommandExited(Exit),
    /// Every traced process has gone.
    TargetsGone,
    /// The duration was over.
    Duration,
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// Everything a run collected.
pub struct RunResult {
    /// Every call seen, in arrival order.
    pub calls: Vec<TracedCall>,
    /// Other events (signals, copies outside calls), in arrival order.
    pub events: Vec<Record>,
    /// Hooks tried.
    pub hooks: Vec<Hook>,
    /// Records the kernel sent.
    pub sent: u64,
    /// Records lost to a full ring buffer.
    pub lost: u64,
    /// Of those, call records.
    pub calls_lost: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// Why the run ended.
    pub end: EndReason,
    /// Wall time from the target's start to the end.
    pub wall: Duration,
    /// The processes traced at the start.
    pub pids: Vec<u32>,
    /// Summary mode: the kernel's sums per process and call (empty in per-call mode).
    pub summaries: crate::summary::Summaries,
    /// Summary mode: calls not summed because the summary map was full.
    pub summary_full: u64,
    /// With `self_stats`: each kernel program's runs and run time.
    pub programs: Option<Vec<crate::selfcost::ProgramStats>>,
    /// The profiler's own CPU time and peak memory at the end of the run.
    pub usage: crate::selfcost::OwnUsage,
    /// CPU samples and how copy time was measured.
    pub samples: SampleSet,
    /// Every per-CPU counter summed over the CPUs, indexed by slot (`probe_common::Counter`).
    pub counters: Vec<u64>,
    /// Command names of the processes seen, read when their first record arrived.
    pub names: std::collections::HashMap<u32, String>,
    /// Forks and exits of traced processes, in arrival order.
    pub procs: Vec<probe_common::ProcRecord>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &act) }.context("failed to install a signal handler")?;
    }
    Ok(())
}

/// Checks that a pid names a live process this profiler may trace.
pub fn check_pid(pid: u32) -> anyhow::Result<()> {
    Ok(crate::target::check(pid)?)
}

fn alive(pid: u32) -> bool {
    crate::target::alive(pid)
}

/// Options of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// What to trace.
    pub target: Target,
    /// Probe options.
    pub load: LoadOptions,
    /// End the run after this long.
    pub duration: Option<Duration>,
}

/// Runs one profiling session. `on_attached` is called once the probes are in place, before
/// the target starts, with the hooks in use.
pub fn run(
    opts: &RunOptions,
    on_attached: impl FnOnce(&[Hook], &[u32]),
) -> anyhow::Result<RunResult> {
    if let Target::Pids(pids) = &opts.target {
        anyhow::ensure!(!pids.is_empty(), "no pid to trace");
        for &p in pids {
            check_pid(p)?;
        }
    }
    if let Target::Command(argv) = &opts.target {
        anyhow::ensure!(!argv.is_empty(), "no command to run");
    }
    let mut probes = Probes::load(&opts.load)?;
    let mut events = probes.take_events()?;
    install_signal_handlers()?;

    let (mut child, pids) = match &opts.target {
        Target::Command(argv) => {
            let gated = Gated::spawn(argv)?;
            let pid = gated.pid();
            probes.trace_pid(pid)?;
            on_attached(&probes.hooks, &[pid]);
            (Some(gated.release(&argv[0])?), vec![pid])
        }
        Target::Pids(pids) => {
            for &p in pids {
                probes.trace_pid(p)?;
            }
            // A process that ended while the probes were loading has nothing left to trace.
            let gone: Vec<u32> = pids.iter().copied().filter(|&p| !alive(p)).collect();
            if gone.len() == pids.len() {
                return Err(crate::target::PidError::ExitedDuringStartup(gone[0]).into());
            }
            for p in gone {
                eprintln!(
                    "profiler: warning: {}",
                    crate::target::PidError::ExitedDuringStartup(p)
                );
            }
            on_attached(&probes.hooks, pids);
            (None, pids.clone())
        }
    };

    let started = Instant::now();
    let mut kinds = FdKinds::default();
    let mut sink = Sink {
        population: crate::target::Population::new(&pids),
        ..Sink::default()
    };
    let mut sampled = SampleSet::new(probes.copy_timing.clone());
    for &p in &pids {
        sampled.note_maps(p);
    }
    let end = loop {
        wait_readable(&events, Duration::from_millis(100));
        sink.drain(&mut events, &mut kinds, &mut sampled);
        if STOP.load(Ordering::SeqCst) {
            break EndReason::Interrupted;
        }
        if let Some(c) = child.as_mut()
            && let Some(exit) = c.try_wait()?
        {
            break EndReason::CommandExited(exit);
        }
        if child.is_none() && sink.population.all_gone(alive) {
            break EndReason::TargetsGone;
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break EndReason::Duration;
        }
    };
    let wall = started.elapsed();
    // Records of calls that ended just before the end are in the buffer now.
    sink.drain(&mut events, &mut kinds, &mut sampled);
    if let Some(c) = child.as_mut() {
        finish_child(c, end);
    }
    crate::cpu_probes::finish(&probes, &mut sampled)?;
    Ok(RunResult {
        calls: sink.calls,
        events: sink.events,
        hooks: probes.hooks.clone(),
        sent: probes.counter(Counter::Sent)?,
        lost: probes.counter(Counter::Lost)?,
        calls_lost: probes.counter_slot(probe_common::COUNTER_CALLS_LOST)?,
        undecodable: sink.undecodable,
        end,
        wall,
        pids,
        summaries: probes.summaries()?,
        summary_full: probes.counter_slot(probe_common::COUNTER_SUMMARY_FULL)?,
        programs: probes.program_stats()?,
        usage: crate::selfcost::own_usage(),
        samples: sampled,
        counters: (0..probe_common::COUNTER_SLOTS)
            .map(|i| probes.counter_slot(i))
            .collect::<anyhow::Result<_>>()?,
        names: sink.names,
        procs: sink.procs,
    })
}

/// On an interrupted run, the launched command gets the same signal and a moment to end.
fn finish_child(c: &mut Running, end: EndReason) {
    if matches!(end, EndReason::CommandExited(_)) {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(c.pid() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    for _ in 0..50 {
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = c.try_wait();
}

fn wait_readable(events: &RingBuf<MapData>, timeout: Duration) {
    let mut fds = [libc::pollfd {
        fd: events.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: polls one valid descriptor owned by `events`.
    unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
}

/// Where decoded records go during a run.
#[derive(Default)]
struct Sink {
    calls: Vec<TracedCall>,
    events: Vec<Record>,
    undecodable: u64,
    names: std::collections::HashMap<u32, String>,
    procs: Vec<probe_common::ProcRecord>,
    population: crate::target::Population,
}

impl Sink {
    fn drain(&mut self, ring: &mut RingBuf<MapData>, kinds: &mut FdKinds, sampled: &mut SampleSet) {
        let mut sampled_pids = std::collections::BTreeSet::new();
        while let Some(item) = ring.next() {
            match decode::decode(&item) {
                Ok(Record::Sample(s)) => {
                    sampled_pids.insert(s.pid);
                    sampled.records.push(s);
                }
                Ok(Record::Call(rec)) => {
                    crate::progress::count_call();
                    self.names.entry(rec.pid).or_insert_with(|| comm(rec.pid));
                    self.calls
                        .push(TracedCall::new(rec, |pid, fd| kinds.resolve(pid, fd)))
                }
                Ok(Record::Proc(p)) => {
                    self.population.apply(&p);
                    if p.event == probe_common::ProcEvent::Exit as u32 {
                        // The name at exit is the final one (after any exec).
                        self.names.insert(p.pid, crate::target::comm_str(&p.comm));
                    }
                    self.procs.push(p);
                }
                Ok(other) => self.events.push(other),
                Err(_) => self.undecodable += 1,
            }
        }
        // Mappings are read while the processes run, so that user frames can be named after
        // they end.
        for pid in sampled_pids {
            sampled.note_maps(pid);
        }
    }
}

/// The command name of a process, `?` once it is gone.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Checks, before anything is attached, that an output file can be written.
pub fn check_output(path: &Path) -> anyhow::Result<std::fs::File> {
    crate::export::create(path)
}
