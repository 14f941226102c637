//! The system calls the profiler knows: their names, numbers on this architecture, and what
//! role each plays in moving data.

/// What a call does with data, which decides how its time is attributed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Copies data from a kernel buffer to the process (`read`, `recvfrom` …).
    Receive,
    /// Copies data from the process to a kernel buffer (`write`, `sendto` …).
    Send,
    /// Moves data between descriptors inside the kernel (`splice`, `sendfile` …).
    Transfer,
    /// Waits for readiness of descriptors (`select`, `poll`, `epoll_wait` …).
    Multiplex,
    /// Anything else the profiler traces.
    Other,
    /// Maps or unmaps memory (`mmap`, `munmap`); returns an address, not bytes.
    Memory,
}

impl Role {
    /// Whether a positive return value of a call of this role counts bytes moved.
    pub fn returns_bytes(self) -> bool {
        matches!(self, Self::Receive | Self::Send | Self::Transfer)
    }
}

/// One traced system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// Name as in the `syscalls:sys_enter_NAME` tracepoint.
    pub name: &'static str,
    /// Number on this architecture.
    pub nr: u32,
    /// What it does with data.
    pub role: Role,
    /// Which arguments are the descriptors data comes from and goes to.
    pub fds: FdArgs,
}

/// Which raw arguments of a call are its file descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdArgs {
    /// No descriptor argument (`select`, `poll`).
    None,
    /// One descriptor, the first argument.
    First,
    /// Data flows from argument `from` to argument `to`.
    FromTo {
        /// Index of the source descriptor argument.
        from: usize,
        /// Index of the destination descriptor argument.
        to: usize,
    },
}

impl Call {
    /// Whether the call returns a count of messages, not bytes (`recvmmsg`, `sendmmsg`).
    pub fn returns_messages(&self) -> bool {
        matches!(self.name, "recvmmsg" | "sendmmsg")
    }

    /// Where the bytes a call moved are read: [`probe_common::CALL_BYTES_RET`] for a call
    /// whose positive return value counts them, the socket receives or sends for the batched
    /// socket calls, nothing for calls that move no data.
    pub fn bytes_spec(&self) -> u32 {
        match (
            self.role.returns_bytes(),
            self.returns_messages(),
            self.role,
        ) {
            (false, _, _) => 0,
            (true, false, _) => probe_common::CALL_BYTES_RET,
            (true, true, Role::Receive) => probe_common::CALL_BYTES_RECEIVED,
            (true, true, _) => probe_common::CALL_BYTES_SENT,
        }
    }

    /// `(fd, fd_out)` of a call from its raw arguments; -1 where there is none.
    pub fn fds(&self, args: &[u64; 3]) -> (i64, i64) {
        let fd = |i: usize| args[i] as i32 as i64;
        match self.fds {
            FdArgs::None => (-1, -1),
            FdArgs::First => (fd(0), -1),
            FdArgs::FromTo { from, to } => (fd(from), fd(to)),
        }
    }
}

macro_rules! calls {
    ($( $name:literal => $sys:ident, $role:ident, $fds:expr; )*) => {
        /// Every call the profiler can trace.
        pub const ALL: &[Call] = &[
            $( Call { name: $name, nr: libc::$sys as u32, role: Role::$role, fds: $fds }, )*
        ];
    };
}

calls! {
    "read" => SYS_read, Receive, FdArgs::First;
    "readv" => SYS_readv, Receive, FdArgs::First;
    "pread64" => SYS_pread64, Receive, FdArgs::First;
    "preadv" => SYS_preadv, Receive, FdArgs::First;
    "preadv2" => SYS_preadv2, Receive, FdArgs::First;
    "recvfrom" => SYS_recvfrom, Receive, FdArgs::First;
    "recvmsg" => SYS_recvmsg, Receive, FdArgs::First;
    "recvmmsg" => SYS_recvmmsg, Receive, FdArgs::First;
    "write" => SYS_write, Send, FdArgs::First;
    "writev" => SYS_writev, Send, FdArgs::First;
    "pwrite64" => SYS_pwrite64, Send, FdArgs::First;
    "pwritev" => SYS_pwritev, Send, FdArgs::First;
    "pwritev2" => SYS_pwritev2, Send, FdArgs::First;
    "sendto" => SYS_sendto, Send, FdArgs::First;
    "sendmsg" => SYS_sendmsg, Send, FdArgs::First;
    "sendmmsg" => SYS_sendmmsg, Send, FdArgs::First;
    "splice" => SYS_splice, Transfer, FdArgs::FromTo { from: 0, to: 2 };
    "sendfile64" => SYS_sendfile, Transfer, FdArgs::FromTo { from: 1, to: 0 };
    "select" => SYS_select, Multiplex, FdArgs::None;
    "poll" => SYS_poll, Multiplex, FdArgs::None;
    "epoll_wait" => SYS_epoll_wait, Multiplex, FdArgs::First;
    "pselect6" => SYS_pselect6, Multiplex, FdArgs::None;
    "ppoll" => SYS_ppoll, Multiplex, FdArgs::None;
    "epoll_pwait" => SYS_epoll_pwait, Multiplex, FdArgs::First;
    "io_uring_enter" => SYS_io_uring_enter, Multiplex, FdArgs::First;
    "io_getevents" => SYS_io_getevents, Multiplex, FdArgs::None;
    // The calls of the zero-copy methods.
    "vmsplice" => SYS_vmsplice, Transfer, FdArgs::First;
    "tee" => SYS_tee, Transfer, FdArgs::FromTo { from: 0, to: 1 };
    "copy_file_range" => SYS_copy_file_range, Transfer, FdArgs::FromTo { from: 0, to: 2 };
    "mmap" => SYS_mmap, Memory, FdArgs::None;
    "munmap" => SYS_munmap, Memory, FdArgs::None;
}

