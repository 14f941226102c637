//! Calls kept on disk instead of in memory: every call of a run with a per-call export goes,
//! as it arrives, to an unlinked temporary file in the probes' own record layout (64 bytes
//! where the values fit, else 160), and is read back in arrival order when the exports are
//! written. Memory stays bounded however long the run; the file vanishes with the profiler.
use std::{
    fs::File,
    io::{BufReader, BufWriter, Read as _, Seek as _, Write as _},
    mem::size_of,
};

use anyhow::Context as _;
use probe_common::{CallRecord, CompactCall, NO_FD_ARG, RecordKind, fd_class};

use crate::capture::{
    decode::{Record, decode},
    fdkind::{FdClass, FdKind, fd_arg_spec},
    sink::CallSink,
    traced::TracedCall,
};

/// Bytes gathered before a write to the temporary file.
const BUFFER: usize = 256 << 10;

/// Writes every call it is given to an unlinked temporary file.
pub struct Spill {
    out: BufWriter<File>,
    calls: u64,
}

impl Spill {
    /// A spill to a new temporary file (in `TMPDIR`, made with `O_TMPFILE` where the file
    /// system allows, so that no name exists to follow or to open).
    pub fn new() -> anyhow::Result<Self> {
        let f = tempfile::tempfile()
            .context("failed to make a temporary file for the calls of the per-call exports")?;
        Ok(Self {
            out: BufWriter::with_capacity(BUFFER, f),
            calls: 0,
        })
    }

    /// The calls written, ready to be read back.
    pub fn into_calls(self) -> anyhow::Result<Spilled> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("failed to write the calls to the temporary file")?;
        Ok(Spilled {
            file,
            calls: self.calls,
        })
    }
}

impl CallSink for Spill {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        let rec = record_of(c);
        let spec = c.call.map_or(NO_FD_ARG | NO_FD_ARG << 8, fd_arg_spec);
        let written = match CompactCall::pack(&rec, spec & 0xff, (spec >> 8) & 0xff) {
            Some(small) => self.out.write_all(bytes_of(&small)),
            None => self.out.write_all(bytes_of(&rec)),
        };
        written.context("failed to write a call to the temporary file")?;
        self.calls += 1;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .context("failed to write the calls to the temporary file")
    }
}

/// The spilled calls of a run.
pub struct Spilled {
    file: File,
    calls: u64,
}

impl Spilled {
    /// Calls held.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Every call, in arrival order, read from the start of the file (one reader at a time:
    /// the readers share the file's offset).
    pub fn iter(&self) -> anyhow::Result<SpillReader> {
        let read = || -> std::io::Result<File> {
            let mut f = self.file.try_clone()?;
            f.rewind()?;
            Ok(f)
        };
        let file = read().context("failed to read back the temporary file of the calls")?;
        Ok(SpillReader {
            input: BufReader::with_capacity(BUFFER, file),
            left: self.calls,
        })
    }
}

/// Reads spilled calls back, one at a time.
pub struct SpillReader {
    input: BufReader<File>,
    left: u64,
}

impl SpillReader {
    fn next_call(&mut self) -> anyhow::Result<TracedCall> {
        let mut buf = [0u8; size_of::<CallRecord>()];
        self.input.read_exact(&mut buf[..4])?;
        let kind = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let len = if kind == RecordKind::CompactCall as u32 {
            size_of::<CompactCall>()
        } else {
            size_of::<CallRecord>()
        };
        self.input.read_exact(&mut buf[4..len])?;
        match decode(&buf[..len])? {
            // The classes were resolved when the call arrived and are in the record.
            Record::Call(rec) => Ok(TracedCall::new(rec, |_, _| FdKind::Unknown)),
            other => anyhow::bail!("a record that is no call: {other:?}"),
        }
    }
}

impl Iterator for SpillReader {
    type Item = anyhow::Result<TracedCall>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let c = self
            .next_call()
            .context("failed to read back the temporary file of the calls");
        if c.is_err() {
            self.left = 0;
        }
        Some(c)
    }
}

/// The call's record with its descriptor classes as resolved now, so that reading it back
/// needs no look at the process (which may have ended by then).
fn record_of(c: &TracedCall) -> CallRecord {
    CallRecord {
        kind: RecordKind::Call as u32,
        fd_class: raw_class(c.fd_class),
        fd_out_class: raw_class(c.fd_out_class),
        ..c.rec
    }
}

