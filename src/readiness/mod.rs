//! Readiness as a file descriptor, for event loops and tokio (docs/design.md §14). The generic
//! core: the waker thread and its registrations (`waker`, loom-checked), the per-handle
//! readiness types (`handles`) and the tokio glue (`tokio`, feature `tokio`).

pub(crate) mod waker;

#[cfg(not(loom))]
mod handles;
#[cfg(not(loom))]
pub use handles::*;

#[cfg(all(feature = "tokio", not(loom)))]
pub(crate) mod tokio;
