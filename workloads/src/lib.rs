//! Bundled workloads: each does a known kind of I/O and records what it did (its ground truth)
//! with its own clock readings, so the profiler's numbers can be checked against it.

pub mod blocking;
pub mod clock;
pub mod files;
pub mod flood;
pub mod net;
pub mod splice;
pub mod truth;

/// Names of the workloads, as the `workloads` binary and `cargo xtask profile` take them.
pub const NAMES: &[&str] = &["blocking", "splice", "flood"];
