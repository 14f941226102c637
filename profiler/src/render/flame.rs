//! Folded stacks (call kind and stage as root frames, then user frames, then kernel frames)
//! and the SVG flame graph drawn from them with `inferno`.
use std::{collections::BTreeMap, io::Write};

use crate::analyze::sampling::Sample;

/// A frame name made safe for the folded format (no `;`, no line breaks).
fn clean(name: &str) -> String {
    name.replace([';', '\n', '\r'], ":")
}

/// Folded lines, one per distinct stack: `CALL;STAGE;user…;kernel… COUNT`, root first.
/// User code (no call in flight) has the single root frame `user code`.
pub fn folded(samples: &[Sample]) -> Vec<String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for s in samples {
        let mut frames = vec![clean(&s.call), clean(s.stage)];
        frames.extend(s.user.iter().rev().map(|f| clean(f)));
        frames.extend(s.kernel.iter().rev().map(|f| clean(f)));
        *counts.entry(frames.join(";")).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(stack, n)| format!("{stack} {n}"))
        .collect()
}

/// A folded line split into frames and count, or `None` when it is not one.
pub fn parse_folded(line: &str) -> Option<(Vec<&str>, u64)> {
    let (stack, count) = line.rsplit_once(' ')?;
    let count = count.parse().ok()?;
    let frames: Vec<&str> = stack.split(';').collect();
    (!stack.is_empty() && frames.iter().all(|f| !f.is_empty())).then_some((frames, count))
}

/// Writes folded lines.
pub fn write_folded(lines: &[String], mut w: impl Write) -> std::io::Result<()> {
    for l in lines {
        writeln!(w, "{l}")?;
    }
    w.flush()
}

/// Draws the flame graph of folded lines as SVG; with no line, an SVG that says so.
pub fn write_flamegraph(lines: &[String], title: &str, mut w: impl Write) -> std::io::Result<()> {
    if lines.is_empty() {
        write!(
            w,
            "<?xml version=\"1.0\" standalone=\"no\"?>\n\
             <svg version=\"1.1\" width=\"600\" height=\"60\" \
             xmlns=\"http://www.w3.org/2000/svg\">\n\
             <text x=\"10\" y=\"35\">{NO_SAMPLES}</text>\n</svg>\n"
        )?;
        return w.flush();
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "samples".to_string();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), w)
}

/// What an empty flame graph says.
pub const NO_SAMPLES: &str = "no CPU samples of the traced threads";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::classify::FrameClass;

    fn samples() -> Vec<Sample> {
        let s = Sample {
            call: "read file".into(),
            stage: "copy",
            user: vec!["read".into(), "main".into()],
            kernel: vec![
                "rep_movs_alternative".into(),
                "_copy_to_iter".into(),
                "filemap_read".into(),
            ],
            class: Some(FrameClass::CopyToUser),
        };
        let odd = Sample {
            call: "user code".into(),
            stage: "user",
            user: vec!["a;b".into()],
            kernel: vec![],
            class: None,
        };
        vec![s.clone(), s, odd]
    }

    #[test]
    fn folded_lines_are_root_first_and_counted() {
        let lines = folded(&samples());
        assert_eq!(
            lines,
            vec![
                "read file;copy;main;read;filemap_read;_copy_to_iter;rep_movs_alternative 2",
                "user code;user;a:b 1",
            ]
        );
        for l in &lines {
            let (frames, n) = parse_folded(l).expect("parses");
            assert!(frames.len() >= 3 && n >= 1);
        }
        assert_eq!(parse_folded("a;b x"), None);
        assert_eq!(parse_folded("a;;b 3"), None);
    }

    #[test]
    fn flamegraph_is_svg_with_the_frames() {
        let mut svg = Vec::new();
        write_flamegraph(&folded(&samples()), "t", &mut svg).expect("svg");
        let svg = String::from_utf8(svg).expect("utf8");
        assert!(svg.starts_with("<?xml"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("rep_movs_alternative"));
        assert!(svg.contains("read file"));
    }

    #[test]
    fn an_empty_flamegraph_says_so() {
        let mut out = Vec::new();
        write_flamegraph(&[], "t", &mut out).expect("an empty graph is no error");
        let svg = String::from_utf8(out).expect("utf-8");
        assert!(svg.contains("<svg") && svg.contains(NO_SAMPLES), "{svg}");
    }
}
