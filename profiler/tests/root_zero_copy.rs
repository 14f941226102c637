//! Root tests of the zero-copy methods: every method delivers exactly the file and the
//! profiler's byte counts equal the workload's; mmap-write's page faults agree with the
//! kernel's own count; sendfile and splice move nothing through user memory while read-write
//! does; mmap-truncate survives the truncation and its signals are listed.
#![cfg(feature = "root-tests")]

mod common;

use std::path::PathBuf;

use common::{Run, profile_run, scratch};
use profiler::render::export::CallRow;
use workloads::{methods::Method, transfer::digest_file};

/// A test file of `size` bytes in a scratch folder (removed by the caller).
/// A scratch folder with a test file of `size` bytes in it, and the file's path.
fn test_file(name: &str, size: u64) -> (common::Scratch, PathBuf) {
    let dir = scratch(name);
    let f = dir.join("data.bin");
    workloads::files::ensure_file(Some(&f), size).expect("test file");
    (dir, f)
}

fn run_method(m: Method, file: &std::path::Path, size: u64) -> Run {
    profile_run(
        m.name(),
        &[
            m.name(),
            "--file",
            file.to_str().expect("path"),
            "--size",
            &size.to_string(),
        ],
    )
}

/// The thread that made the method's data-moving calls, from the truth.
fn sender_tid(r: &Run, m: Method) -> u32 {
    let call = m.data_calls()[m.data_calls().len() - 1];
    r.truth
        .calls_named(call)
        .next()
        .unwrap_or_else(|| panic!("{}: no {call} in the truth", m.name()))
        .tid
}

fn sender_rows(r: &Run, tid: u32) -> Vec<&CallRow> {
    r.rows.iter().filter(|row| row.tid == tid).collect()
}

#[test]
fn every_method_delivers_the_file_and_the_byte_counts_match_the_truth() {
    let size: u64 = 16 << 20;
    let (_dir, file) = test_file("methods", size);
    let want = digest_file(&file).expect("digest");
    for m in Method::ALL {
        let r = run_method(m, &file, size);
        let name = m.name();
        assert_eq!(r.truth.bytes, size, "{name}: bytes delivered");
        assert_eq!(r.truth.digest, want, "{name}: other bytes arrived");
        let tid = sender_tid(&r, m);
        for call in m.data_calls() {
            let truth: Vec<_> = r.truth.calls_named(call).filter(|c| c.tid == tid).collect();
            let fds: Vec<i64> = truth.iter().map(|c| i64::from(c.fd)).collect();
            let rows: Vec<_> = r
                .rows
                .iter()
                .filter(|row| row.tid == tid && row.call == *call && fds.contains(&row.fd))
                .collect();
            assert_eq!(rows.len(), truth.len(), "{name}: {call} calls");
            let ret = |v: i64| v.max(0) as u64;
            assert_eq!(
                rows.iter().map(|row| ret(row.ret)).sum::<u64>(),
                truth.iter().map(|c| ret(c.ret)).sum::<u64>(),
                "{name}: {call} results"
            );
        }
        // What the data-moving calls moved, as the profiler counts bytes.
        let moved = |call: &str| -> u64 {
            r.rows
                .iter()
                .filter(|row| row.tid == tid && row.call == call)
                .map(|row| row.bytes)
                .sum()
        };
        match m {
            Method::ReadWrite | Method::DirectIo => {
                assert_eq!((moved("read"), moved("write")), (size, size), "{name}")
            }
            Method::MmapWrite => assert_eq!(moved("write"), size, "{name}"),
            Method::Sendfile => assert_eq!(moved("sendfile64"), size, "{name}"),
            Method::Splice => assert_eq!(moved("splice"), 2 * size, "{name}"),
            Method::MsgZerocopy => assert_eq!(moved("sendto"), size, "{name}"),
            // io_uring_enter returns requests, not bytes: the socket sends are counted.
            Method::IoUring => {
                assert_eq!(moved("io_uring_enter"), 0, "{name}");
                let in_calls: u64 = r
                    .rows
                    .iter()
                    .filter(|row| row.call == "io_uring_enter")
                    .map(|row| row.sent_bytes)
                    .sum();
                assert!(in_calls <= size, "{name}: {in_calls}");
            }
            Method::CopyFileRange => assert_eq!(moved("copy_file_range"), size, "{name}"),
            Method::CowPrivate => assert_eq!(moved("write"), size, "{name}"),
            // And one byte to the pipe that lets the child write after the parent.
            Method::CowFork => assert_eq!((moved("read"), moved("write")), (size, size + 1)),
            // One more page goes through a pipe after the transfer (the rewrite test).
            Method::VmspliceGift => assert_eq!(
                (moved("read"), moved("vmsplice"), moved("splice")),
                (size + 4096, size + 4096, size),
                "{name}"
            ),
        }
        // Bytes that reached the socket, counted in the kernel; the bytes moved are the
        // largest stream, with the dynamic loader's reads of its libraries. The copy's bytes
        // are checked above: its workload reads the copy back to check it, which moves the
        // file's bytes again.
        if m != Method::CopyFileRange {
            assert_eq!(r.movement.to.sockets, size, "{name}: bytes delivered");
            assert!(
                (size..size + (64 << 10)).contains(&r.movement.bytes),
                "{name}: bytes moved {} for {size}",
                r.movement.bytes
            );
        }
        if m != Method::CopyFileRange {
            let received: u64 = r
                .rows
                .iter()
                .filter(|row| row.call == "recvfrom" && row.fd_kind == "socket")
                .map(|row| row.bytes)
                .sum();
            assert_eq!(received, size, "{name}: bytes received");
        }
    }
    let _ = std::fs::remove_file(file);
}

