//! Per-call CSV: one row per traced call. The columns are a stable interface, documented in
//! docs/outputs.md. The other exports (summary CSV, JSON lines, trace) live in the submodules and
//! are all made from the same [`CallRow`]s.
pub mod exports;
pub mod json;
pub mod output;
pub mod ranks;
pub mod summary;
pub mod trace;

use std::{fs::File, io::Write, path::Path};

use serde::{Deserialize, Serialize};

use crate::capture::traced::TracedCall;

/// One CSV row. Times are nanoseconds; `start_ns` is CLOCK_MONOTONIC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRow {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// System call name.
    pub call: String,
    /// Descriptor data came from (-1: none).
    pub fd: i64,
    /// What `fd` is: socket, pipe, file, other, unknown.
    pub fd_kind: String,
    /// Descriptor data went to, for calls with two (-1: none).
    pub fd_out: i64,
    /// What `fd_out` is.
    pub fd_out_kind: String,
    /// Return value.
    pub ret: i64,
    /// Bytes moved (`ret` when positive, else 0).
    pub bytes: u64,
    /// Entry time.
    pub start_ns: u64,
    /// Entry to exit.
    pub total_ns: u64,
    /// Waiting for data.
    pub wait_ns: u64,
    /// Copying data.
    pub copy_ns: u64,
    /// Asleep inside the call.
    pub blocked_ns: u64,
    /// Runnable, not running, inside the call.
    pub runq_ns: u64,
    /// Asleep during the wait stage.
    pub wait_blocked_ns: u64,
    /// Run queue during the wait stage.
    pub wait_runq_ns: u64,
    /// On CPU during the wait stage.
    pub wait_oncpu_ns: u64,
    /// How the stages were found: marker, oncpu, nodata.
    pub stage_source: String,
    /// Bytes counted by the copy markers.
    pub copy_bytes: u64,
    /// Times switched out inside the call.
    pub switches: u32,
    // I/O models.
    /// The I/O model the call's message shows (empty: the call is in no message).
    #[serde(default)]
    pub model: String,
    /// Index of the message the call belongs to within its process (-1: none).
    #[serde(default)]
    pub message: i64,
    /// How the call spent its wait: call, mux, completion, polling, none.
    #[serde(default)]
    pub wait_kind: String,
    // Page faults and socket sends inside the call.
    /// User-mode page faults inside the call.
    #[serde(default)]
    pub faults_user: u32,
    /// Kernel-mode page faults inside the call.
    #[serde(default)]
    pub faults_kernel: u32,
    /// Faults on file pages inside the call.
    #[serde(default)]
    pub file_faults: u32,
    /// Bytes handed to sockets inside the call.
    #[serde(default)]
    pub sent_bytes: u64,
    /// Fine class of `fd`: tcp, udp, unix, socket, pipe, file, other, closed, unknown.
    pub fd_class: String,
    /// Fine class of `fd_out`; `none` when there is no `fd_out`.
    pub fd_out_class: String,
    /// False for a call already in flight when tracing started: its `start_ns` is the
    /// run's start and its stages before that are unknown.
    #[serde(default = "known")]
    pub start_known: bool,
}

fn known() -> bool {
    true
}

impl From<&TracedCall> for CallRow {
    fn from(c: &TracedCall) -> Self {
        let s = &c.stages;
        Self {
            pid: c.rec.pid,
            tid: c.rec.tid,
            call: c.name(),
            fd: c.fd,
            fd_kind: c.fd_kind.as_str().into(),
            fd_out: c.fd_out,
            fd_out_kind: if c.fd_out >= 0 {
                c.fd_out_kind.as_str()
            } else {
                "none"
            }
            .into(),
            ret: c.rec.ret,
            bytes: c.bytes(),
            start_ns: c.rec.start_ns,
            total_ns: s.total_ns,
            wait_ns: s.wait_ns,
            copy_ns: s.copy_ns,
            blocked_ns: s.blocked_ns,
            runq_ns: s.runq_ns,
            wait_blocked_ns: s.wait_blocked_ns,
            wait_runq_ns: s.wait_runq_ns,
            wait_oncpu_ns: s.wait_oncpu_ns(),
            stage_source: c.source.as_str().into(),
            copy_bytes: c.rec.copy_bytes,
            switches: c.rec.switches,
            model: "none".into(),
            message: -1,
            wait_kind: crate::analyze::models::call_wait_kind(c).into(),
            faults_user: c.rec.faults_user,
            faults_kernel: c.rec.faults_kernel,
            file_faults: c.rec.file_faults,
            sent_bytes: c.rec.sent_bytes,
            fd_class: c.fd_class.as_str().into(),
            fd_out_class: if c.fd_out >= 0 {
                c.fd_out_class.as_str()
            } else {
                "none"
            }
            .into(),
            start_known: c.rec.flags & probe_common::call_flags::START_UNKNOWN == 0,
        }
    }
}

/// The rows of calls, in order.
pub fn rows(calls: &[TracedCall]) -> Vec<CallRow> {
    calls.iter().map(CallRow::from).collect()
}

/// Opens an output file for writing, so that an unwritable path fails before probes attach.
pub fn create(path: &Path) -> anyhow::Result<File> {
    crate::capture::sink::create_output(path)
}

