//! Analyze: pure functions from the run's data to stages, models, data movement and copies.

pub mod attribution;
pub mod classify;
pub mod cow;
pub mod findings;
pub mod groups;
pub mod helpers;
pub mod infer;
pub mod models;
pub mod movement;
pub mod sampling;
pub mod stats;
pub mod summary;
pub mod top;
