//! Plan: what to trace and where to write, resolved from the command line before anything is
//! attached or any file is touched.

pub mod inputs;
pub mod privilege;
pub mod target;
