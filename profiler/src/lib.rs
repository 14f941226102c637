//! The I/O profiler: loads kernel probes, reads what they record, and splits every traced I/O
//! call into waiting for data and copying it.
//!
//! Data flows one way: [`loader`] attaches the probes, [`session`] reads records and
//! [`decode`]s them, [`attribution`] computes stages (pure), [`report`] and [`export`] print
//! and write them.

pub mod attribution;
pub mod btf;
pub mod classify;
pub mod cow;
pub mod cpu_probes;
pub mod decode;
pub mod export;
pub mod fdkind;
pub mod flame;
pub mod groups;
pub mod helpers;
pub mod html_report;
pub mod infer;
pub mod inputs;
pub mod kallsyms;
pub mod kdiag;
pub mod launch;
pub mod loader;
pub mod models;
pub mod movement;
pub mod privilege;
pub mod progress;
pub mod report;
pub mod sampling;
pub mod selfcost;
pub mod session;
pub mod sink;
pub mod stats;
pub mod summary;
pub mod syscalls;
pub mod target;
pub mod traced;
pub mod usyms;
