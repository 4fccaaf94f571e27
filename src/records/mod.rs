//! Records: broadcast of variable-size messages in one byte ring (docs/design.md §15). One
//! producer publishes records of any size up to a quarter of the ring, with no per-slot waste;
//! any number of subscribers, in any process, each read at their own pace and learn exactly how
//! many records they lost when the producer laps them, as on a bus.
//!
//! ```
//! use shmbus::records::{RecordRecv, RecordsBuilder};
//! # let name = format!("doc-records-intro-{}", std::process::id());
//! let records = RecordsBuilder::new(&name).bytes(1 << 16).create()?;
//! let mut tx = records.publisher()?;
//! let mut rx = records.subscriber(); // records published from now on
//! tx.publish_bytes(b"short")?;
//! tx.publish_bytes(&[7u8; 3000])?;
//! for want in [5, 3000] {
//!     match rx.try_recv() {
//!         RecordRecv::Record(r) => assert_eq!(r.bytes().len(), want),
//!         other => panic!("expected a record, got {other:?}"),
//!     }
//! }
//! # shmbus::records::Records::remove(&name)?;
//! # Ok::<(), shmbus::Error>(())
//! ```
//!
//! **How it works.** The ring is written by one producer-side `Writer` and read by any number of
//! `Reader`s, each keeping its own position. Every record starts with a version word that names its sequence number and state (free,
//! being written, written, abandoned, or padding), so a reader at the head of the ring learns
//! whether the next record is there with one load, as on the bus. Because records have any size,
//! a later record can overwrite an older one's payload without touching its version word; the
//! overwrite is detected instead with the producer's **intent** word (the Agrona broadcast
//! scheme): the producer stores an upper bound of the end of the bytes it is about to write,
//! fences (Release), and only then writes; a reader copies a record, fences (Acquire), and
//! accepts the copy only if the intent has not passed the record's position plus the ring size.
//! If the copy saw any byte of a later lap, the fence pair makes an intent covering that byte
//! visible, and the copy is refused. The bound is coarse (the write's end plus a slack of up to
//! an eighth of the ring), so that the intent's cache line, which readers load for every record,
//! changes once per slack bytes rather than on every publish.
//!
//! Every access to the segment is an atomic word access, and every index is masked into the ring:
//! whatever another process writes, nothing here reads outside the ring, panics or loops without
//! bound.

mod handle;
pub(crate) mod layout;
mod publisher;
mod reader;
#[cfg(not(loom))]
mod readiness;
mod subscriber;
mod writer;

#[cfg(all(test, loom))]
mod loom;

#[cfg(all(test, not(loom)))]
mod tests;

pub use handle::{Records, RecordsBuilder, DEFAULT_RING_BYTES};
pub use layout::{MAX_RING_BYTES, MIN_RING_BYTES, RECORDS_REVISION, RECORD_HEADER_BYTES};
pub use publisher::{RecordPublisher, RecordPublisherStats, RecordWriter};
pub(crate) use reader::{Polled, Reader};
#[cfg(not(loom))]
pub use readiness::RecordReadiness;
pub use subscriber::{Record, RecordEvent, RecordRecv, RecordSubscriber};
pub(crate) use writer::Writer;

use crate::segment::header::W_CURSOR;
use crate::sync::{fence, load_acquire, AtomicU64, Ordering};
use layout::{RingShape, W_BYTES, W_HEAD, W_INTENT, W_LAST, W_TAIL};

/// A record's version word: its sequence number above three state bits (docs/design.md §15).
/// A zeroed ring reads as "free, sequence 0 comes here".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing here yet; the next record written here will be `s`.
    Free(u64),
    /// `s` is being written.
    Busy(u64),
    /// `s` is written.
    Done(u64),
    /// `s` was given up (its fill panicked): its length is valid, its payload is not.
    Abandoned(u64),
    /// Padding to the ring's end: `s` starts at the next multiple of the ring size.
    Pad(u64),
    /// No state this protocol writes (a corrupt or hostile segment, or a reader lapped into the
    /// middle of a payload).
    Invalid,
}

const FREE: u64 = 0;
const BUSY: u64 = 1;
const DONE: u64 = 2;
const ABANDONED: u64 = 3;
const PAD: u64 = 4;

impl State {
    /// The word that stores this state.
    #[inline]
    pub(crate) fn word(self) -> u64 {
        let (s, tag) = match self {
            State::Free(s) => (s, FREE),
            State::Busy(s) => (s, BUSY),
            State::Done(s) => (s, DONE),
            State::Abandoned(s) => (s, ABANDONED),
            State::Pad(s) => (s, PAD),
            State::Invalid => return u64::MAX,
        };
        s << 3 | tag
    }

    /// The state a word stores.
    #[inline]
    pub(crate) fn of(w: u64) -> State {
        let s = w >> 3;
        match w & 7 {
            FREE => State::Free(s),
            BUSY => State::Busy(s),
            DONE => State::Done(s),
            ABANDONED => State::Abandoned(s),
            PAD => State::Pad(s),
            _ => State::Invalid,
        }
    }

    /// The sequence number the state names.
    pub(crate) fn seq(self) -> Option<u64> {
        match self {
            State::Free(s)
            | State::Busy(s)
            | State::Done(s)
            | State::Abandoned(s)
            | State::Pad(s) => Some(s),
            State::Invalid => None,
        }
    }
}

