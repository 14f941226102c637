//! Loads the kernel probes, attaches them to the hooks this kernel offers, and hands out the
//! maps user space reads. Computes nothing about stages.
use std::{fmt, path::Path};

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::TracePoint,
};
use probe_common::{CallSummary, Counter, DEFAULT_RINGBUF_BYTES, SummaryKey, mode};

use crate::{
    capture::attach::{CallRegs, Links, attach_calls},
    capture::cpu_probes::{self, CopyTiming},
    syscalls::Call,
};

/// The probe object built by `build.rs`.
static PROBE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe"));

const TRACEFS: &str = "/sys/kernel/tracing";

/// One kernel hook and whether it is in use.
#[derive(Clone, Debug)]
pub struct Hook {
    /// `category:name` of the tracepoint.
    pub name: String,
    /// `None` when attached, else why not.
    pub error: Option<String>,
    /// What the profiler cannot measure without it.
    pub without: &'static str,
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            None => write!(f, "{}", self.name),
            Some(e) => write!(f, "{} (unavailable: {e}; {})", self.name, self.without),
        }
    }
}

/// Options of a probe load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The calls to trace.
    pub calls: Vec<&'static Call>,
    /// Size of the call record ring buffer, bytes (a power of two, a multiple of the page size).
    pub ringbuf_bytes: u32,
    /// What the call programs do: [`probe_common::mode`] bits.
    pub mode: u32,
    /// Switch on the kernel's BPF run-time statistics for this run.
    pub self_stats: bool,
    /// CPU sampling frequency in Hz; 0 turns sampling off.
    pub sample_hz: u64,
    /// Attach the per-message hooks of the I/O-model analysis (socket arrivals and reads,
    /// io_uring requests): one record per event, so off for `--bounded` runs and summary mode.
    pub message_events: bool,
    /// Slots of the kernel's thread and process tables (a power of two, at most
    /// [`probe_common::THREAD_SLOTS`]); fewer force the clash tables into use (tests).
    pub thread_slots: u32,
    /// System-wide runs: the processes the kernel traces by itself (`None`: the traced set).
    pub filter: Option<crate::capture::system::Filter>,
    /// Entries of the kernel's per-thread copy-on-write table; fewer make it fill (tests).
    pub cow_threads: u32,
    /// Summary mode keeps its sums per source descriptor class too (`profiler serve`'s
    /// `fd_class` label): a descriptor-table walk per data call, off elsewhere.
    pub summary_classes: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            calls: Vec::new(),
            ringbuf_bytes: DEFAULT_RINGBUF_BYTES,
            mode: mode::RECORDS,
            self_stats: false,
            sample_hz: 0,
            message_events: true,
            thread_slots: probe_common::THREAD_SLOTS,
            filter: None,
            cow_threads: probe_common::MAX_COW_THREADS,
            summary_classes: false,
        }
    }
}

/// The loaded, attached probes.
pub struct Probes {
    ebpf: Ebpf,
    /// Keeps BPF run-time statistics on for this run (`--self-stats`).
    stats: Option<crate::capture::selfcost::StatsGuard>,
    /// Every hook tried, attached or not.
    pub hooks: Vec<Hook>,
    /// How copy time is measured in this run.
    pub copy_timing: CopyTiming,
    /// Every attachment of the call hooks and the other tracepoints.
    links: Links,
    /// Slots of the kernel's thread and process tables.
    thread_slots: u32,
    /// Reads the kernel programs' aya-log records into [`Probes::diag_sink`].
    diag: Option<aya_log::EbpfLogger<crate::capture::kdiag::Collected>>,
    /// The kernel programs' diagnostics read so far.
    diag_sink: crate::capture::kdiag::Collected,
}

/// Unread bytes of the call ring buffer that wake the reader: a quarter of the buffer. Fewer
/// wake-ups make each record cheaper; the reader also polls on a timer.
pub fn wake_bytes(ringbuf_bytes: u32) -> u64 {
    u64::from(ringbuf_bytes / 4)
}

