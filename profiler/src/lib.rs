//! The I/O profiler: loads kernel probes, reads what they record, and splits every traced I/O
//! call into waiting for data and copying it.
//!
//! Data flows one way: [`loader`] attaches the probes, [`session`] reads records and
//! [`decode`]s them, [`attribution`] computes stages (pure), [`report`] and [`export`] print
//! and write them.

pub mod attribution;
pub mod decode;
pub mod export;
pub mod fdkind;
pub mod inputs;
pub mod launch;
pub mod loader;
pub mod privilege;
pub mod report;
pub mod session;
pub mod sink;
pub mod stats;
pub mod syscalls;
pub mod traced;
