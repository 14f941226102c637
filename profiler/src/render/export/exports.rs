//! The exports one run was asked for (`--csv`, `--summary-csv`, `--json`, `--trace`): opened
//! before any probe is attached, written when the run ends.
use std::{io::Write, path::PathBuf};

use super::{
    CallRow, json::write_json, output::Output, summary::write_summary_csv, trace::write_trace,
    write_rows_csv,
};
use crate::capture::decode::Record;

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

/// Open exports of a run.
pub struct Exports {
    open: Vec<(Format, PathBuf, Output)>,
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
        for (f, p) in requested {
            if let Some(p) = p {
                open.push((*f, (*p).clone(), Output::open(p)?));
            }
        }
        Ok(Self { open })
    }

    /// True when an export goes to standard output (the terminal report then goes to
    /// standard error).
    pub fn uses_stdout(&self) -> bool {
        self.open
            .iter()
            .any(|(_, p, _)| super::output::is_stdout(p))
    }

    /// Writes every export; says what was written to files on `note`.
    pub fn write(
        self,
        rows: &[CallRow],
        events: &[Record],
        note: &mut dyn Write,
        failed: &mut Vec<anyhow::Error>,
    ) {
        for (f, path, mut out) in self.open {
            let written = match f {
                Format::Csv => write_rows_csv(&mut out, rows),
                Format::SummaryCsv => write_summary_csv(&mut out, rows),
                Format::Json => write_json(&mut out, rows),
                Format::Trace => write_trace(&mut out, rows, events),
            }
            .and_then(|()| Ok(out.flush()?));
            if let Err(e) = written {
                // The other exports are still written.
                failed.push(e.context(format!("failed to write {}", path.display())));
                continue;
            }
            if !super::output::is_stdout(&path) {
                let _ = writeln!(
                    note,
                    "wrote {} ({}) for {} calls",
                    path.display(),
                    f.option(),
                    rows.len()
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
        ex.write(&sample_rows(), &[], &mut note, &mut failed);
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
}
