//! Where calls go as they arrive: sinks that stream each call out at once (CSV rows, written
//! whole) or fold it into bounded statistics, so that a run of any length keeps no list of its
//! calls, and a run stopped by a signal leaves every output complete.
use std::{fs::File, io::Write, path::Path};

use anyhow::Context as _;

use crate::{analyze::stats::CallStats, capture::traced::TracedCall, render::export::CallRow};

/// Receives every call of a run, in arrival order.
pub trait CallSink {
    /// Takes one call.
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()>;
    /// Writes out whatever is still held; called once, when the run has ended.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Keeps every call: for tests and short runs only (memory grows with the run).
impl CallSink for Vec<TracedCall> {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        self.push(c.clone());
        Ok(())
    }
}

/// Keeps calls up to a limit, then counts the rest: the analyses that need every call see the
/// first `limit`, memory stays bounded however long the run.
#[derive(Debug, Default)]
pub struct Kept {
    /// The kept calls, in arrival order.
    pub calls: Vec<TracedCall>,
    /// Most calls kept.
    pub limit: usize,
    /// Calls that came after the limit was reached.
    pub beyond: u64,
}

impl Kept {
    /// An empty keeper of at most `limit` calls.
    pub fn new(limit: usize) -> Self {
        Self {
            calls: Vec::new(),
            limit,
            beyond: 0,
        }
    }
}

impl CallSink for Kept {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        if self.calls.len() < self.limit {
            self.calls.push(c.clone());
        } else {
            self.beyond += 1;
        }
        Ok(())
    }
}

impl CallSink for CallStats {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        self.add(c);
        Ok(())
    }
}

impl<S: CallSink> CallSink for Option<S> {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        self.as_mut().map_or(Ok(()), |s| s.call(c))
    }
    fn finish(&mut self) -> anyhow::Result<()> {
        self.as_mut().map_or(Ok(()), |s| s.finish())
    }
}

impl<S: CallSink + ?Sized> CallSink for &mut S {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        (**self).call(c)
    }
    fn finish(&mut self) -> anyhow::Result<()> {
        (**self).finish()
    }
}

impl<S: CallSink + ?Sized> CallSink for Box<S> {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        (**self).call(c)
    }
    fn finish(&mut self) -> anyhow::Result<()> {
        (**self).finish()
    }
}

impl<A: CallSink, B: CallSink> CallSink for (A, B) {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        self.0.call(c)?;
        self.1.call(c)
    }
    fn finish(&mut self) -> anyhow::Result<()> {
        self.0.finish()?;
        self.1.finish()
    }
}

/// Every sink of a run, each given every call.
#[derive(Default)]
pub struct Fanout(pub Vec<Box<dyn CallSink>>);

impl CallSink for Fanout {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.call(c))
    }
    fn finish(&mut self) -> anyhow::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.finish())
    }
}

/// A sink whose output may fail: the first error is kept and the sink takes no more calls, so
/// that the run, the other sinks and the report go on; the error is reported at the end.
pub struct Failsafe<S> {
    inner: S,
    error: Option<anyhow::Error>,
}

impl<S> Failsafe<S> {
    /// Wraps a sink.
    pub fn new(inner: S) -> Self {
        Self { inner, error: None }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped sink and the error that stopped it, if one did.
    pub fn into_parts(self) -> (S, Option<anyhow::Error>) {
        (self.inner, self.error)
    }

    /// The error that stopped the sink, once.
    pub fn take_error(&mut self) -> Option<anyhow::Error> {
        self.error.take()
    }

    fn keep(&mut self, r: anyhow::Result<()>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }
}

impl<S: CallSink> CallSink for Failsafe<S> {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        if self.error.is_none() {
            let r = self.inner.call(c);
            self.keep(r);
        }
        Ok(())
    }
    fn finish(&mut self) -> anyhow::Result<()> {
        if self.error.is_none() {
            let r = self.inner.finish();
            self.keep(r);
        }
        Ok(())
    }
}

/// An output file whose blocked write gives up once the run is asked to stop: SIGINT or
/// SIGTERM interrupts the write, and after that a write waits at most [`STOPPED_WAIT`] for
/// room (a FIFO whose reader stalls), then fails instead of waiting on.
pub struct Interruptible(pub File);

/// How long a write waits for room once the run has been asked to stop.
pub const STOPPED_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Interruptible {
    fn stopped_error() -> std::io::Error {
        std::io::Error::other("the output was blocked when the run was stopped")
    }

    /// Whether the file takes a write within [`STOPPED_WAIT`] (a regular file always does).
    fn writable_soon(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd as _;
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLOUT)];
        let timeout = PollTimeout::try_from(STOPPED_WAIT).unwrap_or(PollTimeout::MAX);
        matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
    }
}

