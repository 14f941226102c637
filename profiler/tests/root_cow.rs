//! Root tests of copy-on-write: each workload counts the pages it writes; the profiler's
//! copy-on-write faults (write faults on present pages) and copied pages, per process, must
//! agree with that count within 5%. Built only with the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use common::{assert_root, scratch, workloads_bin};
use profiler::analyze::cow::CowThread;
use workloads::truth::Truth;

/// The file each workload moves: 32 MiB, 8192 pages.
const SIZE: u64 = 32 << 20;

/// Runs a copy-on-write workload under the probes; returns its truth and the copy-on-write
/// counts per process.
fn run(name: &str) -> (Truth, Vec<CowThread>) {
    assert_root();
    let dir = scratch(name);
    let truth_path = dir.join("truth.json");
    let file = dir.join("data.bin");
    workloads::files::ensure_file(Some(&file), SIZE).expect("test file");
    let argv = vec![
        workloads_bin().display().to_string(),
        name.to_string(),
        "--file".into(),
        file.display().to_string(),
        "--size".into(),
        SIZE.to_string(),
        "--truth".into(),
        truth_path.display().to_string(),
    ];
    let (_, r) = common::trace_command(argv);
    assert!(
        r.hooks
            .iter()
            .any(|h| h.name == "kmem:mm_page_alloc" && h.error.is_none()),
        "{name}: the page allocation hook is not attached: {:?}",
        r.hooks
    );
    let truth = Truth::read(&truth_path).expect("truth");
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(truth.bytes, SIZE, "{name}: bytes delivered");
    assert_eq!(truth.pages, SIZE / 4096, "{name}: pages written");
    (truth, profiler::analyze::cow::per_process(&r.cow))
}

/// The counts of process `pid`.
fn of(procs: &[CowThread], pid: u32) -> CowThread {
    procs
        .iter()
        .find(|p| p.pid == pid)
        .copied()
        .unwrap_or_else(|| panic!("no copy-on-write counts for pid {pid}: {procs:?}"))
}

/// Whether `got` is within 5% of `want`.
fn near(got: u64, want: u64) -> bool {
    got.abs_diff(want) * 20 <= want
}

#[test]
fn a_private_mapping_written_once_makes_one_copy_per_page() {
    let (truth, procs) = run("cow-private");
    let p = of(&procs, truth.pid);
    assert!(
        near(p.cow_faults, truth.pages),
        "{p:?} for {} pages",
        truth.pages
    );
    assert!(
        near(p.copies, truth.pages),
        "{p:?} for {} pages",
        truth.pages
    );
    assert!(p.write_faults >= p.cow_faults, "{p:?}");
    // The faults that copied were timed (the time itself is the benchmark's business).
    assert!(p.copy_ns > 0, "{p:?}");
}

#[test]
fn after_a_fork_the_first_writer_copies_and_the_second_reuses() {
    let (truth, procs) = run("cow-fork");
    assert_ne!(truth.child_pid, 0, "no child in the truth");
    let parent = of(&procs, truth.pid);
    let child = of(&procs, truth.child_pid);
    let pages = truth.pages;
    // Each process wrote every page once after the fork: one copy-on-write fault a page each.
    assert!(
        near(parent.cow_faults, pages),
        "parent {parent:?}, {pages} pages"
    );
    assert!(
        near(child.cow_faults, pages),
        "child {child:?}, {pages} pages"
    );
    // The parent wrote first, while the pages were shared: it copied them. The child's faults
    // found pages no one else mapped any more.
    assert!(
        near(parent.copies, pages),
        "parent {parent:?}, {pages} pages"
    );
    assert!(child.copies * 20 <= pages, "child {child:?}, {pages} pages");
}

#[test]
fn gifted_pages_are_shared_without_copy_on_write() {
    let (truth, procs) = run("vmsplice-gift");
    let p = of(&procs, truth.pid);
    // The buffer's pages went to the pipe by reference: nothing write-protected them.
    assert!(
        p.cow_faults * 20 <= truth.pages,
        "{p:?}, {} pages",
        truth.pages
    );
    // A write to a gifted page changes what the pipe holds.
    assert!(
        truth.outcome.contains("4096 of 4096 bytes"),
        "{}",
        truth.outcome
    );
}

/// Runs the profiler (with `-v` when `verbose`) and the extra options `opts` on a small
/// `cow-fork`; returns everything it printed.
fn report_of(verbose: bool, opts: &[&str]) -> String {
    assert_root();
    let out = std::process::Command::new(common::profiler_bin())
        .args(["--mode", "per-call"])
        .args(verbose.then_some("-v"))
        .args(opts)
        .arg("--")
        .arg(workloads_bin())
        .args(["cow-fork", "--size", "1MiB"])
        .output()
        .expect("run the profiler");
    // The report goes to stdout or stderr depending on the outputs asked for: read both.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn a_full_copy_on_write_table_is_logged_by_the_kernel_and_warned_about() {
    // A table of one thread: the second thread that writes finds no room.
    let text = report_of(true, &["--cow-threads", "1"]);
    assert!(
        text.contains("kernel: WARN: copy-on-write table full: the faults of thread"),
        "{text}"
    );
    assert!(text.contains("warning: the kernel programs met"), "{text}");
    assert!(text.contains("beyond the per-thread table"), "{text}");
    // Without -v the message is not shown, the warning is.
    let quiet = report_of(false, &["--cow-threads", "1"]);
    assert!(!quiet.contains("kernel: WARN"), "{quiet}");
    assert!(
        quiet.contains("warning: the kernel programs met"),
        "{quiet}"
    );
}

#[test]
fn a_slot_clash_is_logged_by_the_kernel() {
    // One slot for every thread: the sender's and the receiver's calls clash.
    let text = report_of(true, &["--thread-slots", "1"]);
    assert!(
        text.contains("kernel: WARN: slot clash: the call slot of thread"),
        "{text}"
    );
}

#[test]
fn a_normal_run_logs_nothing() {
    let text = report_of(true, &[]);
    assert!(!text.contains("kernel: WARN"), "{text}");
    assert!(!text.contains("warning: the kernel programs met"), "{text}");
}
