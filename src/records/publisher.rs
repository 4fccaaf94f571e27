//! The records publisher and its in-place writer.
use std::sync::Arc;

use super::layout::RingShape;
use super::writer::Pending;
use super::{RecordRing, Writer};
use crate::error::{Error, Result};
use crate::segment::producers::{Attachment, Gate, Offer};
use crate::segment::{self, Segment};
use crate::wait::{self, SysFutex};

/// Counters of a record publisher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordPublisherStats {
    /// Records published.
    pub published: u64,
    /// Payload bytes published.
    pub bytes: u64,
}

/// The producer of a records segment (one at a time). Publishing never waits, allocates or
/// makes a system call unless a subscriber sleeps. Detaches on drop.
pub struct RecordPublisher {
    pub(super) seg: Arc<Segment>,
    pub(super) shape: RingShape,
    pub(super) writer: Writer,
    /// The producer's place (byte 0 and entry 0, exclusive) until drop, or until the kernel
    /// drops the locks at death.
    pub(super) att: Attachment,
    pub(super) futex: SysFutex,
    pub(super) strong_fence: bool,
    pub(super) stats: RecordPublisherStats,
}

impl std::fmt::Debug for RecordPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordPublisher")
            .field("records", &self.seg.name())
            .field("stats", &self.stats)
            .finish()
    }
}

/// A producer stamps its activity once in this many publishes (docs/design.md §4).
pub(super) const HEARTBEAT_EVERY: u64 = 1024;

impl RecordPublisher {
    pub(super) fn attach(seg: Arc<Segment>, shape: RingShape) -> Result<Self> {
        crate::segment::kind::writable(&seg)?;
        let busy = |seg: &Segment| Error::ProducerExists {
            name: seg.name().to_owned(),
            pid: seg.producer_alive(0).then(|| seg.producer_pid(0)),
        };
        // One producer: the exclusive gate, and entry 0, which every earlier producer (all dead
        // now) released with its life.
        let (att, ()) =
            Attachment::attach(&seg, Gate::Exclusive, 1, busy, busy, |_, _| Offer::Take(()))?;
        let ring = RecordRing::new(seg.words(), shape);
        let writer = match Writer::attach(&ring) {
            Ok(w) => w,
            // Dropping the attachment gives the entry back.
            Err(e) => {
                return Err(Error::RecordsInconsistent {
                    name: seg.name().to_owned(),
                    tail: e.tail,
                    intent: e.intent,
                    head: e.head,
                    cursor: e.cursor,
                });
            }
        };
        Ok(RecordPublisher {
            futex: SysFutex::of(&seg),
            strong_fence: wait::producer_fences(&seg),
            seg,
            shape,
            writer,
            att,
            stats: RecordPublisherStats::default(),
        })
    }

    /// Largest record payload, in bytes.
    pub fn max_record(&self) -> usize {
        self.shape.max_payload
    }

    /// Counters so far.
    pub fn stats(&self) -> RecordPublisherStats {
        self.stats
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.writer.next_seq()
    }

    /// Every publish's first check: the length, and that this process made the attachment (a
    /// forked child may not write under its parent's producer lock, docs/design.md §10).
    #[inline]
    pub(super) fn check_len(&self, len: usize) -> Result<()> {
        if self.att.forked() || len > self.shape.max_payload {
            return Err(self.refused(len));
        }
        Ok(())
    }

    /// Why `check_len` refused a record of `len` bytes.
    #[cold]
    fn refused(&self, len: usize) -> Error {
        if self.att.forked() {
            return Error::UsedAfterFork {
                name: self.seg.name().to_owned(),
            };
        }
        Error::MessageTooLarge {
            len,
            capacity: self.shape.max_payload,
        }
    }