#[test]
fn mmap_write_faults_agree_with_the_kernels_own_count() {
    let size: u64 = 64 << 20;
    let (_dir, file) = test_file("mmap-faults", size);
    let r = run_method(Method::MmapWrite, &file, size);
    let tid = sender_tid(&r, Method::MmapWrite);
    let rows = sender_rows(&r, tid);
    let faults: u64 = rows
        .iter()
        .map(|row| u64::from(row.faults_user) + u64::from(row.faults_kernel))
        .sum();
    let kernel: u64 = rows
        .iter()
        .filter(|row| row.call == "write")
        .map(|row| u64::from(row.faults_kernel))
        .sum();
    let independent = r.truth.sender_faults;
    assert!(independent > 0, "the kernel counted no fault");
    let diff = (faults as f64 - independent as f64).abs() / independent as f64;
    assert!(
        diff <= 0.05,
        "profiler {faults} faults vs getrusage(RUSAGE_THREAD) {independent} ({:.1}%)",
        diff * 100.0
    );
    // The file's pages are faulted in by the kernel's copy inside write.
    assert!(kernel as f64 >= 0.9 * faults as f64, "{kernel} of {faults}");
    assert!(r.movement.faults_kernel >= kernel);
    let _ = std::fs::remove_file(file);
}

/// Bytes the sending thread moved through user memory with read-like and write-like calls.
fn user_memory_bytes(r: &Run, tid: u32) -> (u64, u64) {
    let sum = |calls: &[&str]| -> u64 {
        sender_rows(r, tid)
            .iter()
            .filter(|row| calls.contains(&row.call.as_str()))
            .map(|row| row.bytes)
            .sum()
    };
    (
        sum(&["read", "pread64", "readv"]),
        sum(&["write", "writev", "sendto", "sendmsg"]),
    )
}

#[test]
fn sendfile_and_splice_move_nothing_through_user_memory_read_write_does() {
    let size: u64 = 16 << 20;
    let (_dir, file) = test_file("user-memory", size);
    for m in [Method::Sendfile, Method::Splice] {
        let r = run_method(m, &file, size);
        let tid = sender_tid(&r, m);
        assert_eq!(user_memory_bytes(&r, tid), (0, 0), "{}", m.name());
        // Process-wide, only the loader's reads of libraries remain.
        assert_eq!(r.movement.user_writes, 0, "{}", m.name());
        assert!(r.movement.user_reads < 1 << 20, "{}", m.name());
    }
    let r = run_method(Method::ReadWrite, &file, size);
    let tid = sender_tid(&r, Method::ReadWrite);
    assert_eq!(user_memory_bytes(&r, tid), (size, size));
    assert!(r.movement.user_reads >= size && r.movement.user_writes == size);
    let _ = std::fs::remove_file(file);
}

#[test]
fn mmap_truncate_survives_both_ways_and_its_signals_are_listed() {
    let size: u64 = 16 << 20;
    let (_dir, file) = test_file("truncate", size);
    for (variant, signal) in [("sigbus", "SIGBUS"), ("lease", "SIGRTMIN+1")] {
        let r = profile_run(
            &format!("truncate-{variant}"),
            &[
                "mmap-truncate",
                "--variant",
                variant,
                "--file",
                file.to_str().expect("path"),
                "--size",
                &size.to_string(),
            ],
        );
        // profile_run checked the exit status: 0.
        let stdout = String::from_utf8_lossy(&r.out.stderr);
        let pid = r.truth.pid;
        assert!(
            stdout.contains(&format!("{signal} sent to task ")),
            "{variant}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("{signal} delivered to thread"))
                && stdout.contains(&format!("of pid {pid}")),
            "{variant}: {stdout}"
        );
        assert_eq!(r.truth.bytes, size / 2, "{variant}: {}", r.truth.outcome);
        match variant {
            "sigbus" => assert!(
                r.truth.outcome.contains("SIGBUS at offset"),
                "{}",
                r.truth.outcome
            ),
            _ => assert!(r.truth.outcome.contains("no SIGBUS"), "{}", r.truth.outcome),
        }
        let stderr = String::from_utf8_lossy(&r.out.stderr);
        assert!(stderr.contains("mmap-truncate"), "{stderr}");
    }
    let _ = std::fs::remove_file(file);
}