/// The calls traced when the user names none: every call that moves data, in its plain,
/// positioned, vectored and batched forms, and every call an I/O model waits in.
pub const DEFAULT: &[&str] = &[
    "read",
    "readv",
    "preadv",
    "preadv2",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "splice",
    // Where the I/O models wait, and the C library's aio helper's first try.
    "pread64",
    "select",
    "pselect6",
    "poll",
    "ppoll",
    "epoll_wait",
    "epoll_pwait",
    "io_uring_enter",
    "io_getevents",
    // Every call that moves a file's data, and the mappings of mmap.
    "write",
    "writev",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "sendfile64",
    "vmsplice",
    "tee",
    "copy_file_range",
    "mmap",
    "munmap",
];

/// The call with this number, if the profiler knows it.
pub fn by_nr(nr: u32) -> Option<&'static Call> {
    ALL.iter().find(|c| c.nr == nr)
}

/// The call with this tracepoint name, if the profiler knows it.
pub fn by_name(name: &str) -> Option<&'static Call> {
    ALL.iter().find(|c| c.name == name)
}

/// A printable name for a call number, known or not.
pub fn name_of(nr: u32) -> String {
    by_nr(nr).map_or_else(|| format!("syscall_{nr}"), |c| c.name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.nr, b.nr, "{} and {}", a.name, b.name);
            }
        }
    }

    #[test]
    fn defaults_are_known() {
        for name in DEFAULT {
            assert!(by_name(name).is_some(), "{name}");
        }
        assert_eq!(name_of(libc::SYS_recvfrom as u32), "recvfrom");
        assert_eq!(name_of(100_000), "syscall_100000");
    }

    #[test]
    fn the_default_list_has_every_call_that_moves_data() {
        for c in ALL.iter().filter(|c| c.role.returns_bytes()) {
            assert!(
                DEFAULT.contains(&c.name),
                "{} is not traced by default",
                c.name
            );
        }
        for name in [
            "readv", "writev", "preadv2", "pwritev2", "recvmmsg", "sendmmsg",
        ] {
            assert!(DEFAULT.contains(&name), "{name}");
        }
    }

    #[test]
    fn messages_and_addresses_are_no_bytes() {
        let spec = |n: &str| by_name(n).expect(n).bytes_spec();
        for n in ["read", "writev", "pwrite64", "splice", "copy_file_range"] {
            assert_eq!(spec(n), probe_common::CALL_BYTES_RET, "{n}");
        }
        assert_eq!(spec("recvmmsg"), probe_common::CALL_BYTES_RECEIVED);
        assert_eq!(spec("sendmmsg"), probe_common::CALL_BYTES_SENT);
        for n in [
            "mmap",
            "munmap",
            "poll",
            "select",
            "epoll_wait",
            "io_uring_enter",
        ] {
            assert_eq!(spec(n), 0, "{n}");
        }
    }

    #[test]
    fn descriptors_follow_the_data() {
        let splice = by_name("splice").expect("splice");
        assert_eq!(splice.fds(&[3, 0, 5]), (3, 5));
        let sendfile = by_name("sendfile64").expect("sendfile64");
        assert_eq!(sendfile.fds(&[7, 4, 0]), (4, 7));
        let read = by_name("read").expect("read");
        assert_eq!(read.fds(&[u32::MAX as u64, 0, 0]), (-1, -1));
    }
}
