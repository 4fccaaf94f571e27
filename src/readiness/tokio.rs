//! Awaiting a handle in a tokio task (feature `tokio`, docs/design.md §14): the one
//! [`poll_ready`] under every kind's `recv_async`, `send_async` and stream, over
//! `tokio::io::unix::AsyncFd` on the handle's readiness eventfd.
//!
//! All are cancel-safe: an attempt consumes a message (takes an item, fills a slot) only in the
//! poll that returns it, with no `.await` between the attempt and the return, so a future
//! dropped before completing (a `select!` branch that lost) leaves the message for the next
//! receive; the arming it left is at worst one spurious wake-up later.

use std::io;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::ready::{registered, Registered};
use super::thread::Armed;
use crate::error::{Error, Result};

/// Registers `armed`'s eventfd with the current tokio runtime's reactor, once. `op` names the
/// call in the error.
pub(crate) fn register(armed: &mut Armed, op: &'static str) -> Result<()> {
    if armed.async_fd.is_some() {
        return Ok(());
    }
    let fail = |armed: &Armed, op, source| Error::Io {
        name: armed.name().to_owned(),
        op,
        source,
    };
    if tokio::runtime::Handle::try_current().is_err() {
        let e = io::Error::other("not called from a tokio runtime");
        return Err(fail(armed, op, e));
    }
    let fd = armed.fd().as_raw_fd();
    // SAFETY: `fd` is the registration's eventfd, which `armed` owns and closes only when it
    // drops, after its `async_fd` field (fields drop in declaration order, after `Armed::drop`,
    // which touches neither): the descriptor stays open and names the same eventfd for the
    // whole life of the `AsyncFd` (docs/design.md §14).
    match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
        Ok(afd) => {
            armed.async_fd = Some(afd);
            Ok(())
        }
        Err(e) => Err(fail(armed, "register with the tokio reactor", e.into())),
    }
}

/// Registers `handle` (with its waker thread, then its eventfd with the current runtime's
/// reactor, each once) and runs `attempt` until it gives something, waiting for the eventfd in
/// between: `Ready(Ok(r))` with what the attempt gave, `Pending` with `cx` woken once the
/// eventfd turns readable, or an error from the registration or the reactor. `op` names the
/// public call in a registration error.
///
/// `attempt` is the handle's armed attempt (a receive or send that, when it finds nothing,
/// re-arms the registration, which clears the eventfd before it publishes the arming): so a
/// signal that comes after it is never lost, and tokio's readiness, cleared after every wait,
/// only ever stands for a signal newer than the last attempt. The cause of a signal stays in
/// the segment until an attempt takes it, so clearing loses nothing. Cancel-safe as the module
/// says: `attempt` consumes only what this poll returns.
pub(crate) fn poll_ready<H: Registered, R>(
    handle: &mut H,
    cx: &mut Context<'_>,
    op: &'static str,
    mut attempt: impl FnMut(&mut H) -> Option<R>,
) -> Poll<Result<R>> {
    if let Err(e) = handle.armed().and_then(|armed| register(armed, op)) {
        return Poll::Ready(Err(e));
    }
    loop {
        if let Some(r) = attempt(handle) {
            return Poll::Ready(Ok(r));
        }
        // Armed by the attempt: the eventfd turns readable once something is there.
        let armed = registered(handle.registration());
        let afd = armed
            .async_fd
            .as_ref()
            .expect("registered with the reactor at the top of this poll");
        match afd.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
            Poll::Ready(Err(source)) => {
                return Poll::Ready(Err(Error::Io {
                    name: armed.name().to_owned(),
                    op: "wait for readiness",
                    source,
                }))
            }
        }
    }
}
