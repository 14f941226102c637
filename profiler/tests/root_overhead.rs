//! Root tests of the profiler's cost paths: summary mode (sums kept in the kernel) agrees with
//! per-call mode on the same calls, and a ring buffer too small for the rate reports exactly
//! the records it lost. Built only with the `root-tests` feature; no timing is asserted.
#![cfg(feature = "root-tests")]

use probe_common::{SummaryKey, mode};
use profiler::{
    analyze::summary,
    capture::loader::LoadOptions,
    capture::session::{self, RunResult, Target},
    syscalls,
};
use workloads::truth::Truth;

/// Runs `workloads ARGS --truth FILE` under the profiler with these load options.
/// A run with its calls.
struct Ran {
    r: RunResult,
    calls: Vec<profiler::capture::traced::TracedCall>,
}

mod common;
use common::{assert_root, scratch, workloads_bin};

fn run(tag: &str, args: &[&str], load: LoadOptions) -> (Ran, Truth) {
    run_with(tag, args, load, false)
}

/// [`run`], with the workload started by a shell when `under_shell` (so that two processes are
/// traced: the shell and its child).
fn run_with(tag: &str, args: &[&str], load: LoadOptions, under_shell: bool) -> (Ran, Truth) {
    assert_root();
    let dir = scratch(&format!("overhead-{tag}"));
    let truth_path = dir.join("truth.json");
    let mut argv = Vec::new();
    if under_shell {
        // `; true` keeps the shell from replacing itself with the workload.
        argv.extend(["sh", "-c", "\"$0\" \"$@\"; true"].map(String::from));
    }
    argv.push(workloads_bin().to_string_lossy().into_owned());
    argv.extend(args.iter().map(|a| a.to_string()));
    argv.push("--truth".into());
    argv.push(truth_path.to_string_lossy().into_owned());
    let opts = session::RunOptions {
        target: Target::Command(argv),
        load,
        duration: Some(std::time::Duration::from_secs(60)),
        run_as: None,
    };
    let mut calls = Vec::new();
    let r = session::run(&opts, &mut calls, |_, _| {}).expect("profiler run");
    let r = Ran { r, calls };
    let truth = Truth::read(&truth_path).expect("truth");
    let _ = std::fs::remove_dir_all(&dir);
    (r, truth)
}

fn calls(names: &[&str]) -> Vec<&'static syscalls::Call> {
    names
        .iter()
        .map(|n| syscalls::by_name(n).expect("known call"))
        .collect()
}

/// The per-call records of a run, summed per process and call as the kernel sums them.
fn sums_of_records(r: &Ran) -> summary::Summaries {
    let mut out = summary::Summaries::new();
    for c in &r.calls {
        let call = syscalls::by_nr(c.rec.nr).expect("a traced call");
        let key = SummaryKey::of(profiler::capture::fdkind::call_fds(call), &c.rec);
        summary::add_call(
            out.entry(key).or_default(),
            &c.stages,
            c.bytes(),
            c.rec.ret < 0,
        );
    }
    out
}

fn both_modes_agree(tag: &str, names: &[&str], args: &[&str]) -> (Ran, Truth) {
    let (r, truth) = run(
        tag,
        args,
        LoadOptions {
            calls: calls(names),
            mode: mode::RECORDS | mode::AGGREGATE,
            ..LoadOptions::default()
        },
    );
    assert_eq!(
        r.r.lost, 0,
        "records lost: the comparison needs every record"
    );
    sums_agree(&r);
    (r, truth)
}

