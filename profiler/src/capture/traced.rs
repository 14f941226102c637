//! A traced call as user space sees it: the kernel's record, the call's name and descriptors,
//! and its stages.
use probe_common::CallRecord;

use crate::{
    analyze::attribution::{self, StageSource, Stages},
    capture::fdkind::{FdClass, FdKind},
    syscalls::{self, Call},
};

/// One call, decoded and attributed.
#[derive(Clone, Debug)]
pub struct TracedCall {
    /// What the kernel recorded.
    pub rec: CallRecord,
    /// The call, when the profiler knows its number.
    pub call: Option<&'static Call>,
    /// The descriptor data came from (-1: none).
    pub fd: i64,
    /// The descriptor data went to, for calls with two (-1: none).
    pub fd_out: i64,
    /// What `fd` refers to.
    pub fd_kind: FdKind,
    /// What `fd_out` refers to.
    pub fd_out_kind: FdKind,
    /// The fine class of `fd` (TCP, UDP, Unix socket …).
    pub fd_class: FdClass,
    /// The fine class of `fd_out`.
    pub fd_out_class: FdClass,
    /// Where its time went.
    pub stages: Stages,
    /// How the stages were found.
    pub source: StageSource,
}

impl TracedCall {
    /// Builds the view of a record. Descriptor classes come from the record where the probes
    /// saw them at the call's entry; otherwise `kind` resolves them now.
    pub fn new(rec: CallRecord, mut kind: impl FnMut(u32, i64) -> FdKind) -> Self {
        let call = syscalls::by_nr(rec.nr);
        let (fd, fd_out) = call.map_or((-1, -1), |c| c.fds(&rec.args));
        // A multiplexer returns a count of ready descriptors, not bytes: all of it is wait.
        let split = match call {
            Some(c) if c.role == syscalls::Role::Multiplex => CallRecord {
                ret: rec.ret.min(0),
                ..rec
            },
            _ => rec,
        };
        let mut stages = attribution::stages(&split);
        // An address (mmap), a request count (io_uring_enter) or a message count (recvmmsg)
        // is no byte count: the bytes are read as the kernel's summary reads them.
        if let Some(c) = call {
            stages.bytes = probe_common::call_bytes(c.bytes_spec(), &rec);
        }
        let mut class = |raw: u32, fd: i64| {
            if fd < 0 {
                FdClass::Unknown
            } else {
                FdClass::from_raw(raw).unwrap_or_else(|| FdClass::from_kind(kind(rec.pid, fd)))
            }
        };
        let fd_class = class(rec.fd_class, fd);
        let fd_out_class = class(rec.fd_out_class, fd_out);
        Self {
            call,
            fd,
            fd_out,
            fd_kind: fd_class.kind(),
            fd_out_kind: fd_out_class.kind(),
            fd_class,
            fd_out_class,
            stages,
            source: attribution::source(&split),
            rec,
        }
    }

    /// The call's name.
    pub fn name(&self) -> String {
        self.call
            .map_or_else(|| syscalls::name_of(self.rec.nr), |c| c.name.to_string())
    }

    /// Name and descriptor kinds, as the stage table groups calls: `recvfrom socket`,
    /// `splice file→pipe`.
    pub fn label(&self) -> String {
        if self.fd_out >= 0 {
            format!(
                "{} {}→{}",
                self.name(),
                self.fd_kind.as_str(),
                self.fd_out_kind.as_str()
            )
        } else if self.fd >= 0 {
            format!("{} {}", self.name(), self.fd_kind.as_str())
        } else {
            self.name()
        }
    }
}
