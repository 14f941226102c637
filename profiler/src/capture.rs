//! Capture: loads and attaches the probes, launches or attaches to the target, and reads the
//! run's records, samples and lost counts.

pub mod btf;
pub mod cpu_probes;
pub mod decode;
pub mod fdkind;
pub mod kallsyms;
pub mod launch;
pub mod loader;
pub mod progress;
pub mod selfcost;
pub mod session;
pub mod sink;
pub mod traced;
pub mod usyms;
