//! Readiness as a file descriptor, for event loops and tokio (docs/design.md §14). The generic
//! core, which knows no kind: the waker's loop and a handle's registration (`waker`,
//! loom-checked), the eventfd and the waker threads (`thread`), the one wrapper [`Ready`] over
//! any [`Registered`] handle (`ready`), and the one tokio `poll_ready` (`tokio`, feature
//! `tokio`). Each kind implements [`Watch`], [`Target`] and [`Registered`] in its own
//! `readiness.rs`, and imports this module; this module imports none of them.

pub(crate) mod waker;

#[cfg(not(loom))]
mod ready;
#[cfg(not(loom))]
mod thread;

#[cfg(not(loom))]
pub use ready::Ready;
// `pub` items (a bound and a type of `Ready`'s public interface) that the crate does not
// export: they cannot be named outside it.
#[cfg(not(loom))]
pub(crate) use ready::{registered, Registered};
#[cfg(not(loom))]
pub(crate) use thread::Armed;
#[cfg(not(loom))]
pub(crate) use thread::Watch;
#[cfg(not(loom))]
pub(crate) use waker::{ahead, Target};

#[cfg(all(feature = "tokio", not(loom)))]
pub(crate) mod tokio;
