//! Test files the file workloads move: made on first use in a cache folder, reused after, and
//! brought into the page cache before a run that should find them warm.
use std::{
    io::{Read as _, Write},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// The cache folder: `$XDG_CACHE_HOME/ioprof/files`, else `~/.cache/ioprof/files`. Never a
/// shared folder such as /tmp, where another user could have made it first.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .context("neither XDG_CACHE_HOME nor HOME is set: set one, or give the file with --file")?;
    Ok(base.join("ioprof").join("files"))
}

/// The cached file of `size` bytes that [`ensure_file`] makes when no path is given.
pub fn cached_file(size: u64) -> anyhow::Result<PathBuf> {
    Ok(cache_dir()?.join(format!("data-{size}.bin")))
}

/// A size such as `256MiB`, `64KiB` or `4096`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size: {e}"))
}

/// A file of exactly `size` bytes at `path` (or in the cache folder), made if missing or of
/// another size. The content is a fixed pattern, not zeros, so no layer can skip it. It is
/// written under a fresh random name beside its place (never through an existing file or a
/// planted link) and renamed into place when complete.
pub fn ensure_file(path: Option<&Path>, size: u64) -> anyhow::Result<PathBuf> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => cached_file(size)?,
    };
    if std::fs::metadata(&path)
        .map(|m| m.len() == size)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut f = std::io::BufWriter::new(tmp.as_file());
    let block: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    tmp.persist(&path)
        .with_context(|| format!("cannot rename the new file to {}", path.display()))?;
    Ok(path)
}

/// Reads a whole file once, so that its pages are in the page cache for the runs that follow.
pub fn warm(path: &Path) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    while f
        .read(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?
        > 0
    {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_file_of_the_size_once() {
        let dir = tempfile::tempdir().expect("scratch");
        let p = dir.path().join("f.bin");
        let got = ensure_file(Some(&p), 3 << 20 | 5).expect("make");
        assert_eq!(std::fs::metadata(&got).expect("meta").len(), 3 << 20 | 5);
        let again = ensure_file(Some(&p), 3 << 20 | 5).expect("again");
        assert_eq!(got, again);
        warm(&got).expect("warm");
        // Nothing but the file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
    }
}
