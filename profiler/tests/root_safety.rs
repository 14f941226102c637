//! Root tests of running as root among untrusted processes: nothing a traced process leaves
//! behind blocks the profiler, the launched command dies with it and runs as the invoking
//! user, output errors stop nothing else, and signals end a run whatever it waits for. Built
//! only with the `root-tests` feature.
#![cfg(feature = "root-tests")]

mod common;

use std::{
    ffi::OsStr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use nix::sys::signal::Signal;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Waits until `ready` holds, at most `limit`; fails the test with `what` otherwise.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_fifo(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo())
}

#[test]
fn a_binary_replaced_by_a_fifo_does_not_hang_the_report() {
    assert_root();
    let dir = scratch("fifo-binary");
    let bash = dir.join("bash");
    let folded = dir.join("stacks.folded");
    // The traced shell copies bash, burns CPU in the copy (so that samples land in its code),
    // then puts a FIFO where the copy was, as a hostile process would, and exits.
    let script = format!(
        "cp /bin/bash {b} && {b} -c 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done' \
         && rm {b} && mkfifo {b}",
        b = bash.display()
    );
    let prof = Running::start(&[
        os("--freq"),
        os("499"),
        os("--folded"),
        folded.as_os_str(),
        os("--"),
        os("sh"),
        os("-c"),
        os(&script),
    ]);
    wait_for(
        "the FIFO in place of the binary",
        Duration::from_secs(60),
        || is_fifo(&bash),
    );
    // Past report time: a profiler blocked on the FIFO would still be running now.
    std::thread::sleep(Duration::from_secs(2));
    signal(prof.pid(), Signal::SIGINT);
    let done = prof.wait(Duration::from_secs(5));
    assert!(
        done.status.success(),
        "exit {:?}: {}",
        done.status,
        done.stderr
    );
    assert!(summary_calls(&done.stderr) > 0, "{}", done.stderr);
    let stacks = std::fs::read_to_string(&folded).expect("folded stacks");
    assert!(
        stacks.contains("[bash+0x"),
        "frames of the replaced binary are shown as offsets:\n{stacks}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The pid of a child of `parent` stopped at its gate (state `T`), if there is one.
fn stopped_child(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(") ")?;
        let mut it = rest.split(' ');
        let (state, ppid) = (it.next()?, it.next()?.parse::<u32>().ok()?);
        (state == "T" && ppid == parent).then_some(pid)
    })
}

