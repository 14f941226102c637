//! Root tests of bad input: every mistake is answered with a clear error before anything is
//! attached, and a non-zero exit. Run as root, where attaching would succeed, so that a check
//! that went missing shows. Built only with the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::*;

/// Runs the profiler with `args` before `-- touch MARKER`; checks that it failed with a message
/// containing every one of `want`, that nothing was attached and that the command never ran.
fn refused(name: &str, args: &[&str], want: &[&str]) {
    let dir = scratch(&format!("input-{name}"));
    let marker = dir.join("ran");
    let out = Command::new(profiler_bin())
        .arg("-v")
        .args(args)
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .output()
        .expect("run the profiler");
    check_refused(name, &out, want);
    assert!(!marker.exists(), "{name}: the command ran");
    let _ = std::fs::remove_dir_all(dir);
}

/// The profiler (or a tool) failed before attaching anything, saying all of `want`.
fn check_refused(name: &str, out: &Output, want: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{name}: accepted\n{err}\n{stdout}");
    assert_ne!(out.status.code(), None, "{name}: crashed by a signal");
    for w in want {
        assert!(err.contains(w), "{name}: `{w}` missing from:\n{err}");
    }
    assert!(
        !err.contains("Tracing") && !err.contains("hooks:"),
        "{name}: probes were attached before the error:\n{err}"
    );
}

#[test]
fn invalid_numbers_and_durations_are_refused() {
    assert_root();
    refused("dur-word", &["-d", "ten"], &["not a duration"]);
    refused("dur-zero", &["-d", "0s"], &["longer than 0"]);
    refused("dur-negative", &["-d", "-5s"], &["-5"]);
    refused(
        "dur-huge",
        &["-d", "99999999999999999999s"],
        &["not a duration"],
    );
    refused(
        "ringbuf-small",
        &["--ringbuf-size", "3000"],
        &["power of two", "3000"],
    );
    refused(
        "ringbuf-odd",
        &["--ringbuf-size", "1000000"],
        &["power of two"],
    );
    refused(
        "ringbuf-range",
        &["--ringbuf-size", "99999999999"],
        &["--ringbuf-size"],
    );
    refused("pid-word", &["-p", "abc"], &["--pid"]);
    refused("pid-negative", &["-p", "-5"], &[]);
    refused(
        "calls",
        &["--calls", "read,nosuch"],
        &["unknown call `nosuch`", "recvfrom"],
    );
}

#[test]
fn bad_pids_are_refused() {
    assert_root();
    let run = |name: &str, pid: &str, want: &[&str]| {
        let out = Command::new(profiler_bin())
            .arg("-v")
            .args(["-p", pid, "-d", "1s"])
            .output()
            .expect("run the profiler");
        check_refused(name, &out, want);
    };
    run("pid0", "0", &["pid 0"]);
    run("pid1", "1", &["pid 1", "init"]);
    // Above the largest pid_max the kernel allows (2^22).
    run("pid-none", "5000000", &["no process with pid 5000000"]);
    // A process that has just ended and been reaped.
    let mut gone = Command::new("true").spawn().expect("true");
    let pid = gone.id();
    gone.wait().expect("reap");
    run(
        "pid-ended",
        &pid.to_string(),
        &[&format!("no process with pid {pid}")],
    );
    // One bad pid in a list spoils the list.
    let me = std::process::id().to_string();
    run("pid-list", &format!("{me},0"), &["pid 0"]);
}

/// Mounts `dir` read-only on itself; unmounted on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> Self {
        use nix::mount::{MsFlags, mount};
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind mount");
        let ro = Self(dir.to_path_buf());
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .expect("remount read-only");
        ro
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = nix::mount::umount(&self.0);
    }
}

#[test]
fn unwritable_output_paths_are_refused() {
    assert_root();
    let dir = scratch("outputs");
    let missing = dir.join("no-such-folder").join("calls.csv");
    refused(
        "missing-folder",
        &["--csv", missing.to_str().expect("path")],
        &["cannot write", "does not exist"],
    );
    let ro_dir = dir.join("ro");
    std::fs::create_dir_all(&ro_dir).expect("folder");
    let ro = ReadOnly::mount(&ro_dir);
    let in_ro = ro_dir.join("calls.csv");
    refused(
        "read-only",
        &["--csv", in_ro.to_str().expect("path")],
        &["cannot write", "read-only"],
    );
    assert!(!in_ro.exists());
    drop(ro);
    refused(
        "a-folder",
        &["--csv", dir.to_str().expect("path")],
        &["is a folder"],
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_workload_lists_the_valid_ones() {
    assert_root();
    let xtask = sibling_bin("xtask");
    let out = Command::new(&xtask)
        .args(["profile", "nosuch"])
        .output()
        .expect("run xtask");
    check_refused("xtask-profile", &out, &["unknown workload `nosuch`"]);
    let err = String::from_utf8_lossy(&out.stderr);
    for name in workloads::NAMES {
        assert!(err.contains(name), "`{name}` not listed: {err}");
    }
    let out = Command::new(workloads_bin())
        .arg("nosuch")
        .output()
        .expect("run workloads");
    check_refused("workloads", &out, &["nosuch"]);
    // Knobs out of range are the workloads' own errors.
    for (args, want) in [
        (&["blocking", "--count", "0"][..], "--count"),
        (&["blocking", "--size", "0"][..], "--size"),
        (&["flood", "--duration", "0s"][..], "--duration"),
        (&["blocking", "--interval", "soon"][..], "--interval"),
    ] {
        let out = Command::new(workloads_bin())
            .args(args)
            .output()
            .expect("run workloads");
        check_refused(&args.join(" "), &out, &[want]);
    }
    // The soak's length.
    for (args, want) in [
        (&["soak", "--seconds", "0"][..], "soak's length"),
        (&["soak", "--minutes", "99999"][..], "--minutes"),
    ] {
        let out = Command::new(&xtask).args(args).output().expect("run xtask");
        check_refused(&args.join(" "), &out, &[want]);
    }
}
