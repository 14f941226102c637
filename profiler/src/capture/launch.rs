//! Starts a command held at a gate, so that it can be traced from its first instruction:
//! the child is forked, takes the user it runs as, stops itself with SIGSTOP, and executes
//! the command once continued. Waiting at the gate makes no system call that the profiler
//! traces. The child dies with the profiler while it waits at the gate, and is forked before any
//! probe is loaded, so it never holds the probes' descriptors.
use std::{
    ffi::CString,
    os::fd::{AsRawFd, OwnedFd},
};

use anyhow::Context as _;
use nix::{
    sys::{
        signal::{Signal, kill, raise},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::{ForkResult, Gid, Pid, Uid, execvp, fork, pipe2},
};

/// The user a launched command runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User name (or the uid in digits when it has no name).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Every group of the user, the primary one included.
    pub groups: Vec<u32>,
}

impl RunAs {
    /// The user named `user` (a name or a numeric uid), with its groups.
    pub fn named(user: &str) -> anyhow::Result<Self> {
        let found = match user.parse::<u32>() {
            Ok(uid) => nix::unistd::User::from_uid(Uid::from_raw(uid)),
            Err(_) => nix::unistd::User::from_name(user),
        }
        .with_context(|| format!("cannot look up user `{user}`"))?
        .with_context(|| format!("no user `{user}`: give a user name or uid of this machine"))?;
        Ok(Self::of(found))
    }

    fn of(u: nix::unistd::User) -> Self {
        let groups = CString::new(u.name.as_bytes())
            .ok()
            .and_then(|n| nix::unistd::getgrouplist(&n, u.gid).ok())
            .unwrap_or_else(|| vec![u.gid]);
        Self {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            groups: groups.into_iter().map(Gid::as_raw).collect(),
        }
    }

    /// Who a command runs as when no user is named: under sudo (`SUDO_UID`, `SUDO_GID` set
    /// and the profiler root), the user who ran sudo; otherwise the profiler's own user
    /// (`None`).
    pub fn default_for(
        sudo_uid: Option<&str>,
        sudo_gid: Option<&str>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(uid) = sudo_uid else {
            return Ok(None);
        };
        if !Uid::effective().is_root() {
            return Ok(None);
        }
        let uid: u32 = uid
            .parse()
            .with_context(|| format!("SUDO_UID `{uid}` is not a uid: unset it or give --user"))?;
        let mut who = match nix::unistd::User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
        {
            Some(u) => Self::of(u),
            None => Self {
                name: uid.to_string(),
                uid,
                gid: uid,
                groups: Vec::new(),
            },
        };
        if let Some(gid) = sudo_gid {
            who.gid = gid.parse().with_context(|| {
                format!("SUDO_GID `{gid}` is not a gid: unset it or give --user")
            })?;
            if !who.groups.contains(&who.gid) {
                who.groups.push(who.gid);
            }
        }
        Ok(Some(who))
    }
}

impl std::fmt::Display for RunAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.name, self.uid, self.gid)
    }
}

/// What the child failed at, sent up the error pipe with the errno.
const FAILED_EXEC: u32 = 0;
const FAILED_USER: u32 = 1;

/// In the forked child: takes the user, then dies with the parent `parent`. Only
/// async-signal-safe calls. Returns the errno of a failed credential change.
fn child_setup(run_as: Option<&RunAs>, groups: &[libc::gid_t], parent: libc::pid_t) -> i32 {
    if let Some(who) = run_as {
        // SAFETY: plain system calls on a slice prepared before the fork.
        let failed = unsafe {
            libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(who.gid) != 0
                || libc::setuid(who.uid) != 0
        };
        if failed {
            return nix::errno::Errno::last_raw();
        }
    }
    // After the credential change, which clears the parent-death signal. A parent that died
    // before this call is seen by the parent pid check. The command gets SIGPIPE back (the
    // profiler ignores it, and an ignored signal stays ignored across exec).
    // SAFETY: signal, prctl and getppid are plain system calls.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() != parent {
            libc::_exit(127);
        }
    }
    0
}

