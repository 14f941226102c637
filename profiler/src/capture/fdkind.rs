//! What a file descriptor of a traced process refers to (socket, pipe, regular file …): the
//! class the probes read in the kernel at the call's entry, or, where they could not, resolved
//! from `/proc/PID/fd` while the process lives, and remembered.
use std::{collections::HashMap, fs, path::Path};

use probe_common::{NO_FD_ARG, fd_class};

use crate::syscalls::{Call, FdArgs};

/// The fine class of a descriptor: which kind of socket, pipe, file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FdClass {
    /// TCP socket (IPv4 or IPv6).
    Tcp,
    /// UDP socket (IPv4 or IPv6).
    Udp,
    /// Unix domain socket.
    Unix,
    /// Another socket (netlink, raw …), or a socket of unknown family.
    Socket,
    /// Pipe or FIFO.
    Pipe,
    /// Regular file.
    File,
    /// Device, eventfd, epoll instance and the like.
    Other,
    /// Not an open descriptor when the call began.
    Closed,
    /// Not resolved.
    Unknown,
}

impl FdClass {
    /// Name used in tables and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Unix => "unix",
            Self::Socket => "socket",
            Self::Pipe => "pipe",
            Self::File => "file",
            Self::Other => "other",
            Self::Closed => "closed",
            Self::Unknown => "unknown",
        }
    }

    /// The class the probes recorded; `None` when they could not tell.
    pub fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            fd_class::FILE => Self::File,
            fd_class::PIPE => Self::Pipe,
            fd_class::TCP => Self::Tcp,
            fd_class::UDP => Self::Udp,
            fd_class::UNIX => Self::Unix,
            fd_class::SOCKET => Self::Socket,
            fd_class::OTHER => Self::Other,
            fd_class::NOT_OPEN => Self::Closed,
            _ => return None,
        })
    }

    /// The coarse kind of this class.
    pub fn kind(self) -> FdKind {
        match self {
            Self::Tcp | Self::Udp | Self::Unix | Self::Socket => FdKind::Socket,
            Self::Pipe => FdKind::Pipe,
            Self::File => FdKind::File,
            Self::Other => FdKind::Other,
            Self::Closed | Self::Unknown => FdKind::Unknown,
        }
    }

    /// The class known from a coarse kind alone.
    pub fn from_kind(k: FdKind) -> Self {
        match k {
            FdKind::Socket => Self::Socket,
            FdKind::Pipe => Self::Pipe,
            FdKind::File => Self::File,
            FdKind::Other => Self::Other,
            FdKind::Unknown => Self::Unknown,
        }
    }
}

/// The probes' `CALL_FDS` value of `call`: its descriptor arguments and where its bytes are.
pub fn call_fds(call: &Call) -> u32 {
    fd_arg_spec(call) | call.bytes_spec() | probe_common::CALL_FDS_SET
}

/// The calls that close or replace descriptors of their process, each with the argument of
/// the one descriptor it closes or replaces ([`NO_FD_ARG`]: any number of them): the probes
/// drop their cached classes on these. Nothing else closes a process's descriptors but its
/// `exec` (a hook of its own) and its end.
pub fn descriptor_droppers() -> Vec<(u32, u32)> {
    let mut calls = vec![
        (libc::SYS_close, 0),
        (libc::SYS_dup3, 1),
        (libc::SYS_close_range, NO_FD_ARG),
        (libc::SYS_execve, NO_FD_ARG),
        (libc::SYS_execveat, NO_FD_ARG),
        (libc::SYS_io_uring_enter, NO_FD_ARG),
        (libc::SYS_unshare, NO_FD_ARG),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.push((libc::SYS_dup2, 1));
    calls
        .into_iter()
        .map(|(nr, arg)| (nr as u32, arg))
        .collect()
}

/// Which arguments of `call` the probes classify: `from | to << 8`, [`NO_FD_ARG`] for none.
pub fn fd_arg_spec(call: &Call) -> u32 {
    let (from, to) = match call.fds {
        FdArgs::None => (NO_FD_ARG, NO_FD_ARG),
        FdArgs::First => (0, NO_FD_ARG),
        FdArgs::FromTo { from, to } => (from as u32, to as u32),
    };
    from | (to << 8)
}

/// The kind of object behind a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FdKind {
    /// A socket.
    Socket,
    /// A pipe or FIFO.
    Pipe,
    /// A regular file.
    File,
    /// A character or block device, terminal, eventfd, epoll instance and the like.
    Other,
    /// Not resolved (the process or descriptor was gone).
    Unknown,
}

impl FdKind {
    /// Name used in tables and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Pipe => "pipe",
            Self::File => "file",
            Self::Other => "other",
            Self::Unknown => "unknown",
        }
    }

    /// The kind named by a `/proc/PID/fd/N` link target.
    pub fn from_link(target: &str) -> Self {
        if target.starts_with("socket:") {
            Self::Socket
        } else if target.starts_with("pipe:") {
            Self::Pipe
        } else if target.starts_with("anon_inode:") || target.starts_with("/dev/") {
            Self::Other
        } else if target.starts_with('/') {
            Self::File
        } else {
            Self::Other
        }
    }
}

