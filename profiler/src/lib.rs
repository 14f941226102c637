//! The I/O profiler: loads kernel probes, reads what they record, and splits every traced I/O
//! call into waiting for data and copying it.
//!
//! Data flows one way, in four stages: [`plan`] resolves what to trace, [`capture`] attaches
//! the probes and reads records, [`analyze`] computes stages and findings (pure), [`render`]
//! prints and writes them; [`serve`] runs the same capture until stopped and serves it to
//! Prometheus. [`syscalls`] is the catalog of traced calls that all stages share.

pub mod analyze;
pub mod capture;
pub mod plan;
pub mod render;
pub mod serve;
pub mod syscalls;