/// Mounts tracefs where it is missing (tracepoint ids are read from it).
pub fn ensure_tracefs() -> anyhow::Result<()> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    nix::mount::mount(
        Some("nodev"),
        TRACEFS,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| {
        format!("failed to mount tracefs at {TRACEFS} (mount -t tracefs nodev {TRACEFS})")
    })
}

/// Whether this kernel has the tracepoint `category/name`.
pub fn has_tracepoint(category: &str, name: &str) -> bool {
    Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(name)
        .is_dir()
}

/// Number of arguments in the `syscalls:sys_enter_NAME` record, from its format file.
pub(crate) fn enter_args(name: &str) -> Option<usize> {
    let format = std::fs::read_to_string(
        Path::new(TRACEFS)
            .join("events/syscalls")
            .join(format!("sys_enter_{name}"))
            .join("format"),
    )
    .ok()?;
    Some(count_args(&format))
}

/// Fields after `__syscall_nr` in a `sys_enter_*` format: the call's arguments.
fn count_args(format: &str) -> usize {
    format
        .lines()
        .filter(|l| l.trim_start().starts_with("field:"))
        .skip_while(|l| !l.contains("__syscall_nr"))
        .skip(1)
        .count()
}

impl Probes {
    /// Loads the probes and attaches them. Fails when the calls cannot be traced at all; a
    /// missing optional hook is recorded in [`Probes::hooks`].
    pub fn load(opts: &LoadOptions) -> anyhow::Result<Self> {
        if PROBE.is_empty() {
            anyhow::bail!(
                "this profiler was built without its kernel probes (bpf-linker was missing): \
                 run `cargo xtask setup`, then build it again"
            );
        }
        anyhow::ensure!(
            opts.thread_slots.is_power_of_two() && opts.thread_slots <= probe_common::THREAD_SLOTS,
            "thread slots must be a power of two from 1 to {}, not {}",
            probe_common::THREAD_SLOTS,
            opts.thread_slots
        );
        // The plan checks this too; the loader holds to it whoever calls it.
        anyhow::ensure!(
            opts.ringbuf_bytes <= crate::plan::MAX_RINGBUF_BYTES,
            "--ringbuf-size must be at most {} bytes (1 GiB), not {}",
            crate::plan::MAX_RINGBUF_BYTES,
            opts.ringbuf_bytes
        );
        crate::plan::privilege::check()?;
        ensure_tracefs()?;
        let stats = opts
            .self_stats
            .then(crate::capture::selfcost::enable_stats)
            .transpose()?;
        // Descriptor classes at entry need this kernel's structure layout.
        // Each reader of the kernel's BTF parses it (tens of ms): ours for the descriptor
        // offsets and the exact copy timers' run beside the probe loader's own.
        let offsets_job = std::thread::spawn(|| {
            let btf = crate::capture::btf::Btf::from_kernel()?;
            Ok::<_, crate::capture::btf::BtfError>((
                btf.fd_offsets(),
                btf.member_offset("task_struct", "pid"),
            ))
        });
        let exact_btf_job = (opts.mode != mode::FLOOR).then(|| {
            std::thread::spawn(|| {
                aya::Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))
            })
        });
        let join_failed =
            || crate::capture::btf::BtfError::Malformed("the BTF reader thread failed");
        let wake = wake_bytes(opts.ringbuf_bytes);
        let slot_mask = opts.thread_slots - 1;
        let mut loader = EbpfLoader::new();
        let (fd_offsets, task_pid) = match offsets_job.join().unwrap_or_else(|_| Err(join_failed()))
        {
            Ok((fd, pid)) => (fd, pid.ok()),
            Err(e) => (Err(e), None),
        };
        let regs = CallRegs::of_this_arch();
        let layout = regs.unwrap_or(CallRegs {
            args: [0; 3],
            nr: 0,
        });
        loader
            .map_max_entries("EVENTS", opts.ringbuf_bytes)
            .map_max_entries("COW_THREADS", opts.cow_threads.max(1))
            .override_global("REGS_ARGS", &layout.args, true)
            .override_global("REGS_NR", &layout.nr, true)
            .override_global("MODE", &opts.mode, true)
            .override_global("WAKE_BYTES", &wake, true)
            .override_global("SLOT_MASK", &slot_mask, true);
        let me = std::process::id();
        let summary_classes = u32::from(opts.summary_classes);
        let (flags, comm, cgroup) = opts.filter.as_ref().map_or((0, [0; 2], 0), |f| {
            (f.flags(), f.comm_words(), f.cgroup_id())
        });
        loader
            .override_global("FILTER", &flags, true)
            .override_global("SELF_TGID", &me, true)
            .override_global("SUMMARY_CLASSES", &summary_classes, true)
            .override_global("FILTER_COMM", &comm, true)
            .override_global("FILTER_CGROUP", &cgroup, true);
        if let Some(off) = &task_pid {
            loader.override_global("TASK_PID", off, true);
        }
        if let Ok(o) = &fd_offsets {
            loader.override_global("FD_OFFSETS", o, true);
        }
        let mut ebpf = loader
            .load(PROBE)
            .context("failed to load the probe object into the kernel")?;
        let mut hooks = Vec::new();
        let mut links = Links::default();
        let diag_sink = crate::capture::kdiag::Collected::default();
        let diag = aya_log::EbpfLogger::init_with_logger(&mut ebpf, diag_sink.clone());
        hooks.push(Hook {
            name: "aya-log:kernel diagnostics".into(),
            error: diag.as_ref().err().map(|e| e.to_string()),
            without: "the kernel programs' unexpected cases are counted but not described",
        });
        let diag = diag.ok();
        fill_call_fds(&mut ebpf, &opts.calls)?;
        hooks.push(Hook {
            name: "btf:descriptor classes at entry".into(),
            error: fd_offsets.err().map(|e| e.to_string()),
            without: "descriptor kinds are read from /proc when a record arrives (unknown once the process has exited)",
        });

        hooks.push(attach_calls(&mut ebpf, &opts.calls, regs, &mut links)?);
        if opts.mode == mode::FLOOR {
            // The benchmark floor: the call hooks alone, with programs that return at once.
            return Ok(Self {
                ebpf,
                stats,
                hooks,
                copy_timing: CopyTiming::Unmeasured {
                    why: "benchmark floor: no copy is measured".into(),
                },
                links,
                thread_slots: opts.thread_slots,
                diag,
                diag_sink,
            });
        }

        for (prog, category, name, without) in [
            (
                "sched_switch",
                "sched",
                "sched_switch",
                "no blocked or run-queue time",
            ),
            (
                "sched_wakeup",
                "sched",
                "sched_wakeup",
                "run-queue time after a wake-up counts as blocked",
            ),
            (
                "task_newtask",
                "task",
                "task_newtask",
                "children forked by the target are not traced",
            ),
            (
                "process_exit",
                "sched",
                "sched_process_exit",
                "an exited pid stays traced (a new process given it would be traced) and the run ends only when /proc shows every process gone",
            ),
            (
                "skb_copy",
                "skb",
                "skb_copy_datagram_iovec",
                "socket reads are not split at the copy start",
            ),
            (
                "signal_generate",
                "signal",
                "signal_generate",
                "signals sent to the target are not seen",
            ),
            (
                "signal_deliver",
                "signal",
                "signal_deliver",
                "signal deliveries are not seen",
            ),
            // I/O models.
            (
                "sk_data_ready",
                "sock",
                "sk_data_ready",
                "no data arrival times: no notification latency",
            ),
            (
                "sock_recv_length",
                "sock",
                "sock_recv_length",
                "reads are not tied to their sockets",
            ),
            (
                "uring_submit",
                "io_uring",
                "io_uring_submit_req",
                "io_uring submissions are not seen",
            ),
            (
                "uring_complete",
                "io_uring",
                "io_uring_complete",
                "io_uring completions are not seen",
            ),
            // Page faults and socket sends.
            (
                "page_fault_user",
                "exceptions",
                "page_fault_user",
                "user-mode page faults are not counted",
            ),
            (
                "page_fault_kernel",
                "exceptions",
                "page_fault_kernel",
                "kernel-mode page faults (copies from mapped files) are not counted",
            ),
            (
                "filemap_fault",
                "filemap",
                "mm_filemap_fault",
                "faults on file pages are not told apart",
            ),
            (
                "sock_send_length",
                "sock",
                "sock_send_length",
                "bytes handed to sockets (io_uring, sendfile) are not counted",
            ),
            (
                "page_alloc",
                "kmem",
                "mm_page_alloc",
                "copy-on-write faults are counted, the pages they copied are not",
            ),
            (
                "tlb_flush",
                "tlb",
                "tlb_flush",
                "the time of copy-on-write faults is not measured",
            ),
        ] {
            let message_hook = matches!(
                prog,
                "sk_data_ready" | "sock_recv_length" | "uring_submit" | "uring_complete"
            );
            // Fault counts and bytes sent go into call records only: a summary-mode run
            // would pay for them on every fault and send and report nothing of them.
            let record_hook = matches!(
                prog,
                "page_fault_user"
                    | "page_fault_kernel"
                    | "filemap_fault"
                    | "sock_send_length"
                    | "page_alloc"
                    | "tlb_flush"
            );
            let off = if message_hook && !opts.message_events {
                Some("not attached: only per-call runs without --bounded read them")
            } else if record_hook && opts.mode & mode::RECORDS == 0 {
                Some("not attached: only per-call records carry them")
            } else {
                None
            };
            if let Some(why) = off {
                hooks.push(Hook {
                    name: format!("{category}:{name}"),
                    error: Some(why.into()),
                    without,
                });
                continue;
            }
            // Raw tracepoints where this kernel allows (and, for those that read a task, the
            // thread id offset is known): they attach and release without the tracing
            // subsystem's waits.
            if let Some((raw, needs_task_pid)) = raw_twin(prog)
                && (task_pid.is_some() || !needs_task_pid)
                && crate::capture::attach::attach_raw_one(&mut ebpf, raw, name, &mut links).is_ok()
            {
                hooks.push(Hook {
                    name: format!("{category}:{name} (raw tracepoint)"),
                    error: None,
                    without,
                });
                continue;
            }
            let tp = tracepoint(&mut ebpf, prog)?;
            let error = match tp.attach(category, name) {
                Ok(id) => {
                    links.tracepoints.push((prog, id));
                    None
                }
                Err(e) => Some(format!("{e:#}")),
            };
            hooks.push(Hook {
                name: format!("{category}:{name}"),
                error,
                without,
            });
        }
        if opts.mode & mode::RECORDS != 0 || opts.summary_classes {
            hooks.push(cache_fd_classes(&mut ebpf, &hooks, &mut links));
        }
        let exact_btf = exact_btf_job
            .map(|j| {
                j.join()
                    .unwrap_or_else(|_| Err("the BTF reader thread failed".into()))
            })
            .unwrap_or_else(|| Err("benchmark floor".into()));
        let copy_timing = attach_copy_timing(&mut ebpf, &mut hooks, opts.sample_hz, exact_btf)?;
        Ok(Self {
            ebpf,
            stats,
            hooks,
            copy_timing,
            links,
            thread_slots: opts.thread_slots,
            diag,
            diag_sink,
        })
    }

    /// The loaded object, for modules that read their own maps.
    pub(crate) fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// Traces the process `pid` (a tgid) and, from now on, the children it forks: in its
    /// slot of the process table, or in the clash table when another process holds the slot
    /// (the kernel side does the same for children).
    pub fn trace_pid(&mut self, pid: u32) -> anyhow::Result<()> {
        let fail = || format!("failed to trace pid {pid}");
        let index = pid & (self.thread_slots - 1);
        let mut slots: aya::maps::Array<_, u32> = map_mut(&mut self.ebpf, "TRACED_SLOTS")?;
        let held = slots.get(&index, 0).with_context(fail)?;
        if held == 0 || held == pid {
            return slots.set(index, pid, 0).with_context(fail);
        }
        let mut used: aya::maps::Array<_, u32> = map_mut(&mut self.ebpf, "SPILL_USED")?;
        used.set(probe_common::SPILL_PROCS, 1, 0)
            .with_context(fail)?;
        let mut traced: HashMap<_, u32, u8> = map_mut(&mut self.ebpf, "TRACED")?;
        traced.insert(pid, 1, 0).with_context(fail)
    }

    /// The ring buffer of finished calls. Can be taken once.
    pub fn take_events(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .context("no EVENTS map (taken already?)")?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The sum over all CPUs of one counter.
    pub fn counter(&self, c: Counter) -> anyhow::Result<u64> {
        self.counter_slot(c as u32)
    }

    /// The sum over all CPUs of the counter in slot `slot`.
    pub fn counter_slot(&self, slot: u32) -> anyhow::Result<u64> {
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").context("no COUNTERS map")?)?;
        Ok(arr.get(&slot, 0)?.iter().sum())
    }
}

