//! How the call hooks are attached (two raw tracepoints that filter call numbers in the
//! kernel, or a tracepoint pair per traced call where raw tracepoints are unavailable), and
//! how attachments are released without keeping the user waiting.
use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{
        RawTracePoint, TracePoint, raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId,
    },
};

use crate::{capture::loader::Hook, syscalls::Call};

/// Environment variable that, set to `tracepoints`, attaches the per-call tracepoints even
/// where raw tracepoints work (to compare the two).
pub const HOOKS_ENV: &str = "IOPROF_SYSCALL_HOOKS";

/// Where the raw tracepoint programs find a call's first three arguments and its number in
/// the saved registers (`struct pt_regs`) of this architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallRegs {
    /// Byte offsets of the first, second and third argument: three adjacent words, in any
    /// order (the probes read them at once).
    pub args: [u32; 3],
    /// Byte offset of the call number.
    pub nr: u32,
}

impl CallRegs {
    /// The layout of this architecture, `None` where the profiler does not know it.
    pub fn of_this_arch() -> Option<Self> {
        if cfg!(target_arch = "x86_64") {
            // di, si, dx; orig_ax.
            Some(Self {
                args: [112, 104, 96],
                nr: 120,
            })
        } else if cfg!(target_arch = "aarch64") {
            // regs[0..3]; syscallno.
            Some(Self {
                args: [0, 8, 16],
                nr: 280,
            })
        } else {
            None
        }
    }
}

