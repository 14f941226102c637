//! Chrome trace event JSON for the Perfetto UI (ui.perfetto.dev) and `chrome://tracing`: a
//! track per thread, each call a slice with its wait and copy stages as child slices, and
//! signals and copies outside calls as instant events on the thread they concern.
use std::{collections::BTreeSet, io::Write};

use probe_common::SignalEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::CallRow;
use crate::capture::decode::Record;

/// A trace file: the JSON object form of the Chrome trace event format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Every event.
    #[serde(rename = "traceEvents")]
    pub trace_events: Vec<TraceEvent>,
    /// How the viewer shows times (`ns`).
    #[serde(rename = "displayTimeUnit")]
    pub display_time_unit: String,
}

/// One trace event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Slice or event name.
    pub name: String,
    /// Category: `call`, `stage`, `signal`, `copy`, or absent for metadata.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cat: String,
    /// Phase: `X` complete slice, `i` instant, `M` metadata.
    pub ph: String,
    /// Start, microseconds of CLOCK_MONOTONIC (three decimals: nanosecond precision).
    #[serde(default)]
    pub ts: f64,
    /// Duration of a slice, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dur: Option<f64>,
    /// Process id.
    pub pid: u32,
    /// Thread id: the track.
    pub tid: u32,
    /// Scope of an instant event (`t`: its thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s: Option<String>,
    /// Details shown when the event is selected.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub args: Value,
}

/// Nanoseconds to the format's microseconds.
fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

/// The format's microseconds back to nanoseconds.
pub fn ns(us: f64) -> u64 {
    (us * 1_000.0).round() as u64
}

fn slice(
    name: &str,
    cat: &str,
    r: &CallRow,
    start_ns: u64,
    dur_ns: u64,
    args: Value,
) -> TraceEvent {
    TraceEvent {
        name: name.into(),
        cat: cat.into(),
        ph: "X".into(),
        ts: us(start_ns),
        dur: Some(us(dur_ns)),
        pid: r.pid,
        tid: r.tid,
        s: None,
        args,
    }
}

fn metadata(name: &str, pid: u32, tid: u32, value: String) -> TraceEvent {
    TraceEvent {
        name: name.into(),
        cat: String::new(),
        ph: "M".into(),
        ts: 0.0,
        dur: None,
        pid,
        tid,
        s: None,
        args: json!({ "name": value }),
    }
}

fn instant(name: String, cat: &str, pid: u32, tid: u32, time_ns: u64, args: Value) -> TraceEvent {
    TraceEvent {
        name,
        cat: cat.into(),
        ph: "i".into(),
        ts: us(time_ns),
        dur: None,
        pid,
        tid,
        s: Some("t".into()),
        args,
    }
}

/// The call slice of a row and its stage children. Marker calls are split at the first copy:
/// wait then copy, adding up to the call. Other calls have stage durations that are sums (time
/// asleep, time on CPU), not intervals: they are drawn wait first, copy after it, inside the
/// call, and say so in their arguments.
fn call_slices(id: usize, r: &CallRow) -> Vec<TraceEvent> {
    let label = if r.fd_out_kind != "none" {
        format!("{} {}→{}", r.call, r.fd_kind, r.fd_out_kind)
    } else if r.fd >= 0 {
        format!("{} {}", r.call, r.fd_kind)
    } else {
        r.call.clone()
    };
    let mut out = vec![slice(
        &label,
        "call",
        r,
        r.start_ns,
        r.total_ns,
        json!({
            "id": id, "call": r.call, "fd": r.fd, "fd_kind": r.fd_kind, "fd_out": r.fd_out,
            "fd_out_kind": r.fd_out_kind, "ret": r.ret, "bytes": r.bytes,
            "stage_source": r.stage_source, "switches": r.switches,
            "blocked_ns": r.blocked_ns, "runq_ns": r.runq_ns,
        }),
    )];
    let placed = if r.stage_source == "marker" {
        "interval"
    } else {
        "sum: drawn at the start of the call, not where it happened"
    };
    // The kernel's sums are clamped to the call in attribution; clamp again so that a child
    // never leaves its parent whatever the input.
    let wait = r.wait_ns.min(r.total_ns);
    let copy = r.copy_ns.min(r.total_ns - wait);
    if wait > 0 {
        out.push(slice(
            "wait",
            "stage",
            r,
            r.start_ns,
            wait,
            json!({
                "id": id, "placement": placed, "blocked_ns": r.wait_blocked_ns,
                "runq_ns": r.wait_runq_ns, "oncpu_ns": r.wait_oncpu_ns,
            }),
        ));
    }
    if copy > 0 {
        let name = if r.stage_source == "marker" {
            "copy"
        } else {
            "copy (on cpu)"
        };
        out.push(slice(
            name,
            "stage",
            r,
            r.start_ns + wait,
            copy,
            json!({ "id": id, "placement": placed, "copy_bytes": r.copy_bytes }),
        ));
    }
    out
}

