//! Lanes readiness (docs/design.md §14, §17): what the waker watches, the consumer's event-loop
//! registration and armed receive, [`LaneReadiness`], and tokio (`recv_async`).

use super::consumer::{LaneConsumer, LaneEvent};
use super::layout::{lane_lock_byte, LanesShape, L_STATE, OPEN, STATE_MASK, W_READY};
use crate::error::Result;
#[cfg(feature = "tokio")]
use crate::readiness::tokio::poll_ready;
use crate::readiness::{registered, Armed, Ready, Registered, Target, Watch};
use crate::segment::Segment;
use crate::sync::Ordering;
use crate::wait::WakeWords;

/// A lanes consumer's readiness: a ready bit is set (a producer raises its lane's bit, then
/// bumps the wake word if the waker sleeps). One descriptor for the whole pool.
#[derive(Clone, Copy)]
pub(crate) struct LanesWatch(LanesShape);

/// The segment as the lanes waker sees it.
pub(crate) struct LanesTarget<'a> {
    seg: &'a Segment,
    shape: LanesShape,
}

impl Watch for LanesWatch {
    type Target<'a> = LanesTarget<'a>;

    fn target(self, seg: &Segment) -> LanesTarget<'_> {
        LanesTarget { seg, shape: self.0 }
    }

    fn words(seg: &Segment) -> WakeWords<'_> {
        seg.wake_words()
    }
}

impl Target for LanesTarget<'_> {
    #[inline]
    fn ready(&self, _: u64) -> bool {
        let words = self.seg.words();
        (0..self.shape.ready_words()).any(|i| words[W_READY + i].load(Ordering::Relaxed) != 0)
    }

    /// An open lane whose producer's lock is free: it died, and the consumer's sweep closes its
    /// lane (a system call per open lane, every few milliseconds only).
    fn stalled(&self, _: u64) -> bool {
        let Some(fd) = self.seg.lock_fd() else {
            return false;
        };
        let words = self.seg.words();
        (0..self.shape.lanes).any(|lane| {
            words[self.shape.word(lane, L_STATE)].load(Ordering::Relaxed) & STATE_MASK == OPEN
                && !crate::segment::lock_held(fd, lane_lock_byte(lane))
        })
    }

    /// Lanes never close as a whole: each lane's close is an event of its own.
    fn closed(&self) -> bool {
        false
    }
}

impl Registered for LaneConsumer {
    const READINESS: &'static str = "LaneReadiness";
    const ROLE: &'static str = "consumer";

    fn register(&self) -> Result<Armed> {
        Armed::watching(&self.lanes.seg, LanesWatch(self.lanes.shape))
    }

    fn registration_slot(&mut self) -> &mut Option<Armed> {
        &mut self.ready
    }

    fn registration(&self) -> Option<&Armed> {
        self.ready.as_ref()
    }

    fn first_position(&self) -> u64 {
        0
    }
}

impl LaneConsumer {
    /// This consumer with a file descriptor an event loop can wait on: see [`LaneReadiness`].
    /// Starts this segment handle's waker thread if it has none.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Io`] if the eventfd cannot be made or the waker thread cannot be
    /// started.
    pub fn into_readiness(self) -> Result<LaneReadiness> {
        Ready::new(self)
    }

    /// Receives without waiting; when nothing is there, arms the registration (which must
    /// exist). After the waker saw a dead producer, sweeps first.
    pub(crate) fn try_recv_armed(&mut self) -> Result<Option<LaneEvent<'_>>> {
        self.wake_flagged();
        if registered(self.ready.as_ref()).take_check() {
            self.sweep();
        }
        // Nothing found: clear the bits of the lanes found empty (else the waker would find
        // them set and signal at once), look again if one was raised meanwhile, and arm if
        // there is still nothing, so that the descriptor turns readable once there is.
        let found = self.find()? || (self.clear_stale() && self.find()?);
        if !found {
            // Armed after the look: a bit raised since is seen by the waker, which signals.
            registered(self.ready.as_ref()).arm(0);
            return Ok(None);
        }
        Ok(Some(self.take()))
    }
}

/// A lanes consumer with a file descriptor that an event loop can wait on (epoll, mio,
/// io_uring...): readable when [`LaneReadiness::try_recv`] has something to return. Made by
/// [`LaneConsumer::into_readiness`]. Drain it with `try_recv` until `Ok(None)`: readiness may
/// be spurious, never lost (docs/design.md §14).
pub type LaneReadiness = Ready<LaneConsumer>;

impl Ready<LaneConsumer> {
    /// Receives without waiting, like [`LaneConsumer::try_recv`]; when it finds nothing it
    /// re-arms the descriptor.
    ///
    /// # Errors
    ///
    /// Those of [`LaneConsumer::try_recv`].
    pub fn try_recv(&mut self) -> Result<Option<LaneEvent<'_>>> {
        self.handle_mut().try_recv_armed()
    }

    /// The consumer.
    pub fn consumer(&self) -> &LaneConsumer {
        self.handle()
    }

    /// The consumer, to receive batches (which do not re-arm: drain with `try_recv` before
    /// waiting again).
    pub fn consumer_mut(&mut self) -> &mut LaneConsumer {
        self.handle_mut()
    }
}

/// One event, owned: what `recv_async` gives.
#[cfg(feature = "tokio")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LaneOwned {
    /// A record's lane and bytes (copied: a future cannot hold a borrow of the lane).
    Record {
        /// The lane.
        lane: u32,
        /// The record.
        bytes: Vec<u8>,
    },
    /// A lane closed and drained.
    Closed(super::LaneClosed),
}

/// Awaiting a lanes consumer in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(feature = "tokio")]
impl LaneConsumer {
    /// Receives, waiting without blocking the thread; the record is copied out (use
    /// [`LaneReadiness`] with your own loop to read in place). Cancel-safe: nothing is
    /// acknowledged unless this returns it.
    ///
    /// # Errors
    ///
    /// Those of [`LaneConsumer::try_recv`], and [`crate::Error::Io`] outside a tokio runtime
    /// or when the reactor fails.
    pub async fn recv_async(&mut self) -> Result<LaneOwned> {
        std::future::poll_fn(|cx| poll_ready(self, cx, "recv_async", owned))
            .await
            .and_then(|r| r)
    }
}

#[cfg(feature = "tokio")]
fn owned(c: &mut LaneConsumer) -> Option<Result<LaneOwned>> {
    match c.try_recv_armed() {
        Ok(Some(LaneEvent::Record(r))) => Some(Ok(LaneOwned::Record {
            lane: r.lane(),
            bytes: r.to_vec(),
        })),
        Ok(Some(LaneEvent::Closed(c))) => Some(Ok(LaneOwned::Closed(c))),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}