/// How many of a process's descriptors are BPF objects or perf events.
fn probe_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|l| {
                    let l = l.to_string_lossy();
                    l.contains("bpf") || l.contains("perf_event")
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn the_gated_child_dies_with_the_profiler_and_never_holds_the_probes() {
    assert_root();
    let mut prof = Command::new(profiler_bin())
        .args(["--", "sleep", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the profiler");
    let parent = prof.id();
    // Watch the child at its gate while the profiler loads its probes.
    let t0 = Instant::now();
    let mut child = None;
    let mut seen_loaded = false;
    while t0.elapsed() < Duration::from_secs(60) {
        if let Some(c) = stopped_child(parent) {
            child = Some(c);
            assert_eq!(
                probe_descriptors(c),
                0,
                "the gated child holds probe descriptors"
            );
            if probe_descriptors(parent) > 0 {
                seen_loaded = true;
                break;
            }
        } else if child.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let child = child.expect("the profiler's child never waited at its gate");
    assert!(
        seen_loaded,
        "the child left its gate before the profiler was seen loading its probes"
    );
    signal(parent, Signal::SIGKILL);
    let _ = prof.wait();
    wait_for(
        "the gated child to die with the profiler",
        Duration::from_secs(5),
        || !alive(child),
    );
}

/// Runs the profiler on `id -u` with `args` before `--` and the environment `env`; returns
/// the uid the command printed and what the profiler said (its standard error).
fn uid_of_command(args: &[&str], env: &[(&str, &str)]) -> (u32, String) {
    let out = Command::new(profiler_bin())
        .args(args)
        .args(["--calls", "read", "--freq", "0", "--", "id", "-u"])
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .envs(env.iter().copied())
        .output()
        .expect("run the profiler");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = stdout
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no uid printed:\n{stdout}"));
    (uid, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_command_runs_as_the_user_asked_for_or_the_sudo_user() {
    assert_root();
    let (uid, report) = uid_of_command(&["--user", "nobody"], &[]);
    assert_eq!(uid, 65534);
    assert!(
        report.contains("command runs as nobody (uid 65534"),
        "{report}"
    );
    let sudo = [("SUDO_UID", "65534"), ("SUDO_GID", "65534")];
    let (uid, report) = uid_of_command(&[], &sudo);
    assert_eq!(
        uid, 65534,
        "under sudo the command runs as the invoking user"
    );
    assert!(
        report.contains("command runs as nobody (uid 65534"),
        "{report}"
    );
    let (uid, report) = uid_of_command(&["-u", "root"], &sudo);
    assert_eq!(uid, 0, "--user root runs it as root");
    assert!(report.contains("command runs as root (uid 0"), "{report}");
    let (uid, report) = uid_of_command(&[], &[]);
    assert_eq!(uid, 0, "without sudo or --user, the profiler's own user");
    assert!(!report.contains("command runs as"), "{report}");
}

/// The numbers of the closing line `N calls in Xs; records sent S, lost L` and of the line
/// `N calls not traced: …` (0 when absent).
fn lost_and_untraced(stdout: &str) -> (u64, u64) {
    let lost = stdout
        .lines()
        .find_map(|l| l.split_once(", lost ").map(|(_, r)| r))
        .and_then(|r| r.split([',', ' ']).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no lost count in:\n{stdout}"));
    let untraced = stdout
        .lines()
        .find_map(|l| {
            let (before, _) = l.split_once(" calls not traced")?;
            before.split_whitespace().last()?.parse().ok()
        })
        .unwrap_or(0);
    (lost, untraced)
}

#[test]
fn threads_sharing_one_slot_lose_no_call_uncounted() {
    assert_root();
    let dir = scratch("one-slot");
    let csv = dir.join("calls.csv");
    // Two processes reading one byte at a time on two CPUs, every thread in one slot.
    const N: u64 = 100_000;
    let dd = format!("dd if=/dev/zero of=/dev/null bs=1 count={N} 2>/dev/null");
    let out = Command::new(profiler_bin())
        .args(["--thread-slots", "1", "--calls", "read", "--freq", "0"])
        .args(["--ringbuf-size", "67108864", "--bounded", "--csv"])
        .arg(&csv)
        .args(["--", "sh", "-c", &format!("{dd} & {dd}; wait")])
        .output()
        .expect("run the profiler");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {report}", out.status);
    let rows = read_complete_csv(&csv);
    // dd reads its input on descriptor 0, one byte a call.
    let mut per_pid = std::collections::BTreeMap::<u32, u64>::new();
    for r in rows
        .iter()
        .filter(|r| r.call == "read" && r.fd == 0 && r.ret == 1)
    {
        *per_pid.entry(r.pid).or_default() += 1;
    }
    let seen: u64 = per_pid.values().sum();
    let (lost, untraced) = lost_and_untraced(&report);
    assert!(seen <= 2 * N, "{per_pid:?}");
    assert!(
        seen + lost + untraced >= 2 * N,
        "{seen} reads seen, {lost} lost and {untraced} not traced of {}: {per_pid:?}\n{report}",
        2 * N
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unwritable_movement_summary_is_reported_and_the_run_goes_on() {
    assert_root();
    let out = Command::new(profiler_bin())
        .args(["--calls", "read", "--movement-json", "/dev/full", "--"])
        .args(["dd", "if=/dev/zero", "of=/dev/null", "count=100"])
        .output()
        .expect("run the profiler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("profiler: error: failed to write") && l.contains("/dev/full")),
        "{stderr}"
    );
    assert!(summary_calls(&stderr) >= 100, "{stderr}");
}

/// A FIFO in a scratch folder.
fn fifo(dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    p
}

#[test]
fn a_bounded_csv_that_fails_mid_run_stops_nothing_else() {
    assert_root();
    let dir = scratch("csv-fails");
    let pipe = fifo(&dir, "calls.csv");
    // The reader takes the header and some rows, then leaves: the next write fails.
    let mut reader = Command::new("head")
        .args(["-c", "200000"])
        .arg(&pipe)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the reader");
    let prof = flood_into(&pipe, "3s");
    let done = prof.wait(Duration::from_secs(60));
    let _ = reader.wait();
    assert_output_failed(&done, &pipe);
    assert!(
        !done.stderr.contains("command killed by signal"),
        "the command was signalled: {}",
        done.stderr
    );
    assert!(done.stderr.contains("recvfrom socket:"), "{}", done.stderr);
    assert!(summary_calls(&done.stderr) > 1000, "{}", done.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

/// The run ended with its report and exit 3, naming the output that failed.
fn assert_output_failed(done: &Finished, output: &Path) {
    assert_eq!(done.status.code(), Some(3), "{}", done.stderr);
    let said = format!("profiler: error: failed to write {}", output.display());
    assert!(done.stderr.contains(&said), "{}", done.stderr);
    assert!(summary_calls(&done.stderr) > 0, "{}", done.stderr);
}

/// Holds a FIFO open for reading without reading it: writes to it block once its buffer is
/// full.
fn stalled_reader(pipe: &Path) -> std::process::Child {
    Command::new("sh")
        .args(["-c", "exec 3<\"$0\"; sleep 120", &pipe.to_string_lossy()])
        .spawn()
        .expect("start the stalled reader")
}

#[test]
fn sigint_ends_a_run_blocked_on_a_stalled_output() {
    assert_root();
    let dir = scratch("stalled");
    let pipe = fifo(&dir, "calls.csv");
    let mut reader = stalled_reader(&pipe);
    let prof = flood_into(&pipe, "60s");
    // The flood fills the FIFO's buffer in far less than this.
    std::thread::sleep(Duration::from_secs(2));
    signal(prof.pid(), Signal::SIGINT);
    let done = prof.wait(Duration::from_secs(15));
    let _ = reader.kill();
    let _ = reader.wait();
    assert_output_failed(&done, &pipe);
    assert!(summary_calls(&done.stderr) > 0, "{}", done.stderr);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_second_signal_ends_the_profiler_at_once() {
    assert_root();
    let dir = scratch("second-signal");
    let csv = dir.join("calls.csv");
    let mut prof = flood_into(&csv, "60s");
    let target = prof.target;
    std::thread::sleep(Duration::from_millis(500));
    signal(prof.pid(), Signal::SIGINT);
    // Releasing the probes takes the first signal's run a second or more: the second lands
    // before it has ended, and ends the profiler without its report (exit 128 + SIGTERM; the
    // first alone ends the run with exit 0).
    std::thread::sleep(Duration::from_millis(50));
    signal(prof.pid(), Signal::SIGTERM);
    let status = prof.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    wait_for("the traced command to end", Duration::from_secs(5), || {
        !alive(target)
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pid_1_is_refused_with_one_line_and_no_note() {
    assert_root();
    let out = Command::new(profiler_bin())
        .args(["-p", "1", "-d", "1s"])
        .output()
        .expect("run the profiler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("pid 1 is the init process"), "{stderr}");
}

#[test]
fn a_flame_graph_without_samples_is_an_explicit_empty_graph() {
    assert_root();
    let dir = scratch("empty-flame");
    let svg = dir.join("f.svg");
    // No traced call runs long enough for a sample at 1 Hz.
    let out = Command::new(profiler_bin())
        .args(["-v", "--calls", "read", "--freq", "1", "--flamegraph"])
        .arg(&svg)
        .args(["--", "true"])
        .output()
        .expect("run the profiler");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("warning: the flame graph"), "{report}");
    let text = std::fs::read_to_string(&svg).expect("the SVG");
    assert!(
        text.contains("<svg") && text.contains("no CPU samples"),
        "{text}"
    );
    assert!(!report.contains("0 samples lost"), "{report}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_closed_stdout_is_the_reader_leaving() {
    assert_root();
    let mut prof = Command::new(profiler_bin())
        .args(["--calls", "read", "--", "true"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the profiler");
    // The reader of the report leaves before it is written.
    drop(prof.stdout.take());
    let out = prof.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn an_unread_fifo_output_says_what_it_waits_for() {
    use std::io::BufRead as _;
    assert_root();
    let dir = scratch("unread-fifo");
    let pipe = fifo(&dir, "calls.jsonl");
    let mut prof = Command::new(profiler_bin())
        .args(["--calls", "read", "--json"])
        .arg(&pipe)
        .args(["--", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the profiler");
    let err = prof.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(err).lines();
        let first = lines.next();
        let _ = tx.send(first.and_then(Result::ok).unwrap_or_default());
        // Read on to the end: the profiler still writes to its standard error.
        lines.for_each(drop);
    });
    let first = rx.recv_timeout(Duration::from_secs(30));
    if first.is_err() {
        let _ = prof.kill();
        let _ = prof.wait();
    }
    let first = first.expect("the profiler said nothing while it waited for a reader");
    assert!(
        first.contains("waiting for a process to read the FIFO"),
        "{first}"
    );
    let reader = Command::new("cat")
        .arg(&pipe)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start a reader");
    let status = prof.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let _ = reader.wait_with_output();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_loader_refuses_a_ring_buffer_above_its_bound() {
    assert_root();
    let opts = profiler::capture::loader::LoadOptions {
        ringbuf_bytes: profiler::plan::MAX_RINGBUF_BYTES * 2,
        ..Default::default()
    };
    let e = profiler::capture::loader::Probes::load(&opts)
        .err()
        .expect("a 2 GiB ring buffer must be refused");
    assert!(format!("{e:#}").contains("at most"), "{e:#}");
    let out = Command::new(profiler_bin())
        .args(["--ringbuf-size", "2147483648", "--", "true"])
        .output()
        .expect("run the profiler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--ringbuf-size") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// A traced process may name itself with a terminal's escape sequence: the root terminal
/// that reads the report sees it as `?`, never as control characters.
#[test]
fn a_process_named_with_escape_sequences_is_shown_printable() {
    assert_root();
    let script = "import ctypes, os\n\
                  ctypes.CDLL(None).prctl(15, b'\\x1b[31mevil\\x07', 0, 0, 0)\n\
                  r, w = os.pipe()\n\
                  os.write(w, b'x' * 7)\n\
                  os.read(r, 7)\n";
    let out = Command::new(profiler_bin())
        .args(["--show", "threads", "--", "python3", "-c", script])
        .output()
        .expect("run the profiler");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("?[31mevil?"),
        "the renamed thread is not listed:\n{report}"
    );
    let controls: Vec<char> = report
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(
        controls.is_empty(),
        "control characters {controls:?} in:\n{report}"
    );
}