/// The instant event of a record other than a call, if it has one.
fn instant_of(e: &Record) -> Option<TraceEvent> {
    if let Record::Signal(s) = e {
        let what = if s.event == SignalEvent::Generate as u32 {
            "sent"
        } else {
            "delivered"
        };
        return Some(instant(
            format!("{} {what}", crate::analyze::movement::signal_name(s.sig)),
            "signal",
            s.pid,
            s.tid,
            s.time_ns,
            json!({ "sig": s.sig, "code": s.code, "result": s.result, "current_pid": s.current_pid }),
        ));
    }
    if let Record::Copy(c) = e {
        return Some(instant(
            "copy outside a call".into(),
            "copy",
            c.pid,
            c.tid,
            c.time_ns,
            json!({ "bytes": c.bytes }),
        ));
    }
    // Page faults: when fault records exist, return an instant (`cat: "fault"`) here, on the
    // faulting thread, with the address and whether it was file-backed in its args.
    None
}

/// The trace, written as rows come: the object's opening at once, each call's slices as its
/// row arrives, then the instant events and the names of the processes and threads seen
/// (the format does not order its events). Holds only the set of threads.
pub struct TraceStream<W: Write> {
    out: W,
    threads: BTreeSet<(u32, u32)>,
    calls: usize,
    events: usize,
}

impl<W: Write> TraceStream<W> {
    /// A trace writing to `out`.
    pub fn new(mut out: W) -> anyhow::Result<Self> {
        out.write_all(b"{\"traceEvents\":[")?;
        Ok(Self {
            out,
            threads: BTreeSet::new(),
            calls: 0,
            events: 0,
        })
    }

    fn event(&mut self, e: &TraceEvent) -> anyhow::Result<()> {
        if self.events > 0 {
            self.out.write_all(b",")?;
        }
        serde_json::to_writer(&mut self.out, e)?;
        self.events += 1;
        Ok(())
    }

    /// The slices of one call.
    pub fn row(&mut self, r: &CallRow) -> anyhow::Result<()> {
        self.threads.insert((r.pid, r.tid));
        for e in call_slices(self.calls, r) {
            self.event(&e)?;
        }
        self.calls += 1;
        Ok(())
    }

