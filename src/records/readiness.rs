//! Records readiness (docs/design.md §14): what the waker watches, the subscriber's event-loop
//! registration and armed receive, [`RecordReadiness`], and tokio (`recv_async`).

use super::layout::RingShape;
#[cfg(feature = "tokio")]
use super::subscriber::RecordEvent;
use super::subscriber::{RecordRecv, RecordSubscriber};
use super::{Polled, RecordRing};
use crate::error::Result;
#[cfg(feature = "tokio")]
use crate::readiness::tokio::poll_ready;
use crate::readiness::{ahead, registered, Armed, Ready, Registered, Target, Watch};
use crate::segment::producers::{Liveness, SegmentLiveness};
use crate::segment::Segment;
use crate::wait::WakeWords;

/// Records subscribers' readiness (docs/design.md §14): the cursor (records committed or
/// abandoned, stored with Release after the record's version word) is past the sequence the
/// subscriber expects, so its next receive finds that record, or finds it overwritten (a lap).
/// Padding needs no case: the receive follows it to the record after.
#[derive(Clone, Copy)]
pub(crate) struct RecordsWatch(RingShape);

/// The ring as the records waker sees it.
pub(crate) struct RecordsTarget<'a> {
    ring: RecordRing<'a>,
    live: SegmentLiveness<'a>,
}

impl Watch for RecordsWatch {
    type Target<'a> = RecordsTarget<'a>;

    fn target(self, seg: &Segment) -> RecordsTarget<'_> {
        RecordsTarget {
            ring: RecordRing::new(seg.words(), self.0),
            live: SegmentLiveness::observer(seg),
        }
    }

    /// The publisher bumps these after every commit or abandon.
    fn words(seg: &Segment) -> WakeWords<'_> {
        seg.wake_words()
    }
}

impl Target for RecordsTarget<'_> {
    #[inline]
    fn ready(&self, e: u64) -> bool {
        ahead(self.ring.cursor(), e)
    }

    /// A publisher that died mid-write leaves the cursor at `e`; the liveness look reports the
    /// segment closed, and a new publisher's first record moves the cursor on.
    fn stalled(&self, _: u64) -> bool {
        false
    }

    /// No publisher attached (a system call on a shared segment).
    fn closed(&self) -> bool {
        !self.live.any_alive()
    }
}

impl Registered for RecordSubscriber {
    const READINESS: &'static str = "RecordReadiness";
    const ROLE: &'static str = "subscriber";

    fn register(&self) -> Result<Armed> {
        Armed::watching(&self.seg, RecordsWatch(self.shape))
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
impl RecordSubscriber {
    /// This subscriber with a file descriptor an event loop can wait on: see
    /// [`RecordReadiness`]. Starts this segment handle's waker thread if it has none (one per
    /// handle in a process, shared by its subscribers). Read-only handles work too: their waker
    /// polls every millisecond while armed.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Io`] if the eventfd cannot be made (`op` "eventfd": too many open files)
    /// or the waker thread cannot be started (`op` "start the readiness thread").
    pub fn into_readiness(self) -> Result<RecordReadiness> {
        Ready::new(self)
    }

    /// Receives without waiting; when nothing is there, arms the registration (which must
    /// exist) so that its eventfd becomes readable once something is. After a signal for a
    /// closed segment, looks at the intent, the cursor and the producer at once.
    pub(crate) fn try_recv_armed(&mut self) -> RecordRecv<'_> {
        let armed = registered(self.ready.as_ref());
        let live = SegmentLiveness::observer(&self.seg);
        let ring = RecordRing::new(self.seg.words(), self.shape);
        let p = if armed.take_check() {
            self.reader.poll_checked(&ring, &live, &mut self.buf)
        } else {
            self.reader.poll(&ring, &live, &mut self.buf)
        };
        match p {
            Polled::Empty => armed.arm(self.reader.next_seq()),
            Polled::Closed => armed.closed(self.reader.next_seq()),
            Polled::Record { .. } | Polled::Lapped { .. } => {}
        }
        self.finish(p)
    }
}

/// A records subscriber with a file descriptor that an event loop can wait on: readable when
/// [`RecordReadiness::try_recv`] has something to return (a record, a lap, or a closed
/// segment). Made by [`RecordSubscriber::into_readiness`].
///
/// Drain it with [`RecordReadiness::try_recv`] until [`RecordRecv::Empty`], as a bus
/// [`crate::Readiness`]: readiness may be spurious, never lost, and a closed segment makes it
/// readable once per sequence (docs/design.md §14).
pub type RecordReadiness = Ready<RecordSubscriber>;

impl Ready<RecordSubscriber> {
    /// Receives without waiting, like [`RecordSubscriber::try_recv`]; when it finds nothing it
    /// re-arms the descriptor, which becomes readable again once there is something to receive.
    pub fn try_recv(&mut self) -> RecordRecv<'_> {
        self.handle_mut().try_recv_armed()
    }

    /// The subscriber (its sequence and counters).
    pub fn subscriber(&self) -> &RecordSubscriber {
        self.handle()
    }
}

/// Awaiting a records subscriber in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(feature = "tokio")]
impl RecordSubscriber {
    /// Receives, waiting without blocking the thread: the next record, owned, or a lap with
    /// its exact loss, or `Ok(None)` when no publisher is attached and everything intact has
    /// been received (as [`RecordRecv::Closed`]; reported once per closure, then this waits for
    /// the next record).
    ///
    /// Cancel-safe: nothing is consumed unless this returns it, so it can be a `select!`
    /// branch. The first call registers the subscriber with this handle's waker thread and the
    /// current runtime's reactor.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Io`] when called outside a tokio runtime, when the eventfd or the waker
    /// thread cannot be made (see [`RecordSubscriber::into_readiness`]), or when the reactor
    /// fails.
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O (`enable_io`), as tokio's own I/O types do.
    pub async fn recv_async(&mut self) -> Result<Option<RecordEvent>> {
        std::future::poll_fn(|cx| poll_ready(self, cx, "recv_async", owned)).await
    }
}

/// The armed receive, owned: `Some(None)` for a closed segment, `None` for nothing yet.
#[cfg(feature = "tokio")]
fn owned(sub: &mut RecordSubscriber) -> Option<Option<RecordEvent>> {
    match sub.try_recv_armed() {
        RecordRecv::Record(r) => Some(Some(RecordEvent::Record {
            seq: r.seq(),
            type_id: r.type_id(),
            bytes: r.bytes().to_vec(),
        })),
        RecordRecv::Lapped { lost } => Some(Some(RecordEvent::Lapped { lost })),
        RecordRecv::Closed => Some(None),
        RecordRecv::Empty => None,
    }
}
