//! The producer side (docs/design.md §4, §5): a thin wrapper around [`ring::Writer`] that adds
//! the segment, the producer's locks, waking and statistics.
//!
//! Publishing never blocks, never allocates and makes no system call unless a subscriber sleeps.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::bus::ring::{self, Ring, Writer};
use crate::error::{Error, Result};
use crate::segment::header::{Geometry, ProducerMode, MAX_PRODUCERS};
use crate::segment::payload::{Payload, Raw};
use crate::segment::producers::SegmentLiveness;
use crate::segment::producers::{Attachment, Gate, Offer};
use crate::segment::{self, Segment};
use crate::wait::{self, SysFutex};

/// A producer stamps its "last publish" time (a coarse clock, for the inspector) once in this
/// many publishes, so that a publish costs no clock read (docs/design.md §4).
const HEARTBEAT_EVERY: u64 = 1024;

/// Counters of one publisher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Messages published.
    pub published: u64,
    /// Multi-producer only: messages dropped because their slot already held a newer message, or
    /// was still held by a live writer a full lap behind. A dropped message is never delivered.
    pub dropped: u64,
    /// Multi-producer only: sequences of dead producers this publisher abandoned (repaired) so
    /// that their slots could be used again.
    pub repaired: u64,
}

/// A producer attached to a bus. Made by [`crate::Bus::publisher`]; detaches on drop.
pub struct Publisher<T: Payload = Raw> {
    seg: Arc<Segment>,
    geometry: Geometry,
    writer: Writer,
    /// This producer's entry in the header's producer table.
    index: u32,
    /// This producer's place in the table (docs/design.md §5): byte 0 (shared on a
    /// multi-producer bus, exclusive on a single-producer one) and its entry's byte, until drop.
    att: Attachment,
    futex: SysFutex,
    /// This process could not register for the sleepers' barrier: publish with a real fence.
    strong_fence: bool,
    /// A byte publisher on a typed bus ([`crate::Bus::bytes_publisher`]): every message must
    /// be exactly this long.
    exact: Option<usize>,
    stats: PublisherStats,
    _type: PhantomData<fn(&T)>,
}

impl<T: Payload> std::fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("bus", &self.seg.name())
            .field("index", &self.index)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Publisher<Raw> {
    /// A byte publisher on a bus of any type: on a typed one, every message must be exactly
    /// one value of the type ([`crate::Bus::bytes_publisher`]).
    pub(crate) fn attach_bytes(seg: Arc<Segment>) -> Result<Self> {
        let exact = (!seg.ty.is_raw()).then_some(seg.ty.size as usize);
        let mut p = Publisher::attach(seg)?;
        p.exact = exact;
        Ok(p)
    }
}

impl<T: Payload> Publisher<T> {
    pub(crate) fn attach(seg: Arc<Segment>) -> Result<Self> {
        let busy = |seg: &Segment| Error::ProducerExists {
            name: seg.name().to_owned(),
            pid: (0..MAX_PRODUCERS)
                .find(|&i| seg.producer_alive(i))
                .map(|i| seg.producer_pid(i)),
        };
        let (gate, entries) = match seg.mode {
            ProducerMode::Single => (Gate::Exclusive, 1),
            ProducerMode::Multi => (Gate::Shared, MAX_PRODUCERS),
        };
        let full = |seg: &Segment| match seg.mode {
            ProducerMode::Single => busy(seg),
            ProducerMode::Multi => Error::TooManyProducers {
                name: seg.name().to_owned(),
                max: MAX_PRODUCERS,
            },
        };
        let (att, repaired) = Attachment::attach(&seg, gate, entries, busy, full, |lock, i| {
            let ring = Ring::of(&seg);
            let mut repaired = 0;
            if lock.is_some() && seg.mode == ProducerMode::Single {
                // With the exclusive gate every earlier producer is dead.
                repaired += ring::repair_single(&ring);
            }
            // The entry's previous holder is dead (we hold its lock): repair its claim before
            // our own claims overwrite it (docs/design.md §5, "Repair").
            if lock.is_some() {
                repaired += u64::from(ring::repair_claim(&ring, i).is_some());
            }
            Offer::Take(repaired)
        })?;
        let index = att.index();
        let writer = match seg.mode {
            ProducerMode::Single => Writer::single(Ring::of(&seg).cursor()),
            ProducerMode::Multi => Writer::multi_at(index, Ring::of(&seg).cursor()),
        };
        Ok(Publisher {
            geometry: seg.geometry,
            writer,
            index: index as u32,
            att,
            futex: SysFutex::of(&seg),
            strong_fence: wait::producer_fences(&seg),
            exact: None,
            seg,
            stats: PublisherStats {
                repaired,
                ..PublisherStats::default()
            },
            _type: PhantomData,
        })
    }

