//! The checks of a command line that need the file system or the kernel's settings, all
//! read-only: a command line that fails one changes no file.
use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use nix::unistd::{AccessFlags, access};

use super::{Dest, Outputs, PlanError};
use crate::syscalls::{self, Call};

/// The kernel's limit on perf sampling frequencies.
pub const MAX_SAMPLE_RATE: &str = "/proc/sys/kernel/perf_event_max_sample_rate";

fn err<T>(msg: String) -> Result<T, PlanError> {
    Err(PlanError::Usage(msg))
}

/// The calls named, each known and named once.
pub fn calls(names: &[String]) -> Result<Vec<&'static Call>, PlanError> {
    let mut out: Vec<&'static Call> = Vec::new();
    for n in names {
        let Some(c) = syscalls::by_name(n) else {
            let known: Vec<_> = syscalls::ALL.iter().map(|c| c.name).collect();
            return err(format!(
                "unknown call `{n}`; known calls: {}",
                known.join(", ")
            ));
        };
        if out.iter().any(|o| o.name == c.name) {
            return err(format!("--calls names `{n}` twice: name each call once"));
        }
        out.push(c);
    }
    Ok(out)
}

/// `hz` is within the kernel's limit (when the limit can be read).
pub fn freq(hz: u64) -> Result<(), PlanError> {
    let limit = std::fs::read_to_string(MAX_SAMPLE_RATE)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    freq_within(hz, limit)
}

fn freq_within(hz: u64, limit: Option<u64>) -> Result<(), PlanError> {
    match limit {
        Some(max) if hz > max => err(format!(
            "--freq {hz} is above the kernel's limit of {max} Hz ({MAX_SAMPLE_RATE}): use \
             --freq {max} or less"
        )),
        _ => Ok(()),
    }
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        && access(p, AccessFlags::X_OK).is_ok()
}

/// The command can be started: a path to an executable file, or a name found in `PATH`.
pub fn command(argv0: &str) -> Result<(), PlanError> {
    if argv0.contains('/') {
        let p = Path::new(argv0);
        if !p.exists() {
            return err(format!("command {argv0} does not exist"));
        }
        if !executable(p) {
            return err(format!(
                "command {argv0} is not an executable file (chmod +x it, or name another)"
            ));
        }
        return Ok(());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(argv0))) {
        Ok(())
    } else {
        err(format!(
            "command `{argv0}` not found in PATH: give its path, or install it"
        ))
    }
}

/// A file to read (`--compare`).
pub fn readable(p: &Path) -> Result<(), PlanError> {
    if access(p, AccessFlags::R_OK).is_err() || p.is_dir() {
        return err(format!("cannot read {}", p.display()));
    }
    Ok(())
}

/// An output file can be created or truncated, without touching it.
pub fn writable(path: &Path) -> Result<(), PlanError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return err(format!(
            "cannot write {}: the folder {} does not exist (create it first)",
            path.display(),
            dir.display()
        ));
    }
    if path.is_dir() {
        return err(format!(
            "cannot write {}: it is a folder; give a file name",
            path.display()
        ));
    }
    let r = if path.exists() {
        access(path, AccessFlags::W_OK)
    } else {
        access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
    };
    match r {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EROFS) => err(format!(
            "cannot write {}: it is on a read-only file system (give another path)",
            path.display()
        )),
        Err(_) => err(format!(
            "cannot write {}: permission denied (give another path)",
            path.display()
        )),
    }
}

/// One key per place written: standard output, or the file's canonical path.
fn place(d: &Dest) -> PathBuf {
    match d {
        Dest::Stdout => PathBuf::from("-"),
        Dest::File(p) => p.canonicalize().unwrap_or_else(|_| {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
            p.file_name().map_or(dir.clone(), |n| dir.join(n))
        }),
    }
}

/// No two outputs write to one place (standard output included).
pub fn distinct(outputs: &Outputs) -> Result<(), PlanError> {
    let mut seen: HashMap<PathBuf, &str> = HashMap::new();
    for (opt, d) in outputs.all() {
        if let Some(first) = seen.insert(place(d), opt) {
            let what = match d {
                Dest::Stdout => "standard output (-)".to_string(),
                Dest::File(p) => p.display().to_string(),
            };
            return err(format!(
                "{first} and {opt} both write to {what}: give each output its own path"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<T: std::fmt::Debug>(r: Result<T, PlanError>) -> String {
        r.expect_err("refused").to_string()
    }

    #[test]
    fn calls_are_known_and_distinct() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(calls(&names(&["read", "write"])).expect("ok").len(), 2);
        assert!(msg(calls(&names(&["read", "read"]))).contains("`read` twice"));
        assert!(msg(calls(&names(&["nosuch"]))).contains("unknown call `nosuch`"));
    }

    #[test]
    fn freq_above_the_kernel_limit_is_refused() {
        assert!(freq_within(1000, Some(1000)).is_ok());
        assert!(freq_within(5000, None).is_ok());
        let m = msg(freq_within(100_000, Some(25_000)));
        assert!(m.contains("--freq 25000 or less"), "{m}");
    }

    #[test]
    fn commands_are_found_and_executable() {
        assert!(command("sh").is_ok());
        assert!(msg(command("no-such-command-ioprof")).contains("not found in PATH"));
        assert!(msg(command("/nonexistent/ioprof")).contains("does not exist"));
        assert!(msg(command("/etc/passwd")).contains("not an executable"));
    }

    #[test]
    fn two_outputs_on_one_path_are_refused() {
        let o = Outputs {
            csv: Some(Dest::File("o".into())),
            summary_csv: Some(Dest::File("./o".into())),
            ..Outputs::default()
        };
        let m = msg(distinct(&o));
        assert!(m.contains("--csv and --summary-csv both write to"), "{m}");
        let o = Outputs {
            json: Some(Dest::Stdout),
            trace: Some(Dest::Stdout),
            ..Outputs::default()
        };
        assert!(msg(distinct(&o)).contains("standard output"));
        let o = Outputs {
            csv: Some(Dest::File("a".into())),
            json: Some(Dest::Stdout),
            ..Outputs::default()
        };
        assert!(distinct(&o).is_ok());
    }

    #[test]
    fn unwritable_outputs_are_refused_untouched() {
        assert!(msg(writable(Path::new("/nonexistent-ioprof/x.csv"))).contains("does not exist"));
        assert!(msg(writable(Path::new("/tmp"))).contains("is a folder"));
        assert!(writable(Path::new("new-file-here.csv")).is_ok());
        assert!(!Path::new("new-file-here.csv").exists());
    }
}