impl Write for Interruptible {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            if crate::capture::session::stop_requested() && !self.writable_soon() {
                return Err(Self::stopped_error());
            }
            match self.0.write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    if crate::capture::session::stop_requested() {
                        return Err(Self::stopped_error());
                    }
                }
                r => return r,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Bytes of rows gathered before they are written.
pub const CSV_CHUNK: usize = 64 << 10;

/// The per-call CSV, streamed: the header at once, then one row per call. Rows are gathered in
/// memory and handed to the file `CSV_CHUNK` bytes at a time in single writes that end on a
/// row's end, so the file holds the header and whole rows between writes (a SIGKILL landing
/// during a write may cut that write short: the kernel stops between pages).
pub struct CsvStream<W: Write> {
    out: W,
    rows: csv::Writer<Vec<u8>>,
    chunk: usize,
    written: u64,
}

impl<W: Write> CsvStream<W> {
    /// A stream writing to `out`; writes the header now.
    pub fn new(out: W) -> anyhow::Result<Self> {
        Self::with_chunk(out, CSV_CHUNK)
    }

    /// As [`CsvStream::new`], writing whenever `chunk` bytes of rows are gathered.
    pub fn with_chunk(mut out: W, chunk: usize) -> anyhow::Result<Self> {
        out.write_all(&header()?)
            .and_then(|_| out.flush())
            .context("failed to write the CSV header")?;
        Ok(Self {
            out,
            rows: row_writer(chunk),
            chunk,
            written: 0,
        })
    }

    /// Rows taken so far.
    pub fn rows(&self) -> u64 {
        self.written
    }

    /// Writes the gathered whole rows to the output in one call.
    fn write_out(&mut self) -> anyhow::Result<()> {
        let next = row_writer(self.chunk);
        let buf = std::mem::replace(&mut self.rows, next)
            .into_inner()
            .map_err(|e| anyhow::anyhow!("failed to format a CSV row: {}", e.error()))?;
        if !buf.is_empty() {
            self.out
                .write_all(&buf)
                .context("failed to write CSV rows")?;
        }
        Ok(())
    }

    /// The output, once finished.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Takes one row.
    pub fn row(&mut self, row: &CallRow) -> anyhow::Result<()> {
        self.rows
            .serialize(row)
            .context("failed to format a CSV row")?;
        self.written += 1;
        // The csv writer keeps a small buffer of its own; `write_out` flushes it after this
        // whole row, so the chunk it writes ends on a row's end.
        if self.rows.get_ref().len() >= self.chunk {
            self.write_out()?;
        }
        Ok(())
    }
}

impl<W: Write> CallSink for CsvStream<W> {
    fn call(&mut self, c: &TracedCall) -> anyhow::Result<()> {
        self.row(&CallRow::from(c))
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.write_out()?;
        self.out.flush().context("failed to write CSV rows")
    }
}

/// A csv writer gathering rows (no header) in memory for a chunk of `chunk` bytes.
fn row_writer(chunk: usize) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .has_headers(false)
        .buffer_capacity(chunk.clamp(64, 8 << 10))
        .from_writer(Vec::with_capacity(chunk + (8 << 10)))
}

/// The CSV header line, as the csv writer makes it for [`CallRow`].
fn header() -> anyhow::Result<Vec<u8>> {
    let blank = TracedCall::new(Default::default(), |_, _| {
        crate::capture::fdkind::FdKind::Unknown
    });
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(CallRow::from(&blank))
        .context("failed to format the CSV header")?;
    let text = w.into_inner().context("failed to format the CSV header")?;
    let end = text
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| i + 1);
    Ok(text[..end].to_vec())
}

/// Creates an output file, with a message that says what to do when it cannot be written.
/// Called for every output before anything is attached.
pub fn create_output(path: &Path) -> anyhow::Result<File> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "cannot write {}: the folder {} does not exist (create it first)",
        path.display(),
        dir.display()
    );
    anyhow::ensure!(
        !path.is_dir(),
        "cannot write {}: it is a folder; give a file name",
        path.display()
    );
    if let Some(f) = open_read_fifo(path) {
        return Ok(f);
    }
    File::create(path).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EROFS) => {
                format!("the folder {} is on a read-only file system", dir.display())
            }
            Some(libc::EACCES) | Some(libc::EPERM) => {
                format!("no permission to write in {}", dir.display())
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!(
            "cannot write {}: {why}; choose another path",
            path.display()
        )
    })
}

