//! Ground truth: what a workload did, written as JSON with `--truth FILE`.
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// One system call the workload made and timed itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallTruth {
    /// The call's name.
    pub call: String,
    /// Thread that made it.
    pub tid: u32,
    /// Descriptor.
    pub fd: i32,
    /// CLOCK_MONOTONIC just before the call, ns.
    pub before_ns: u64,
    /// CLOCK_MONOTONIC just after it returned, ns.
    pub after_ns: u64,
    /// Its return value.
    pub ret: i64,
}

/// What a workload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    /// The workload's name.
    pub workload: String,
    /// Its process id.
    pub pid: u32,
    /// Messages (or chunks) the sender sent.
    pub messages: u64,
    /// Bytes the receiver received.
    pub bytes: u64,
    /// Bytes of the file moved, for file workloads.
    pub file_bytes: u64,
    /// Sender's pacing interval, ns (0: unpaced).
    pub interval_ns: u64,
    /// Wall time of the transfer, ns.
    pub wall_ns: u64,
    /// The calls the workload timed, in order.
    pub calls: Vec<CallTruth>,
    /// CPU time of the whole workload process in user mode during the run, ns (getrusage).
    #[serde(default)]
    pub cpu_user_ns: u64,
    /// CPU time of the whole workload process in the kernel during the run, ns (getrusage).
    #[serde(default)]
    pub cpu_sys_ns: u64,
    /// Calls of a tight loop, counted but not timed one by one (`eagain`, `getppid`,
    /// `readloop`).
    #[serde(default)]
    pub loop_calls: u64,
    // I/O models.
    /// Receive attempts that failed with `EAGAIN` (not listed in `calls`).
    #[serde(default)]
    pub attempts: u64,
    /// Units of the receiver's own work done while it waited (signal-driven, asynchronous).
    #[serde(default)]
    pub work: u64,
    // File transfers.
    /// Digest of the bytes that arrived ([`crate::transfer::Digest`]), for file transfers.
    #[serde(default)]
    pub digest: u64,
    /// Page faults (minor + major) of the sending thread during the transfer, counted by the
    /// kernel's own accounting (`getrusage(RUSAGE_THREAD)`).
    #[serde(default)]
    pub sender_faults: u64,
    /// What happened, in words, when a workload has more to say than numbers.
    #[serde(default)]
    pub outcome: String,
    /// Pages each process wrote once to make one copy-on-write fault a page.
    #[serde(default)]
    pub pages: u64,
    /// The child process the workload forked (0: none).
    #[serde(default)]
    pub child_pid: u32,
}

impl Truth {
    /// Notes one timed call.
    pub fn record(
        &mut self,
        call: &str,
        tid: u32,
        fd: i32,
        before_ns: u64,
        after_ns: u64,
        ret: i64,
    ) {
        self.calls.push(CallTruth {
            call: call.into(),
            tid,
            fd,
            before_ns,
            after_ns,
            ret,
        });
    }

    /// The timed calls with this name.
    pub fn calls_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a CallTruth> + 'a {
        self.calls.iter().filter(move |c| c.call == name)
    }

    /// Writes the truth as pretty JSON.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads a truth file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a truth file", path.display()))
    }
}

/// The calling thread's id.
pub fn gettid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// CPU time used so far by this process (all threads), user and system, ns.
pub fn cpu_ns() -> (u64, u64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_SELF needs nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } != 0 {
        return (0, 0);
    }
    // SAFETY: getrusage succeeded and filled the record (it was zeroed before anyway).
    let ru = unsafe { ru.assume_init() };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    (ns(ru.ru_utime), ns(ru.ru_stime))
}
