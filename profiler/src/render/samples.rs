//! The CPU-sample report (`--show samples`): how copy time was measured, the sampling table
//! per call kind and stage, and the folded stacks and flame graph files.
use std::fmt::Write as _;

use crate::{
    analyze::{
        classify::FrameClass,
        sampling::{GroupRow, SampleSet, exact_by_call, group, oncpu_by_stage, symbolize},
    },
    capture::{kallsyms::Kallsyms, traced::TracedCall},
    render::report::fmt_ns,
};

/// The sampling table: one row per call kind and stage.
pub fn table(rows: &[GroupRow], hz: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<7} {:>7} {:>6} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>9} {:>11}",
        "CPU samples: call",
        "stage",
        "samples",
        "copy%",
        "to-user",
        "fr-user",
        "memcpy",
        "fault",
        "sched",
        "other",
        "user",
        "on-CPU",
        "est. copy"
    );
    for r in rows {
        let n = |c: FrameClass| r.classes.get(&c).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{:<28} {:<7} {:>7} {:>5.1}% {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>9} {:>11}",
            r.call,
            r.stage,
            r.samples,
            100.0 * r.copy_fraction(),
            n(FrameClass::CopyToUser),
            n(FrameClass::CopyFromUser),
            n(FrameClass::CopyLeaf),
            n(FrameClass::PageFault),
            n(FrameClass::Sched),
            n(FrameClass::Other),
            r.user_mode,
            match r.oncpu_ns {
                Some(ns) => fmt_ns(ns as f64),
                None => format!("~{}", fmt_ns(r.oncpu_or_estimate(hz))),
            },
            format!("{} ({})", fmt_ns(r.est_copy_ns(hz)), r.copy_samples()),
        );
    }
    let _ = writeln!(
        out,
        "  copy% = samples in a copy routine (to user, from user, kernel memcpy) / samples; \
         est. copy = on-CPU time × copy% (copy samples in brackets: fewer samples, less sure); \
         ~ = on-CPU time estimated from the samples"
    );
    out
}

/// Where the sampling report writes its files.
#[derive(Default)]
pub struct Outputs {
    /// Folded stacks.
    pub folded: Option<(std::path::PathBuf, std::fs::File)>,
    /// SVG flame graph.
    pub flamegraph: Option<(std::path::PathBuf, std::fs::File)>,
}

/// Prints the copy timing line, the sampling table and the exact copy times, and writes the
/// folded stacks and the flame graph.
pub fn report(
    calls: &[TracedCall],
    set: &SampleSet,
    outputs: Outputs,
    out: &mut impl std::io::Write,
    failed: &mut Vec<anyhow::Error>,
) -> anyhow::Result<()> {
    let hz = set.timing.hz();
    writeln!(out, "{}", set.timing.describe(set.records.len() as u64))?;
    for (label, (ns, copies)) in exact_by_call(calls, &set.exact) {
        writeln!(
            out,
            "  {label}: exact copy time {} in {copies} copies",
            fmt_ns(ns as f64)
        )?;
    }
    if hz == 0 {
        return Ok(());
    }
    if set.lost > 0 {
        writeln!(out, "warning: {} samples lost (ring buffer full)", set.lost)?;
    }
    if set.kernel_stack_missing > 0 {
        writeln!(
            out,
            "warning: {} kernel stacks not stored",
            set.kernel_stack_missing
        )?;
    }
    let any_kernel_stack = set.records.iter().any(|r| r.kstack >= 0);
    let ksyms = match any_kernel_stack.then(Kallsyms::load).transpose() {
        Ok(k) => k.unwrap_or_default(),
        Err(e) => {
            writeln!(out, "warning: kernel frames are shown as addresses: {e}")?;
            Kallsyms::default()
        }
    };
    let samples = symbolize(set, calls, &ksyms);
    if samples.is_empty() {
        writeln!(
            out,
            "no CPU samples of the traced threads (the run was too short for {hz} Hz?)"
        )?;
    } else {
        let rows = group(&samples, &oncpu_by_stage(calls));
        write!(out, "\n{}", table(&rows, hz))?;
    }
    let lines = crate::render::flame::folded(&samples);
    // A file that cannot be written stops no other output: its error goes to `failed`.
    let file = |f| std::io::BufWriter::new(crate::capture::sink::Interruptible(f));
    if let Some((path, f)) = outputs.folded {
        match crate::render::flame::write_folded(&lines, file(f)) {
            Ok(()) => writeln!(
                out,
                "wrote {} folded stacks to {}",
                lines.len(),
                path.display()
            )?,
            Err(e) => failed.push(
                anyhow::Error::from(e).context(format!("failed to write {}", path.display())),
            ),
        }
    }
    if let Some((path, f)) = outputs.flamegraph {
        let title = format!("CPU samples at {hz} Hz by call and stage");
        let mut w = file(f);
        let drawn = crate::render::flame::write_flamegraph(&lines, &title, &mut w)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(std::io::Write::flush(&mut w)?));
        if let Err(e) = drawn {
            failed.push(e.context(format!("failed to write {}", path.display())));
        } else if lines.is_empty() {
            writeln!(
                out,
                "warning: the flame graph {} is empty: {}",
                path.display(),
                crate::render::flame::NO_SAMPLES
            )?;
        } else {
            writeln!(out, "wrote the flame graph to {}", path.display())?;
        }
    }
    Ok(())
}