/// A forked child stopped at its gate.
pub struct Gated {
    pid: Pid,
    exec_err: OwnedFd,
    released: bool,
}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Gated {
    /// Forks a child that will run `argv` once released (as `run_as`, or as the profiler's own
    /// user), and waits until it has stopped.
    pub fn spawn(argv: &[String], run_as: Option<&RunAs>) -> anyhow::Result<Self> {
        anyhow::ensure!(!argv.is_empty(), "no command to run");
        let args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .context("a command argument contains a NUL byte")?;
        let (err_r, err_w) =
            pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("failed to create a pipe")?;
        let groups: Vec<libc::gid_t> = run_as.map(|w| w.groups.clone()).unwrap_or_default();
        let parent = nix::unistd::getpid().as_raw();
        // SAFETY: the child only calls async-signal-safe functions (setgroups, setgid, setuid,
        // signal, prctl, getppid, raise, execvp, write, _exit) on memory prepared before the fork.
        match unsafe { fork() }.context("failed to fork")? {
            ForkResult::Child => {
                let (stage, err) = match child_setup(run_as, &groups, parent) {
                    0 => {
                        let _ = raise(Signal::SIGSTOP);
                        // Released: the command outlives a profiler killed from now on
                        // (untraced, as a tracer's tracee is once detached).
                        // SAFETY: prctl is a plain system call.
                        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0 as libc::c_ulong) };
                        let err = execvp(&args[0], &args).err().map_or(0, |e| e as i32);
                        (FAILED_EXEC, err)
                    }
                    err => (FAILED_USER, err),
                };
                let msg = [stage.to_ne_bytes(), (err as u32).to_ne_bytes()];
                // SAFETY: writing a local buffer to the error pipe, then exiting.
                unsafe {
                    libc::write(err_w.as_raw_fd(), msg.as_ptr().cast(), 8);
                    libc::_exit(127)
                }
            }
            ForkResult::Parent { child } => {
                drop(err_w);
                let gated = Self {
                    pid: child,
                    exec_err: err_r,
                    released: false,
                };
                match waitpid(child, Some(WaitPidFlag::WUNTRACED))
                    .context("failed to wait for the command")?
                {
                    WaitStatus::Stopped(_, _) => Ok(gated),
                    other => match (gated.child_error(), run_as) {
                        (Some((FAILED_USER, errno)), Some(who)) => {
                            anyhow::bail!("cannot run the command as {who}: {}", errno.desc())
                        }
                        _ => anyhow::bail!(
                            "the command's process did not reach its start ({other:?})"
                        ),
                    },
                }
            }
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// What the child failed at and why, once it has exited or executed the command (the
    /// pipe closes on exec: nothing to read then).
    fn child_error(&self) -> Option<(u32, nix::errno::Errno)> {
        let mut buf = [0u8; 8];
        let mut got = 0;
        while got < buf.len() {
            match nix::unistd::read(&self.exec_err, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        (got == buf.len()).then(|| (word(0), nix::errno::Errno::from_raw(word(4) as i32)))
    }

    /// Lets the child run its command; fails when the command could not be executed.
    pub fn release(mut self, argv0: &str) -> anyhow::Result<Running> {
        kill(self.pid, Signal::SIGCONT).context("failed to release the command")?;
        self.released = true;
        if let Some((_, errno)) = self.child_error() {
            let _ = waitpid(self.pid, None);
            anyhow::bail!("cannot run `{argv0}`: {}", errno.desc());
        }
        Ok(Running {
            pid: self.pid,
            exit: None,
        })
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        // Never released: end the stopped child and reap it.
        if !self.released {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// A released child.
pub struct Running {
    pid: Pid,
    exit: Option<Exit>,
}

impl Running {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// How it ended, if it has; never blocks.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<Exit>> {
        if self.exit.is_none() {
            self.exit = match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig as i32)),
                Ok(_) => None,
                Err(nix::errno::Errno::ECHILD) => Some(Exit::Code(0)),
                Err(e) => return Err(e).context("failed to wait for the command"),
            };
        }
        Ok(self.exit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(r: &mut Running) -> Exit {
        loop {
            if let Some(e) = r.try_wait().expect("wait") {
                return e;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn runs_after_release_with_its_exit_code() {
        let g = Gated::spawn(&["sh".into(), "-c".into(), "exit 3".into()], None).expect("spawn");
        assert!(g.pid() > 0);
        let mut r = g.release("sh").expect("release");
        assert_eq!(wait(&mut r), Exit::Code(3));
    }

    #[test]
    fn missing_command_is_an_error() {
        let g = Gated::spawn(&["/nonexistent/cmd".into()], None).expect("spawn");
        let e = g.release("/nonexistent/cmd").err().expect("must fail");
        assert!(
            format!("{e:#}").contains("cannot run `/nonexistent/cmd`"),
            "{e:#}"
        );
    }

    #[test]
    fn users_are_found_by_name_or_uid_and_sudo_names_the_default() {
        let root = RunAs::named("root").expect("root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(RunAs::named("0").expect("uid 0").name, "root");
        let e = RunAs::named("no-such-user-here").expect_err("unknown user");
        assert!(
            format!("{e:#}").contains("no user `no-such-user-here`"),
            "{e:#}"
        );
        // Without SUDO_UID the command runs as the profiler's own user (the sudo user is
        // checked by the root tests, which can take it).
        assert_eq!(RunAs::default_for(None, None).expect("no sudo"), None);
    }

    #[test]
    fn unreleased_child_is_reaped() {
        let g = Gated::spawn(&["true".into()], None).expect("spawn");
        let pid = g.pid();
        drop(g);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
