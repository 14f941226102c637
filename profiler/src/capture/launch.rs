//! Starts a command held at a gate, so that it can be traced from its first instruction:
//! the child is forked, stops itself with SIGSTOP, and executes the command once continued.
//! Waiting at the gate makes no system call that the profiler traces.
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
    unistd::{ForkResult, Pid, execvp, fork, pipe2},
};

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
    /// Forks a child that will run `argv` once released, and waits until it has stopped.
    pub fn spawn(argv: &[String]) -> anyhow::Result<Self> {
        anyhow::ensure!(!argv.is_empty(), "no command to run");
        let args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .context("a command argument contains a NUL byte")?;
        let (err_r, err_w) =
            pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("failed to create a pipe")?;
        // SAFETY: the child only calls async-signal-safe functions (raise, execvp, write,
        // _exit) on memory prepared before the fork.
        match unsafe { fork() }.context("failed to fork")? {
            ForkResult::Child => {
                let _ = raise(Signal::SIGSTOP);
                let err = execvp(&args[0], &args).err().map_or(0, |e| e as i32);
                let bytes = err.to_ne_bytes();
                // SAFETY: writing a local buffer to the error pipe, then exiting.
                unsafe {
                    libc::write(err_w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
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
                    other => {
                        anyhow::bail!("the command's process did not reach its start ({other:?})")
                    }
                }
            }
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Lets the child run its command; fails when the command could not be executed.
    pub fn release(mut self, argv0: &str) -> anyhow::Result<Running> {
        kill(self.pid, Signal::SIGCONT).context("failed to release the command")?;
        self.released = true;
        let mut buf = [0u8; 4];
        let n = nix::unistd::read(&self.exec_err, &mut buf).unwrap_or(0);
        if n == 4 {
            let errno = nix::errno::Errno::from_raw(i32::from_ne_bytes(buf));
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
        let g = Gated::spawn(&["sh".into(), "-c".into(), "exit 3".into()]).expect("spawn");
        assert!(g.pid() > 0);
        let mut r = g.release("sh").expect("release");
        assert_eq!(wait(&mut r), Exit::Code(3));
    }

    #[test]
    fn missing_command_is_an_error() {
        let g = Gated::spawn(&["/nonexistent/cmd".into()]).expect("spawn");
        let e = g.release("/nonexistent/cmd").err().expect("must fail");
        assert!(
            format!("{e:#}").contains("cannot run `/nonexistent/cmd`"),
            "{e:#}"
        );
    }

    #[test]
    fn unreleased_child_is_reaped() {
        let g = Gated::spawn(&["true".into()]).expect("spawn");
        let pid = g.pid();
        drop(g);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