    /// Largest message this publisher can send, in bytes.
    pub fn capacity(&self) -> usize {
        self.geometry.capacity
    }

    /// Counters so far.
    pub fn stats(&self) -> PublisherStats {
        self.stats
    }

    /// The producer-table index this publisher holds.
    pub fn producer_index(&self) -> u32 {
        self.index
    }

    /// The protocol around one write: begin (claim and take), `fill` (returns whether to commit
    /// or abandon), finish, wake. Returns the sequence number, or `None` if a multi-producer
    /// message had to be dropped.
    #[inline]
    fn publish_inner(&mut self, fill: impl FnOnce(&Writer, &Ring<'_>, u64) -> bool) -> Option<u64> {
        if self.forked() {
            return None;
        }
        let seg = &*self.seg;
        let ring = Ring::of(seg);
        let live = SegmentLiveness::producer(seg, self.att.lock(), self.index as usize);
        let Some(seq) = self.writer.begin(&ring, &live) else {
            self.stats.dropped += 1;
            return None;
        };
        if fill(&self.writer, &ring, seq) {
            self.writer.commit(&ring, seq);
            self.stats.published += 1;
        } else {
            self.writer.abandon(&ring, seq);
        }
        wait::wake_after_publish(seg.wake_words(), &self.futex, self.strong_fence);
        if self.stats.published % HEARTBEAT_EVERY == 0 {
            self.heartbeat();
        }
        Some(seq)
    }

    /// Whether this is a forked child of the process that attached: the child may not write
    /// under its parent's producer entry (docs/design.md §10, "Fork").
    #[inline]
    fn forked(&self) -> bool {
        self.att.forked()
    }

    #[cold]
    fn heartbeat(&self) {
        self.seg
            .producer_heartbeat(self.index as usize)
            .store(segment::coarse_now_ns(), crate::sync::Ordering::Relaxed);
    }

    /// Publishes the bytes of `msg`; returns its sequence number (`None`: a multi-producer
    /// message dropped, see [`PublisherStats::dropped`]).
    #[inline]
    fn publish_slice(&mut self, bytes: &[u8]) -> Result<Option<u64>> {
        if bytes.len() > self.geometry.capacity {
            return Err(Error::MessageTooLarge {
                len: bytes.len(),
                capacity: self.geometry.capacity,
            });
        }
        if let Some(size) = self.exact.filter(|&n| n != bytes.len()) {
            return Err(Error::WrongMessageSize {
                name: self.seg.name().to_owned(),
                len: bytes.len(),
                size,
                type_name: self.seg.ty.name.clone(),
            });
        }
        if self.forked() {
            return Err(Error::UsedAfterFork {
                name: self.seg.name().to_owned(),
            });
        }
        Ok(self.publish_inner(|w, ring, seq| {
            w.write_bytes(ring, seq, bytes);
            true
        }))
    }

    /// Writes a message in place: `fill` gets a [`SlotWriter`] whose writes go straight into the
    /// slot as atomic stores (no intermediate buffer); the message length is the furthest byte
    /// written, and bytes below it that `fill` skipped read as zero. Returns the sequence number
    /// and what `fill` returned, or `None` if a multi-producer message was dropped before `fill`
    /// ran (or, without running it, in a forked child of the process that attached: see
    /// [`Error::UsedAfterFork`]). If `fill` panics, the sequence is published as abandoned (subscribers count it lost,
    /// never see the half-written message) and the panic resumes.
    pub fn publish_with<R>(
        &mut self,
        fill: impl FnOnce(&mut SlotWriter<'_>) -> R,
    ) -> Option<(u64, R)> {
        let mut out = None;
        let mut panicked = None;
        let seq = self.publish_inner(|writer, ring, seq| {
            let mut w = SlotWriter {
                writer,
                ring: *ring,
                seq,
                len: 0,
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fill(&mut w))) {
                Ok(o) => {
                    writer.store_len(ring, seq, w.len);
                    out = Some(o);
                    true
                }
                Err(payload) => {
                    panicked = Some(payload);
                    false
                }
            }
        });
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        let seq = seq?;
        out.map(|o| (seq, o))
    }
}

impl<T: Payload> Publisher<T> {
    /// Publishes a loss: takes the next `n` sequence numbers and marks each abandoned, so that
    /// subscribers count them lost (in [`crate::Recv::Lapped`]) and see no message for them.
    /// For relays that must pass on a loss that happened upstream of them, so that every
    /// subscriber's `received + lost` still balances against the original stream (the zenoh
    /// bridge's importer does this). Costs one slot write per sequence. Returns how many were
    /// marked: fewer than `n` only where a multi-producer sequence was dropped anyway (counted
    /// lost all the same), or none in a forked child.
    pub fn publish_loss(&mut self, n: u64) -> u64 {
        (0..n)
            .filter(|_| self.publish_inner(|_, _, _| false).is_some())
            .count() as u64
    }
}

impl Publisher<Raw> {
    /// Publishes a byte message.
    ///
    /// Returns the message's sequence number, or `None` on a multi-producer bus when the message
    /// was dropped (see [`PublisherStats::dropped`]).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `bytes` is longer than the slot capacity;
    /// [`Error::UsedAfterFork`] in a forked child of the process that attached.
    #[inline]
    pub fn publish_bytes(&mut self, bytes: &[u8]) -> Result<Option<u64>> {
        self.publish_slice(bytes)
    }
}

impl<T: bytemuck::Pod> Publisher<T> {
    /// Publishes one typed message (the bus was created or opened for this type, so it fits).
    /// `None`: a multi-producer message dropped, or (publishing nothing) a forked child of the
    /// process that attached, which may not write under its parent's producer entry.
    #[inline]
    pub fn publish(&mut self, msg: &T) -> Option<u64> {
        let bytes = bytemuck::bytes_of(msg);
        // The capacity was checked against size_of::<T>() when the bus was built or opened.
        self.publish_inner(|w, ring, seq| {
            w.write_bytes(ring, seq, bytes);
            true
        })
    }
}

impl<T: Payload> Drop for Publisher<T> {
    fn drop(&mut self) {
        // Gone from the table first, so that the sleepers woken next see producers gone.
        self.att.detach();
        wait::wake_sleepers(self.seg.wake_words(), &self.futex);
    }
}

/// Writes one message directly into its slot with atomic word stores (never a `&mut [u8]` into
/// shared memory, which readers race on; docs/design.md §8). The message length is the furthest
/// byte written; bytes below it that were never written are zero.
pub struct SlotWriter<'a> {
    writer: &'a Writer,
    ring: Ring<'a>,
    seq: u64,
    len: usize,
}

