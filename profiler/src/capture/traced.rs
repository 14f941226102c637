//! A traced call as user space sees it: the kernel's record, the call's name and descriptors,
//! and its stages.
use probe_common::{CallRecord, StageSplit};

use crate::{
    analyze::attribution::StageSource,
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
    pub stages: StageSplit,
    /// How the stages were found.
    pub source: StageSource,
}

impl TracedCall {
    /// Builds the view of a record. Descriptor classes come from the record where the probes
    /// saw them at the call's entry; otherwise `kind` resolves them now.
    pub fn new(rec: CallRecord, mut kind: impl FnMut(u32, i64) -> FdKind) -> Self {
        let call = syscalls::by_nr(rec.nr);
        let (fd, fd_out) = call.map_or((-1, -1), |c| c.fds(&rec.args));
        // The kernel's own split: a call that moved no data (a multiplexer's ready count, an
        // address) spent all of its time waiting.
        let stages = probe_common::split_stages(&rec, bytes_of(call, &rec) > 0);
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
            source: stages.by.into(),
            rec,
        }
    }

    /// Bytes the call moved, read as the kernel's summary reads them: not an address
    /// (`mmap`), a request count (`io_uring_enter`) or a message count (`recvmmsg`).
    pub fn bytes(&self) -> u64 {
        bytes_of(self.call, &self.rec)
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

/// Bytes a call moved (unknown calls: their positive return value).
fn bytes_of(call: Option<&Call>, rec: &CallRecord) -> u64 {
    match call {
        Some(c) => probe_common::call_bytes(c.bytes_spec(), rec),
        None => rec.ret.max(0) as u64,
    }
}
