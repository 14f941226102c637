//! Root tests of faults: the target killed mid-trace, the profiler stopped by SIGINT or SIGTERM
//! or killed by SIGKILL, and two profilers at once. Built only with the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use nix::sys::signal::Signal;
use profiler::render::export::CallRow;
use workloads::truth::Truth;

/// Long enough that only a signal ends the flood within the test.
const LONG: &str = "60s";

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Starts the flood under the profiler until a signal ends it, writing its CSV to `csv`.
fn flood_under_profiler(csv: &std::path::Path) -> Running {
    flood_into(csv, LONG)
}

/// A traced flood ended well: exit 0, the stage table and summary printed, and a complete CSV
/// with one row per call counted. Returns the rows.
fn check_flood_run(what: &str, done: &Finished, csv: &std::path::Path) -> Vec<CallRow> {
    assert!(
        done.status.success(),
        "{what}: exit {:?}: {}",
        done.status,
        done.stderr
    );
    let calls = summary_calls(&done.stderr);
    assert!(done.stderr.contains("recvfrom socket:"), "{}", done.stderr);
    let rows = read_complete_csv(csv);
    assert!(
        calls > 1000,
        "{what}: only {calls} calls in a second of flood"
    );
    assert_eq!(
        rows.len() as u64,
        calls,
        "{what}: CSV rows vs calls in the summary"
    );
    rows
}

