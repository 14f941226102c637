//! Root tests of the findings on programs this project did not write: `cat` and `dd
//! iflag=direct` move the file's size once, `cp` copies it inside the kernel (no sending, no
//! copy from user), and no run without a readiness signal calls anything signal-driven. Built
//! only with the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use common::{assert_root, read_complete_csv, scratch};
use profiler::{analyze::movement::Movement, render::export::CallRow};

const SIZE: u64 = 32 << 20;
/// What the dynamic loader reads of the libraries (headers), and what a shell reads: counted
/// as data moved from files, well under this.
const LOADER_SLACK: u64 = 64 << 10;

/// What one profiled command left behind.
struct Found {
    /// Report and messages (stdout and stderr together).
    text: String,
    rows: Vec<CallRow>,
    movement: Movement,
    /// The `--findings` JSON.
    findings: serde_json::Value,
}

/// A file of `SIZE` bytes that are not all the same.
fn test_file(dir: &Path) -> PathBuf {
    let path = dir.join("data.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let block: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for _ in 0..SIZE >> 20 {
        f.write_all(&block).expect("write");
    }
    f.flush().expect("flush");
    drop(f);
    path
}

/// Runs `argv` under the profiler with the per-call CSV, the movement summary and CPU samples.
fn profile(dir: &Path, name: &str, argv: &[&str]) -> Found {
    assert_root();
    let csv = dir.join(format!("{name}.csv"));
    let movement = dir.join(format!("{name}.json"));
    let findings = dir.join(format!("{name}-findings.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_profiler"))
        .args([
            "--freq",
            "999",
            "--show",
            "threads,movement,samples",
            "--csv",
        ])
        .arg(&csv)
        .arg("--movement-json")
        .arg(&movement)
        .arg("--findings")
        .arg(&findings)
        .arg("--")
        .args(argv)
        .output()
        .expect("run profiler");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name}: profiler failed:\n{text}");
    let movement = serde_json::from_str(&std::fs::read_to_string(&movement).expect("movement"))
        .expect("movement json");
    let findings = serde_json::from_str(&std::fs::read_to_string(&findings).expect("findings"))
        .expect("findings json");
    Found {
        text,
        rows: read_complete_csv(&csv),
        movement,
        findings,
    }
}

/// The checks every run shares: no readiness signal was sent, so nothing is signal-driven;
/// the bytes moved are the largest stream, the file's size and what the loader read.
fn check_common(name: &str, f: &Found) {
    assert!(
        !f.text.contains("signal-driven"),
        "{name}: signal-driven without a signal:\n{}",
        f.text
    );
    assert!(
        f.rows.iter().all(|r| r.model != "signal-driven"),
        "{name}: a signal-driven row"
    );
    // Every thread has one of the six models; the command's own threads make blocking calls.
    let threads = f.findings["threads"].as_array().expect("threads");
    assert!(
        threads.iter().any(|t| t["comm"] == name),
        "{name}: its thread is missing: {threads:?}"
    );
    for t in threads {
        let model = t["model"].as_str().expect("model");
        assert!(
            [
                "blocking",
                "non-blocking",
                "multiplexing",
                "asynchronous",
                "no-input"
            ]
            .contains(&model),
            "{name}: {t}"
        );
        if t["comm"] == name {
            assert_eq!(model, "blocking", "{name}: {t}");
        }
    }
    assert_eq!(
        f.findings["data"]["bytes_moved"].as_u64(),
        Some(f.movement.bytes),
        "{name}"
    );
    assert!(
        (SIZE..SIZE + LOADER_SLACK).contains(&f.movement.bytes),
        "{name}: data moved {} for a file of {SIZE}:\n{}",
        f.movement.bytes,
        f.text
    );
    assert!(
        f.text.contains("data moved: 32.0 MiB"),
        "{name}:\n{}",
        f.text
    );
}

/// Bytes of the calls named `call` on descriptors of kind `kind`.
fn bytes_of(f: &Found, call: &str, kind: &str) -> u64 {
    f.rows
        .iter()
        .filter(|r| r.call == call && r.fd_kind == kind)
        .map(|r| r.bytes)
        .sum()
}