/// Attachments of one run, released by [`Links::release`].
#[derive(Default)]
pub struct Links {
    /// Tracepoint attachments, by program.
    pub tracepoints: Vec<(&'static str, TracePointLinkId)>,
    /// Raw tracepoint attachments, by program.
    pub raw: Vec<(&'static str, RawTracePointLinkId)>,
}

/// Attaches the call programs: raw tracepoints on `sys_enter`/`sys_exit` where this kernel
/// and architecture allow, else the `syscalls:sys_enter_*`/`sys_exit_*` tracepoints of each
/// call. Returns the hook line.
pub fn attach_calls(
    ebpf: &mut Ebpf,
    calls: &[&'static Call],
    regs: Option<CallRegs>,
    links: &mut Links,
) -> anyhow::Result<Hook> {
    let names = calls.iter().map(|c| c.name).collect::<Vec<_>>().join(",");
    let why_not_raw = if std::env::var(HOOKS_ENV).is_ok_and(|v| v == "tracepoints") {
        format!("{HOOKS_ENV}=tracepoints")
    } else if regs.is_none() {
        "call registers of this architecture unknown".into()
    } else {
        match attach_raw(ebpf, links) {
            Ok(()) => {
                return Ok(Hook {
                    name: format!(
                        "raw_syscalls:sys_enter/sys_exit (raw tracepoints, calls kept in the kernel: {names})"
                    ),
                    error: None,
                    without: "",
                });
            }
            Err(e) => format!("{e:#}"),
        }
    };
    for (prog, dir) in [("call_enter", "sys_enter"), ("call_exit", "sys_exit")] {
        for call in calls {
            let name = format!("{dir}_{}", call.name);
            // A program may not read past the record: calls of two arguments get theirs.
            let prog =
                if dir == "sys_enter" && crate::capture::loader::enter_args(call.name) == Some(2) {
                    "call_enter2"
                } else {
                    prog
                };
            let id = crate::capture::loader::tracepoint(ebpf, prog)?
                .attach("syscalls", &name)
                .with_context(|| format!("failed to attach to syscalls:{name}"))?;
            links.tracepoints.push((prog, id));
        }
    }
    Ok(Hook {
        name: format!(
            "syscalls:sys_enter/sys_exit_{{{names}}} (raw tracepoints not used: {why_not_raw})"
        ),
        error: None,
        without: "",
    })
}

/// Attaches both raw tracepoint programs, or neither.
fn attach_raw(ebpf: &mut Ebpf, links: &mut Links) -> anyhow::Result<()> {
    let mut done = Vec::new();
    for (prog, tp) in [
        ("raw_call_enter", "sys_enter"),
        ("raw_call_exit", "sys_exit"),
    ] {
        let attached = raw_program(ebpf, prog).and_then(|p| {
            p.attach(tp)
                .with_context(|| format!("failed to attach raw tracepoint {tp}"))
        });
        match attached {
            Ok(id) => done.push((prog, id)),
            Err(e) => {
                for (prog, id) in done {
                    if let Ok(p) = raw_program(ebpf, prog) {
                        let _ = p.detach(id);
                    }
                }
                return Err(e);
            }
        }
    }
    links.raw.extend(done);
    Ok(())
}

/// Attaches raw tracepoint program `prog` to the tracepoint `tp`.
pub fn attach_raw_one(
    ebpf: &mut Ebpf,
    prog: &'static str,
    tp: &str,
    links: &mut Links,
) -> anyhow::Result<()> {
    let id = raw_program(ebpf, prog)?
        .attach(tp)
        .with_context(|| format!("failed to attach raw tracepoint {tp}"))?;
    links.raw.push((prog, id));
    Ok(())
}

fn raw_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut RawTracePoint> {
    let p: &mut RawTracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the probe object"))?
        .try_into()?;
    if p.fd().is_err() {
        p.load()
            .with_context(|| format!("the kernel refused program {name}"))?;
    }
    Ok(p)
}

impl Links {
    /// Releases every attachment. Raw tracepoints are released here: the kernel frees them
    /// after a grace period without waiting for it. Releasing a tracepoint waits for a grace
    /// period, one tracepoint after another (tens of ms each): those are handed to a
    /// background process that releases them after this one has gone on, so that neither
    /// the report nor the shell waits for them.
    pub fn release(&mut self, ebpf: &mut Ebpf) {
        for (prog, id) in self.raw.drain(..) {
            if let Some(p) = ebpf
                .program_mut(prog)
                .and_then(|p| <&mut RawTracePoint>::try_from(p).ok())
            {
                let _ = p.detach(id);
            }
        }
        let mut owned = Vec::new();
        for (prog, id) in self.tracepoints.drain(..) {
            let tp: Option<&mut TracePoint> =
                ebpf.program_mut(prog).and_then(|p| p.try_into().ok());
            if let Some(link) = tp.and_then(|tp| tp.take_link(id).ok()) {
                owned.push(link);
            }
        }
        if owned.is_empty() {
            return;
        }
        release_in_background();
        // Where a background process holds them too, this only drops references.
        drop(owned);
    }
}

/// Forks a process that holds every descriptor of this one but its pipes, sockets and
/// terminals, and ends at once, detached: its end releases whatever it held last. Where the
/// fork fails, nothing happens (the caller's release then waits).
fn release_in_background() {
    // SAFETY: fork has no preconditions; the child below only makes async-signal-safe calls
    // (fork, setsid, fstat, close, _exit) before it ends.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: as above.
            unsafe {
                libc::setsid();
                if libc::fork() == 0 {
                    close_streams();
                }
                libc::_exit(0)
            }
        }
        child if child > 0 => {
            let mut status = 0;
            // SAFETY: reaps the child forked above, which ends at once.
            unsafe { libc::waitpid(child, &mut status, 0) };
        }
        _ => {}
    }
}

/// Closes the descriptors that someone may be reading to their end (pipes, sockets,
/// terminals), so that the released process does not hold a reader of this one's output.
///
/// # Safety
/// Only in a freshly forked child: it closes descriptors that other code may own.
unsafe fn close_streams() {
    // SAFETY: the caller's contract; fstat and close are async-signal-safe.
    unsafe {
        let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(3, 65536) as libc::c_int;
        for fd in 0..max {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 {
                continue;
            }
            let kind = st.st_mode & libc::S_IFMT;
            if kind == libc::S_IFIFO || kind == libc::S_IFSOCK || kind == libc::S_IFCHR {
                libc::close(fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CallRegs;

    #[test]
    fn the_argument_registers_are_three_adjacent_words() {
        let regs = CallRegs::of_this_arch().expect("a known architecture");
        let mut offs = regs.args;
        offs.sort_unstable();
        assert_eq!(
            [offs[1] - offs[0], offs[2] - offs[1]],
            [8, 8],
            "{:?}",
            regs.args
        );
    }
}
