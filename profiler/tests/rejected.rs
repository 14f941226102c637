//! A rejected command line exits with status 2, says why in one line, attaches nothing and
//! leaves every existing output file byte-identical. Needs no root: every check comes before
//! the probes.
use std::{path::PathBuf, process::Command};

fn scratch() -> PathBuf {
    tempfile::Builder::new()
        .prefix("ioprof-rejected-")
        .tempdir()
        .expect("scratch folder")
        .keep()
}

#[test]
fn rejected_command_lines_change_no_file() {
    let dir = scratch();
    let a = dir.join("a.csv");
    let b = dir.join("b.csv");
    let keep = |p: &PathBuf| std::fs::write(p, format!("old content of {}\n", p.display()));
    keep(&a).expect("write a");
    keep(&b).expect("write b");
    let (sa, sb) = (a.to_str().expect("utf8"), b.to_str().expect("utf8"));
    let same_dir_b = dir.join(".").join("b.csv");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "freq above the kernel's limit",
            vec!["--csv", sa, "--freq", "100000000", "--", "true"],
            "--freq",
        ),
        (
            "a call named twice",
            vec!["--csv", sa, "--calls", "read,read", "--", "true"],
            "`read` twice",
        ),
        (
            "a command that does not exist",
            vec!["--csv", sa, "--", "no-such-command-ioprof"],
            "not found in PATH",
        ),
        (
            "a command that is not executable",
            vec!["--csv", sa, "--", "/etc/passwd"],
            "not an executable",
        ),
        (
            "two outputs on one path",
            vec![
                "--csv",
                sb,
                "--summary-csv",
                same_dir_b.to_str().expect("utf8"),
                "--",
                "true",
            ],
            "both write to",
        ),
        (
            "a ring buffer above the bound",
            vec!["--csv", sa, "--ringbuf-size", "2147483648", "--", "true"],
            "--ringbuf-size",
        ),
        (
            "two outputs on standard output",
            vec!["--csv", sa, "--json", "-", "--trace", "-", "--", "true"],
            "standard output",
        ),
        (
            "no target",
            vec!["--csv", sa, "--findings", sb],
            "say what to trace",
        ),
    ];
    for (name, args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_profiler"))
            .args(&args)
            .output()
            .expect("run the profiler");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: not one line: {err}");
        assert!(err.contains(want), "{name}: `{want}` missing from {err}");
        assert!(!err.contains("Tracing"), "{name}: attached: {err}");
        for p in [&a, &b] {
            assert_eq!(
                std::fs::read_to_string(p).expect("still there"),
                format!("old content of {}\n", p.display()),
                "{name}: {} changed",
                p.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
