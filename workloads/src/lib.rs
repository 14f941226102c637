//! Bundled workloads: each does a known kind of I/O and records what it did (its ground truth)
//! with its own clock readings, so the profiler's numbers can be checked against it.

pub mod aio;
pub mod blocking;
pub mod clock;
pub mod files;
pub mod models;
pub mod net;
pub mod splice;
pub mod truth;
pub mod uring;

/// Names of the workloads, as the `workloads` binary and `cargo xtask profile` take them.
pub const NAMES: &[&str] = &[
    "blocking",
    "splice",
    // issue 3: the I/O models.
    "nonblocking",
    "select",
    "poll",
    "epoll",
    "sigio",
    "aio",
    "io-uring",
    "io-uring-reap",
];

/// The I/O model workloads, in the order of the model table (issue 3).
pub const MODELS: &[&str] = &[
    "blocking",
    "nonblocking",
    "select",
    "poll",
    "epoll",
    "sigio",
    "aio",
    "io-uring",
    "io-uring-reap",
];