impl Probes {
    /// The kernel programs' diagnostics logged since the last call.
    pub fn diagnostics(&mut self) -> Vec<String> {
        if let Some(d) = &mut self.diag {
            d.flush();
        }
        self.diag_sink.take()
    }

    /// Copy-on-write counts per traced thread, summed over CPUs.
    pub fn cow_threads(&self) -> anyhow::Result<Vec<crate::analyze::cow::CowThread>> {
        let map: PerCpuHashMap<_, u32, probe_common::CowCounts> =
            PerCpuHashMap::try_from(self.ebpf.map("COW_THREADS").context("no COW_THREADS map")?)?;
        let mut out = Vec::new();
        for item in map.iter() {
            let (tid, v) = item.context("failed to read the COW_THREADS map")?;
            out.push(crate::analyze::cow::CowThread::from_per_cpu(tid, &v));
        }
        out.sort_by_key(|t| (t.pid, t.tid));
        Ok(out)
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.detach();
    }
}

impl Probes {
    /// Releases every attachment, so that no record is made after this (the maps stay
    /// readable); the tracepoints' own release goes on in the background (see
    /// [`Links::release`]).
    pub fn detach(&mut self) {
        self.links.release(&mut self.ebpf);
    }

    /// Stops tracing the processes `pids` (the run is over): the programs still attached
    /// find nothing to do for them.
    pub fn untrace(&mut self, pids: &[u32]) -> anyhow::Result<()> {
        let mask = self.thread_slots - 1;
        let mut slots: aya::maps::Array<_, u32> = map_mut(&mut self.ebpf, "TRACED_SLOTS")?;
        for &pid in pids {
            if slots.get(&(pid & mask), 0).ok() == Some(pid) {
                slots
                    .set(pid & mask, 0, 0)
                    .with_context(|| format!("failed to stop tracing pid {pid}"))?;
            }
        }
        let mut traced: HashMap<_, u32, u8> = map_mut(&mut self.ebpf, "TRACED")?;
        for &pid in pids {
            let _ = traced.remove(&pid);
        }
        Ok(())
    }

