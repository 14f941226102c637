//! `cargo xtask profile models`: runs every I/O model workload under the profiler with the
//! same settings and prints one table of how each waited and copied. Orchestration only: the
//! numbers are the profiler's (`--model-json`).
use std::{fmt::Write as _, process::Command, process::ExitCode, process::Stdio};

use anyhow::Context as _;
use serde_json::Value;
use workloads::clock::fmt_ns;

use crate::{build_release, setup, workspace};

/// The wait kinds of the profiler's model row, in its order.
const KINDS: [&str; 6] = ["call", "mux", "completion", "polling", "free", "runq"];

/// Runs every model with the profiler options `prof` and the workload options `target`.
pub fn profile_all(prof: &[String], target: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !prof
            .iter()
            .any(|a| a == "--csv" || a == "--model-json" || a == "--"),
        "`profile models` writes no per-call files: profile one model for --csv"
    );
    let env = setup::ensure()?;
    build_release(&env)?;
    let bin = workspace().join("target/release");
    let scratch = crate::scratch("models")?;
    let dir = scratch.path();
    let mut rows = Vec::new();
    for model in workloads::models() {
        eprintln!("xtask: profiling {model} {}", target.join(" "));
        let json = dir.join(format!("{model}.json"));
        let out = Command::new(bin.join("profiler"))
            // A polling receiver makes a record every few microseconds.
            .args(["--ringbuf-size", "67108864"])
            .args(prof)
            .arg("--model-json")
            .arg(&json)
            .arg("--")
            .arg(bin.join("workloads"))
            .arg(model)
            .args(target)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("failed to start the profiler")?;
        anyhow::ensure!(
            out.status.success(),
            "profiling {model} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&json)
            .with_context(|| format!("no model summary for {model}"))?;
        let row: Value = serde_json::from_str(&text)
            .with_context(|| format!("bad model summary for {model}"))?;
        rows.push((model.to_string(), row));
    }
    drop(scratch);
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}
/// The model table: one row per workload.
fn table(rows: &[(String, Value)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<13} {:>5} {:>9} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:<13} {:>8} {:>6} {:>9}  slept longest",
        "workload",
        "model",
        "msgs",
        "wait",
        "call%",
        "mux%",
        "cmpl%",
        "poll%",
        "free%",
        "runq%",
        "copy",
        "copied by",
        "told",
        "calls",
        "cpu"
    );
    for (name, r) in rows {
        let f = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let pct: Vec<String> = (0..KINDS.len())
            .map(|i| {
                let v = r
                    .get("wait_pct")
                    .and_then(|p| p.get(i))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                format!("{v:>6.1}")
            })
            .collect();
        let told = r
            .get("notify_ns")
            .and_then(Value::as_f64)
            .map_or_else(|| "-".to_string(), fmt_ns);
        let _ = writeln!(
            out,
            "{:<14} {:<13} {:>5} {:>9} {} {:>8} {:<13} {:>8} {:>6.1} {:>9}  {}",
            name,
            s("model"),
            f("messages"),
            fmt_ns(f("wait_ns")),
            pct.join(" "),
            fmt_ns(f("copy_ns")),
            s("copier"),
            told,
            f("calls"),
            fmt_ns(f("cpu_ns")),
            s("blocker")
        );
    }
    let _ = writeln!(
        out,
        "wait: mean per message (start of waiting → start of the copy), split by how it was spent \
         (call: asleep in the read call; mux: in select/poll/epoll; cmpl: waiting for \
         completions; poll: failed attempts on CPU; free: own code; runq: runnable); \
         told: data arrival → the process knew; calls, cpu: per message"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_model() {
        let row: Value = serde_json::from_str(
            r#"{"model":"multiplexing","messages":100,"wait_ns":5000000.0,
                "wait_pct":[0,98.5,0,0.5,1,0],"copy_ns":12000.0,"notify_ns":40000.0,
                "calls":3.0,"cpu_ns":50000.0,"copier":"caller","blocker":"tid 7 (main thread) in poll"}"#,
        )
        .expect("json");
        let t = table(&[("poll".into(), row)]);
        let line = t.lines().nth(1).expect("row");
        assert!(line.starts_with("poll"), "{t}");
        assert!(
            line.contains("multiplexing") && line.contains("5.00ms"),
            "{t}"
        );
        assert!(line.contains("98.5") && line.contains("40.0µs"), "{t}");
        assert!(line.contains("in poll"), "{t}");
    }
}
