//! One profiling run: attach, start or find the target, read records until the run ends
//! (target gone, duration over, Ctrl-C or SIGTERM), handing each call to a sink as it arrives.
use std::{
    os::fd::AsRawFd,
    path::Path,
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use probe_common::Counter;

use crate::{
    analyze::sampling::SampleSet,
    capture::decode::{self, Record},
    capture::fdkind::FdKinds,
    capture::launch::{Exit, Gated, RunAs, Running},
    capture::loader::{Hook, LoadOptions, Probes},
    capture::sink::CallSink,
    capture::traced::TracedCall,
};

/// What to trace.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start this command and trace it.
    Command(Vec<String>),
    /// Trace these running processes.
    Pids(Vec<u32>),
    /// Trace every process the filter takes (system-wide; summary mode).
    All(crate::capture::system::Filter),
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

/// What a run saw; its calls went to the sink as they arrived.
pub struct RunResult {
    /// Copy-on-write counts per traced thread.
    pub cow: Vec<crate::analyze::cow::CowThread>,
    /// What the kernel programs logged about unexpected cases.
    pub diagnostics: Vec<String>,
    /// Calls seen (each handed to the sink).
    pub calls: u64,
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
    pub summaries: crate::analyze::summary::Summaries,
    /// Summary mode: calls not summed because the summary map was full.
    pub summary_full: u64,
    /// With `self_stats`: each kernel program's runs and run time.
    pub programs: Option<Vec<crate::capture::selfcost::ProgramStats>>,
    /// CPU samples and how copy time was measured.
    pub samples: SampleSet,
    /// Every per-CPU counter summed over the CPUs, indexed by slot (`probe_common::Counter`).
    pub counters: Vec<u64>,
    /// Command names of the processes seen, read when their first record arrived.
    pub names: std::collections::HashMap<u32, String>,
    /// Forks and exits of traced processes, in arrival order.
    pub procs: Vec<probe_common::ProcRecord>,
}

impl RunResult {
    /// Counter `c` summed over the CPUs (0 when the run has no such slot).
    pub fn counter(&self, c: Counter) -> u64 {
        counter(&self.counters, c)
    }
}

/// Counter `c` of per-CPU sums indexed by slot (0 when there is no such slot).
pub fn counter(counters: &[u64], c: Counter) -> u64 {
    counters.get(c as usize).copied().unwrap_or(0)
}

static STOP: AtomicBool = AtomicBool::new(false);

/// The thread that runs the session: a signal landing on another thread is sent on to it, so
/// that a write it is blocked in is interrupted.
static MAIN_TID: AtomicI32 = AtomicI32::new(0);

/// The launched command's pid once released (0: none), which a second signal is passed on to
/// as the first one is when the run ends.
static COMMAND_PID: AtomicI32 = AtomicI32::new(0);

/// Whether SIGINT or SIGTERM asked the run to end.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

extern "C" fn on_signal(sig: libc::c_int) {
    let main = MAIN_TID.load(Ordering::SeqCst);
    // SAFETY: gettid, getpid, tgkill, kill and _exit are async-signal-safe system calls.
    unsafe {
        let me = libc::syscall(libc::SYS_gettid) as i32;
        if main != 0 && me != main {
            libc::syscall(libc::SYS_tgkill, libc::getpid(), main, sig);
            return;
        }
        // The second signal ends the profiler at once, passed on to the launched command; the
        // kernel releases the probes with the profiler's descriptors.
        if STOP.swap(true, Ordering::SeqCst) {
            let command = COMMAND_PID.load(Ordering::SeqCst);
            if command > 0 {
                libc::kill(command, sig);
            }
            libc::_exit(128 + sig);
        }
    }
}

/// SIGINT and SIGTERM end the run; without `SA_RESTART`, so that they interrupt a blocked
/// output write (see [`crate::sink::Interruptible`]).
fn install_signal_handlers() -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    // SAFETY: gettid has no preconditions.
    MAIN_TID.store(unsafe { libc::gettid() }, Ordering::SeqCst);
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
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
    Ok(crate::plan::target::check(pid)?)
}

fn alive(pid: u32) -> bool {
    crate::plan::target::alive(pid)
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
    /// The user a launched command runs as (`None`: the profiler's own).
    pub run_as: Option<RunAs>,
}

