//! The one readiness wrapper (docs/design.md §14): [`Ready<H>`] gives any [`Registered`] handle
//! a file descriptor an event loop can wait on. What is the same for every handle is here
//! (register and arm when made, the descriptor, the handle back); what differs (the receive or
//! send that re-arms, the accessor's name, the `Watch`) is in each kind's `readiness.rs`, which
//! implements [`Registered`] for its handles and adds their methods to `Ready<Handle>`. This
//! module knows no kind.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::error::Result;

use super::thread::Armed;

/// The message a handle without its registration would panic with: every path to an armed
/// attempt registers first ([`Ready`] when it is made, `recv_async` and `send_async` before
/// their first attempt), so it cannot happen.
const REGISTERED_FIRST: &str = "a Ready, recv_async and send_async register the handle first";

/// A handle that can register with its segment handle's waker thread: a bus or records
/// subscriber, a queue receiver or sender. Implemented in each kind's folder.
///
/// The registration is an `Option`, made on first use (by [`Ready`], or by the first
/// `recv_async` or `send_async`) and kept, so that a task awaiting a handle reuses its eventfd.
/// Attempts that arm take it as given, through [`registered`] (the one place that says why it
/// is there).
///
/// `pub` only because [`Ready`]'s bound names it; the crate does not export it, so it can be
/// neither named, implemented nor called outside the crate, and it has no page in the docs.
pub trait Registered: Sized {
    /// The name of the readiness type, for `Debug` (one of the public aliases of [`Ready`]).
    const READINESS: &'static str;
    /// What the handle is called in that `Debug`, and by its accessor: "subscriber", ...
    const ROLE: &'static str;

    /// Makes a new registration with the waker of the handle's segment and watch (starting the
    /// thread if it has none).
    fn register(&self) -> Result<Armed>;

    /// The handle's registration, if made.
    fn registration_slot(&mut self) -> &mut Option<Armed>;

    /// The handle's registration, if made (shared).
    fn registration(&self) -> Option<&Armed>;

    /// The position the first arming names (the sequence the subscriber expects next; any for a
    /// queue, whose targets look at the head and tail themselves).
    fn first_position(&self) -> u64;

    /// The registration, made on first use.
    fn armed(&mut self) -> Result<&mut Armed> {
        if self.registration().is_none() {
            let armed = self.register()?;
            *self.registration_slot() = Some(armed);
        }
        Ok(registered_mut(self.registration_slot().as_mut()))
    }

    /// Ends the registration (closes the eventfd; the waker thread stops with its last one).
    fn disarm(&mut self) {
        *self.registration_slot() = None;
    }
}

/// The registration, which every armed attempt's caller made ([`REGISTERED_FIRST`]). A function
/// of the field, not of the handle, so that an attempt can borrow the registration and the
/// handle's other fields at once.
#[inline]
pub(crate) fn registered(registration: Option<&Armed>) -> &Armed {
    registration.expect(REGISTERED_FIRST)
}

/// [`registered`], mutably.
#[inline]
fn registered_mut(registration: Option<&mut Armed>) -> &mut Armed {
    registration.expect(REGISTERED_FIRST)
}

/// A handle with a file descriptor that an event loop (epoll, mio, io_uring...) can wait on:
/// readable when the handle's next attempt (a receive, or a send) may find something. Used
/// through its aliases: [`crate::Readiness`] (a bus subscriber),
/// [`crate::records::RecordReadiness`], [`crate::QueueReceiverReadiness`] and
/// [`crate::QueueSenderReadiness`], each made by its handle's `into_readiness`.
///
/// Armed from the start, so that an event loop may wait before the first attempt. An attempt
/// through the wrapper that finds nothing clears the descriptor and re-arms it, so nothing is
/// missed between the two (docs/design.md §14); readiness may be spurious, never lost.
pub struct Ready<H: Registered> {
    handle: H,
}

impl<H: Registered> Ready<H> {
    /// Registers `handle` (unless it is already) and arms it at its first position.
    pub(crate) fn new(mut handle: H) -> Result<Self> {
        let first = handle.first_position();
        handle.armed()?.arm(first);
        Ok(Ready { handle })
    }

    /// The handle.
    #[inline]
    pub(crate) fn handle(&self) -> &H {
        &self.handle
    }

    /// The handle, for an attempt that re-arms.
    #[inline]
    pub(crate) fn handle_mut(&mut self) -> &mut H {
        &mut self.handle
    }

    /// The handle back, without its descriptor.
    pub fn into_inner(mut self) -> H {
        self.handle.disarm();
        self.handle
    }
}

impl<H: Registered + std::fmt::Debug> std::fmt::Debug for Ready<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(H::READINESS)
            .field(H::ROLE, &self.handle)
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl<H: Registered> AsFd for Ready<H> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        registered(self.handle.registration()).fd()
    }
}

impl<H: Registered> AsRawFd for Ready<H> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
