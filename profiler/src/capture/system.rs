//! System-wide runs: the filter the kernel applies to every process (all of them but the
//! profiler, or those of one command name or one cgroup v2), resolved from the plan's words.
use std::{os::unix::fs::MetadataExt as _, path::Path};

use probe_common::filter;

/// Which processes a system-wide run traces, as the kernel compares them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only threads of this command name (at most 15 bytes, as the kernel keeps it).
    pub comm: Option<String>,
    /// Only tasks in this cgroup v2 (its id: the inode number of its directory).
    pub cgroup: Option<(std::path::PathBuf, u64)>,
}

/// Why a filter was refused.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The command name is longer than the kernel keeps.
    #[error("--comm {0:?} is longer than the 15 bytes the kernel keeps of a command name")]
    CommTooLong(String),
    /// The cgroup path is no cgroup v2 directory.
    #[error("--cgroup {0}: not a cgroup v2 directory (give a path under /sys/fs/cgroup): {1}")]
    NoCgroup(String, String),
}

/// The cgroup v2 file system's magic number (`statfs` f_type).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

impl Filter {
    /// Checks the words of a filter; reads the cgroup directory's id.
    pub fn resolve(comm: Option<&str>, cgroup: Option<&Path>) -> Result<Self, FilterError> {
        if let Some(c) = comm
            && (c.len() > 15 || c.is_empty())
        {
            return Err(FilterError::CommTooLong(c.into()));
        }
        let cgroup = cgroup
            .map(|p| {
                let fail = |e: String| FilterError::NoCgroup(p.display().to_string(), e);
                let st = nix::sys::statfs::statfs(p).map_err(|e| fail(e.to_string()))?;
                if st.filesystem_type().0 as i64 != CGROUP2_MAGIC {
                    return Err(fail("not on a cgroup2 file system".into()));
                }
                let meta = std::fs::metadata(p).map_err(|e| fail(e.to_string()))?;
                if !meta.is_dir() {
                    return Err(fail("not a directory".into()));
                }
                Ok((p.to_path_buf(), meta.ino()))
            })
            .transpose()?;
        Ok(Self {
            comm: comm.map(str::to_string),
            cgroup,
        })
    }

    /// The kernel's filter bits.
    pub fn flags(&self) -> u32 {
        let mut f = filter::ALL;
        if self.comm.is_some() {
            f |= filter::COMM;
        }
        if self.cgroup.is_some() {
            f |= filter::CGROUP;
        }
        f
    }

    /// The command name as the kernel compares it: 16 bytes, NUL-padded, as two words.
    pub fn comm_words(&self) -> [u64; 2] {
        let mut b = [0u8; 16];
        if let Some(c) = &self.comm {
            b[..c.len()].copy_from_slice(c.as_bytes());
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(w)
        };
        [word(0), word(8)]
    }

    /// The cgroup id the kernel compares (0 without `--cgroup`).
    pub fn cgroup_id(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, |(_, id)| *id)
    }

    /// Words for the banner: `every process`, `processes named nginx in /sys/fs/cgroup/x`.
    pub fn describe(&self) -> String {
        let mut s = match &self.comm {
            Some(c) => format!("every process named {c}"),
            None => "every process".to_string(),
        };
        if let Some((p, _)) = &self.cgroup {
            s.push_str(&format!(" in cgroup {}", p.display()));
        }
        s.push_str(" but the profiler");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_packed_as_the_kernel_keeps_it() {
        let f = Filter::resolve(Some("workloads"), None).expect("filter");
        assert_eq!(f.flags(), filter::ALL | filter::COMM);
        let w = f.comm_words();
        let mut b = Vec::new();
        b.extend_from_slice(&w[0].to_ne_bytes());
        b.extend_from_slice(&w[1].to_ne_bytes());
        assert_eq!(&b[..10], b"workloads\0");
        assert!(b[10..].iter().all(|&x| x == 0));
        assert!(Filter::resolve(Some("a-name-of-16-byt"), None).is_err());
        assert_eq!(Filter::default().flags(), filter::ALL);
    }

    #[test]
    fn a_cgroup_must_be_a_cgroup2_directory() {
        let e = Filter::resolve(None, Some(Path::new("/tmp"))).expect_err("not a cgroup");
        assert!(e.to_string().contains("not a cgroup v2 directory"), "{e}");
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            let f = Filter::resolve(None, Some(Path::new("/sys/fs/cgroup"))).expect("root");
            assert_eq!(f.flags(), filter::ALL | filter::CGROUP);
            assert!(f.cgroup_id() > 0);
        }
    }
}