    /// Records the calls of the processes traced from now on that are in flight now, at their
    /// exit, as begun at this moment (for processes that were running before the run).
    pub fn record_calls_in_flight(&mut self) -> anyhow::Result<()> {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .context("failed to read the monotonic clock")?;
        let ns = now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64;
        let mut start: aya::maps::Array<_, u64> = map_mut(&mut self.ebpf, "RUN_START")?;
        start
            .set(0, ns, 0)
            .context("failed to set the run's start in the probes")
    }
}

impl Probes {
    /// Deletes the summary-mode sums of the given keys (of processes that ended), so that
    /// the map keeps room for the living.
    pub fn forget_summaries(&mut self, keys: &[SummaryKey]) -> anyhow::Result<()> {
        let mut map: PerCpuHashMap<_, SummaryKey, CallSummary> =
            PerCpuHashMap::try_from(self.ebpf.map_mut("SUMMARY").context("no SUMMARY map")?)?;
        for k in keys {
            // A key already gone is no error.
            let _ = map.remove(k);
        }
        Ok(())
    }
}

impl Probes {
    /// The summary-mode sums per process and call, added up over CPUs.
    pub fn summaries(&self) -> anyhow::Result<crate::analyze::summary::Summaries> {
        let map: PerCpuHashMap<_, SummaryKey, CallSummary> =
            PerCpuHashMap::try_from(self.ebpf.map("SUMMARY").context("no SUMMARY map")?)?;
        let mut per_cpu = Vec::new();
        for item in map.iter() {
            let (k, v) = item.context("failed to read the SUMMARY map")?;
            per_cpu.push((k, v.iter().copied().collect::<Vec<_>>()));
        }
        Ok(crate::analyze::summary::fold(per_cpu))
    }

