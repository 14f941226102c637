//! Root property test of the command line: random option values end with exit 0 or 2, one
//! error line on exit 2 and an existing output unchanged, and no program of the profiler left
//! behind. Built only with the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use proptest::prelude::*;

/// The processes holding BPF program `id` through a descriptor (from `/proc/PID/fdinfo`).
fn holders(id: u32) -> Vec<u32> {
    let want = format!("prog_id:\t{id}\n");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fdinfo")).is_ok_and(|d| {
                d.flatten()
                    .any(|f| std::fs::read_to_string(f.path()).is_ok_and(|t| t.contains(&want)))
            })
        })
        .collect()
}

/// Fails when a program loaded since `before` is still held by a process running this
/// profiler binary (itself, or a child that has not executed its command), or by nothing
/// that a process holds (a leaked attachment). Programs of other tools running at the same
/// time are held by their own processes.
fn assert_no_program_left(before: &BTreeSet<u32>, what: &str) {
    let ours = std::fs::canonicalize(profiler_bin()).expect("the profiler's path");
    let t0 = Instant::now();
    loop {
        let left: Vec<(u32, Vec<u32>)> = kernel_ids()
            .0
            .difference(before)
            .map(|&id| (id, holders(id)))
            .filter(|(_, h)| {
                h.is_empty()
                    || h.iter().any(|p| {
                        std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == ours)
                    })
            })
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{what}: programs left (id, holders): {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One value of an option: mostly valid (so that most cases trace and release their
/// probes), sometimes not.
fn value(valid: &[&'static str], invalid: &[&'static str]) -> BoxedStrategy<&'static str> {
    prop_oneof![
        4 => prop::sample::select(valid.to_vec()),
        1 => prop::sample::select(invalid.to_vec()),
    ]
    .boxed()
}

/// One command line: calls, ring buffer size, duration, frequency, mode, the target, and
/// whether an existing file is named as the CSV output.
fn command_lines() -> impl Strategy<Value = (Vec<String>, bool)> {
    (
        value(
            &["read", "read,write", "recvfrom"],
            &["nosuchcall", "read,read"],
        ),
        value(
            &["4096", "65536", "1048576"],
            &["3000", "0", "2147483648", "-1", "x"],
        ),
        value(&["300ms", "1s"], &["0", "-1s", "10x"]),
        value(&["0", "99", "997"], &["x", "1000000000"]),
        value(&["auto", "per-call", "both"], &["floor", "nosuchmode"]),
        value(
            &["-- true", "-- sh -c exit"],
            &["-p 0", "-p 1", "-p 99999999", "", "-- /no/such/cmd"],
        ),
        any::<bool>(),
    )
        .prop_map(|(calls, ring, dur, freq, mode, target, csv)| {
            let mut args: Vec<String> = [
                "--calls",
                calls,
                "--ringbuf-size",
                ring,
                "-d",
                dur,
                "--freq",
                freq,
                "--mode",
                mode,
            ]
            .map(String::from)
            .to_vec();
            if csv {
                args.push("--csv".into());
                args.push("CSV".into());
            }
            args.extend(target.split_whitespace().map(String::from));
            (args, csv)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 30, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_command_line_ends_cleanly((args, with_csv) in command_lines()) {
        assert_root();
        let dir = scratch("cli-props");
        let csv = dir.join("kept.csv");
        let old = b"pid,tid\n1,2\n".to_vec();
        std::fs::write(&csv, &old).expect("an existing output");
        let args: Vec<String> = args
            .into_iter()
            .map(|a| if a == "CSV" { csv.to_string_lossy().into_owned() } else { a })
            .collect();
        let before = kernel_ids().0;
        let out = Command::new(profiler_bin())
            .args(&args)
            .output()
            .expect("run the profiler");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        prop_assert!(code == Some(0) || code == Some(2), "{args:?}: {code:?}: {stderr}");
        if code == Some(2) {
            // One line says what is wrong (clap may add its "For more information" tip).
            let errors = stderr.lines().filter(|l| l.contains("error:")).count();
            let others = stderr
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.contains("error:"))
                .filter(|l| !l.starts_with("For more information"))
                .count();
            prop_assert!(errors == 1 && others == 0, "{args:?}: {stderr}");
            if with_csv {
                prop_assert_eq!(std::fs::read(&csv).expect("the output"), old.clone());
            }
        }
        assert_no_program_left(&before, &format!("{args:?}"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