/// Remembers the kind of each `(pid, fd)` seen.
#[derive(Debug, Default)]
pub struct FdKinds {
    known: HashMap<(u32, i64), FdKind>,
}

impl FdKinds {
    /// The kind of `fd` in process `pid`, resolved now if not known yet. A descriptor that
    /// could not be resolved (closed already) is not remembered: its number is likely to be
    /// reused, and the next call on it is resolved afresh.
    pub fn resolve(&mut self, pid: u32, fd: i64) -> FdKind {
        if fd < 0 {
            return FdKind::Unknown;
        }
        if let Some(&k) = self.known.get(&(pid, fd)) {
            return k;
        }
        let link = Path::new("/proc")
            .join(pid.to_string())
            .join("fd")
            .join(fd.to_string());
        // A descriptor not open now is not remembered: its number may be opened again later
        // (a file read at start-up, closed, then the number reused for the data file).
        let Ok(target) = fs::read_link(link) else {
            return FdKind::Unknown;
        };
        let kind = FdKind::from_link(&target.to_string_lossy());
        self.known.insert((pid, fd), kind);
        kind
    }

    /// The kind already known, without looking.
    pub fn get(&self, pid: u32, fd: i64) -> FdKind {
        self.known
            .get(&(pid, fd))
            .copied()
            .unwrap_or(FdKind::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_map_to_kinds() {
        assert_eq!(FdKind::from_link("socket:[1234]"), FdKind::Socket);
        assert_eq!(FdKind::from_link("pipe:[99]"), FdKind::Pipe);
        assert_eq!(FdKind::from_link("/tmp/x.bin"), FdKind::File);
        assert_eq!(FdKind::from_link("/dev/null"), FdKind::Other);
        assert_eq!(FdKind::from_link("anon_inode:[eventpoll]"), FdKind::Other);
    }

    #[test]
    fn kernel_classes_map_to_kinds() {
        assert_eq!(FdClass::from_raw(fd_class::TCP), Some(FdClass::Tcp));
        assert_eq!(
            FdClass::from_raw(fd_class::UNIX).map(FdClass::kind),
            Some(FdKind::Socket)
        );
        assert_eq!(
            FdClass::from_raw(fd_class::PIPE).map(FdClass::kind),
            Some(FdKind::Pipe)
        );
        assert_eq!(FdClass::from_raw(fd_class::NOT_OPEN), Some(FdClass::Closed));
        assert_eq!(FdClass::from_raw(fd_class::UNKNOWN), None);
        assert_eq!(FdClass::from_raw(fd_class::NONE), None);
        assert_eq!(FdClass::from_kind(FdKind::File), FdClass::File);
    }

    #[test]
    fn descriptor_arguments_are_encoded_for_the_probes() {
        let by = |n| crate::syscalls::by_name(n).expect(n);
        assert_eq!(fd_arg_spec(by("read")), NO_FD_ARG << 8);
        assert_eq!(fd_arg_spec(by("splice")), 2 << 8);
        assert_eq!(fd_arg_spec(by("sendfile64")), 1);
        assert_eq!(fd_arg_spec(by("poll")), NO_FD_ARG | (NO_FD_ARG << 8));
    }

    #[test]
    fn resolves_own_descriptors() {
        let f = std::fs::File::open("/proc/self/status").expect("open");
        use std::os::fd::AsRawFd;
        let mut k = FdKinds::default();
        let pid = std::process::id();
        assert_eq!(k.resolve(pid, f.as_raw_fd() as i64), FdKind::File);
        assert_eq!(k.get(pid, f.as_raw_fd() as i64), FdKind::File);
        assert_eq!(k.resolve(pid, -1), FdKind::Unknown);
        // A closed descriptor is not remembered as unknown: its number comes back. High
        // numbers (F_DUPFD from 1000) keep other tests' descriptors out of the way.
        use nix::fcntl::{FcntlArg, fcntl};
        let high = fcntl(&f, FcntlArg::F_DUPFD_CLOEXEC(1000)).expect("dup");
        nix::unistd::close(high).expect("close");
        let mut k = FdKinds::default();
        assert_eq!(k.resolve(pid, high as i64), FdKind::Unknown);
        let again = fcntl(&f, FcntlArg::F_DUPFD_CLOEXEC(1000)).expect("dup");
        assert_eq!(again, high);
        assert_eq!(k.resolve(pid, high as i64), FdKind::File);
        nix::unistd::close(again).expect("close");
    }

    #[test]
    fn a_closed_descriptor_is_looked_up_again() {
        use std::os::fd::AsRawFd;
        // A number far above those the test harness uses.
        const FD: i32 = 900;
        let mut k = FdKinds::default();
        let pid = std::process::id();
        assert_eq!(k.resolve(pid, FD as i64), FdKind::Unknown);
        let f = std::fs::File::open("/proc/self/status").expect("open");
        // SAFETY: duplicates a descriptor this test owns onto a number nothing else uses.
        assert_eq!(unsafe { libc::dup2(f.as_raw_fd(), FD) }, FD);
        assert_eq!(k.resolve(pid, FD as i64), FdKind::File);
        // SAFETY: closes the duplicate made above.
        unsafe { libc::close(FD) };
    }
}