impl SlotWriter<'_> {
    /// Bytes available in the slot.
    pub fn capacity(&self) -> usize {
        self.ring.geometry().capacity
    }

    /// Bytes written so far (the message length).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `bytes` at byte `offset` of the payload. Bytes between the previous end of the
    /// message and `offset` become zero.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the write would end past the slot capacity; nothing is
    /// written then.
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        let capacity = self.capacity();
        let end = offset.checked_add(bytes.len()).filter(|&e| e <= capacity);
        let Some(end) = end else {
            return Err(Error::MessageTooLarge {
                len: offset.saturating_add(bytes.len()),
                capacity,
            });
        };
        if offset > self.len {
            // The gap would otherwise show whatever the slot held before: an older message's
            // bytes inside this message's length.
            const ZEROS: [u8; 64] = [0; 64];
            let mut pos = self.len;
            while pos < offset {
                let n = (offset - pos).min(ZEROS.len());
                self.store(pos, &ZEROS[..n]);
                pos += n;
            }
        }
        self.store(offset, bytes);
        self.len = self.len.max(end);
        Ok(())
    }

    /// Appends `bytes` after the furthest byte written.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the message would exceed the slot capacity.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_at(self.len, bytes)
    }

    /// Stores `bytes` at `offset` (in bounds) word by word. Bytes of a word outside the write
    /// keep what this message (or, past its end, the slot) held; past the message's length they
    /// are never delivered.
    fn store(&mut self, offset: usize, bytes: &[u8]) {
        let (writer, ring, seq) = (self.writer, &self.ring, self.seq);
        crate::segment::payload::store_bytes(offset, bytes, |i| writer.payload_word(ring, seq, i));
    }
}
