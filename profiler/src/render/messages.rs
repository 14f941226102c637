//! The per-message table (`--show messages`): how each message was waited for and copied.
use std::{collections::BTreeMap, fmt::Write as _};

use crate::{
    analyze::models::{Message, MessageIndex, WaitKind, model_row},
    capture::traced::TracedCall,
    render::{
        export::CallRow,
        report::{fmt_bytes, fmt_ns},
    },
};

/// The message block of the terminal report: one per process with messages.
pub fn report(msgs: &[Message]) -> String {
    let mut by: BTreeMap<u32, Vec<Message>> = BTreeMap::new();
    for m in msgs {
        by.entry(m.pid).or_default().push(m.clone());
    }
    let mut out = String::new();
    for (pid, ms) in by {
        let r = model_row(&ms);
        let _ = writeln!(
            out,
            "messages of pid {pid}: {}, {}; model: {}",
            r.messages,
            fmt_bytes(r.bytes),
            r.model
        );
        let parts: Vec<String> = WaitKind::ALL
            .iter()
            .map(|k| format!("{} {:.1}%", k.as_str(), r.wait_pct[*k as usize]))
            .collect();
        let _ = writeln!(
            out,
            "  wait   mean {} per message: {}",
            fmt_ns(r.wait_ns),
            parts.join(", ")
        );
        let _ = writeln!(
            out,
            "  copy   mean {} per message, by the {}",
            fmt_ns(r.copy_ns),
            r.copier
        );
        let _ = writeln!(
            out,
            "  told   data arrival → process knew: {}",
            r.notify_ns
                .map_or_else(|| "no arrival seen".to_string(), fmt_ns)
        );
        let _ = writeln!(
            out,
            "  cost   {:.1} calls, {:.1} failed attempts, {} on CPU per message",
            r.calls,
            r.failed,
            fmt_ns(r.cpu_ns)
        );
        let _ = writeln!(out, "  slept longest: {}", r.blocker);
    }
    out
}

/// The per-call row of `c`, with the model and message it belongs to (none when the
/// messages do not cover it).
pub fn row(c: &TracedCall, index: &MessageIndex) -> CallRow {
    let mut row = CallRow::from(c);
    if let Some(m) = index.find(c.rec.pid, c.rec.start_ns) {
        row.model = m.model().into();
        row.message = m.index as i64;
    }
    row
}

/// The per-call CSV rows of `calls`, with the model and message each call belongs to.
pub fn rows(calls: &[TracedCall], msgs: &[Message]) -> Vec<CallRow> {
    let index = MessageIndex::new(msgs);
    calls.iter().map(|c| row(c, &index)).collect()
}