    /// The instant events of `events`, the track names, and the object's end.
    pub fn finish(&mut self, events: &[Record]) -> anyhow::Result<()> {
        for e in events.iter().filter_map(instant_of) {
            self.threads.insert((e.pid, e.tid));
            self.event(&e)?;
        }
        let threads = std::mem::take(&mut self.threads);
        let pids: BTreeSet<u32> = threads.iter().map(|t| t.0).collect();
        for &p in &pids {
            self.event(&metadata("process_name", p, 0, format!("pid {p}")))?;
        }
        for &(p, t) in &threads {
            self.event(&metadata("thread_name", p, t, format!("tid {t}")))?;
        }
        self.out.write_all(b"],\"displayTimeUnit\":\"ns\"}\n")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Writes the trace of a run as one JSON object.
pub fn write_trace<W: Write>(out: W, rows: &[CallRow], events: &[Record]) -> anyhow::Result<()> {
    let mut t = TraceStream::new(out)?;
    for r in rows {
        t.row(r)?;
    }
    t.finish(events)
}

/// The trace of a run, as [`write_trace`] writes it.
pub fn build(rows: &[CallRow], events: &[Record]) -> anyhow::Result<Trace> {
    let mut buf = Vec::new();
    write_trace(&mut buf, rows, events)?;
    Ok(serde_json::from_slice(&buf)?)
}

/// Checks that every stage slice lies within its call's slice on the same track; returns the
/// number of stage slices checked, or what is wrong.
pub fn check_nesting(t: &Trace) -> Result<usize, String> {
    let id = |e: &TraceEvent| e.args.get("id").and_then(Value::as_u64);
    let calls: std::collections::HashMap<u64, &TraceEvent> = t
        .trace_events
        .iter()
        .filter(|e| e.ph == "X" && e.cat == "call")
        .filter_map(|e| id(e).map(|i| (i, e)))
        .collect();
    let mut n = 0;
    for s in t.trace_events.iter().filter(|e| e.cat == "stage") {
        let i = id(s).ok_or_else(|| format!("stage slice without id: {s:?}"))?;
        let c = calls
            .get(&i)
            .ok_or_else(|| format!("stage of no call: {s:?}"))?;
        let (cs, ce) = (ns(c.ts), ns(c.ts) + ns(c.dur.unwrap_or(0.0)));
        let (ss, se) = (ns(s.ts), ns(s.ts) + ns(s.dur.unwrap_or(0.0)));
        if (s.pid, s.tid) != (c.pid, c.tid) {
            return Err(format!("stage on another track than its call: {s:?} {c:?}"));
        }
        if ss < cs || se > ce || s.ph != "X" {
            return Err(format!(
                "stage [{ss}, {se}] outside its call [{cs}, {ce}]: {s:?}"
            ));
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::export::tests::sample_rows;
    use probe_common::{CopyRecord, RecordKind, SignalRecord};

    #[test]
    fn trace_parses_and_stages_nest_in_their_calls() {
        let rows = sample_rows();
        let events = [
            Record::Signal(SignalRecord {
                kind: RecordKind::Signal as u32,
                event: SignalEvent::Deliver as u32,
                pid: 10,
                tid: 11,
                sig: libc::SIGIO,
                time_ns: 8_000,
                ..Default::default()
            }),
            Record::Copy(CopyRecord {
                kind: RecordKind::Copy as u32,
                pid: 10,
                tid: 13,
                bytes: 100,
                time_ns: 9_000,
            }),
        ];
        let mut buf = Vec::new();
        write_trace(&mut buf, &rows, &events).expect("write");
        let t: Trace = serde_json::from_slice(&buf).expect("parses");
        // Stage slices: marker calls give wait and copy, the splice (on cpu) gives both, the
        // failed read only a wait.
        assert_eq!(check_nesting(&t), Ok(2 + 2 + 2 + 1));
        let calls: Vec<_> = t.trace_events.iter().filter(|e| e.cat == "call").collect();
        assert_eq!(calls.len(), rows.len());
        assert_eq!(calls[0].name, "recvfrom socket");
        assert_eq!(
            (ns(calls[0].ts), calls[0].dur.map(ns)),
            (1_000, Some(5_000))
        );
        let names: Vec<_> = t
            .trace_events
            .iter()
            .filter(|e| e.ph == "i")
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["SIGIO delivered", "copy outside a call"]);
        // A track per thread, named; the copy's thread has no call but still has its track.
        let threads: Vec<_> = t
            .trace_events
            .iter()
            .filter(|e| e.name == "thread_name")
            .map(|e| e.tid)
            .collect();
        assert_eq!(threads, [11, 12, 13, 20]);
    }

    #[test]
    fn a_stage_outside_its_call_is_caught() {
        let rows = sample_rows();
        let moved = |f: fn(&mut TraceEvent)| {
            let mut t = build(&rows, &[]).expect("trace");
            f(t.trace_events
                .iter_mut()
                .find(|e| e.cat == "stage")
                .expect("stage"));
            check_nesting(&t)
        };
        assert!(moved(|e| e.ts -= 0.001).is_err());
        assert!(
            moved(|e| e.tid += 1)
                .expect_err("caught")
                .contains("another track")
        );
    }

    #[test]
    fn stages_never_leave_the_call_even_with_inconsistent_rows() {
        let mut rows = sample_rows();
        rows[0].wait_ns = rows[0].total_ns + 50;
        rows[0].copy_ns = 90;
        assert!(check_nesting(&build(&rows, &[]).expect("trace")).is_ok());
    }
}
