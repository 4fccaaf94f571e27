//! Bus readiness (docs/design.md §14): what the bus's waker watches, the subscriber's
//! registration and armed receive, [`Readiness`], and tokio (`recv_async`, `stream`).

#[cfg(feature = "tokio")]
use std::pin::Pin;
#[cfg(feature = "tokio")]
use std::task::{Context, Poll};

use crate::bus::ring::{Liveness, Polled, Ring};
#[cfg(feature = "tokio")]
use crate::bus::subscriber::Event;
use crate::bus::subscriber::{Recv, Subscriber};
use crate::error::Result;
#[cfg(feature = "tokio")]
use crate::readiness::tokio::{poll_ready, register};
use crate::readiness::{ahead, registered, Armed, Ready, Registered, Target, Watch};
use crate::segment::payload::{Payload, Raw};
use crate::segment::producers::SegmentLiveness;
use crate::segment::Segment;
use crate::wait::WakeWords;

/// Bus subscribers: the slot of the sequence each expects.
#[derive(Clone, Copy)]
pub(crate) struct BusWatch;

/// The bus as its waker sees it.
pub(crate) struct BusTarget<'a> {
    ring: Ring<'a>,
    live: SegmentLiveness<'a>,
}

impl Watch for BusWatch {
    type Target<'a> = BusTarget<'a>;

    fn target(self, seg: &Segment) -> BusTarget<'_> {
        BusTarget {
            ring: Ring::of(seg),
            live: SegmentLiveness::observer(seg),
        }
    }

    /// Publishers bump these after every publish (§7).
    fn words(seg: &Segment) -> WakeWords<'_> {
        seg.wake_words()
    }
}

impl Target for BusTarget<'_> {
    /// The slot of `e` has moved past "being written": written, abandoned or reused (a lap).
    #[inline]
    fn ready(&self, e: u64) -> bool {
        self.ring.ready(e)
    }

    /// The cursor is past `e`: a claimant that may have died holds it.
    fn stalled(&self, e: u64) -> bool {
        ahead(self.ring.cursor(), e)
    }

    /// No producer attached (a system call on a shared bus).
    fn closed(&self) -> bool {
        !self.live.any_alive()
    }
}

impl<T: Payload> Registered for Subscriber<T> {
    const READINESS: &'static str = "Readiness";
    const ROLE: &'static str = "subscriber";

    fn register(&self) -> Result<Armed> {
        Armed::watching(&self.seg, BusWatch)
    }

    fn registration_slot(&mut self) -> &mut Option<Armed> {
        &mut self.ready
    }

    fn registration(&self) -> Option<&Armed> {
        self.ready.as_ref()
    }

    fn first_position(&self) -> u64 {
        self.next_seq()
    }
}

/// Event-loop receive: the readiness registration (docs/design.md §14).
impl<T: Payload> Subscriber<T> {
    /// This subscriber with a file descriptor an event loop can wait on: see
    /// [`crate::Readiness`]. Starts this bus handle's waker thread if it has none (one per bus
    /// handle in a process, shared by its subscribers). Read-only handles work too: their waker
    /// polls every millisecond while armed instead of sleeping on the bus's futex.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Io`] if the eventfd cannot be made (`op` "eventfd": too many open files)
    /// or the waker thread cannot be started (`op` "start the readiness thread").
    pub fn into_readiness(self) -> crate::Result<Readiness<T>> {
        Ready::new(self)
    }

    /// Receives without waiting; when nothing is there, arms the registration (which must
    /// exist) so that its eventfd becomes readable once something is. After a signal for a
    /// stall or a closed bus, looks at the cursor and the producers at once.
    pub(crate) fn try_recv_armed(&mut self) -> Recv<'_, T> {
        let armed = registered(self.ready.as_ref());
        let live = SegmentLiveness::observer(&self.seg);
        let ring = Ring::of(&self.seg);
        let p = if armed.take_check() {
            self.reader.poll_checked(&ring, &live, &mut *self.buf)
        } else {
            self.reader.poll(&ring, &live, &mut *self.buf)
        };
        match p {
            // Idle: nothing pending, producers not asked about; the waker's periodic look
            // reports a closed bus.
            Polled::Empty | Polled::Idle => armed.arm(self.reader.next_seq()),
            Polled::Closed => armed.closed(self.reader.next_seq()),
            Polled::Message { .. } | Polled::Lapped { .. } => {}
        }
        self.finish(p)
    }
}

