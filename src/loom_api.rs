//! Compiled only under `--cfg loom`: public entry points into the ring protocol (which is
//! crate-private), so that `tests/loom.rs` model-checks the very functions the publisher and
//! subscriber call, over loom's atomics. Not an API: nothing here exists in a normal build.

use crate::layout::{Geometry, W_SLOTS};
use crate::ring;
use crate::sync::AtomicU64;

/// What [`Ring::read`] found (mirrors `ring::ReadOutcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A whole message of `len` bytes is in the buffer.
    Message { len: usize },
    /// The slot still holds an older sequence.
    NotYet,
    /// The sequence is being written.
    InProgress,
    /// Lapped: the slot holds a later sequence or changed during the copy.
    Overwritten,
    /// A tombstone (or impossible length): count it lost.
    Abandoned,
}

/// How a multi-producer writer fared taking its slot (mirrors `ring::Take`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// The slot is ours.
    Taken,
    /// The slot holds a later sequence: drop the message.
    Newer,
    /// An older writer holds the slot.
    Busy { version: u64, writer: Option<u32> },
}

/// A ring geometry over a word array laid out like a segment (header words, then slots).
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    g: Geometry,
}

impl Ring {
    /// A ring of `slots` slots of `capacity` payload bytes.
    pub fn new(slots: u64, capacity: usize) -> Ring {
        Ring {
            g: Geometry::new(slots, capacity).expect("a valid model geometry"),
        }
    }

    /// Words the backing array needs: the header, then every slot.
    pub fn words_needed(&self) -> usize {
        W_SLOTS + self.g.slot_count as usize * self.g.stride_words
    }

    /// Words of payload per slot (the reader's buffer length).
    pub fn payload_words(&self) -> usize {
        self.g.payload_words()
    }

    /// Number of slots.
    pub fn slot_count(&self) -> u64 {
        self.g.slot_count
    }

    /// Sets the write cursor (the first sequence of the model); call before sharing `w`.
    pub fn init_cursor(&self, w: &[AtomicU64], seq: u64) {
        w[crate::layout::W_CURSOR].store(seq, crate::sync::Ordering::Relaxed);
    }

    /// `ring::read`.
    pub fn read(&self, w: &[AtomicU64], seq: u64, buf: &mut [u64]) -> Read {
        match ring::read(w, &self.g, seq, buf) {
            ring::ReadOutcome::Message { len } => Read::Message { len },
            ring::ReadOutcome::NotYet => Read::NotYet,
            ring::ReadOutcome::InProgress => Read::InProgress,
            ring::ReadOutcome::Overwritten => Read::Overwritten,
            ring::ReadOutcome::Abandoned => Read::Abandoned,
        }
    }

    /// `ring::begin` (single producer).
    pub fn begin(&self, w: &[AtomicU64], seq: u64) {
        ring::begin(w, &self.g, seq)
    }

    /// `ring::write_bytes`.
    pub fn write_bytes(&self, w: &[AtomicU64], seq: u64, writer: u32, bytes: &[u8]) {
        ring::write_bytes(w, &self.g, seq, writer, bytes)
    }

    /// `ring::store_word`: one payload word, for writers that die half way.
    pub fn store_word(&self, w: &[AtomicU64], seq: u64, i: usize, value: u64) {
        ring::store_word(w, &self.g, seq, i, value)
    }

    /// `ring::store_len`.
    pub fn store_len(&self, w: &[AtomicU64], seq: u64, writer: u32, len: u32) {
        ring::store_len(w, &self.g, seq, writer, len)
    }

    /// `ring::commit` (single producer).
    pub fn commit(&self, w: &[AtomicU64], seq: u64) {
        ring::commit(w, &self.g, seq)
    }

    /// `ring::claim` (multi producer).
    pub fn claim(&self, w: &[AtomicU64]) -> u64 {
        ring::claim(w)
    }

    /// `ring::take` (multi producer).
    pub fn take(&self, w: &[AtomicU64], seq: u64) -> Take {
        match ring::take(w, &self.g, seq) {
            ring::Take::Taken => Take::Taken,
            ring::Take::Newer => Take::Newer,
            ring::Take::Busy { version, writer } => Take::Busy { version, writer },
        }
    }

    /// `ring::take_over`.
    pub fn take_over(&self, w: &[AtomicU64], seq: u64, version: u64) -> bool {
        ring::take_over(w, &self.g, seq, version)
    }

    /// `ring::commit_cas` (multi producer).
    pub fn commit_cas(&self, w: &[AtomicU64], seq: u64) -> bool {
        ring::commit_cas(w, &self.g, seq)
    }

    /// `ring::tombstone`.
    pub fn tombstone(&self, w: &[AtomicU64], seq: u64, version: u64) -> bool {
        ring::tombstone(w, &self.g, seq, version)
    }

    /// `ring::cursor`.
    pub fn cursor(&self, w: &[AtomicU64]) -> u64 {
        ring::cursor(w)
    }

    /// `ring::version` of `seq`'s slot.
    pub fn version(&self, w: &[AtomicU64], seq: u64) -> u64 {
        ring::version(w, &self.g, seq)
    }

    /// `ring::oldest_intact`.
    pub fn oldest_intact(&self, w: &[AtomicU64], cursor: u64, first: u64) -> u64 {
        ring::oldest_intact(w, &self.g, cursor, first)
    }

    /// `ring::resume_after_lap`: the subscriber's resync arithmetic.
    pub fn resume_after_lap(&self, w: &[AtomicU64], next: u64, first: u64, to_newest: bool) -> u64 {
        ring::resume_after_lap(w, &self.g, next, first, to_newest)
    }
}

/// `ring::busy_version`.
pub fn busy_version(seq: u64) -> u64 {
    ring::busy_version(seq)
}

/// `ring::done_version`.
pub fn done_version(seq: u64) -> u64 {
    ring::done_version(seq)
}