#[test]
fn target_killed_mid_trace_ends_the_run_with_its_summary() {
    assert_root();
    let dir = scratch("target-killed");
    let csv = dir.join("calls.csv");
    // A process the profiler did not start, traced by pid.
    let mut target = Command::new(workloads_bin())
        .args(["flood", "--duration", LONG])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the flood");
    let pid = target.id();
    let pid_arg = pid.to_string();
    let prof = Running::start(&[
        os("--bounded"),
        os("--csv"),
        csv.as_os_str(),
        os("-p"),
        os(&pid_arg),
    ]);
    assert_eq!(prof.target, pid);
    std::thread::sleep(Duration::from_secs(1));
    target.kill().expect("SIGKILL the target");
    let _ = target.wait();
    let done = prof.wait(Duration::from_secs(20));
    let rows = check_flood_run("target killed", &done, &csv);
    assert!(rows.iter().all(|r| r.pid == pid));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn launched_command_killed_mid_trace_is_reported_with_its_signal() {
    assert_root();
    let dir = scratch("command-killed");
    let csv = dir.join("calls.csv");
    let prof = flood_under_profiler(&csv);
    std::thread::sleep(Duration::from_secs(1));
    signal(prof.target, Signal::SIGKILL);
    let done = prof.wait(Duration::from_secs(20));
    // The profiler mirrors the command's end: 128 + SIGKILL.
    assert_eq!(done.status.code(), Some(137), "{}", done.stderr);
    assert!(
        done.stderr.contains("command killed by signal 9"),
        "{}",
        done.stderr
    );
    let rows = read_complete_csv(&csv);
    assert_eq!(rows.len() as u64, summary_calls(&done.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigint_and_sigterm_leave_every_output_complete() {
    assert_root();
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let dir = scratch(&format!("stop-{sig}"));
        let csv = dir.join("calls.csv");
        let prof = flood_under_profiler(&csv);
        let target = prof.target;
        // Long enough for many chunks of rows to have been written already.
        std::thread::sleep(Duration::from_millis(1500));
        signal(prof.pid(), sig);
        let done = prof.wait(Duration::from_secs(20));
        let calls = check_flood_run(sig.as_ref(), &done, &csv).len();
        assert!(
            done.stderr
                .contains(&format!("wrote {calls} rows to {}", csv.display())),
            "{}",
            done.stderr
        );
        // The launched command was ended with the profiler.
        assert!(!alive(target), "{sig}: the command outlived the profiler");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Ids of the BPF programs and links a process holds, from its descriptors' fdinfo.
fn bpf_ids(pid: u32) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let ids = bpf_ids_of(pid);
    assert!(!ids.0.is_empty(), "no BPF program held by pid {pid}");
    ids
}

/// As [`bpf_ids`], empty for a process that is gone.
fn bpf_ids_of(pid: u32) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (mut progs, mut links) = (BTreeSet::new(), BTreeSet::new());
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (progs, links);
    };
    for e in dir.filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        if let Some(id) = field("link_id:") {
            links.insert(id);
        } else if let Some(id) = field("prog_id:") {
            progs.insert(id);
        }
    }
    (progs, links)
}

/// Processes holding a descriptor of one of these programs: `(pid, name, prog id)`.
fn holders(ids: &BTreeSet<u32>) -> Vec<(u32, String, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
    {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let (progs, _) = bpf_ids_of(pid);
        for id in progs.intersection(ids) {
            out.push((pid, comm.trim().to_string(), *id));
        }
    }
    out
}

/// Waits until none of these programs and links is in the kernel's lists, at most `limit`;
/// returns those left.
fn wait_gone(
    progs: &BTreeSet<u32>,
    links: &BTreeSet<u32>,
    limit: Duration,
) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let t0 = std::time::Instant::now();
    loop {
        let (kp, kl) = kernel_ids();
        let left: (BTreeSet<u32>, BTreeSet<u32>) = (
            progs.intersection(&kp).copied().collect(),
            links.intersection(&kl).copied().collect(),
        );
        if (left.0.is_empty() && left.1.is_empty()) || t0.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_of_the_profiler_leaves_nothing_attached() {
    assert_root();
    let dir = scratch("sigkill");
    let csv = dir.join("calls.csv");
    let mut prof = flood_under_profiler(&csv);
    let target = prof.target;
    // Let some chunks of rows reach the CSV first.
    std::thread::sleep(Duration::from_secs(1));
    let (progs, links) = bpf_ids(prof.pid());
    // Call entry and exit, scheduler, fork, socket copy and signal programs at least.
    assert!(progs.len() >= 6, "programs held: {progs:?}");
    assert!(!links.is_empty(), "no links held");
    let (kprogs, klinks) = kernel_ids();
    assert!(progs.is_subset(&kprogs), "the kernel's list misses ours");
    assert!(
        links.is_subset(&klinks),
        "the kernel's list misses our links"
    );

    signal(prof.pid(), Signal::SIGKILL);
    let status = prof.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), None, "killed by a signal");
    // The traced program was not harmed: it still runs, untraced.
    let target_alive = alive(target);
    // The kernel releases links and programs after the process's descriptors close, in a work
    // item that waits for RCU grace periods (the syscall tracepoints may fault, so an RCU
    // tasks-trace one too); a target busy in traced calls can hold that off for a long time.
    // Wait up to 5 s with the target running, then end the target and wait up to 30 s more.
    let t0 = std::time::Instant::now();
    let mut left = wait_gone(&progs, &links, Duration::from_secs(5));
    let while_running = t0.elapsed();
    signal(target, Signal::SIGKILL);
    if !(left.0.is_empty() && left.1.is_empty()) {
        left = wait_gone(&progs, &links, Duration::from_secs(30));
    }
    eprintln!(
        "released {:?} after the kill ({:?} of it with the target running)",
        t0.elapsed(),
        while_running
    );
    let _ = prof.wait(Duration::from_secs(10));
    assert!(
        left.0.is_empty() && left.1.is_empty(),
        "still loaded after SIGKILL: programs {:?}, links {:?}; held by {:?}",
        left.0,
        left.1,
        holders(&left.0)
    );
    assert!(target_alive, "the traced program died with the profiler");
    // Even killed, the profiler left the header and whole rows, but for a last write the
    // kernel may cut short when SIGKILL lands during it.
    let rows = read_killed_csv(&csv);
    assert!(!rows.is_empty(), "no row reached the CSV in a second");
    assert!(rows.iter().all(|r| r.pid == target));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn two_profilers_at_once_each_see_only_their_own_target() {
    assert_root();
    let dir = scratch("two");
    let wl = workloads_bin();
    let run = |name: &str, interval: &str, size: &str, count: &str| {
        let csv = dir.join(format!("{name}.csv"));
        let truth = dir.join(format!("{name}.json"));
        let child = Command::new(profiler_bin())
            .arg("-v")
            .arg("--csv")
            .arg(&csv)
            .arg("--")
            .arg(&wl)
            .args([
                "blocking",
                "--interval",
                interval,
                "--size",
                size,
                "--count",
                count,
            ])
            .arg("--truth")
            .arg(&truth)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a profiler");
        (child, csv, truth)
    };
    let a = run("a", "2ms", "1000", "150");
    let b = run("b", "3ms", "3000", "100");
    for (child, csv, truth) in [a, b] {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let truth = Truth::read(&truth).expect("truth");
        let rows = read_complete_csv(&csv);
        let foreign: Vec<_> = rows.iter().filter(|r| r.pid != truth.pid).collect();
        assert!(
            foreign.is_empty(),
            "rows of another process: {:?}",
            &foreign[..foreign.len().min(3)]
        );
        let recv: Vec<_> = rows.iter().filter(|r| r.call == "recvfrom").collect();
        assert_eq!(recv.len(), truth.calls_named("recvfrom").count());
        assert_eq!(recv.iter().map(|r| r.bytes).sum::<u64>(), truth.bytes);
    }
    let _ = std::fs::remove_dir_all(dir);
}
