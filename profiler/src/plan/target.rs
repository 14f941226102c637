//! Decides whether a pid names a process the profiler may trace, and says why not: no such
//! process, a zombie, a thread id, a kernel thread, the profiler itself, another user's
//! process without the right, or a process that ended while the probes were being attached.
use std::io;

/// Why a pid cannot be traced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PidError {
    /// Pid 0.
    #[error("pid 0 is not a process (the kernel's idle task)")]
    Zero,
    /// The profiler's own pid.
    #[error("pid {0} is the profiler itself")]
    Myself(u32),
    /// Nothing has that pid.
    #[error("no process with pid {0}")]
    NoSuch(u32),
    /// `/proc/PID` cannot be read.
    #[error("not permitted to inspect pid {0} ({1}): run as root")]
    NoAccess(u32, String),
    /// A process that has exited but was not reaped.
    #[error("pid {0} is a zombie: it has exited and has no calls left to trace")]
    Zombie(u32),
    /// A thread id that is not its process's id.
    #[error("pid {pid} is a thread of process {tgid}: pass the process id {tgid}")]
    Thread {
        /// The thread id given.
        pid: u32,
        /// Its process.
        tgid: u32,
    },
    /// A kernel thread: it makes no system calls.
    #[error("pid {0} is a kernel thread: it makes no system calls to trace")]
    KernelThread(u32),
    /// Another user's process, without root or CAP_SYS_PTRACE.
    #[error(
        "not permitted to trace pid {pid}: it belongs to uid {owner}; tracing another user's \
         process needs root or CAP_SYS_PTRACE"
    )]
    OtherUser {
        /// The pid.
        pid: u32,
        /// Its real uid.
        owner: u32,
    },
    /// Gone between the check and the end of the attach.
    #[error("pid {0} exited during start-up, before the probes were attached")]
    ExitedDuringStartup(u32),
}

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Who is asking.
#[derive(Clone, Copy, Debug)]
pub struct Asker {
    /// The profiler's pid.
    pub pid: u32,
    /// Its real uid.
    pub uid: u32,
    /// Whether it may trace other users' processes.
    pub may_trace_others: bool,
}

impl Asker {
    /// This process.
    pub fn current() -> Self {
        Self {
            pid: std::process::id(),
            uid: nix::unistd::getuid().as_raw(),
            may_trace_others: crate::plan::privilege::may_trace_other_users(),
        }
    }
}

/// Judges a pid from the text of its `/proc/PID/stat` and `/proc/PID/status` (as read, or the
/// error of reading `stat`).
pub fn judge(
    pid: u32,
    asker: Asker,
    stat: io::Result<String>,
    status: Option<&str>,
) -> Result<(), PidError> {
    if pid == 0 {
        return Err(PidError::Zero);
    }
    if pid == asker.pid {
        return Err(PidError::Myself(pid));
    }
    let stat = stat.map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PidError::NoSuch(pid),
        _ => PidError::NoAccess(pid, e.to_string()),
    })?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    if fields.first() == Some(&"Z") {
        return Err(PidError::Zombie(pid));
    }
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    if flags & PF_KTHREAD != 0 {
        return Err(PidError::KernelThread(pid));
    }
    let field = |name: &str| -> Option<u32> {
        status?
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    if let Some(tgid) = field("Tgid:")
        && tgid != pid
    {
        return Err(PidError::Thread { pid, tgid });
    }
    if let Some(owner) = field("Uid:")
        && owner != asker.uid
        && !asker.may_trace_others
    {
        return Err(PidError::OtherUser { pid, owner });
    }
    Ok(())
}

/// Checks a live pid.
pub fn check(pid: u32) -> Result<(), PidError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
    judge(pid, Asker::current(), stat, status.as_deref())
}

/// Whether a process still runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()) != Some('Z'),
        Err(_) => false,
    }
}

/// The traced processes still running, as fork and exit records tell.
#[derive(Clone, Debug, Default)]
pub struct Population {
    live: std::collections::BTreeSet<u32>,
}

impl Population {
    /// The processes traced at the start.
    pub fn new(pids: &[u32]) -> Self {
        Self {
            live: pids.iter().copied().collect(),
        }
    }

    /// Takes a fork or an exit into account.
    pub fn apply(&mut self, p: &probe_common::ProcRecord) {
        if p.event == probe_common::ProcEvent::Fork as u32 {
            self.live.insert(p.pid);
        } else if p.event == probe_common::ProcEvent::Exit as u32 {
            self.live.remove(&p.pid);
        }
    }

    /// Whether every traced process is gone: none left by the records, or none of those left
    /// `alive` (a lost exit record must not keep the run going).
    pub fn all_gone(&self, alive: impl Fn(u32) -> bool) -> bool {
        !self.live.iter().any(|&p| alive(p))
    }
}