/// The kernel's sums of a run in both modes equal the sums of its records.
fn sums_agree(r: &Ran) {
    assert_eq!(r.r.summary_full, 0);
    let from_records = sums_of_records(r);
    assert!(!from_records.is_empty(), "no call traced");
    assert_eq!(
        r.r.summaries.keys().collect::<Vec<_>>(),
        from_records.keys().collect::<Vec<_>>(),
        "the same processes and calls"
    );
    for (k, kernel) in &r.r.summaries {
        let user = &from_records[k];
        assert_eq!(
            (
                kernel.calls,
                kernel.data_calls,
                kernel.marker_calls,
                kernel.bytes
            ),
            (user.calls, user.data_calls, user.marker_calls, user.bytes),
            "{k:?}: counts and bytes"
        );
        // The kernel follows the attribution rules exactly: every stage sum is equal.
        assert_eq!(kernel, user, "{k:?}: stage sums and histograms");
    }
}

#[test]
fn clashing_table_slots_lose_no_call_and_keep_the_sums() {
    // One slot for every thread and process: the shell holds the process slot, so the workload
    // it starts goes to the process clash table; the receiver blocked in its call holds the
    // thread slot, so the sender's calls go to the call clash table.
    let args: Vec<&str> = "blocking --interval 1ms --size 4096 --count 100"
        .split(' ')
        .collect();
    let (r, truth) = run_with(
        "clash",
        &args,
        LoadOptions {
            calls: calls(&["recvfrom", "sendto"]),
            mode: mode::RECORDS | mode::AGGREGATE,
            thread_slots: 1,
            ..LoadOptions::default()
        },
        true,
    );
    assert_eq!(r.r.lost, 0);
    let counter = |c| r.r.counter(c);
    assert!(
        counter(probe_common::Counter::ProcsSpilled) > 0,
        "the workload never went to the process clash table"
    );
    assert!(
        counter(probe_common::Counter::CallsSpilled) > 0,
        "no call went to the call clash table"
    );
    assert_eq!(counter(probe_common::Counter::InFlightFull), 0);
    let of = |nr: i64| {
        r.calls
            .iter()
            .filter(move |c| c.rec.pid == truth.pid && c.rec.nr == nr as u32)
    };
    let receives: Vec<_> = of(libc::SYS_recvfrom).collect();
    assert_eq!(receives.len(), truth.calls_named("recvfrom").count());
    let received: i64 = receives.iter().map(|c| c.rec.ret.max(0)).sum();
    assert_eq!(received as u64, truth.bytes);
    for c in receives.iter().filter(|c| c.rec.ret > 0) {
        assert!(
            c.rec.first_copy_ns >= c.rec.start_ns && c.rec.first_copy_ns <= c.rec.end_ns,
            "a receive without its copy marker: {:?}",
            c.rec
        );
    }
    assert!(
        receives.iter().map(|c| c.rec.blocked_ns).sum::<u64>() > 0,
        "the scheduler hooks never found the receiver asleep"
    );
    let sent: i64 = of(libc::SYS_sendto)
        .filter(|c| c.rec.fd_class == probe_common::fd_class::TCP)
        .map(|c| c.rec.ret.max(0))
        .sum();
    assert_eq!(sent as u64, truth.bytes, "the sender's sends");
    sums_agree(&r);
}

#[test]
fn summary_and_per_call_agree_on_blocking_receives() {
    let (r, truth) = both_modes_agree(
        "blocking",
        &["recvfrom"],
        &[
            "blocking",
            "--interval",
            "1ms",
            "--size",
            "65536",
            "--count",
            "100",
        ],
    );
    let key = SummaryKey {
        pid: truth.pid,
        nr: libc::SYS_recvfrom as u32,
        fd_class: probe_common::fd_class::TCP,
    };
    let s = &r.r.summaries[&key];
    assert_eq!(s.calls, truth.calls_named("recvfrom").count() as u64);
    assert_eq!(s.bytes, truth.bytes);
    assert_eq!(
        s.marker_calls, s.data_calls,
        "every receive split at its copy"
    );
    assert!(s.wait_ns > 0 && s.copy_ns > 0);
}

