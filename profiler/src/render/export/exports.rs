//! The exports one run was asked for (`--csv`, `--summary-csv`, `--json`, `--trace`): opened
//! before any probe is attached (the CSV gets its header then), written when the run ends in
//! one pass over the calls, each row handed to every export and dropped.
use std::{io::Write, path::PathBuf};

use super::{CallRow, json::JsonLines, output::Output, summary::Summarizer, trace::TraceStream};
use crate::capture::{
    decode::Record,
    sink::{CallSink as _, CsvStream},
};

/// The export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One CSV row per call.
    Csv,
    /// One CSV row per process × call kind × stage.
    SummaryCsv,
    /// One JSON object per call, one a line.
    Json,
    /// Chrome trace event JSON (Perfetto).
    Trace,
}

impl Format {
    /// The command-line option that asks for it.
    pub fn option(self) -> &'static str {
        match self {
            Self::Csv => "--csv",
            Self::SummaryCsv => "--summary-csv",
            Self::Json => "--json",
            Self::Trace => "--trace",
        }
    }
}

/// One export being written.
enum Writer {
    Csv(Box<CsvStream<Output>>),
    Summary(Summarizer, Output),
    Json(JsonLines<Output>),
    Trace(TraceStream<Output>),
}

impl Writer {
    /// The writer of `format`; the CSV's header is written now.
    fn new(format: Format, out: Output) -> anyhow::Result<Self> {
        Ok(match format {
            Format::Csv => Self::Csv(Box::new(CsvStream::new(out)?)),
            Format::SummaryCsv => Self::Summary(Summarizer::default(), out),
            Format::Json => Self::Json(JsonLines::new(out)),
            Format::Trace => Self::Trace(TraceStream::new(out)?),
        })
    }

    fn row(&mut self, r: &CallRow) -> anyhow::Result<()> {
        match self {
            Self::Csv(w) => w.row(r),
            Self::Summary(s, _) => {
                s.row(r);
                Ok(())
            }
            Self::Json(w) => w.row(r),
            Self::Trace(w) => w.row(r),
        }
    }

    /// Ends the export; `again` reads the rows a second time, for the summary's exact
    /// percentiles.
    fn finish<I: Iterator<Item = anyhow::Result<CallRow>>>(
        self,
        events: &[Record],
        again: impl FnOnce() -> anyhow::Result<I>,
    ) -> anyhow::Result<()> {
        match self {
            Self::Csv(mut w) => w.finish(),
            Self::Summary(s, mut out) => {
                let mut picks = s.second_pass();
                for r in again()? {
                    picks.row(&r?);
                }
                picks.write(&mut out)?;
                Ok(out.flush()?)
            }
            Self::Json(mut w) => w.finish(),
            Self::Trace(mut w) => w.finish(events),
        }
    }
}

/// An open export and the first error it met.
struct Open {
    format: Format,
    path: PathBuf,
    writer: Writer,
    error: Option<anyhow::Error>,
}

/// Open exports of a run.
pub struct Exports {
    open: Vec<Open>,
}

impl Exports {
    /// Opens every requested export; at most one may be standard output (`-`).
    pub fn open(requested: &[(Format, Option<&PathBuf>)]) -> anyhow::Result<Self> {
        let to_stdout: Vec<&str> = requested
            .iter()
            .filter(|(_, p)| p.is_some_and(|p| super::output::is_stdout(p)))
            .map(|(f, _)| f.option())
            .collect();
        anyhow::ensure!(
            to_stdout.len() <= 1,
            "only one output can go to standard output (-), not {}",
            to_stdout.join(" and ")
        );
        let mut open = Vec::new();
        for (format, p) in requested {
            if let Some(p) = p {
                open.push(Open {
                    format: *format,
                    path: (*p).clone(),
                    writer: Writer::new(*format, Output::open(p)?)?,
                    error: None,
                });
            }
        }
        Ok(Self { open })
    }

    /// True when an export goes to standard output (the terminal report then goes to
    /// standard error).
    pub fn uses_stdout(&self) -> bool {
        self.open.iter().any(|o| super::output::is_stdout(&o.path))
    }

