//! Awaiting a handle in a tokio task (feature `tokio`): [`Subscriber::recv_async`] and
//! [`Subscriber::stream`] here, and the queue's and records' `recv_async` and `send_async`
//! through [`register`] and [`readable`], over `tokio::io::unix::AsyncFd` on the handle's
//! readiness eventfd (docs/design.md §14).
//!
//! All are cancel-safe: a message is consumed (an item sent) only in the poll that returns it,
//! so a future dropped before completing (a `select!` branch that lost) leaves the message for
//! the next receive.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::bus::{Event, Recv, Subscriber};
use crate::error::{Error, Result};
use crate::payload::Payload;
use crate::readiness::Armed;

/// What one receive gives, owned; `None` for a closed bus.
fn owned<T: Payload>(r: Recv<'_, T>) -> Option<Option<Event<T::Owned>>> {
    match r {
        Recv::Message(m) => Some(Some(Event::Message {
            seq: m.seq(),
            value: T::to_owned(m.get()),
        })),
        Recv::Lapped { lost } => Some(Some(Event::Lapped { lost })),
        Recv::Closed => Some(None),
        Recv::Empty => None,
    }
}

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

/// Waits until `armed`'s eventfd (registered by [`register`]) is readable, and clears tokio's
/// readiness, so that the next wait waits for a new signal. The handle's next attempt re-arms
/// (which clears the eventfd itself); the cause of a signal stays in the segment until taken,
/// so clearing loses nothing.
pub(crate) async fn readable(armed: &Armed) -> Result<()> {
    let Some(afd) = armed.async_fd.as_ref() else {
        return Err(reactor_error(
            armed.name().to_owned(),
            io::Error::other("not registered with a tokio reactor"),
        ));
    };
    match afd.readable().await {
        Ok(mut g) => {
            g.clear_ready();
            Ok(())
        }
        Err(e) => Err(reactor_error(armed.name().to_owned(), e)),
    }
}

/// An item handed back by a [`crate::QueueSender::send_async`] that could not complete, with
/// the reason.
pub struct SendAsyncError<T> {
    /// The item that was not sent.
    pub item: T,
    /// Why: [`Error::MessageTooLarge`] (a raw item longer than the item size) or [`Error::Io`]
    /// (outside a tokio runtime, no eventfd or waker thread, or the reactor failed).
    pub error: Error,
}

impl<T> SendAsyncError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> std::fmt::Debug for SendAsyncError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendAsyncError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Display for SendAsyncError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the item was not sent: {}", self.error)
    }
}

impl<T> std::error::Error for SendAsyncError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T: Payload> Subscriber<T> {
    /// Registers the subscriber and its eventfd with the current tokio runtime (once).
    fn async_fd(&mut self) -> Result<&AsyncFd<RawFd>> {
        if self.registration().is_some_and(|a| a.async_fd.is_some()) {
            return Ok(self
                .registration()
                .and_then(|a| a.async_fd.as_ref())
                .expect("checked just above"));
        }
        let armed = self.armed()?;
        register(armed, "recv_async")?;
        Ok(armed.async_fd.as_ref().expect("registered just above"))
    }

    /// Receives, waiting without blocking the thread: the next message or lap, owned, or
    /// `Ok(None)` when no producer is attached and everything intact has been received (as
    /// [`crate::Recv::Closed`]; reported once per closure, then this waits for the next
    /// message).
    ///
    /// Cancel-safe: nothing is consumed unless this returns it, so it can be a `select!`
    /// branch. The first call registers the subscriber with this bus handle's waker thread and
    /// the current runtime's reactor (docs/design.md §14).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when called outside a tokio runtime, when the eventfd or the waker thread
    /// cannot be made (see [`Subscriber::into_readiness`]), or when the reactor fails (it was
    /// shut down).
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O (`enable_io`), as tokio's own I/O types do.
    pub async fn recv_async(&mut self) -> Result<Option<Event<T::Owned>>> {
        loop {
            self.async_fd()?;
            if let Some(r) = owned(self.try_recv_armed()) {
                return Ok(r);
            }
            // Armed: the eventfd turns readable once something is there.
            let armed = self
                .registration()
                .expect("registered at the top of the loop");
            readable(armed).await?;
        }
    }

    /// A [`futures_core::Stream`] of owned messages and laps, ending when the bus is closed (as
    /// [`Subscriber::iter`]). Cancel-safe like [`Subscriber::recv_async`].
    ///
    /// # Errors
    ///
    /// As [`Subscriber::recv_async`]: outside a tokio runtime, or when the eventfd or the waker
    /// thread cannot be made. The stream yields an error if the reactor fails.
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O, as tokio's own I/O types do.
    pub fn stream(&mut self) -> Result<EventStream<'_, T>> {
        self.async_fd()?;
        Ok(EventStream { sub: self })
    }
}

fn reactor_error(name: String, source: io::Error) -> Error {
    Error::Io {
        name,
        op: "wait for readiness",
        source,
    }
}

/// The stream made by [`Subscriber::stream`].
pub struct EventStream<'a, T: Payload> {
    sub: &'a mut Subscriber<T>,
}

impl<T: Payload> std::fmt::Debug for EventStream<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("subscriber", &self.sub)
            .finish()
    }
}

impl<T: Payload> futures_core::Stream for EventStream<'_, T> {
    type Item = Result<Event<T::Owned>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let sub = &mut *self.get_mut().sub;
        loop {
            if let Some(r) = owned(sub.try_recv_armed()) {
                return Poll::Ready(r.map(Ok));
            }
            let waited = match sub.async_fd() {
                Ok(afd) => match afd.poll_read_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r.map(|mut g| g.clear_ready()),
                },
                Err(e) => return Poll::Ready(Some(Err(e))),
            };
            if let Err(e) = waited {
                let name = sub.bus_name().to_owned();
                return Poll::Ready(Some(Err(reactor_error(name, e))));
            }
        }
    }
}