    /// Begin, fill (returns whether to commit or abandon), finish, wake.
    #[inline]
    pub(super) fn publish_inner(
        &mut self,
        len: usize,
        type_id: u32,
        fill: impl FnOnce(&Writer, &RecordRing<'_>, &Pending) -> bool,
    ) -> u64 {
        let ring = RecordRing::new(self.seg.words(), self.shape);
        let p = self.writer.begin(&ring, len, type_id);
        if fill(&self.writer, &ring, &p) {
            self.writer.commit(&ring, p);
            self.stats.published += 1;
            self.stats.bytes += len as u64;
        } else {
            self.writer.abandon(&ring, p);
        }
        wait::wake_after_publish(self.seg.wake_words(), &self.futex, self.strong_fence);
        if self.stats.published % HEARTBEAT_EVERY == 0 {
            self.heartbeat();
        }
        p.seq
    }

    #[cold]
    pub(super) fn heartbeat(&self) {
        self.seg
            .producer_heartbeat(0)
            .store(segment::coarse_now_ns(), crate::sync::Ordering::Relaxed);
    }

    /// Publishes `bytes` as a record of type 0; returns its sequence number.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `bytes` is longer than [`RecordPublisher::max_record`].
    #[inline]
    pub fn publish_bytes(&mut self, bytes: &[u8]) -> Result<u64> {
        self.publish_record(0, bytes)
    }

    /// Publishes `bytes` as a record of type `type_id` (any number the application gives
    /// meaning to; subscribers see it with the record).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `bytes` is longer than [`RecordPublisher::max_record`];
    /// [`Error::UsedAfterFork`] in a forked child of the process that attached.
    #[inline]
    pub fn publish_record(&mut self, type_id: u32, bytes: &[u8]) -> Result<u64> {
        self.check_len(bytes.len())?;
        Ok(self.publish_inner(bytes.len(), type_id, |w, ring, p| {
            w.write_bytes(ring, p, bytes);
            true
        }))
    }

    /// Writes a record of exactly `len` bytes in place: `fill` gets a [`RecordWriter`] whose
    /// writes are atomic stores straight into the ring; bytes it does not write read as zero.
    /// Returns the sequence number and what `fill` returned. If `fill` panics, the record is
    /// published as abandoned (subscribers count it lost and never see it) and the panic resumes.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if `len` exceeds [`RecordPublisher::max_record`]; `fill` does
    /// not run then.
    pub fn publish_with<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut RecordWriter<'_>) -> R,
    ) -> Result<(u64, R)> {
        self.check_len(len)?;
        let mut out = None;
        let mut panicked = None;
        let seq = self.publish_inner(len, 0, |writer, ring, p| {
            let mut w = RecordWriter {
                writer,
                ring: *ring,
                pending: *p,
                written: 0,
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fill(&mut w))) {
                Ok(o) => {
                    w.zero_rest();
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
        let out = out.expect("fill returned: the record is committed");
        Ok((seq, out))
    }
}

impl Drop for RecordPublisher {
    fn drop(&mut self) {
        // Gone from the table first, so that the sleepers woken next see the producer gone.
        self.att.detach();
        wait::wake_sleepers(self.seg.wake_words(), &self.futex);
    }
}

/// Writes one record in place with atomic word stores (never a `&mut [u8]` into shared memory,
/// which readers race on; docs/design.md §8). Its length is fixed when it is begun.
pub struct RecordWriter<'a> {
    pub(super) writer: &'a Writer,
    pub(super) ring: RecordRing<'a>,
    pub(super) pending: Pending,
    /// The furthest byte written; bytes from here to the length are zeroed at the end.
    pub(super) written: usize,
}

impl RecordWriter<'_> {
    /// The record's length in bytes.
    pub fn len(&self) -> usize {
        self.pending.len
    }

    /// Whether the record is empty (zero bytes long).
    pub fn is_empty(&self) -> bool {
        self.pending.len == 0
    }

    /// Sets the record's type id (0 unless set).
    pub fn set_type_id(&mut self, type_id: u32) {
        self.writer.set_type(&self.ring, &self.pending, type_id);
    }

    /// Writes `bytes` at byte `offset` of the record. Bytes between the furthest byte written
    /// so far and `offset` become zero.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the write would end past the record's length; nothing is
    /// written then.
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        let len = self.pending.len;
        let Some(end) = offset.checked_add(bytes.len()).filter(|&e| e <= len) else {
            return Err(Error::MessageTooLarge {
                len: offset.saturating_add(bytes.len()),
                capacity: len,
            });
        };
        if offset > self.written {
            self.zero(self.written, offset);
        }
        self.store(offset, bytes);
        self.written = self.written.max(end);
        Ok(())
    }

    /// Appends `bytes` after the furthest byte written.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if the record would exceed its length.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_at(self.written, bytes)
    }

    pub(super) fn zero_rest(&mut self) {
        if self.written < self.pending.len {
            self.zero(self.written, self.pending.len);
        }
    }

    pub(super) fn zero(&mut self, from: usize, to: usize) {
        // Unwritten bytes would otherwise show what the ring held a lap ago.
        const ZEROS: [u8; 64] = [0; 64];
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(ZEROS.len());
            self.store(pos, &ZEROS[..n]);
            pos += n;
        }
    }

    /// Stores `bytes` at `offset` (within the length) word by word; bytes of a word outside the
    /// write keep what this record holds there.
    pub(super) fn store(&mut self, offset: usize, bytes: &[u8]) {
        let (writer, ring, pending) = (self.writer, &self.ring, &self.pending);
        crate::segment::payload::store_bytes(offset, bytes, |i| {
            writer.payload_word(ring, pending, i)
        });
    }
}