    /// True when no export is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Writes every export from the rows `rows` gives, taken one at a time in one pass (a
    /// second one for `--summary-csv`); says what was written to files on `note`. An export
    /// that fails stops no other; a row that cannot be read ends the rows of every export,
    /// after those read so far are written, and is an error of each.
    pub fn write<I: Iterator<Item = anyhow::Result<CallRow>>>(
        mut self,
        mut rows: impl FnMut() -> anyhow::Result<I>,
        events: &[Record],
        note: &mut dyn Write,
        failed: &mut Vec<anyhow::Error>,
    ) {
        let mut n: u64 = 0;
        let mut cut = None;
        let first = rows().map_err(|e| cut = Some(format!("{e:#}"))).ok();
        for r in first.into_iter().flatten() {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    cut = Some(format!("{e:#}"));
                    break;
                }
            };
            for o in self.open.iter_mut().filter(|o| o.error.is_none()) {
                if let Err(e) = o.writer.row(&r) {
                    o.error = Some(e);
                }
            }
            n += 1;
        }
        // A second pass reads the same rows as the first.
        let mut again = || rows().map(|i| i.take(n as usize));
        for o in self.open {
            let written = match (o.error, &cut) {
                (Some(e), _) => Err(e),
                (None, Some(why)) => o
                    .writer
                    .finish(events, &mut again)
                    .and_then(|()| Err(anyhow::anyhow!("only the first {n} calls written: {why}"))),
                (None, None) => o.writer.finish(events, &mut again),
            };
            if let Err(e) = written {
                failed.push(e.context(format!("failed to write {}", o.path.display())));
                continue;
            }
            if !super::output::is_stdout(&o.path) {
                let _ = writeln!(
                    note,
                    "wrote {} ({}) for {n} calls",
                    o.path.display(),
                    o.format.option(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::export::tests::sample_rows;

    #[test]
    fn writes_each_export_and_refuses_two_on_stdout() {
        let dir = tempfile::Builder::new()
            .prefix("ioprof-exports-")
            .tempdir()
            .expect("scratch folder")
            .keep();
        std::fs::create_dir_all(&dir).expect("dir");
        let paths: Vec<PathBuf> = ["c.csv", "s.csv", "j.jsonl", "t.json"]
            .iter()
            .map(|n| dir.join(n))
            .collect();
        let formats = [Format::Csv, Format::SummaryCsv, Format::Json, Format::Trace];
        let req: Vec<_> = formats
            .iter()
            .copied()
            .zip(paths.iter().map(Some))
            .collect();
        let ex = Exports::open(&req).expect("open");
        assert!(!ex.uses_stdout());
        let mut note = Vec::new();
        let mut failed = Vec::new();
        ex.write(
            || Ok(sample_rows().into_iter().map(Ok)),
            &[],
            &mut note,
            &mut failed,
        );
        assert!(failed.is_empty(), "{failed:?}");
        let note = String::from_utf8(note).expect("utf8");
        assert_eq!(note.lines().count(), 4, "{note}");
        for p in &paths {
            assert!(
                std::fs::metadata(p).expect("written").len() > 0,
                "{}",
                p.display()
            );
        }
        std::fs::remove_dir_all(&dir).expect("clean");

        let dash = PathBuf::from("-");
        let e = Exports::open(&[(Format::Json, Some(&dash)), (Format::Trace, Some(&dash))])
            .err()
            .expect("two on stdout");
        assert!(format!("{e}").contains("--json and --trace"), "{e}");
        assert!(
            Exports::open(&[(Format::Json, Some(&dash)), (Format::Csv, None)])
                .expect("one")
                .uses_stdout()
        );
    }

    #[test]
    fn the_csv_has_its_header_at_once_and_a_cut_source_is_an_error_of_each_export() {
        let dir = tempfile::tempdir().expect("scratch folder");
        let (csv, json) = (dir.path().join("c.csv"), dir.path().join("j.jsonl"));
        let ex =
            Exports::open(&[(Format::Csv, Some(&csv)), (Format::Json, Some(&json))]).expect("open");
        let header = std::fs::read_to_string(&csv).expect("written at once");
        assert!(header.starts_with("pid,tid,call,fd,") && header.ends_with('\n'));
        assert_eq!(header.lines().count(), 1);
        let rows = sample_rows();
        let source = || {
            Ok(rows
                .iter()
                .take(2)
                .cloned()
                .map(Ok)
                .chain(std::iter::once(Err(anyhow::anyhow!("disk gone"))))
                .chain(rows.iter().skip(2).cloned().map(Ok)))
        };
        let (mut note, mut failed) = (Vec::new(), Vec::new());
        ex.write(source, &[], &mut note, &mut failed);
        assert_eq!(failed.len(), 2, "{failed:?}");
        for e in &failed {
            assert!(format!("{e:#}").contains("only the first 2 calls written: disk gone"));
        }
        // What was read before the error is written whole.
        let back = std::fs::read_to_string(&csv).expect("csv");
        assert_eq!(back.lines().count(), 3, "{back}");
        let json = std::fs::read_to_string(&json).expect("json");
        assert_eq!(json.lines().count(), 2, "{json}");
    }
}