/// A subscriber with a file descriptor that an event loop (epoll, mio, io_uring...) can wait
/// on: readable when [`Readiness::try_recv`] has something to return (a message, a lap, or a
/// closed bus). Made by [`Subscriber::into_readiness`].
///
/// Drain it with [`Readiness::try_recv`] until [`Recv::Empty`]: the receive that finds nothing
/// clears the descriptor and re-arms it, so no publish is missed between the two
/// (docs/design.md §14). Readiness may be spurious (a receive then finds nothing); it is never
/// lost. A closed bus makes it readable once per sequence: a receive that gets
/// [`Recv::Closed`] is not woken again for the same closure.
///
/// ```
/// use std::os::fd::AsFd;
/// use shmbus::{BusBuilder, Recv};
/// # let name = format!("doc-readiness-{}", std::process::id());
/// let bus = BusBuilder::new(&name).create()?;
/// let mut tx = bus.publisher()?;
/// let mut rx = bus.subscriber().into_readiness()?;
/// assert!(matches!(rx.try_recv(), Recv::Empty)); // armed
/// tx.publish_bytes(b"hi")?;
/// // Wait for the descriptor as an event loop would.
/// let mut fds = [nix::poll::PollFd::new(rx.as_fd(), nix::poll::PollFlags::POLLIN)];
/// nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).unwrap();
/// assert!(matches!(rx.try_recv(), Recv::Message(m) if m.bytes() == b"hi"));
/// # shmbus::Bus::remove(&name)?;
/// # Ok::<(), shmbus::Error>(())
/// ```
pub type Readiness<T = Raw> = Ready<Subscriber<T>>;

impl<T: Payload> Ready<Subscriber<T>> {
    /// Receives without waiting, like [`Subscriber::try_recv`]; when it finds nothing it re-arms
    /// the descriptor, which becomes readable again once there is something to receive.
    pub fn try_recv(&mut self) -> Recv<'_, T> {
        self.handle_mut().try_recv_armed()
    }

    /// The subscriber (its sequence and counters).
    pub fn subscriber(&self) -> &Subscriber<T> {
        self.handle()
    }
}

/// The armed receive, owned: `Some(None)` for a closed bus, `None` for nothing yet.
#[cfg(feature = "tokio")]
fn owned<T: Payload>(sub: &mut Subscriber<T>) -> Option<Option<Event<T::Owned>>> {
    match sub.try_recv_armed() {
        Recv::Message(m) => Some(Some(Event::Message {
            seq: m.seq(),
            value: T::to_owned(m.get()),
        })),
        Recv::Lapped { lost } => Some(Some(Event::Lapped { lost })),
        Recv::Closed => Some(None),
        Recv::Empty => None,
    }
}

/// Awaiting a subscriber in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(feature = "tokio")]
impl<T: Payload> Subscriber<T> {
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
    /// [`crate::Error::Io`] when called outside a tokio runtime, when the eventfd or the waker
    /// thread cannot be made (see [`Subscriber::into_readiness`]), or when the reactor fails (it
    /// was shut down).
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O (`enable_io`), as tokio's own I/O types do.
    pub async fn recv_async(&mut self) -> Result<Option<Event<T::Owned>>> {
        std::future::poll_fn(|cx| poll_ready(self, cx, "recv_async", owned)).await
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
        register(self.armed()?, "recv_async")?;
        Ok(EventStream { sub: self })
    }
}

/// The stream made by [`Subscriber::stream`].
#[cfg(feature = "tokio")]
pub struct EventStream<'a, T: Payload> {
    sub: &'a mut Subscriber<T>,
}

#[cfg(feature = "tokio")]
impl<T: Payload> std::fmt::Debug for EventStream<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("subscriber", &self.sub)
            .finish()
    }
}

#[cfg(feature = "tokio")]
impl<T: Payload> futures_core::Stream for EventStream<'_, T> {
    type Item = Result<Event<T::Owned>>;

    /// One receive after another until one gives something; `None` (the end) for a closed bus.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let sub = &mut *self.get_mut().sub;
        poll_ready(sub, cx, "recv_async", owned).map(Result::transpose)
    }
}
