//! Per-call CSV: one row per traced call. The columns are a stable interface, documented in
//! the README.
use std::{fs::File, io::Write, path::Path};

use serde::{Deserialize, Serialize};

use crate::traced::TracedCall;

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
            bytes: s.bytes,
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
        }
    }
}

/// Opens an output file for writing, so that an unwritable path fails before probes attach.
pub fn create(path: &Path) -> anyhow::Result<File> {
    crate::sink::create_output(path)
}

/// Writes the calls as CSV, one row each, with a header.
pub fn write_csv<W: Write>(out: W, calls: &[TracedCall]) -> anyhow::Result<()> {
    use crate::sink::CallSink as _;
    let mut w = crate::sink::CsvStream::new(out)?;
    for c in calls {
        w.call(c)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdkind::FdKind;
    use probe_common::CallRecord;

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