/// Sequences stay below this, so that a version word (`s << 3 | state`) never loses bits.
pub(crate) const SEQ_LIMIT: u64 = 1 << 61;

/// Positions stay below this (2^62 bytes: a century at 1 TB/s), so that no sum of a position
/// and a record size wraps; a producer refuses a segment whose words say otherwise.
pub(crate) const POS_LIMIT: u64 = 1 << 62;

/// A view of a records segment: its words and its validated ring shape. Never re-reads the
/// shape from shared memory.
#[derive(Clone, Copy)]
pub(crate) struct RecordRing<'a> {
    words: &'a [AtomicU64],
    shape: RingShape,
}

impl<'a> RecordRing<'a> {
    /// `words` holds the whole segment: the header page, then `shape.bytes` of ring. Made for
    /// every publish and receive, so inlined (its check is one comparison).
    #[inline]
    pub(crate) fn new(words: &'a [AtomicU64], shape: RingShape) -> Self {
        assert!(
            words.len() >= layout::W_RING + (shape.bytes / 8) as usize,
            "the segment holds the ring (checked at create and open)"
        );
        RecordRing { words, shape }
    }

    pub(crate) fn shape(&self) -> &RingShape {
        &self.shape
    }

    /// The ring word at byte position `pos` (masked into the ring).
    #[inline]
    pub(crate) fn at(&self, pos: u64) -> &'a AtomicU64 {
        &self.words[self.shape.word(pos)]
    }

    /// The `n` ring words from byte position `pos` (8-aligned) on, masked into the ring: one
    /// bounds check for a whole payload instead of one per word. A span never passes the ring's
    /// end: callers pass a record checked to fit before it (`RingShape::room`); were it not so,
    /// the span stops at the ring's end (shorter, never outside the ring).
    #[inline]
    pub(crate) fn span(&self, pos: u64, n: usize) -> &'a [AtomicU64] {
        let start = self.shape.word(pos);
        let end = start
            .saturating_add(n)
            .min(layout::W_RING + (self.shape.bytes / 8) as usize);
        &self.words[start..end]
    }

    #[inline]
    fn ctl(&self, w: usize) -> &'a AtomicU64 {
        &self.words[w]
    }

    /// The next sequence number to be written (records published since creation).
    #[inline]
    pub(crate) fn cursor(&self) -> u64 {
        // ORDERING: pairs with the Release store in `Writer::commit`: a reader that sees the
        // cursor past `s` sees record `s` committed.
        load_acquire(self.ctl(W_CURSOR))
    }

    /// Where the next record starts.
    pub(crate) fn tail(&self) -> u64 {
        // ORDERING: as `cursor`.
        load_acquire(self.ctl(W_TAIL))
    }

    /// The producer's intent: bytes before `intent - ring` may have been overwritten (an upper
    /// bound: some of them may still be intact). Relaxed: readers fence (Acquire) before they
    /// load it.
    #[inline]
    pub(crate) fn intent(&self) -> u64 {
        self.ctl(W_INTENT).load(Ordering::Relaxed)
    }

    /// Payload bytes published since creation.
    pub(crate) fn bytes_published(&self) -> u64 {
        self.ctl(W_BYTES).load(Ordering::Relaxed)
    }

    /// Whether bytes from `pos` onwards are still those of `pos`'s lap, given an intent loaded
    /// after an Acquire fence that follows the loads of those bytes. An intent behind `pos` can
    /// only be forged (the producer stores its intent before writing anything): refused too.
    #[inline]
    pub(crate) fn intact(&self, pos: u64, intent: u64) -> bool {
        intent.wrapping_sub(pos) <= self.shape.bytes
    }

    /// Finds a record start from position word `w` (head, last or tail): its position and the
    /// sequence number its version word names, checked against the intent so that the version
    /// word read belongs to that position's lap. `None` if the producer kept overtaking it (a
    /// few tries) or the words are not consistent (a corrupt segment).
    pub(crate) fn locate(&self, w: usize) -> Option<(u64, u64)> {
        for _ in 0..8 {
            // ORDERING: Acquire pairs with the producer's Release stores of the head, last and
            // tail words, made after the version word at that position: we see that version or
            // a later one.
            let pos = load_acquire(self.ctl(w)) & !7;
            let v = self.at(pos).load(Ordering::Relaxed);
            // ORDERING: pairs with the producer's fence(Release) after its intent store: if the
            // version load saw a later lap, the intent load sees that lap's intent.
            fence(Ordering::Acquire);
            if !self.intact(pos, self.intent()) {
                continue;
            }
            return State::of(v).seq().map(|s| (pos, s));
        }
        None
    }

    /// Where the head word points: the oldest intact record.
    pub(crate) fn locate_oldest(&self) -> Option<(u64, u64)> {
        self.locate(W_HEAD)
    }

    /// Where the last word points: the newest committed record.
    pub(crate) fn locate_newest(&self) -> Option<(u64, u64)> {
        self.locate(W_LAST)
    }

    /// Where the tail word points: where the next record goes.
    pub(crate) fn locate_next(&self) -> Option<(u64, u64)> {
        self.locate(W_TAIL)
    }
}
