//! The records subscriber: receives, blocking and not.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::RingShape;
use super::{Polled, Reader, RecordRing};
use crate::bus::{LapPolicy, Start, SubscriberStats};
use crate::segment::producers::SegmentLiveness;
use crate::segment::Segment;
use crate::wait::{self, SysFutex, Wait};

/// One result of receiving a record.
#[derive(Debug)]
pub enum RecordRecv<'a> {
    /// A whole record, copied out of the ring.
    Record(Record<'a>),
    /// Nothing new.
    Empty,
    /// The subscriber fell behind (or a fill panicked): exactly `lost` records were skipped.
    Lapped {
        /// How many records were skipped.
        lost: u64,
    },
    /// No producer is attached and nothing is left to read. Not final.
    Closed,
}

/// A received record: a borrow of the subscriber's own buffer, valid until the next receive.
#[derive(Debug)]
pub struct Record<'a> {
    pub(super) seq: u64,
    pub(super) type_id: u32,
    pub(super) bytes: &'a [u8],
}

impl<'a> Record<'a> {
    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The record's type id, as its publisher set it.
    pub fn type_id(&self) -> u32 {
        self.type_id
    }

    /// The record's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// A consumer of a records segment. Keeps its position in its own process.
pub struct RecordSubscriber {
    pub(super) seg: Arc<Segment>,
    pub(super) shape: RingShape,
    pub(super) reader: Reader,
    /// Private copy-out buffer, one largest record long.
    pub(super) buf: Box<[u64]>,
    pub(super) wait: Wait,
    pub(super) futex: SysFutex,
    /// The registration with the segment's waker thread, once readiness or `recv_async` is used
    /// (docs/design.md §14).
    #[cfg(not(loom))]
    pub(super) ready: Option<crate::readiness::Armed>,
}

impl std::fmt::Debug for RecordSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSubscriber")
            .field("records", &self.seg.name())
            .field("next", &self.reader.next_seq())
            .field("stats", &self.reader.stats())
            .finish()
    }
}

impl RecordSubscriber {
    pub(super) fn new(seg: Arc<Segment>, shape: RingShape, start: Start) -> Self {
        let reader = Reader::new(&RecordRing::new(seg.words(), shape), start);
        RecordSubscriber {
            reader,
            buf: vec![0u64; shape.max_payload.div_ceil(8)].into_boxed_slice(),
            // Read-only handles too: their sleep polls every millisecond (docs/design.md §7).
            wait: Wait::Sleep,
            futex: SysFutex::of(&seg),
            seg,
            shape,
            #[cfg(not(loom))]
            ready: None,
        }
    }

    /// Sets where this subscriber resumes after a lap.
    pub fn lap_policy(mut self, policy: LapPolicy) -> Self {
        self.reader.set_policy(policy);
        self
    }

    /// Sets how blocking receives wait (default [`Wait::Sleep`]: on a read-only handle, which
    /// may not raise the waiter flag, it polls every millisecond after its spin).
    pub fn wait_strategy(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The next sequence number this subscriber expects.
    pub fn next_seq(&self) -> u64 {
        self.reader.next_seq()
    }

    /// Counters so far: `received + lost` is the number of records published from the start on
    /// that this subscriber moved past.
    pub fn stats(&self) -> SubscriberStats {
        self.reader.stats()
    }

    /// Receives without waiting.
    #[inline]
    pub fn try_recv(&mut self) -> RecordRecv<'_> {
        let live = SegmentLiveness::observer(&self.seg);
        let ring = RecordRing::new(self.seg.words(), self.shape);
        let p = self.reader.poll(&ring, &live, &mut self.buf);
        self.finish(p)
    }

    /// Receives, waiting as long as it takes with the subscriber's [`Wait`] strategy.
    pub fn recv(&mut self) -> RecordRecv<'_> {
        let p = self.wait_for(None);
        self.finish(p)
    }

    /// Like [`RecordSubscriber::recv`], giving up with [`RecordRecv::Empty`] after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> RecordRecv<'_> {
        let p = self.wait_for(Instant::now().checked_add(timeout));
        self.finish(p)
    }

    pub(super) fn wait_for(&mut self, deadline: Option<Instant>) -> Polled {
        let seg = &*self.seg;
        let mut receiving = wait::Receiving {
            reader: Polling {
                reader: &mut self.reader,
                ring: RecordRing::new(seg.words(), self.shape),
                live: SegmentLiveness::observer(seg),
                buf: &mut self.buf,
            },
            seg,
            futex: &self.futex,
        };
        wait::block(&mut receiving, self.wait, deadline).unwrap_or(Polled::Empty)
    }

    #[inline]
    pub(super) fn finish(&self, p: Polled) -> RecordRecv<'_> {
        match p {
            Polled::Record { seq, len, type_id } => RecordRecv::Record(Record {
                seq,
                type_id,
                bytes: &bytemuck::cast_slice(&self.buf)[..len],
            }),
            Polled::Empty => RecordRecv::Empty,
            Polled::Lapped { lost } => RecordRecv::Lapped { lost },
            Polled::Closed => RecordRecv::Closed,
        }
    }
}

/// A blocking receive's reader side of the one blocking loop (docs/design.md §7).
struct Polling<'a> {
    reader: &'a mut Reader,
    ring: RecordRing<'a>,
    live: SegmentLiveness<'a>,
    buf: &'a mut [u64],
}

impl wait::Reading for Polling<'_> {
    type Out = Polled;

    #[inline]
    fn poll(&mut self, checked: bool) -> Option<Polled> {
        let p = if checked {
            self.reader.poll_checked(&self.ring, &self.live, self.buf)
        } else {
            self.reader.poll(&self.ring, &self.live, self.buf)
        };
        match p {
            Polled::Empty => None,
            p => Some(p),
        }
    }

    fn ready(&self) -> bool {
        self.reader.ready(&self.ring)
    }
}

/// What `RecordSubscriber::recv_async` (feature `tokio`) gives: an owned record, or a loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordEvent {
    /// A whole record, copied out.
    Record {
        /// Its sequence number.
        seq: u64,
        /// Its type id, as its publisher set it.
        type_id: u32,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// The subscriber fell behind (or a fill panicked): exactly `lost` records were skipped.
    Lapped {
        /// How many records were skipped.
        lost: u64,
    },
}
