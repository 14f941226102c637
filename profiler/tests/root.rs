//! Root tests: load the real probes, drive real workloads in the kernel, and check the
//! profiler's numbers against the workloads' own truth. Built only with the `root-tests`
//! feature (`cargo xtask test` turns it on); there, a test that cannot run fails.
#![cfg(feature = "root-tests")]

use std::process::Command;

use profiler::render::export::CallRow;

mod common;

use common::{assert_root, profile, scratch};

#[test]
fn blocking_wait_matches_the_sender_pacing() {
    let (out, rows, truth) = profile(
        "blocking",
        &[
            "blocking",
            "--interval",
            "5ms",
            "--size",
            "65536",
            "--count",
            "200",
        ],
    );
    assert!(
        rows.iter().all(|r| r.pid == truth.pid),
        "a row from another process"
    );
    let recv: Vec<&CallRow> = rows.iter().filter(|r| r.call == "recvfrom").collect();
    let truth_recv: Vec<_> = truth.calls_named("recvfrom").collect();
    assert_eq!(
        recv.len(),
        truth_recv.len(),
        "one row per receive call of the truth"
    );
    // Each row lies inside the workload's own clock readings around the same call.
    for (r, t) in recv.iter().zip(&truth_recv) {
        assert!(
            t.before_ns <= r.start_ns && r.start_ns + r.total_ns <= t.after_ns,
            "row {r:?} outside truth {t:?}"
        );
        assert_eq!(r.ret, t.ret);
    }
    let data: Vec<&&CallRow> = recv.iter().filter(|r| r.bytes > 0).collect();
    assert_eq!(data.iter().map(|r| r.bytes).sum::<u64>(), truth.bytes);
    for r in &data {
        assert!(r.copy_ns > 0, "no copy stage: {r:?}");
        assert!(
            r.wait_ns + r.copy_ns <= r.total_ns + 1_000,
            "stages exceed the call: {r:?}"
        );
        assert_eq!(r.stage_source, "marker", "{r:?}");
    }
    let mean_wait = data.iter().map(|r| r.wait_ns as f64).sum::<f64>() / data.len() as f64;
    assert!(
        (mean_wait - 5e6).abs() <= 0.2 * 5e6,
        "mean wait {mean_wait} ns is not within 20% of the 5 ms pacing"
    );
    // Almost all of that wait was spent asleep in the call.
    let blocked = data.iter().map(|r| r.wait_blocked_ns as f64).sum::<f64>() / data.len() as f64;
    assert!(
        blocked >= 0.8 * mean_wait,
        "blocked {blocked} of wait {mean_wait}"
    );
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("recvfrom socket: 200 calls"), "{stdout}");
}

#[test]
fn splice_moves_the_file_and_the_receiver_waits_then_copies() {
    let size: u64 = 32 << 20;
    let dir = scratch("splice-file");
    let file = dir.join("data.bin");
    let (out, rows, truth) = profile(
        "splice",
        &[
            "splice",
            "--size",
            &size.to_string(),
            "--file",
            file.to_str().expect("path"),
        ],
    );
    let sum = |call: &str, from: &str, to: &str| -> u64 {
        rows.iter()
            .filter(|r| r.call == call && r.fd_kind == from && r.fd_out_kind == to)
            .map(|r| r.bytes)
            .sum()
    };
    assert_eq!(sum("splice", "file", "pipe"), size);
    assert_eq!(sum("splice", "pipe", "socket"), size);
    assert_eq!(truth.file_bytes, size);
    let spliced: i64 = truth.calls_named("splice").map(|c| c.ret).sum();
    let profiled: u64 = rows
        .iter()
        .filter(|r| r.call == "splice")
        .map(|r| r.bytes)
        .sum();
    assert_eq!(profiled as i64, spliced);
    let recv: Vec<&CallRow> = rows
        .iter()
        .filter(|r| r.call == "recvfrom" && r.bytes > 0)
        .collect();
    assert_eq!(recv.iter().map(|r| r.bytes).sum::<u64>(), size);
    assert!(
        recv.iter()
            .all(|r| r.stage_source == "marker" && r.copy_ns > 0),
        "receiver calls not split"
    );
    assert!(
        recv.iter()
            .all(|r| r.wait_ns + r.copy_ns <= r.total_ns + 1_000)
    );
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("splice file→pipe"), "{stdout}");
    let _ = std::fs::remove_file(file);
}

#[test]
fn unprivileged_run_names_what_is_missing() {
    assert_root();
    // A copy readable by everyone, so that the unprivileged user can execute it wherever the
    // build folder lives.
    let dir = scratch("unpriv");
    let bin = dir.join("profiler");
    std::fs::copy(env!("CARGO_BIN_EXE_profiler"), &bin).expect("copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args(["--", "true"])
        .output()
        .expect("setpriv (util-linux) must be installed");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unprivileged run must fail");
    assert!(
        err.contains("needs root") && err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
}

#[test]
fn signals_sent_to_the_target_are_recorded() {
    use probe_common::SignalEvent;
    use profiler::{capture::decode::Record, capture::loader::LoadOptions, capture::session};
    assert_root();
    let opts = session::RunOptions {
        target: session::Target::Command(vec![
            "sh".into(),
            "-c".into(),
            "trap 'echo got' USR1; kill -USR1 $$; kill -USR1 $$".into(),
        ]),
        load: LoadOptions {
            calls: vec![profiler::syscalls::by_name("read").expect("read")],
            ..LoadOptions::default()
        },
        duration: Some(std::time::Duration::from_secs(20)),
        run_as: None,
    };
    let r = session::run(&opts, &mut Vec::new(), |_, _| {}).expect("run");
    let pid = r.pids[0];
    let count = |ev: SignalEvent| {
        r.events
            .iter()
            .filter(|e| matches!(e, Record::Signal(s) if s.sig == libc::SIGUSR1 && s.pid == pid && s.event == ev as u32))
            .count()
    };
    assert_eq!(count(SignalEvent::Generate), 2, "{:?}", r.events);
    assert_eq!(count(SignalEvent::Deliver), 2, "{:?}", r.events);
}