#[test]
fn cat_moves_the_file_once() {
    let dir = scratch("findings-cat");
    let file = test_file(&dir);
    let cmd = format!("cat {} > /dev/null", file.display());
    let f = profile(&dir, "cat", &["sh", "-c", &cmd]);
    check_common("cat", &f);
    // Every byte of the file reached /dev/null; the reads of files hold the file too.
    assert_eq!(f.movement.to.other, SIZE, "{}", f.text);
    assert_eq!(bytes_of(&f, "write", "other"), SIZE);
    let read = bytes_of(&f, "read", "file");
    assert!((SIZE..SIZE + LOADER_SLACK).contains(&read), "{read}");
    assert_eq!(f.movement.send_oncpu_ns, 0, "nothing went to a socket");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dd_direct_reads_the_file_and_mostly_sleeps() {
    let dir = scratch("findings-dd");
    let file = test_file(&dir);
    let input = format!("if={}", file.display());
    let f = profile(
        &dir,
        "dd",
        &["dd", &input, "of=/dev/null", "iflag=direct", "bs=1M"],
    );
    check_common("dd", &f);
    assert_eq!(f.movement.to.other, SIZE, "{}", f.text);
    let reads: Vec<&CallRow> = f
        .rows
        .iter()
        .filter(|r| r.call == "read" && r.fd_kind == "file" && r.bytes == 1 << 20)
        .collect();
    assert_eq!(reads.len() as u64, SIZE >> 20, "one read a MiB");
    let slept = reads.iter().filter(|r| r.blocked_ns > 0).count();
    assert!(
        slept * 2 > reads.len(),
        "direct reads wait for the disk: {slept} of {} slept",
        reads.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cp_is_a_kernel_copy() {
    let dir = scratch("findings-cp");
    let file = test_file(&dir);
    let copy = dir.join("copy.bin");
    let f = profile(
        &dir,
        "cp",
        &[
            "cp",
            file.to_str().expect("path"),
            copy.to_str().expect("path"),
        ],
    );
    check_common("cp", &f);
    assert_eq!(std::fs::metadata(&copy).expect("copy").len(), SIZE);
    let copied: u64 = f
        .rows
        .iter()
        .filter(|r| r.call == "copy_file_range" && r.fd_kind == "file" && r.fd_out_kind == "file")
        .map(|r| r.bytes)
        .sum();
    assert_eq!(copied, SIZE, "cp copies with copy_file_range");
    assert_eq!(f.movement.to.files, SIZE);
    assert!(f.movement.user_reads < LOADER_SLACK, "{:?}", f.movement);
    // No socket: no sending side.
    assert_eq!(f.movement.send_oncpu_ns, 0);
    assert!(!f.text.contains("sending"), "{}", f.text);
    // Its copy samples are kernel copies: none to or from user memory.
    // The sampling table's row: stage, samples, copy%, to-user, from-user, kernel memcpy …
    let cols: Vec<&str> = f
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("copy_file_range file→file"))
        .map(|row| row.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() > 5 && cols[0] == "copy")
        .unwrap_or_else(|| panic!("no copy_file_range samples:\n{}", f.text));
    let row = cols.join(" ");
    assert!(cols[1].parse::<u64>().expect("samples column") > 0, "{row}");
    // Where inside the kernel the samples land (memcpy routines, page-cache work) varies with
    // the file system and the moment; none is ever a copy to or from user memory.
    assert_eq!((cols[3], cols[4]), ("0", "0"), "{row}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn summary_mode_counts_only_data_calls_as_bytes() {
    use profiler::{
        capture::{loader::LoadOptions, session},
        syscalls,
    };
    assert_root();
    let dir = scratch("findings-summary");
    let file = test_file(&dir);
    let cmd = format!("cat {} > /dev/null", file.display());
    let opts = session::RunOptions {
        target: session::Target::Command(vec!["sh".into(), "-c".into(), cmd]),
        load: LoadOptions {
            calls: syscalls::DEFAULT
                .iter()
                .map(|n| syscalls::by_name(n).expect("known call"))
                .collect(),
            mode: probe_common::mode::RECORDS | probe_common::mode::AGGREGATE,
            ..LoadOptions::default()
        },
        duration: Some(std::time::Duration::from_secs(60)),
        run_as: None,
    };
    let mut calls = Vec::new();
    let r = session::run(&opts, &mut calls, |_, _| {}).expect("profiling run");
    assert_eq!(r.lost, 0, "the comparison needs every record");
    let mut by_name: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for (k, s) in &r.summaries {
        let records: Vec<_> = calls
            .iter()
            .filter(|c| c.rec.pid == k.pid && c.rec.nr == k.nr)
            .collect();
        let bytes: u64 = records.iter().map(|c| c.bytes()).sum();
        let data = records.iter().filter(|c| c.bytes() > 0).count() as u64;
        let name = syscalls::name_of(k.nr);
        assert_eq!(
            (s.calls, s.data_calls, s.bytes),
            (records.len() as u64, data, bytes),
            "{name} of pid {}: the kernel's sums and the records",
            k.pid
        );
        let e = by_name.entry(name).or_default();
        e.0 += s.calls;
        e.1 += s.bytes;
    }
    // mmap's addresses and munmap's zeros are no bytes; cat's reads and writes are the file.
    assert!(by_name["mmap"].0 > 0, "{by_name:?}");
    assert_eq!(
        (by_name["mmap"].1, by_name["munmap"].1),
        (0, 0),
        "{by_name:?}"
    );
    assert_eq!(by_name["write"].1, SIZE, "{by_name:?}");
    assert!(
        (SIZE..SIZE + LOADER_SLACK).contains(&by_name["read"].1),
        "{by_name:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
