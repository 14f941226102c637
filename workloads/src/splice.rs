//! Zero-copy send with `splice` (file → pipe → TCP socket), kept as its own entry point; the
//! sender lives with the other methods in [`crate::methods`], the receiver, file set-up and
//! truth in [`crate::transfer`].
pub use crate::transfer::FileTransfer;
use crate::{methods::Method, truth::Truth};

/// Runs the splice transfer and returns its truth.
pub fn run(t: &FileTransfer) -> anyhow::Result<Truth> {
    crate::methods::run(Method::Splice, t)
}
