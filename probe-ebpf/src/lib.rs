//! Library face of the probe crate: empty. It exists so that `profiler` can name this crate
//! as a build dependency and be rebuilt when the probes change.
#![no_std]
