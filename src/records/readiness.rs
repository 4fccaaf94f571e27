//! Records readiness (docs/design.md §14): what the waker watches, the event-loop registration, and tokio.

use super::layout::RingShape;
#[cfg(feature = "tokio")]
use super::subscriber::RecordEvent;
use super::subscriber::{RecordRecv, RecordSubscriber};
use super::{Polled, RecordRing};
use crate::error::Result;
use crate::segment::producers::SegmentLiveness;
use crate::segment::Segment;
use crate::wait::{self};

/// Records subscribers' readiness (docs/design.md §14): the cursor (records committed or
/// abandoned, stored with Release after the record's version word) is past the sequence the
/// subscriber expects, so its next receive finds that record, or finds it overwritten (a lap).
/// Padding needs no case: the receive follows it to the record after.
#[cfg(not(loom))]
#[derive(Clone, Copy)]
pub(crate) struct RecordsWatch(RingShape);

/// The ring as the records waker sees it.
#[cfg(not(loom))]
pub(crate) struct RecordsTarget<'a>(RecordRing<'a>);

#[cfg(not(loom))]
impl crate::readiness::Watch for RecordsWatch {
    type Target<'a> = RecordsTarget<'a>;

    fn target(self, seg: &Segment) -> RecordsTarget<'_> {
        RecordsTarget(RecordRing::new(seg.words(), self.0))
    }

    /// The publisher bumps these after every commit or abandon.
    fn words(seg: &Segment) -> wait::WakeWords<'_> {
        seg.wake_words()
    }
}

#[cfg(not(loom))]
impl crate::readiness::Target for RecordsTarget<'_> {
    #[inline]
    fn ready(&self, e: u64) -> bool {
        crate::readiness::ahead(self.0.cursor(), e)
    }

    /// A publisher that died mid-write leaves the cursor at `e`; the liveness look reports the
    /// segment closed, and a new publisher's first record moves the cursor on.
    fn stalled(&self, _: u64) -> bool {
        false
    }

    fn closes(&self) -> bool {
        true
    }
}

/// Event-loop receive: the readiness registration (docs/design.md §14).
#[cfg(not(loom))]
impl RecordSubscriber {
    /// This subscriber with a file descriptor an event loop can wait on: see
    /// [`crate::records::RecordReadiness`]. Starts this segment handle's waker thread if it has
    /// none (one per handle in a process, shared by its subscribers). Read-only handles work
    /// too: their waker polls every millisecond while armed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the eventfd cannot be made (`op` "eventfd": too many open files) or the
    /// waker thread cannot be started (`op` "start the readiness thread").
    pub fn into_readiness(mut self) -> Result<crate::readiness::RecordReadiness> {
        self.armed()?;
        Ok(crate::readiness::RecordReadiness::new(self))
    }

    /// The registration, made on first use.
    pub(crate) fn armed(&mut self) -> Result<&mut crate::readiness::Armed> {
        if self.ready.is_none() {
            let watch = RecordsWatch(self.shape);
            self.ready = Some(crate::readiness::Armed::watching(&self.seg, watch)?);
        }
        Ok(self.ready.as_mut().expect("set just above"))
    }

    /// The registration, which callers made.
    pub(crate) fn registration(&self) -> &crate::readiness::Armed {
        self.ready
            .as_ref()
            .expect("callers register the subscriber first")
    }

    /// Ends the registration.
    pub(crate) fn disarm(&mut self) {
        self.ready = None;
    }

    /// Receives without waiting; when nothing is there, arms the registration (which must
    /// exist) so that its eventfd becomes readable once something is. After a signal for a
    /// closed segment, looks at the intent, the cursor and the producer at once.
    pub(crate) fn try_recv_armed(&mut self) -> RecordRecv<'_> {
        let armed = self
            .ready
            .as_ref()
            .expect("callers register the subscriber first");
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

/// Awaiting a records subscriber in a tokio task (feature `tokio`, docs/design.md §14).
#[cfg(all(feature = "tokio", not(loom)))]
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
    /// [`Error::Io`] when called outside a tokio runtime, when the eventfd or the waker thread
    /// cannot be made (see [`RecordSubscriber::into_readiness`]), or when the reactor fails.
    ///
    /// # Panics
    ///
    /// Inside a tokio runtime built without I/O (`enable_io`), as tokio's own I/O types do.
    pub async fn recv_async(&mut self) -> Result<Option<RecordEvent>> {
        crate::readiness::tokio::register(self.armed()?, "recv_async")?;
        loop {
            match self.try_recv_armed() {
                RecordRecv::Record(r) => {
                    return Ok(Some(RecordEvent::Record {
                        seq: r.seq(),
                        type_id: r.type_id(),
                        bytes: r.bytes().to_vec(),
                    }))
                }
                RecordRecv::Lapped { lost } => return Ok(Some(RecordEvent::Lapped { lost })),
                RecordRecv::Closed => return Ok(None),
                RecordRecv::Empty => {}
            }
            crate::readiness::tokio::readable(self.registration()).await?;
        }
    }
}
