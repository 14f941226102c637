//! What a file descriptor of a traced process refers to (socket, pipe, regular file …),
//! resolved from `/proc/PID/fd` while the process lives, and remembered.
use std::{collections::HashMap, fs, path::Path};

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
    /// The kind of `fd` in process `pid`, resolved now if not known yet.
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
    fn resolves_own_descriptors() {
        let f = std::fs::File::open("/proc/self/status").expect("open");
        use std::os::fd::AsRawFd;
        let mut k = FdKinds::default();
        let pid = std::process::id();
        assert_eq!(k.resolve(pid, f.as_raw_fd() as i64), FdKind::File);
        assert_eq!(k.get(pid, f.as_raw_fd() as i64), FdKind::File);
        assert_eq!(k.resolve(pid, -1), FdKind::Unknown);
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