/// The probes' value of a class ([`FdClass::from_raw`] reversed).
fn raw_class(c: FdClass) -> u32 {
    match c {
        FdClass::File => fd_class::FILE,
        FdClass::Pipe => fd_class::PIPE,
        FdClass::Tcp => fd_class::TCP,
        FdClass::Udp => fd_class::UDP,
        FdClass::Unix => fd_class::UNIX,
        FdClass::Socket => fd_class::SOCKET,
        FdClass::Other => fd_class::OTHER,
        FdClass::Closed => fd_class::NOT_OPEN,
        FdClass::Unknown => fd_class::UNKNOWN,
    }
}

/// The bytes of a record as the probes send it.
fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: used only for `CallRecord` and `CompactCall`, `#[repr(C)]` records of integers
    // with explicit padding and no implicit holes (their sizes are pinned in probe-common's
    // tests), so every byte is initialised; the slice borrows `v` for its lifetime.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::export::CallRow;

    /// Calls of every shape: compact and not, two descriptors, classes resolved in user
    /// space, faults and sends (which do not fit the compact form), a failed call.
    fn calls() -> Vec<TracedCall> {
        let base = CallRecord {
            pid: 7,
            tid: 8,
            nr: libc::SYS_recvfrom as u32,
            args: [4, 0x7f00_0000_1000, 4096],
            ret: 4096,
            start_ns: 1_000_000,
            end_ns: 1_006_000,
            first_copy_ns: 1_005_000,
            copy_bytes: 4096,
            copy_events: 1,
            switches: 2,
            blocked_ns: 3_000,
            runq_ns: 500,
            wait_blocked_ns: 3_000,
            wait_runq_ns: 400,
            fd_class: fd_class::TCP,
            ..Default::default()
        };
        let splice = CallRecord {
            nr: libc::SYS_splice as u32,
            args: [3, 0, 9],
            ret: 65536,
            fd_class: fd_class::UNKNOWN,
            ..base
        };
        let faulting = CallRecord {
            nr: libc::SYS_read as u32,
            faults_user: 2,
            faults_kernel: 3,
            file_faults: 1,
            ..base
        };
        let sending = CallRecord {
            nr: libc::SYS_sendto as u32,
            sent_bytes: 1 << 40,
            start_ns: u64::MAX / 2,
            end_ns: u64::MAX / 2 + (1 << 35),
            ..base
        };
        let failed = CallRecord {
            ret: -11,
            first_copy_ns: 0,
            ..base
        };
        let unknown = CallRecord { nr: 1000, ..base };
        [base, splice, faulting, sending, failed, unknown]
            .into_iter()
            .map(|r| {
                TracedCall::new(r, |_, fd| match fd {
                    3 => FdKind::File,
                    _ => FdKind::Pipe,
                })
            })
            .collect()
    }

    /// `calls` spilled and ready to be read back.
    fn spilled(calls: &[TracedCall]) -> Spilled {
        let mut spill = Spill::new().expect("temporary file");
        for c in calls {
            spill.call(c).expect("spill");
        }
        spill.finish().expect("flush");
        spill.into_calls().expect("spilled")
    }

    #[test]
    fn calls_read_back_as_they_went_in() {
        let calls = calls();
        let back = spilled(&calls);
        assert_eq!(back.calls(), calls.len() as u64);
        for _ in 0..2 {
            let rows: Vec<CallRow> = back
                .iter()
                .expect("rewind")
                .map(|c| c.map(|c| CallRow::from(&c)))
                .collect::<anyhow::Result<_>>()
                .expect("read back");
            let want: Vec<CallRow> = calls.iter().map(CallRow::from).collect();
            assert_eq!(rows, want);
        }
        // The splice's classes were resolved in user space: file → pipe.
        let c = back
            .iter()
            .expect("rewind")
            .nth(1)
            .expect("one")
            .expect("ok");
        assert_eq!((c.fd_class, c.fd_out_class), (FdClass::File, FdClass::Pipe));
    }

    #[test]
    fn compact_calls_take_64_bytes() {
        let calls = calls();
        let back = spilled(&[calls[0].clone(), calls[2].clone()]);
        let len = back.file.metadata().expect("size").len();
        assert_eq!(
            len,
            (size_of::<CompactCall>() + size_of::<CallRecord>()) as u64
        );
    }

    #[test]
    fn a_cut_file_is_an_error_not_a_short_list() {
        let back = spilled(&calls());
        back.file.set_len(100).expect("cut");
        let read: Vec<anyhow::Result<TracedCall>> = back.iter().expect("rewind").collect();
        assert_eq!(read.len(), 2, "one call, then the error");
        assert!(read[0].is_ok() && read[1].is_err());
    }
}