/// A FIFO at `path` that a process reads already, opened for writing (blocking writes).
/// When no process reads it yet, says so: the plain open that follows waits for a reader.
fn open_read_fifo(path: &Path) -> Option<File> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    if !std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
        return None;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        // Kept open: closing it would end the reader's input.
        Ok(f) => {
            use nix::fcntl::{FcntlArg, OFlag, fcntl};
            fcntl(&f, FcntlArg::F_SETFL(OFlag::empty())).ok()?;
            Some(f)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            eprintln!(
                "profiler: waiting for a process to read the FIFO {} (Ctrl-C to give up)",
                path.display()
            );
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::fdkind::FdKind;
    use probe_common::CallRecord;

    fn calls(n: u64) -> Vec<TracedCall> {
        (0..n)
            .map(|i| {
                let rec = CallRecord {
                    nr: libc::SYS_read as u32,
                    pid: 5,
                    tid: 6,
                    args: [3, 0, 0],
                    ret: i as i64,
                    start_ns: i,
                    end_ns: i + 10,
                    ..Default::default()
                };
                TracedCall::new(rec, |_, _| FdKind::File)
            })
            .collect()
    }

    /// Records what each write call received.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);
    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn kept_stops_at_its_limit_and_counts_the_rest() {
        let c = TracedCall::new(probe_common::CallRecord::default(), |_, _| {
            crate::capture::fdkind::FdKind::Unknown
        });
        let mut k = Kept::new(2);
        for _ in 0..5 {
            k.call(&c).expect("keep");
        }
        assert_eq!((k.calls.len(), k.beyond), (2, 3));
    }

    #[test]
    fn every_write_ends_on_a_whole_row() {
        let mut s = CsvStream::with_chunk(Writes::default(), 300).expect("header");
        for c in &calls(50) {
            s.call(c).expect("row");
        }
        s.finish().expect("finish");
        assert_eq!(s.rows(), 50);
        let writes = s.into_inner().0;
        assert!(writes.len() > 3, "expected several writes");
        for w in &writes {
            assert_eq!(w.last(), Some(&b'\n'), "a write ends mid-row");
        }
        let all: Vec<u8> = writes.concat();
        let rows: Vec<CallRow> = csv::Reader::from_reader(all.as_slice())
            .deserialize()
            .collect::<Result<_, _>>()
            .expect("read back");
        assert_eq!(rows.len(), 50);
        assert_eq!(rows[49].ret, 49);
    }

    #[test]
    fn an_empty_run_still_has_the_header() {
        let mut s = CsvStream::new(Vec::new()).expect("header");
        s.finish().expect("finish");
        let text = String::from_utf8(s.into_inner()).expect("utf8");
        assert!(text.starts_with("pid,tid,call,fd,"), "{text}");
        assert_eq!(text.lines().count(), 1);
        let rows: Vec<CallRow> = csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<Result<_, _>>()
            .expect("read back");
        assert!(rows.is_empty());
    }

    /// Counts what it is given, into a shared cell.
    struct Count(std::rc::Rc<std::cell::Cell<(u64, u64)>>);
    impl CallSink for Count {
        fn call(&mut self, _: &TracedCall) -> anyhow::Result<()> {
            let (c, f) = self.0.get();
            self.0.set((c + 1, f));
            Ok(())
        }
        fn finish(&mut self) -> anyhow::Result<()> {
            let (c, f) = self.0.get();
            self.0.set((c, f + 1));
            Ok(())
        }
    }

    #[test]
    fn fanout_gives_every_sink_every_call() {
        let (a, b): (std::rc::Rc<std::cell::Cell<(u64, u64)>>, _) =
            (Default::default(), std::rc::Rc::default());
        let mut out = Fanout(vec![
            Box::new(Count(std::rc::Rc::clone(&a))),
            Box::new(Count(std::rc::Rc::clone(&b))),
        ]);
        for c in &calls(7) {
            out.call(c).expect("call");
        }
        out.finish().expect("finish");
        assert_eq!((a.get(), b.get()), ((7, 1), (7, 1)));
    }

    #[test]
    fn unwritable_paths_say_why() {
        let e = create_output(Path::new("/nonexistent-ioprof/x/out.csv")).expect_err("missing");
        assert!(
            format!("{e:#}").contains("folder /nonexistent-ioprof/x does not exist"),
            "{e:#}"
        );
        let e = create_output(Path::new("/tmp")).expect_err("a folder");
        assert!(format!("{e:#}").contains("is a folder"), "{e:#}");
    }
}
