//! Test files the file workloads move: made on first use in a cache folder, reused after.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// The cache folder: `$XDG_CACHE_HOME/ioprof/files`, else `~/.cache/ioprof/files`, else the
/// system's temporary folder.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("ioprof").join("files")
}

/// A file of exactly `size` bytes at `path` (or in the cache folder), made if missing or of
/// another size. The content is a fixed pattern, not zeros, so no layer can skip it.
pub fn ensure_file(path: Option<&Path>, size: u64) -> anyhow::Result<PathBuf> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => cache_dir().join(format!("data-{size}.bin")),
    };
    if std::fs::metadata(&path)
        .map(|m| m.len() == size)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("partial");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
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
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_file_of_the_size_once() {
        let dir = std::env::temp_dir().join(format!("ioprof-files-{}", std::process::id()));
        let p = dir.join("f.bin");
        let got = ensure_file(Some(&p), 3 << 20 | 5).expect("make");
        assert_eq!(std::fs::metadata(&got).expect("meta").len(), 3 << 20 | 5);
        let again = ensure_file(Some(&p), 3 << 20 | 5).expect("again");
        assert_eq!(got, again);
        std::fs::remove_dir_all(dir).expect("clean");
    }
}