#[test]
fn summary_and_per_call_agree_on_file_reads() {
    let dir = tempfile::tempdir().expect("scratch folder");
    let file = dir.path().join("read.bin");
    let (r, truth) = both_modes_agree(
        "readloop",
        &["read"],
        &[
            "readloop",
            "--size",
            "8MiB",
            "--passes",
            "2",
            "--file",
            file.to_str().expect("path"),
        ],
    );
    let _ = std::fs::remove_file(&file);
    let key = SummaryKey {
        pid: truth.pid,
        nr: libc::SYS_read as u32,
        fd_class: probe_common::fd_class::FILE,
    };
    let s = &r.r.summaries[&key];
    // The loop's reads, and a few reads of the program's own start-up.
    assert!(
        s.calls >= truth.loop_calls,
        "{} < {}",
        s.calls,
        truth.loop_calls
    );
    assert!(s.bytes >= truth.bytes);
    assert_eq!(truth.bytes, 2 * (8 << 20));
}

#[test]
fn a_tiny_ring_buffer_reports_exactly_the_records_lost() {
    let count: u64 = 200_000;
    let (r, truth) = run(
        "tiny-ring",
        &["eagain", "--count", &count.to_string()],
        LoadOptions {
            calls: calls(&["recvfrom"]),
            ringbuf_bytes: 4096,
            mode: mode::RECORDS,
            ..LoadOptions::default()
        },
    );
    assert_eq!(truth.loop_calls, count);
    let received = r
        .calls
        .iter()
        .filter(|c| c.rec.pid == truth.pid && c.rec.nr == libc::SYS_recvfrom as u32)
        .count() as u64;
    assert!(
        r.r.calls_lost > 0,
        "a 4 KiB ring buffer kept up with {count} calls"
    );
    assert!(r.r.lost >= r.r.calls_lost);
    assert_eq!(
        received + r.r.calls_lost,
        count,
        "received {received} + lost {} must be every call",
        r.r.calls_lost
    );
}

#[test]
fn summary_mode_loses_nothing_with_a_tiny_ring_buffer() {
    let count: u64 = 200_000;
    let (r, truth) = run(
        "tiny-summary",
        &["eagain", "--count", &count.to_string()],
        LoadOptions {
            calls: calls(&["recvfrom"]),
            ringbuf_bytes: 4096,
            mode: mode::AGGREGATE,
            // The per-class sums of `profiler serve`: the summary-only classifying path.
            summary_classes: true,
            ..LoadOptions::default()
        },
    );
    assert!(r.calls.is_empty(), "summary mode sent per-call records");
    assert_eq!(r.r.calls_lost, 0);
    let key = SummaryKey {
        pid: truth.pid,
        nr: libc::SYS_recvfrom as u32,
        fd_class: probe_common::fd_class::UDP,
    };
    let s = &r.r.summaries[&key];
    assert_eq!(s.calls, count);
    assert_eq!((s.data_calls, s.bytes), (0, 0));
    assert_eq!(s.wait_ns, s.total_ns, "a failed call is all wait");
}

#[test]
fn self_stats_count_each_program_run() {
    let count: u64 = 50_000;
    let (r, _) = run(
        "self-stats",
        &["eagain", "--count", &count.to_string()],
        LoadOptions {
            calls: calls(&["recvfrom"]),
            mode: mode::AGGREGATE,
            self_stats: true,
            ..LoadOptions::default()
        },
    );
    let progs = r.r.programs.expect("statistics were asked for");
    // The call hooks: raw tracepoints where the kernel has them, else per-call tracepoints.
    let runs = |name: &str| {
        progs
            .iter()
            .filter(|p| p.name == name || p.name == format!("raw_{name}"))
            .max_by_key(|p| p.runs)
            .unwrap_or_else(|| panic!("no statistics for {name}: {progs:?}"))
    };
    // Every call of the loop ran both programs (calls of other processes may add more).
    for name in ["call_enter", "call_exit"] {
        let p = runs(name);
        assert!(p.runs >= count, "{name}: {} runs for {count} calls", p.runs);
        assert!(p.run_ns > 0, "{name}: no run time recorded");
    }
}
