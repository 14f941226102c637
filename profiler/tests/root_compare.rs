//! Root tests of `cargo xtask profile splice`, run on the binaries built beside the tests: the
//! comparison gives the same verdict on a machine without the cached file and on the run after
//! it, with splice's bytes through the sender's memory near zero against read-write's two
//! passes; and its scratch folder is private and unguessable, so that files another user
//! planted at the old predictable paths are never written through. Built only with the
//! `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use common::*;
use serde_json::Value;

/// GiB in bytes.
const GIB: f64 = (1u64 << 30) as f64;

/// Runs `xtask profile splice` small and fast with `cache` as the cache folder; returns its
/// comparison and everything it printed.
fn compare_splice(cache: &Path, out: &Path) -> (Value, String) {
    let bins = profiler_bin()
        .parent()
        .expect("binary folder")
        .to_path_buf();
    let json = out.join("comparison.json");
    let run = Command::new(sibling_bin("xtask"))
        .env("XDG_CACHE_HOME", cache)
        .args(["profile", "splice", "--size", "24MiB", "--rounds", "3"])
        .args(["--freq", "20000"])
        .arg("--bin-dir")
        .arg(&bins)
        .arg("--comparison-json")
        .arg(&json)
        .output()
        .expect("run xtask profile splice");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "xtask profile splice failed:\n{text}");
    let v = serde_json::from_str(&std::fs::read_to_string(&json).expect("comparison"))
        .expect("comparison JSON");
    (v, text)
}

/// A word of the verdict.
fn word(v: &Value, key: &str) -> String {
    v["verdicts"][0][key].to_string()
}

/// The median over a method's rounds of one of its numbers.
fn median(v: &Value, method: &str, key: &str) -> f64 {
    let runs = v["methods"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == method))
        .and_then(|m| m["runs"].as_array())
        .unwrap_or_else(|| panic!("no runs of {method}: {v}"));
    let mut x: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
    assert_eq!(x.len(), 3, "{method}: three rounds of {key}");
    x.sort_by(f64::total_cmp);
    x[1]
}

#[test]
fn splice_gives_the_same_verdict_with_and_without_the_cached_file() {
    assert_root();
    let dir = scratch("compare");
    let cache = dir.join("cache");
    let (first, text) = compare_splice(&cache, &dir);
    let cached = cache
        .join("ioprof/files")
        .join(format!("data-{}.bin", 24 << 20));
    assert!(cached.is_file(), "the run made no cached file: {text}");
    // Deleted again: the second run must make it again, outside the traced runs.
    std::fs::remove_dir_all(&cache).expect("delete the cache");
    let (second, text2) = compare_splice(&cache, &dir);
    // What the sender's bytes and copies do is the same verdict every time. The verdict's
    // timing parts (the sender's time on CPU, the throughput, which side is busier) move with
    // the machine's other load: timings belong to the benchmark, not to a pass/fail test.
    for key in ["method", "user_memory", "copies"] {
        assert_eq!(
            word(&first, key),
            word(&second, key),
            "{key}: two runs, two verdicts:\n{text}\n----\n{text2}"
        );
    }
    for v in [&first, &second] {
        let rw = median(v, "read-write", "sender_user_bytes");
        let sp = median(v, "splice", "sender_user_bytes");
        assert!(
            (1.9 * GIB..2.1 * GIB).contains(&rw),
            "read-write: {rw} bytes through the sender's memory per GiB, not 2 GiB"
        );
        assert!(sp < 1e6, "splice: {sp} bytes through user memory per GiB");
        assert_eq!(v["verdicts"][0]["user_memory"], "gone", "{v}");
        assert_eq!(v["verdicts"][0]["copies"], "gone", "{v}");
        // Read-write's sender copies twice; splice's copies nothing itself.
        let (rw_copy, sp_copy) = (
            median(v, "read-write", "sender_copy_ns"),
            median(v, "splice", "sender_copy_ns"),
        );
        assert!(
            rw_copy > 0.0 && sp_copy < 0.2 * rw_copy,
            "sender copy time per GiB: read-write {rw_copy} ns, splice {sp_copy} ns"
        );
        assert!(
            median(v, "splice", "samples") >= 200.0,
            "too few CPU samples: {v}"
        );
    }
    for line in ["splice against read-write", "receiver, per GiB moved"] {
        assert!(text2.contains(line), "missing `{line}`:\n{text2}");
    }
    for t in [&text, &text2] {
        let _ = std::fs::remove_dir_all(reports_folder(t));
    }
}

/// The last pid the kernel handed out.
fn last_pid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .expect("ns_last_pid")
        .trim()
        .parse()
        .expect("a pid")
}

/// The folder `xtask` says it kept every run's report in.
fn reports_folder(text: &str) -> PathBuf {
    let at = text
        .find("every run's report in ")
        .unwrap_or_else(|| panic!("no report folder named:\n{text}"));
    let rest = &text[at + "every run's report in ".len()..];
    PathBuf::from(rest.lines().next().unwrap_or_default().trim())
}

#[test]
fn a_planted_link_at_a_guessable_scratch_path_is_never_written_through() {
    assert_root();
    let dir = scratch("plant");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").expect("victim");
    let before = std::fs::metadata(&victim).expect("victim");
    // As nobody: the folders the old code would have used for the next pids, each with
    // links to the victim where the runs' files would go.
    let first = last_pid() + 1;
    let planted: Vec<PathBuf> = (first..first + 400)
        .map(|pid| PathBuf::from(format!("/tmp/ioprof-zero-copy-{pid}")))
        .filter(|d| !d.exists())
        .collect();
    let script = planted
        .iter()
        .map(|d| {
            format!(
                "mkdir -m 777 {0} && for f in splice read-write; do for e in json txt folded; do \
                 ln -s {1} {0}/$f.$e; ln -s {1} {0}/$f-1.$e; done; done",
                d.display(),
                victim.display()
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let st = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(&script)
        .status()
        .expect("setpriv");
    assert!(st.success(), "planting as nobody failed");
    let (_, text) = compare_splice(&dir.join("cache"), &dir);
    for d in &planted {
        let _ = std::fs::remove_dir_all(d);
    }
    let after = std::fs::metadata(&victim).expect("victim");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    assert_eq!(
        (before.mtime(), before.mtime_nsec(), before.len()),
        (after.mtime(), after.mtime_nsec(), after.len()),
        "the victim was written"
    );
    // The scratch folder: private, root's, under a name no pid predicts.
    let reports = reports_folder(&text);
    let meta = std::fs::metadata(&reports).expect("report folder");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "{}",
        reports.display()
    );
    assert_eq!(meta.uid(), 0);
    assert!(!planted.contains(&reports), "{}", reports.display());
    let name = reports
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let tail = name.trim_start_matches("ioprof-zero-copy-");
    assert!(
        tail.parse::<u32>().is_err(),
        "a folder named by a number: {}",
        reports.display()
    );
    let _ = std::fs::remove_dir_all(reports);
}
