//! Root tests of CPU sampling: real probes, a cached file read through a user buffer versus
//! sent with `sendfile`; the copy fraction, the folded stacks, the flame graph and the copy
//! timing line. Built only with the `root-tests` feature (`cargo xtask test`).
#![cfg(feature = "root-tests")]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use profiler::{analyze::classify, render::flame};

const FREQ: &str = "1999";

mod common;
use common::{assert_root, scratch};

/// A 32 MiB file, read once so that it is in the page cache.
fn cached_file(dir: &Path) -> PathBuf {
    let path = dir.join("data.bin");
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + 3) as u8).collect();
    let mut all = Vec::with_capacity(32 << 20);
    for _ in 0..32 {
        all.extend_from_slice(&block);
    }
    std::fs::write(&path, &all).expect("write file");
    assert_eq!(
        std::fs::read(&path).expect("warm the cache").len(),
        32 << 20
    );
    path
}

struct Run {
    stdout: String,
    folded: Vec<String>,
    svg: Option<String>,
}

/// Profiles `copy-helper MODE FILE ROUNDS` tracing `call`, with folded output (and an SVG).
fn profile(dir: &Path, call: &str, mode: &str, file: &Path, rounds: &str, svg: bool) -> Run {
    assert_root();
    let folded = dir.join(format!("{mode}.folded"));
    let svg_path = dir.join(format!("{mode}.svg"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_profiler"));
    cmd.arg("-v");
    cmd.args(["--calls", call, "--freq", FREQ, "--folded"])
        .arg(&folded);
    if svg {
        cmd.arg("--flamegraph").arg(&svg_path);
    }
    let out = cmd
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_copy-helper"))
        .arg(mode)
        .arg(file)
        .arg(rounds)
        .output()
        .expect("run profiler");
    let stdout = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "profiler failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Run {
        folded: std::fs::read_to_string(&folded)
            .expect("folded file written")
            .lines()
            .map(str::to_string)
            .collect(),
        svg: svg.then(|| std::fs::read_to_string(&svg_path).expect("svg written")),
        stdout,
    }
}

/// Samples of the calls whose label starts with `call`, and how many of them were copying.
fn copy_samples(folded: &[String], call: &str) -> (u64, u64) {
    let (mut all, mut copy) = (0, 0);
    for line in folded {
        let (frames, n) =
            flame::parse_folded(line).unwrap_or_else(|| panic!("not a folded line: {line:?}"));
        if !frames[0].starts_with(call) {
            continue;
        }
        all += n;
        if frames.iter().any(|f| classify::classify_frame(f).is_copy()) {
            copy += n;
        }
    }
    (all, copy)
}

/// The copy timing line says how copy time was measured; on a kernel without fentry and
/// kprobes it is sampled, and says why.
fn assert_timing_line(stdout: &str) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("copy time "))
        .unwrap_or_else(|| panic!("no copy timing line:\n{stdout}"));
    if line.starts_with("copy time exact") {
        return;
    }
    let rest = line
        .strip_prefix(&format!("copy time sampled at {FREQ} Hz with "))
        .unwrap_or_else(|| panic!("{line}"));
    let k: u64 = rest
        .split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(k > 0, "{line}");
    assert!(
        line.contains("fentry"),
        "the line says why not exact: {line}"
    );
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        assert!(line.contains("CONFIG_KPROBES"), "{line}");
    }
}

#[test]
fn reads_copy_more_than_sendfile_and_the_flame_graph_shows_it() {
    let dir = scratch("read-vs-sendfile");
    let file = cached_file(&dir);
    let read = profile(&dir, "read", "read", &file, "24", true);
    let send = profile(&dir, "sendfile64", "sendfile", &file, "48", false);
    assert_timing_line(&read.stdout);
    assert_timing_line(&send.stdout);

    // Every folded line is frames and a count; call kind and stage are the root frames.
    for l in read.folded.iter().chain(&send.folded) {
        let (frames, n) = flame::parse_folded(l).unwrap_or_else(|| panic!("{l:?}"));
        assert!(frames.len() >= 2 && n > 0, "{l:?}");
    }
    let (read_all, read_copy) = copy_samples(&read.folded, "read ");
    let (send_all, send_copy) = copy_samples(&send.folded, "sendfile64 ");
    assert!(
        read_all >= 20,
        "too few read samples ({read_all}):\n{}",
        read.stdout
    );
    assert!(
        send_all >= 5,
        "too few sendfile samples ({send_all}):\n{}",
        send.stdout
    );
    let read_frac = read_copy as f64 / read_all as f64;
    let send_frac = send_copy as f64 / send_all as f64;
    assert!(
        read_frac > send_frac,
        "read copy fraction {read_frac:.2} ({read_copy}/{read_all}) is not above sendfile's \
         {send_frac:.2} ({send_copy}/{send_all})\n{}\n{}",
        read.stdout,
        send.stdout
    );

    // The copy routines sit under the read calls' stage in the folded stacks and in the SVG.
    let under_read: Vec<&String> = read
        .folded
        .iter()
        .filter(|l| l.starts_with("read ") && l.contains(";copy;"))
        .collect();
    let routine = ["copy_page_to_iter", "_copy_to_iter", "rep_movs_alternative"]
        .into_iter()
        .find(|r| under_read.iter().any(|l| l.contains(&format!(";{r}"))))
        .unwrap_or_else(|| panic!("no copy routine under the read stage: {under_read:?}"));
    let svg = read.svg.expect("svg");
    assert!(svg.contains("<svg"), "not an SVG");
    assert!(
        svg.contains(routine),
        "{routine} missing from the flame graph"
    );
    assert!(
        svg.contains("read file"),
        "read calls missing from the flame graph"
    );
    // The sampling table has a row for the read calls' copy stage.
    assert!(
        read.stdout
            .lines()
            .any(|l| l.starts_with("read file") && l.contains(" copy ")),
        "{}",
        read.stdout
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sampling_off_still_says_how_copy_time_was_measured() {
    assert_root();
    let out = Command::new(env!("CARGO_BIN_EXE_profiler"))
        .arg("-v")
        .args(["--calls", "read", "--freq", "0", "--", "true"])
        .output()
        .expect("run profiler");
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("copy time "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.starts_with("copy time exact") || line.contains("sampling is off (--freq 0)"),
        "{line}"
    );
}