/// Runs one profiling session. `on_attached` is called once the probes are in place, before
/// the target starts, with the hooks in use.
pub fn run(
    opts: &RunOptions,
    sink: &mut dyn CallSink,
    on_attached: impl FnOnce(&[Hook], &[u32]),
) -> anyhow::Result<RunResult> {
    if let Target::Pids(pids) = &opts.target {
        anyhow::ensure!(!pids.is_empty(), "no pid to trace");
        for &p in pids {
            check_pid(p)?;
        }
    }
    // The command's process is forked before anything is loaded, so that it holds none of
    // the probes' descriptors while it waits at its gate.
    let gated = match &opts.target {
        Target::Command(argv) => Some(Gated::spawn(argv, opts.run_as.as_ref())?),
        Target::Pids(_) | Target::All(_) => None,
    };
    let mut probes = Probes::load(&opts.load)?;
    let mut events = probes.take_events()?;
    install_signal_handlers()?;

    let (mut child, pids) = match (&opts.target, gated) {
        (Target::Command(argv), Some(gated)) => {
            let pid = gated.pid();
            probes.trace_pid(pid)?;
            on_attached(&probes.hooks, &[pid]);
            let running = gated.release(&argv[0])?;
            COMMAND_PID.store(pid as i32, Ordering::SeqCst);
            (Some(running), vec![pid])
        }
        (Target::Command(_), None) => anyhow::bail!("no command to run"),
        (Target::Pids(pids), _) => {
            // Their calls in flight now are recorded at their exit, begun now.
            probes.record_calls_in_flight()?;
            for &p in pids {
                probes.trace_pid(p)?;
            }
            // A process that ended while the probes were loading has nothing left to trace.
            let gone: Vec<u32> = pids.iter().copied().filter(|&p| !alive(p)).collect();
            if gone.len() == pids.len() {
                return Err(crate::plan::target::PidError::ExitedDuringStartup(gone[0]).into());
            }
            for p in gone {
                eprintln!(
                    "profiler: warning: {}",
                    crate::plan::target::PidError::ExitedDuringStartup(p)
                );
            }
            on_attached(&probes.hooks, pids);
            (None, pids.clone())
        }
        (Target::All(_), _) => {
            on_attached(&probes.hooks, &[]);
            (None, Vec::new())
        }
    };
    let system_wide = matches!(opts.target, Target::All(_));

    let started = Instant::now();
    let mut kinds = FdKinds::default();
    let mut reader = Reader {
        population: crate::plan::target::Population::new(&pids),
        ..Reader::default()
    };
    let mut sampled = SampleSet::new(probes.copy_timing.clone());
    for &p in &pids {
        sampled.note_maps(p);
    }
    let mut failed = None;
    let mut busy = false;
    let mut flowing = false;
    let end = loop {
        if busy {
            // Records are pouring in: gather a batch rather than wake for each few.
            std::thread::sleep(BATCH_PAUSE);
        } else {
            // While records arrive, look again soon on our own: the kernel wakes the reader
            // at most every few ms per CPU (a wake-up costs the traced CPU an interrupt).
            let idle = if flowing { FLOW_POLL } else { IDLE_POLL };
            wait_readable(&events, idle);
        }
        match reader.drain(&mut events, &mut kinds, &mut sampled, sink, DRAIN_BUDGET) {
            Ok(n) => {
                busy = n >= BUSY_RECORDS;
                flowing = n > 0;
            }
            Err(e) => {
                failed = Some(e);
                break EndReason::Interrupted;
            }
        }
        if STOP.load(Ordering::SeqCst) {
            break EndReason::Interrupted;
        }
        if let Some(c) = child.as_mut()
            && let Some(exit) = c.try_wait()?
        {
            break EndReason::CommandExited(exit);
        }
        if child.is_none() && !system_wide && reader.population.all_gone(alive) {
            break EndReason::TargetsGone;
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break EndReason::Duration;
        }
    };
    let wall = started.elapsed();
    // Nothing is recorded from here on: the traced processes leave the traced set and the
    // call hooks go, so that the counters read below match what was read.
    probes.untrace(&reader.traced(&pids))?;
    probes.detach();
    // Records of calls that ended just before the end are in the buffer now: read as many as
    // the buffer can hold, not more, so that a target that goes on calling cannot hold the
    // run open.
    if failed.is_none() {
        let held = (opts.load.ringbuf_bytes as u64 / MIN_RECORD_BYTES).max(1);
        failed = reader
            .drain(&mut events, &mut kinds, &mut sampled, sink, held)
            .err();
    }
    // Children forked just before the end, seen in that last read.
    probes.untrace(&reader.traced(&pids))?;
    if let Some(c) = child.as_mut() {
        finish_child(c, end);
    }
    if let Some(e) = failed {
        return Err(e);
    }
    crate::capture::cpu_probes::finish(&probes, &mut sampled)?;
    let summaries = probes.summaries()?;
    // Summary mode sends no call record: the names of the processes summed are read now
    // (those that ended were named by their exit record).
    for k in summaries.keys() {
        reader
            .names
            .entry(k.pid)
            .or_insert_with(|| crate::plan::target::comm_of(k.pid));
    }
    Ok(RunResult {
        calls: reader.calls,
        events: reader.events,
        hooks: probes.hooks.clone(),
        // CPU samples go through the same ring buffer, counted apart by the sampler.
        sent: probes.counter(Counter::Sent)? + probes.counter(Counter::SamplesSent)?,
        lost: probes.counter(Counter::Lost)? + probes.counter(Counter::SamplesLost)?,
        calls_lost: probes.counter_slot(probe_common::COUNTER_CALLS_LOST)?,
        undecodable: reader.undecodable,
        end,
        wall,
        pids,
        summaries,
        summary_full: probes.counter_slot(probe_common::COUNTER_SUMMARY_FULL)?,
        programs: probes.program_stats()?,
        samples: sampled,
        counters: (0..probe_common::COUNTER_SLOTS)
            .map(|i| probes.counter_slot(i))
            .collect::<anyhow::Result<_>>()?,
        names: reader.names,
        procs: reader.procs,
        cow: probes.cow_threads()?,
        diagnostics: probes.diagnostics(),
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

/// Records read at most between two looks at the run's end conditions: a target that calls
/// faster than the profiler reads must not keep it from seeing Ctrl-C or its duration.
const DRAIN_BUDGET: u64 = 1 << 16;

/// Records read in one pass above which the reader pauses before the next instead of waiting
/// to be woken: at rates where it falls behind, that saves a wake-up per few records. Kept
/// high so that ordinary runs read records at once.
const BUSY_RECORDS: u64 = 1024;

/// How long the reader waits for a wake-up while records arrive, and when none did.
const FLOW_POLL: Duration = Duration::from_millis(2);
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The pause between two passes while records pour in (the default ring buffer holds some
/// 25,000 call records: far more than arrive in this time).
const BATCH_PAUSE: Duration = Duration::from_millis(1);

/// The smallest space a record takes in the ring buffer (its 8-byte header, the smallest
/// record), to bound the records the buffer can hold.
const MIN_RECORD_BYTES: u64 = 8 + size_of::<probe_common::CopyRecord>() as u64;

/// Reads the ring buffer: calls go to the sink, other records are kept.
#[derive(Default)]
struct Reader {
    calls: u64,
    events: Vec<Record>,
    undecodable: u64,
    names: std::collections::HashMap<u32, String>,
    procs: Vec<probe_common::ProcRecord>,
    population: crate::plan::target::Population,
}

impl Reader {
    /// Every process traced in this run: those given, and the children forked since.
    fn traced(&self, pids: &[u32]) -> Vec<u32> {
        let forked = self
            .procs
            .iter()
            .filter(|p| p.event == probe_common::ProcEvent::Fork as u32)
            .map(|p| p.pid);
        pids.iter().copied().chain(forked).collect()
    }

    fn drain(
        &mut self,
        ring: &mut RingBuf<MapData>,
        kinds: &mut FdKinds,
        sampled: &mut SampleSet,
        sink: &mut dyn CallSink,
        budget: u64,
    ) -> anyhow::Result<u64> {
        let mut sampled_pids = std::collections::BTreeSet::new();
        let mut read = 0;
        while read < budget {
            let Some(item) = ring.next() else {
                break;
            };
            read += 1;
            match decode::decode(&item) {
                Ok(Record::Sample(s)) => {
                    sampled_pids.insert(s.pid);
                    sampled.records.push(s);
                }
                Ok(Record::Call(rec)) => {
                    self.calls += 1;
                    crate::capture::progress::count_call();
                    self.names
                        .entry(rec.pid)
                        .or_insert_with(|| crate::plan::target::comm_of(rec.pid));
                    sink.call(&TracedCall::new(rec, |pid, fd| kinds.resolve(pid, fd)))?;
                }
                Ok(Record::Proc(p)) => {
                    self.population.apply(&p);
                    if p.event == probe_common::ProcEvent::Exit as u32 {
                        // The name at exit is the final one (after any exec).
                        self.names
                            .insert(p.pid, crate::plan::target::comm_str(&p.comm));
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
        Ok(read)
    }
}

/// Checks, before anything is attached, that an output file can be written.
pub fn check_output(path: &Path) -> anyhow::Result<std::fs::File> {
    crate::render::export::create(path)
}
