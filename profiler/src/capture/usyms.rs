//! User stack frames to function names: a snapshot of each sampled process's executable
//! mappings (taken while it runs, so that it can end before the report), then `blazesym` on
//! the mapped files. A traced process names those files, so nothing it leaves there may block
//! or mislead the profiler: each is opened non-blocking, without following a final link, and
//! read only when it is a regular file; the whole naming has a time budget, after which frames
//! are shown as file offsets.
use std::{
    collections::HashMap,
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use blazesym::symbolize::{Input, Symbolized, Symbolizer, source::Elf, source::Source};

/// One executable file mapping of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset mapped at `start`.
    pub offset: u64,
    /// The mapped file.
    pub path: PathBuf,
}

/// The executable file mappings in the text of a `/proc/PID/maps` file.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let range = it.next()?;
            let perms = it.next()?;
            let offset = u64::from_str_radix(it.next()?, 16).ok()?;
            let (_dev, _inode) = (it.next()?, it.next()?);
            let path = it.collect::<Vec<_>>().join(" ");
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(a, 16).ok()?,
                end: u64::from_str_radix(b, 16).ok()?,
                offset,
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The executable mappings of a running process (`None` when it is gone).
pub fn read_maps(pid: u32) -> Option<Vec<Mapping>> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .ok()
        .map(|t| parse_maps(&t))
}

/// The mapping holding `ip` and the file offset of `ip` in it.
pub fn locate(maps: &[Mapping], ip: u64) -> Option<(&Mapping, u64)> {
    maps.iter()
        .find(|m| m.start <= ip && ip < m.end)
        .map(|m| (m, ip - m.start + m.offset))
}

/// Time allowed for naming the user frames of one run; frames left are shown as offsets.
pub const NAMING_BUDGET: Duration = Duration::from_secs(10);

/// Opens a mapped file for reading only if it is a regular file: non-blocking (a FIFO put in
/// its place cannot hold the open), not through a final symbolic link, closed on exec.
pub fn open_regular(path: &Path) -> Option<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    f.metadata().ok()?.file_type().is_file().then_some(f)
}

/// Names user frames.
pub struct UserSymbols {
    symbolizer: Symbolizer,
    cache: HashMap<(PathBuf, u64), String>,
    /// Each mapped file opened once (`None`: refused), held open while names are looked up.
    files: HashMap<PathBuf, Option<File>>,
    deadline: Instant,
}

impl Default for UserSymbols {
    fn default() -> Self {
        Self::with_budget(NAMING_BUDGET)
    }
}

impl UserSymbols {
    /// Names frames for at most `budget`.
    pub fn with_budget(budget: Duration) -> Self {
        Self {
            symbolizer: Symbolizer::new(),
            cache: HashMap::new(),
            files: HashMap::new(),
            deadline: Instant::now() + budget,
        }
    }

    /// Names of `ips` (leaf first, as a stack map gives them) in a process with `maps`.
    /// A frame that cannot be named shows its file (`[libc.so.6]`) or `[unknown]`; a frame of
    /// a file that is not a regular file, or once the time budget is spent, its file and
    /// offset (`[dd+0x1a2b]`).
    /// Runs of unnamed frames of one file (a frame-pointer walk through code built without
    /// frame pointers) are folded into one frame.
    pub fn names(&mut self, maps: &[Mapping], ips: &[u64]) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(ips.len());
        for (i, &ip) in ips.iter().enumerate() {
            // Frames above the leaf hold return addresses: look up the call before them.
            let ip = if i > 0 { ip.saturating_sub(1) } else { ip };
            // Names and paths come from the traced program: shown printable only.
            let name = match locate(maps, ip) {
                Some((m, off)) => crate::plan::target::printable(&self.name(&m.path, off)),
                None => "[unknown]".to_string(),
            };
            if name.starts_with('[') && out.last() == Some(&name) {
                continue;
            }
            out.push(name);
        }
        out
    }

    fn name(&mut self, path: &Path, off: u64) -> String {
        let key = (path.to_path_buf(), off);
        if let Some(n) = self.cache.get(&key) {
            return n.clone();
        }
        if Instant::now() >= self.deadline {
            return offset_frame(path, off);
        }
        let file = self
            .files
            .entry(path.to_path_buf())
            .or_insert_with(|| open_regular(path));
        let Some(file) = file else {
            return offset_frame(path, off);
        };
        // Read through the descriptor checked above, never the path again (it may have been
        // replaced since). Debug files are not looked for: they would be found next to the
        // traced binary, in a folder its owner controls.
        let src = Source::Elf(Elf {
            debug_syms: false,
            ..Elf::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        });
        let name = match self
            .symbolizer
            .symbolize(&src, Input::FileOffset(&[off][..]))
        {
            Ok(v) => match v.first() {
                Some(Symbolized::Sym(s)) => s.name.to_string(),
                _ => file_frame(path),
            },
            Err(_) => file_frame(path),
        };
        self.cache.insert(key, name.clone());
        name
    }
}

fn offset_frame(path: &Path, off: u64) -> String {
    let file = file_frame(path);
    format!("{}+{off:#x}]", &file[..file.len() - 1])
}

fn file_frame(path: &Path) -> String {
    format!(
        "[{}]",
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into()
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keep_executable_file_mappings() {
        let text = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /usr/bin/dd
55d0c0001000-55d0c0005000 r-xp 00001000 08:01 1234 /usr/bin/dd
7f0000000000-7f0000100000 r-xp 00028000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0 [vdso]
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].path, PathBuf::from("/usr/bin/dd"));
        let (m, off) = locate(&maps, 0x7f0000000010).expect("in libc");
        assert!(m.path.ends_with("libc.so.6"));
        assert_eq!(off, 0x28010);
        assert!(locate(&maps, 0x10).is_none());
    }

    #[test]
    fn names_a_function_of_this_test_binary() {
        let maps = read_maps(std::process::id()).expect("own maps");
        let ip = names_a_function_of_this_test_binary as *const () as u64;
        let mut syms = UserSymbols::default();
        let names = syms.names(&maps, &[ip]);
        assert!(
            names[0].contains("names_a_function_of_this_test_binary"),
            "{names:?}"
        );
        assert_eq!(syms.names(&maps, &[8, 16, 24]), vec!["[unknown]"]);
    }

    #[test]
    fn a_fifo_in_place_of_a_binary_is_not_opened() {
        let scratch = tempfile::tempdir().expect("a new private folder");
        let dir = scratch.path().to_path_buf();
        let fifo = dir.join("dd");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        assert!(open_regular(&fifo).is_none());
        let link = dir.join("link");
        std::os::unix::fs::symlink("/proc/self/exe", &link).expect("link");
        assert!(
            open_regular(&link).is_none(),
            "a final link is not followed"
        );
        let maps = vec![Mapping {
            start: 0x1000,
            end: 0x2000,
            offset: 0,
            path: fifo,
        }];
        let mut syms = UserSymbols::default();
        assert_eq!(syms.names(&maps, &[0x1010]), vec!["[dd+0x10]"]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn frames_past_the_budget_are_offsets() {
        let maps = read_maps(std::process::id()).expect("own maps");
        let ip = frames_past_the_budget_are_offsets as *const () as u64;
        let mut syms = UserSymbols::with_budget(Duration::ZERO);
        let name = &syms.names(&maps, &[ip])[0];
        assert!(name.starts_with('[') && name.contains("+0x"), "{name}");
    }
}