    /// Run counts and times of every program, when `--self-stats` switched statistics on.
    pub fn program_stats(
        &self,
    ) -> anyhow::Result<Option<Vec<crate::capture::selfcost::ProgramStats>>> {
        if self.stats.is_none() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (name, prog) in self.ebpf.programs() {
            // A program of a hook this kernel lacks may not be loaded: it has no statistics.
            let Ok(info) = prog.info() else { continue };
            out.push(crate::capture::selfcost::ProgramStats {
                name: name.to_string(),
                runs: info.run_count(),
                run_ns: info.run_time().as_nanos() as u64,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(out))
    }
}

/// Exact copy timers where the kernel allows them, and the CPU sampler when asked for.
fn attach_copy_timing(
    ebpf: &mut Ebpf,
    hooks: &mut Vec<Hook>,
    hz: u64,
    btf: Result<aya::Btf, String>,
) -> anyhow::Result<CopyTiming> {
    let fentry = cpu_probes::attach_exact(ebpf, btf);
    let kprobes = match &fentry {
        Ok(h) if !h.is_empty() => Err("not needed: fentry works".to_string()),
        _ => cpu_probes::attach_exact_kprobes(ebpf),
    };
    for h in [&fentry, &kprobes].into_iter().flatten() {
        hooks.extend(h.iter().map(|name| Hook {
            name: name.clone(),
            error: None,
            without: "",
        }));
    }
    let timing = CopyTiming::choose(fentry, kprobes, hz);
    if let CopyTiming::Sampled { why, .. } | CopyTiming::Unmeasured { why } = &timing {
        hooks.push(Hook {
            name: "exact copy timers (fentry or kprobe on the copy routines)".into(),
            error: Some(why.clone()),
            without: if hz > 0 {
                "copy time is sampled"
            } else {
                "copy time is not measured"
            },
        });
    }
    if hz > 0 {
        let cpus = cpu_probes::attach_sampler(ebpf, hz)?;
        hooks.push(Hook {
            name: format!("perf_event:cpu-clock at {hz} Hz on {cpus} CPUs"),
            error: None,
            without: "",
        });
    }
    Ok(timing)
}

/// Lets the probes cache descriptor classes per (process, descriptor) when every way a
/// process's descriptors close reaches them: every call it makes (the raw `sys_enter` hook),
/// its forks, its `exec` and its end.
fn cache_fd_classes(ebpf: &mut Ebpf, hooks: &[Hook], links: &mut Links) -> Hook {
    let attached = |prefix: &str| {
        hooks
            .iter()
            .any(|h| h.error.is_none() && h.name.starts_with(prefix))
    };
    let result = if !attached("btf:descriptor classes") {
        Err(anyhow::anyhow!(
            "not attached: descriptors are not classified in the kernel"
        ))
    } else if !attached("raw_syscalls:") {
        Err(anyhow::anyhow!(
            "not attached: only the raw sys_enter hook sees every call that closes a descriptor"
        ))
    } else if !(attached("task:task_newtask") && attached("sched:sched_process_exit")) {
        Err(anyhow::anyhow!(
            "not attached: forks and exits are not seen"
        ))
    } else {
        crate::capture::attach::attach_raw_one(
            ebpf,
            "raw_process_exec",
            "sched_process_exec",
            links,
        )
        .and_then(|()| enable_fd_cache(ebpf))
    };
    Hook {
        name: "sched:sched_process_exec (raw tracepoint; descriptor classes cached per process)"
            .into(),
        error: result.err().map(|e| format!("{e:#}")),
        without: "descriptor classes are read from the kernel at every call",
    }
}

/// Marks the calls that close descriptors in `CALL_FDS`, then switches the cache on.
fn enable_fd_cache(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let mut map: aya::maps::Array<_, u32> = map_mut(ebpf, "CALL_FDS")?;
    for (nr, arg) in crate::capture::fdkind::descriptor_droppers() {
        let spec = map.get(&nr, 0).unwrap_or(0)
            | probe_common::CALL_FDS_DROPS
            | (arg << probe_common::CALL_FDS_DROP_SHIFT);
        map.set(nr, spec, 0)
            .with_context(|| format!("failed to mark call {nr} as closing descriptors"))?;
    }
    let mut on: aya::maps::Array<_, u32> = map_mut(ebpf, "FD_CACHE_ON")?;
    on.set(0, 1, 0)
        .context("failed to switch the descriptor class cache on")
}

/// The raw tracepoint program that does what tracepoint program `prog` does, and whether it
/// needs the offset of `task_struct.pid`.
fn raw_twin(prog: &str) -> Option<(&'static str, bool)> {
    Some(match prog {
        "sched_switch" => ("raw_sched_switch", true),
        "sched_wakeup" => ("raw_sched_wakeup", true),
        "task_newtask" => ("raw_task_newtask", true),
        "process_exit" => ("raw_process_exit", false),
        "skb_copy" => ("raw_skb_copy", false),
        "signal_generate" => ("raw_signal_generate", true),
        "signal_deliver" => ("raw_signal_deliver", false),
        "sk_data_ready" => ("raw_sk_data_ready", false),
        "sock_recv_length" => ("raw_sock_recv_length", false),
        "sock_send_length" => ("raw_sock_send_length", false),
        _ => return None,
    })
}

/// The probe object's map `name`, writable, as the map type `M`.
fn map_mut<'a, M>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<M>
where
    M: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .map_mut(name)
        .with_context(|| format!("no {name} map"))?;
    Ok(M::try_from(map)?)
}

/// Tells the probes which arguments of each traced call are descriptors, and where
/// its bytes are read.
fn fill_call_fds(ebpf: &mut Ebpf, calls: &[&'static Call]) -> anyhow::Result<()> {
    let mut map: aya::maps::Array<_, u32> = map_mut(ebpf, "CALL_FDS")?;
    for c in calls {
        anyhow::ensure!(
            c.nr < probe_common::CALL_FDS_SLOTS,
            "call {} has number {}, beyond the probes' table of {}",
            c.name,
            c.nr,
            probe_common::CALL_FDS_SLOTS
        );
        map.set(c.nr, crate::capture::fdkind::call_fds(c), 0)
            .with_context(|| format!("failed to set the descriptor arguments of {}", c.name))?;
    }
    Ok(())
}

pub(crate) fn tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut TracePoint> {
    let tp: &mut TracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the probe object"))?
        .try_into()?;
    if tp.fd().is_err() {
        tp.load()
            .with_context(|| format!("the kernel refused program {name}"))?;
    }
    Ok(tp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_counted_from_the_format() {
        let munmap = "name: sys_enter_munmap
format:
	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
	field:int common_pid;	offset:4;	size:4;	signed:1;

	field:int __syscall_nr;	offset:8;	size:4;	signed:1;
	field:unsigned long addr;	offset:16;	size:8;	signed:0;
	field:size_t len;	offset:24;	size:8;	signed:0;
";
        assert_eq!(count_args(munmap), 2);
        assert_eq!(count_args(""), 0);
    }
}
