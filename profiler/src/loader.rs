//! Loads the kernel probes, attaches them to the hooks this kernel offers, and hands out the
//! maps user space reads. Computes nothing about stages.
use std::{fmt, path::Path};

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use probe_common::{Counter, DEFAULT_RINGBUF_BYTES};

use crate::syscalls::Call;

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
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            calls: Vec::new(),
            ringbuf_bytes: DEFAULT_RINGBUF_BYTES,
        }
    }
}

/// The loaded, attached probes.
pub struct Probes {
    ebpf: Ebpf,
    /// Every hook tried, attached or not.
    pub hooks: Vec<Hook>,
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

impl Probes {
    /// Loads the probes and attaches them. Fails when the calls cannot be traced at all; a
    /// missing optional hook is recorded in [`Probes::hooks`].
    pub fn load(opts: &LoadOptions) -> anyhow::Result<Self> {
        if PROBE.is_empty() {
            anyhow::bail!(
                "this profiler was built without its kernel probes (bpf-linker was missing); \
                 build it with `cargo xtask build`"
            );
        }
        crate::privilege::check()?;
        ensure_tracefs()?;
        // issue 6: descriptor classes at entry need this kernel's structure layout.
        let fd_offsets = crate::btf::Btf::from_kernel().and_then(|b| b.fd_offsets());
        let mut loader = EbpfLoader::new();
        loader.map_max_entries("EVENTS", opts.ringbuf_bytes);
        if let Ok(o) = &fd_offsets {
            loader.override_global("FD_OFFSETS", o, true);
        }
        let mut ebpf = loader
            .load(PROBE)
            .context("failed to load the probe object into the kernel")?;
        let mut hooks = Vec::new();
        fill_call_fds(&mut ebpf, &opts.calls)?;
        hooks.push(Hook {
            name: "btf:descriptor classes at entry".into(),
            error: fd_offsets.err().map(|e| e.to_string()),
            without: "descriptor kinds are read from /proc when a record arrives (unknown once the process has exited)",
        });

        for (prog, dir) in [("call_enter", "sys_enter"), ("call_exit", "sys_exit")] {
            let tp = tracepoint(&mut ebpf, prog)?;
            for call in &opts.calls {
                let name = format!("{dir}_{}", call.name);
                tp.attach("syscalls", &name)
                    .with_context(|| format!("failed to attach to syscalls:{name}"))?;
            }
        }
        hooks.push(Hook {
            name: format!(
                "syscalls:sys_enter/sys_exit_{{{}}}",
                opts.calls
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            error: None,
            without: "",
        });

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
        ] {
            let tp = tracepoint(&mut ebpf, prog)?;
            let error = tp.attach(category, name).err().map(|e| format!("{e:#}"));
            hooks.push(Hook {
                name: format!("{category}:{name}"),
                error,
                without,
            });
        }
        Ok(Self { ebpf, hooks })
    }

    /// Traces the process `pid` (a tgid) and, from now on, the children it forks.
    pub fn trace_pid(&mut self, pid: u32) -> anyhow::Result<()> {
        let mut traced: HashMap<_, u32, u8> =
            HashMap::try_from(self.ebpf.map_mut("TRACED").context("no TRACED map")?)?;
        traced
            .insert(pid, 1, 0)
            .with_context(|| format!("failed to trace pid {pid}"))
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
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").context("no COUNTERS map")?)?;
        Ok(arr.get(&(c as u32), 0)?.iter().sum())
    }
}

/// Tells the probes which arguments of each traced call are descriptors (issue 6).
fn fill_call_fds(ebpf: &mut Ebpf, calls: &[&'static Call]) -> anyhow::Result<()> {
    let mut map: HashMap<_, u32, u32> =
        HashMap::try_from(ebpf.map_mut("CALL_FDS").context("no CALL_FDS map")?)?;
    for c in calls {
        map.insert(c.nr, crate::fdkind::fd_arg_spec(c), 0)
            .with_context(|| format!("failed to set the descriptor arguments of {}", c.name))?;
    }
    Ok(())
}

fn tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut TracePoint> {
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
