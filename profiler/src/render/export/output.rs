//! Where an export goes: a file, or standard output for `-`. On standard output a reader that
//! closes the pipe early (`| head`) ends the output quietly: that is not an error.
use std::{
    io::{self, BufWriter, Write},
    path::Path,
};

/// The path that means standard output.
pub const STDOUT: &str = "-";

/// True when `path` means standard output.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == STDOUT
}

/// A buffered export destination.
pub struct Output {
    inner: BufWriter<Box<dyn Write + Send>>,
    /// A closed pipe ends the output quietly (standard output only).
    tolerate_closed_pipe: bool,
    /// The reader has gone: everything after is dropped.
    closed: bool,
}

impl Output {
    /// Opens `path` for writing (`-`: standard output), so that an unwritable path fails
    /// before any probe is attached.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if is_stdout(path) {
            return Ok(Self::new(Box::new(io::stdout()), true));
        }
        let f = crate::capture::sink::create_output(path)?;
        Ok(Self::new(
            Box::new(crate::capture::sink::Interruptible(f)),
            false,
        ))
    }

    /// Wraps a writer; with `tolerate_closed_pipe`, `EPIPE` ends the output without an error.
    pub fn new(w: Box<dyn Write + Send>, tolerate_closed_pipe: bool) -> Self {
        Self {
            inner: BufWriter::new(w),
            tolerate_closed_pipe,
            closed: false,
        }
    }

    /// True once the reader of standard output has closed the pipe.
    pub fn reader_gone(&self) -> bool {
        self.closed
    }

    fn check<T>(&mut self, r: io::Result<T>, gone: T) -> io::Result<T> {
        match r {
            Err(e) if self.tolerate_closed_pipe && e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(gone)
            }
            r => r,
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.check(r, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.check(r, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    /// A pipe whose reader has already gone.
    fn closed_pipe() -> std::fs::File {
        let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
        drop(r);
        std::fs::File::from(w)
    }

    #[test]
    fn a_closed_pipe_on_stdout_is_not_an_error() {
        let mut o = Output::new(Box::new(closed_pipe()), true);
        for _ in 0..10_000 {
            o.write_all(b"a line of output\n").expect("write");
        }
        o.flush().expect("flush");
        assert!(o.reader_gone());
    }

    #[test]
    fn a_closed_pipe_elsewhere_is_an_error() {
        let mut o = Output::new(Box::new(closed_pipe()), false);
        let r = o.write_all(b"x").and_then(|_| o.flush());
        assert_eq!(r.expect_err("error").kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn dash_means_stdout_and_bad_paths_fail_early() {
        assert!(is_stdout(Path::new("-")));
        assert!(!is_stdout(Path::new("./-")));
        let e = Output::open(Path::new("/nonexistent-dir/x.csv"))
            .err()
            .expect("error");
        assert!(format!("{e:#}").contains("cannot write /nonexistent-dir/x.csv"));
    }
}
