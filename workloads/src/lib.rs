//! Bundled workloads: each does a known kind of I/O and records what it did (its ground truth)
//! with its own clock readings, so the profiler's numbers can be checked against it.

pub mod aio;
pub mod blocking;
pub mod clock;
pub mod cow;
pub mod files;
pub mod flood;
pub mod methods;
pub mod models;
pub mod net;
pub mod overhead;
pub mod splice;
pub mod spread;
pub mod tokio_recv;
pub mod transfer;
pub mod truncate;
pub mod truth;
pub mod uring;

/// Names of the workloads, as the `workloads` binary and `cargo xtask profile` take them.
pub const NAMES: &[&str] = &[
    "blocking",
    "splice",
    "eagain",
    "getppid",
    "readloop",
    // The I/O models.
    "nonblocking",
    "select",
    "poll",
    "epoll",
    "sigio",
    "aio",
    "io-uring",
    "io-uring-reap",
    "tokio-recv",
    // Zero-copy methods.
    "read-write",
    "direct-io",
    "mmap-write",
    "sendfile",
    "msg-zerocopy",
    "io-uring-file",
    "copy-file-range",
    "mmap-truncate",
    "cow-private",
    "cow-fork",
    "vmsplice-gift",
    // The soak's flood of receives.
    "flood",
];

/// What a workload shows: one of the five I/O models, or one way of moving a file's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An I/O model (blocking, non-blocking, multiplexing, signal-driven, asynchronous): the
    /// report stacks its wait and copy stages.
    Model,
    /// A zero-copy (or copying) method of moving a file: the report compares throughput and
    /// CPU per GiB.
    Method,
    /// A tight loop of one call for the overhead benchmark (`cargo xtask bench`); the report
    /// does not run it.
    Loop,
}

/// One bundled workload as `cargo xtask report` runs it.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Name, as in [`NAMES`].
    pub name: &'static str,
    /// What it shows.
    pub kind: Kind,
    /// Options for a short report run (seconds, not minutes).
    pub report_args: &'static [&'static str],
}

/// Options of a model's short report run.
const MODEL_RUN: &[&str] = &["--interval", "2ms", "--size", "16KiB", "--count", "200"];

/// Options of a file method's short report run.
const METHOD_RUN: &[&str] = &["--size", "64MiB"];

/// A catalog row for an I/O model with the usual short run.
const fn model(name: &'static str) -> Entry {
    Entry {
        name,
        kind: Kind::Model,
        report_args: MODEL_RUN,
    }
}

/// A catalog row for a file-moving method with the usual short run.
const fn method(name: &'static str) -> Entry {
    Entry {
        name,
        kind: Kind::Method,
        report_args: METHOD_RUN,
    }
}

/// A catalog row for a benchmark loop (the report skips it).
const fn bench_loop(name: &'static str) -> Entry {
    Entry {
        name,
        kind: Kind::Loop,
        report_args: &[],
    }
}

/// Every workload with its kind and report options. Add a row for each name in [`NAMES`].
pub const CATALOG: &[Entry] = &[
    Entry {
        name: "blocking",
        kind: Kind::Model,
        report_args: &["--interval", "2ms", "--size", "65536", "--count", "200"],
    },
    method("splice"),
    model("nonblocking"),
    model("select"),
    model("poll"),
    model("epoll"),
    model("sigio"),
    model("aio"),
    model("io-uring"),
    model("io-uring-reap"),
    model("tokio-recv"),
    method("read-write"),
    method("direct-io"),
    method("mmap-write"),
    method("sendfile"),
    method("msg-zerocopy"),
    method("io-uring-file"),
    method("copy-file-range"),
    method("mmap-truncate"),
    method("cow-private"),
    method("cow-fork"),
    method("vmsplice-gift"),
    bench_loop("flood"),
    bench_loop("eagain"),
    bench_loop("getppid"),
    bench_loop("readloop"),
];

/// The I/O model workloads, in the order of the model table: the catalog's models.
pub fn models() -> impl Iterator<Item = &'static str> {
    CATALOG
        .iter()
        .filter(|e| e.kind == Kind::Model)
        .map(|e| e.name)
}

/// The catalog row of a workload.
pub fn entry(name: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.name == name)
}

/// Pins the calling process (and the threads it starts afterwards) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    anyhow::ensure!(
        cpu < libc::CPU_SETSIZE as usize,
        "CPU {cpu} is out of range"
    );
    // SAFETY: `cpu` is within the set's size, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the set is valid for the size given.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if r != 0 {
        anyhow::bail!(
            "cannot run on CPU {cpu}: {} (CPUs online: {})",
            std::io::Error::last_os_error(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_has_a_catalog_row_and_back() {
        for n in NAMES {
            assert!(entry(n).is_some(), "workload `{n}` has no row in CATALOG");
        }
        for e in CATALOG {
            assert!(
                NAMES.contains(&e.name),
                "CATALOG row `{}` is not in NAMES",
                e.name
            );
        }
    }

    #[test]
    fn pinning_leaves_one_cpu_and_rejects_a_bad_one() {
        // In a thread of its own, so that the other tests keep every CPU.
        std::thread::spawn(|| {
            pin_to_cpu(0).expect("CPU 0 is always there");
            // SAFETY: an all-zero cpu_set_t is the empty set; the kernel fills it.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: valid set of the size given.
            let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
            assert_eq!(r, 0);
            // SAFETY: reads a filled set.
            assert_eq!(unsafe { libc::CPU_COUNT(&set) }, 1);
            // SAFETY: as above.
            assert!(unsafe { libc::CPU_ISSET(0, &set) });
            let e = pin_to_cpu(libc::CPU_SETSIZE as usize).expect_err("beyond the set");
            assert!(e.to_string().contains("out of range"), "{e}");
        })
        .join()
        .expect("the pinned thread panicked");
    }
}
