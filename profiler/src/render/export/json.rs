//! JSON lines: one object per traced call, with the same fields, names and units as the
//! per-call CSV ([`CallRow`]), numbers as JSON numbers.
use std::io::Write;

use super::CallRow;

/// Writes one JSON object per row, one a line.
pub fn write_json<W: Write>(mut out: W, rows: &[CallRow]) -> anyhow::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut out, r)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
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