/// Writes the calls as CSV, one row each, with a header.
pub fn write_csv<W: Write>(out: W, calls: &[TracedCall]) -> anyhow::Result<()> {
    write_rows_csv(out, &rows(calls))
}

/// Writes rows as CSV with a header (the same writer as the streamed CSV of `--bounded`).
pub fn write_rows_csv<W: Write>(out: W, rows: &[CallRow]) -> anyhow::Result<()> {
    use crate::capture::sink::CallSink as _;
    let mut w = crate::capture::sink::CsvStream::new(out)?;
    for r in rows {
        w.row(r)?;
    }
    w.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capture::fdkind::FdKind;
    use probe_common::CallRecord;

    /// Rows of hand-made calls: two receives split at a copy marker (pid 10, tid 11), a
    /// splice file→pipe without marker (tid 12), a failed read of another process (pid 20).
    pub(crate) fn sample_rows() -> Vec<CallRow> {
        let recv = |start: u64, end: u64, first_copy: u64| CallRecord {
            pid: 10,
            tid: 11,
            nr: libc::SYS_recvfrom as u32,
            args: [4, 0, 4096],
            ret: 4096,
            start_ns: start,
            end_ns: end,
            first_copy_ns: first_copy,
            copy_bytes: 4096,
            copy_events: 1,
            switches: 1,
            ..Default::default()
        };
        let mut a = recv(1_000, 6_000, 5_000);
        (a.blocked_ns, a.runq_ns, a.wait_blocked_ns, a.wait_runq_ns) = (3_500, 300, 3_500, 200);
        let b = recv(10_000, 17_000, 16_500);
        let splice = CallRecord {
            pid: 10,
            tid: 12,
            nr: libc::SYS_splice as u32,
            args: [3, 0, 5],
            ret: 65536,
            start_ns: 2_000,
            end_ns: 9_000,
            blocked_ns: 2_000,
            runq_ns: 1_000,
            ..Default::default()
        };
        let read = CallRecord {
            pid: 20,
            tid: 20,
            nr: libc::SYS_read as u32,
            args: [0, 0, 100],
            ret: -11,
            start_ns: 3_000,
            end_ns: 3_700,
            ..Default::default()
        };
        let calls: Vec<TracedCall> = [a, b, splice, read]
            .into_iter()
            .map(|r| {
                TracedCall::new(r, |_, fd| match fd {
                    3 => FdKind::File,
                    4 => FdKind::Socket,
                    _ => FdKind::Pipe,
                })
            })
            .collect();
        rows(&calls)
    }

    #[test]
    fn no_empty_cell_where_a_value_is_defined() {
        let mut buf = Vec::new();
        let rows = sample_rows();
        write_rows_csv(&mut buf, &rows).expect("write");
        let mut rdr = csv::Reader::from_reader(buf.as_slice());
        let header = rdr.headers().expect("header").clone();
        let mut n = 0;
        for rec in rdr.records() {
            let rec = rec.expect("record");
            for (name, cell) in header.iter().zip(rec.iter()) {
                assert!(!cell.is_empty(), "empty `{name}` in {rec:?}");
            }
            n += 1;
        }
        assert_eq!(n, rows.len());
        let back: Vec<CallRow> = csv::Reader::from_reader(buf.as_slice())
            .deserialize()
            .collect::<Result<_, _>>()
            .expect("read back");
        assert_eq!(back, rows);
        // Units as documented: stage times in ns add up for marker calls, bytes are `ret`.
        assert_eq!(
            (back[0].wait_ns, back[0].copy_ns, back[0].total_ns),
            (4_000, 1_000, 5_000)
        );
        assert_eq!(
            (back[0].wait_oncpu_ns, back[3].bytes, back[3].ret),
            (300, 0, -11)
        );
        assert_eq!(back[3].fd_out_kind, "none");
    }

    #[test]
    fn rows_read_back_with_the_documented_header() {
        let rec = CallRecord {
            pid: 10,
            tid: 11,
            nr: libc::SYS_splice as u32,
            args: [3, 0, 5],
            ret: 4096,
            start_ns: 100,
            end_ns: 900,
            ..Default::default()
        };
        let calls = [TracedCall::new(rec, |_, fd| {
            if fd == 3 { FdKind::File } else { FdKind::Pipe }
        })];
        let mut buf = Vec::new();
        write_csv(&mut buf, &calls).expect("write");
        let text = String::from_utf8(buf).expect("utf8");
        let header = text.lines().next().expect("header");
        assert!(header.starts_with(
            "pid,tid,call,fd,fd_kind,fd_out,fd_out_kind,ret,bytes,start_ns,total_ns,wait_ns,copy_ns,blocked_ns,runq_ns"
        ));
        let rows: Vec<CallRow> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .expect("read back");
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.call.as_str(), r.fd, r.fd_out, r.bytes),
            ("splice", 3, 5, 4096)
        );
        assert_eq!(
            (r.fd_kind.as_str(), r.fd_out_kind.as_str()),
            ("file", "pipe")
        );
        assert_eq!(
            (r.total_ns, r.copy_ns, r.stage_source.as_str()),
            (800, 800, "oncpu")
        );
    }
}
