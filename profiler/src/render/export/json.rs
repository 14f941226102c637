//! JSON lines: one object per traced call, with the same fields, names and units as the
//! per-call CSV ([`CallRow`]), numbers as JSON numbers.
use std::io::Write;

use super::CallRow;

/// JSON lines written as rows come, one whole line per write to the buffer.
pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    /// Lines written to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// One row's line.
    pub fn row(&mut self, r: &CallRow) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Writes out what is buffered.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Writes one JSON object per row, one a line.
pub fn write_json<W: Write>(out: W, rows: &[CallRow]) -> anyhow::Result<()> {
    let mut j = JsonLines::new(out);
    for r in rows {
        j.row(r)?;
    }
    j.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::export::tests::sample_rows;

    #[test]
    fn every_line_reads_back_as_a_call_row() {
        let rows = sample_rows();
        let mut buf = Vec::new();
        write_json(&mut buf, &rows).expect("write");
        let text = String::from_utf8(buf).expect("utf8");
        assert_eq!(text.lines().count(), rows.len());
        for (line, row) in text.lines().zip(&rows) {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            // Numbers are numbers, names are strings.
            assert!(v["total_ns"].is_u64() && v["fd"].is_i64() && v["call"].is_string());
            let back: CallRow = serde_json::from_str(line).expect("row");
            assert_eq!(&back, row);
        }
    }
}