/// A kernel `comm` as text.
pub fn comm_str(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    printable(&String::from_utf8_lossy(&comm[..end]))
}

/// The command name of a process, `?` once it is gone.
pub fn comm_of(pid: u32) -> String {
    proc_comm(pid).unwrap_or_else(|| "?".into())
}

/// The command name of a running process, from `/proc`; `None` once it is gone.
pub fn proc_comm(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(printable(text.strip_suffix('\n').unwrap_or(&text)))
}

/// A name a traced process chose, as it may be shown: a process can name itself with any
/// bytes but NUL, so control characters (a terminal's escape sequences) become `?`, as `ps`
/// shows them.
pub fn printable(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKER: Asker = Asker {
        pid: 99,
        uid: 1000,
        may_trace_others: false,
    };

    fn stat(state: &str, flags: u64) -> io::Result<String> {
        Ok(format!(
            "42 (my (odd) name) {state} 1 42 42 0 -1 {flags} 0 0"
        ))
    }

    fn status(tgid: u32, uid: u32) -> String {
        format!("Name:\tx\nTgid:\t{tgid}\nPid:\t42\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    }

    #[test]
    fn a_live_process_of_the_same_user_is_fine() {
        assert_eq!(
            judge(42, ASKER, stat("S", 0), Some(&status(42, 1000))),
            Ok(())
        );
    }

    #[test]
    fn each_refusal_says_why() {
        let st = status(42, 1000);
        assert_eq!(
            judge(0, ASKER, stat("S", 0), Some(&st)),
            Err(PidError::Zero)
        );
        assert_eq!(
            judge(99, ASKER, stat("S", 0), Some(&st)),
            Err(PidError::Myself(99))
        );
        let gone = Err(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(judge(42, ASKER, gone, None), Err(PidError::NoSuch(42)));
        let denied = Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(
            judge(42, ASKER, denied, None),
            Err(PidError::NoAccess(42, _))
        ));
        assert_eq!(
            judge(42, ASKER, stat("Z", 0), Some(&st)),
            Err(PidError::Zombie(42))
        );
        assert_eq!(
            judge(42, ASKER, stat("S", PF_KTHREAD), Some(&st)),
            Err(PidError::KernelThread(42))
        );
        assert_eq!(
            judge(42, ASKER, stat("S", 0), Some(&status(40, 1000))),
            Err(PidError::Thread { pid: 42, tgid: 40 })
        );
        assert_eq!(
            judge(42, ASKER, stat("S", 0), Some(&status(42, 0))),
            Err(PidError::OtherUser { pid: 42, owner: 0 })
        );
        let root = Asker {
            may_trace_others: true,
            ..ASKER
        };
        assert_eq!(judge(42, root, stat("S", 0), Some(&status(42, 0))), Ok(()));
        let msg = PidError::ExitedDuringStartup(7).to_string();
        assert!(msg.contains("exited during start-up"), "{msg}");
    }

    #[test]
    fn population_follows_forks_and_exits() {
        use probe_common::{ProcEvent, ProcRecord};
        let rec = |event: ProcEvent, pid| ProcRecord {
            event: event as u32,
            pid,
            ..Default::default()
        };
        let mut p = Population::new(&[10]);
        p.apply(&rec(ProcEvent::Fork, 11));
        p.apply(&rec(ProcEvent::Exit, 10));
        assert!(!p.all_gone(|_| true), "the child still runs");
        assert!(
            p.all_gone(|pid| pid != 11),
            "its exit record was lost but it is gone"
        );
        p.apply(&rec(ProcEvent::Exit, 11));
        assert!(p.all_gone(|_| true));
        assert_eq!(comm_str(b"nginx\0\0\0\0\0\0\0\0\0\0\0"), "nginx");
        assert_eq!(comm_str(b"\x1b]0;x\x07y\n\0\0\0\0\0\0\0\0"), "?]0;x?y?");
        assert_eq!(
            proc_comm(std::process::id()).as_deref(),
            std::fs::read_to_string("/proc/self/comm")
                .ok()
                .as_deref()
                .map(str::trim_end)
        );
    }

    #[test]
    fn real_processes_are_judged() {
        assert_eq!(check(0), Err(PidError::Zero));
        assert_eq!(
            check(std::process::id()),
            Err(PidError::Myself(std::process::id()))
        );
        // pid_max is at most 2^22: this pid cannot exist.
        assert_eq!(check(4_194_305), Err(PidError::NoSuch(4_194_305)));
        assert_eq!(check(2), Err(PidError::KernelThread(2)), "kthreadd");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        // Not reaped yet: a zombie once it has exited.
        let pid = child.id();
        for _ in 0..200 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(check(pid), Err(PidError::Zombie(pid)));
        child.wait().expect("reap");
        assert_eq!(check(pid), Err(PidError::NoSuch(pid)));
    }
}
