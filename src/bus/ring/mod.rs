//! The bus protocol (docs/design.md §3–§6): a power-of-two ring of seqlock slots, written by
//! [`Writer`]s and read by [`Reader`]s.
//!
//! Everything here works on a [`Ring`], a view of the segment as `&[AtomicU64]`, and learns
//! whether another producer is alive through the [`Liveness`] trait. So the very same code runs on
//! a mapped `/dev/shm` segment (liveness from the kernel's record locks), on a heap buffer under
//! miri, and on loom's atomics under `--cfg loom` (liveness from the model; see `loom.rs`, which
//! drives these production types).
//!
//! For sequence `s`, a slot's version is `2s+1` while `s` is being written, `2s+2` once it is
//! written, and `(2s+2) | ABANDONED` when `s` was given up (its writer died, or its fill
//! panicked): readers count an abandoned sequence lost and never deliver it. The memory-model
//! argument is Boehm's ("Can seqlocks get along with programming language memory models?", 2012):
//!
//! * writer: `version = 2s+1` (a store, or the take CAS); `fence(Release)`; length and payload
//!   words (Relaxed); `version = 2s+2` (Release).
//! * reader: `v1 = version` (Acquire); length and payload words (Relaxed) into a private buffer,
//!   or through a caller's closure in place ([`Visit`], docs/design.md §6 "Reading in place");
//!   `fence(Acquire)`; `v2 = version` (Relaxed); accept only if `v1 == v2 == 2s+2`.
//!
//! If the reader's copy (or view) saw any store of a later writer, that store follows the
//! writer's `fence(Release)`, so the reader's `fence(Acquire)` makes the writer's odd version (or
//! later) visible to the `v2` load and the copy is rejected. Every payload access is an atomic word
//! access: no data race, hence no undefined behaviour, whatever the writers do.

mod reader;
mod writer;

#[cfg(all(test, loom))]
mod loom;

pub(crate) use reader::{Polled, Reader};
pub(crate) use writer::{repair_claim, repair_single, Writer};

use crate::segment::header::{Geometry, PE_CLAIM, PRODUCER_ENTRY_WORDS, W_CURSOR, W_PRODUCERS};
use crate::sync::{fence, load_acquire, AtomicU64, Ordering};

pub(crate) use crate::segment::header::{FIRST_SEQ_LIMIT, SEQ_LIMIT};
pub(crate) use crate::segment::producers::Liveness;

/// The bit of a version word that marks its sequence abandoned (docs/design.md §3).
pub(crate) const ABANDONED: u64 = 1 << 63;

/// A producer's claim word (docs/design.md §5): 0 = no claim; [`CLAIMING`] = about to take a
/// sequence number; `s + 1` = holds (or last held) sequence `s`; `(s + 1) | DROPPED` = gave `s`
/// up without writing its slot.
pub(crate) const CLAIMING: u64 = u64::MAX;
/// See [`CLAIMING`].
pub(crate) const DROPPED: u64 = 1 << 63;

/// Version a slot holds once sequence `seq` is completely written.
#[inline]
pub(crate) fn done_version(seq: u64) -> u64 {
    seq.wrapping_mul(2).wrapping_add(2)
}

/// Version a slot holds while sequence `seq` is being written.
#[inline]
pub(crate) fn busy_version(seq: u64) -> u64 {
    seq.wrapping_mul(2).wrapping_add(1)
}

/// Version of a slot whose sequence `seq` was abandoned.
#[inline]
pub(crate) fn abandoned_version(seq: u64) -> u64 {
    done_version(seq) | ABANDONED
}

/// Whether version `v`, found in the slot of `seq`, shows that slot past "being written": `seq`
/// written or abandoned, or a later sequence there (a lap). The one predicate for "a receive
/// would find something" that every sleep's re-check and every waker uses (docs/design.md §7,
/// §14). The abandoned bit is masked off as in [`classify`], so that an *older* sequence left
/// abandoned in the slot (`(2(s−N)+2) | ABANDONED`, numerically above `2s+1`) reads "not yet",
/// as the receive itself says, instead of "ready" forever.
#[inline]
pub(crate) fn past_busy(v: u64, seq: u64) -> bool {
    v & !ABANDONED > busy_version(seq)
}

/// The sequence number a (non-zero) version belongs to.
#[inline]
pub(crate) fn version_seq(v: u64) -> u64 {
    (v & !ABANDONED).wrapping_sub(1) / 2
}

/// What a reader found in the slot of the sequence it expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// A whole message of `len` bytes is now in the reader's buffer.
    Message { len: usize },
    /// The slot still holds an older sequence: nothing new.
    NotYet,
    /// The expected sequence is being written right now.
    InProgress,
    /// The slot holds a later sequence, or was overwritten during the copy: the reader was lapped.
    Overwritten,
    /// The sequence was abandoned, or carries an impossible length (only a hostile writer makes
    /// one): counted lost, never delivered.
    Abandoned,
}

/// What a read does with a slot's payload while it holds the seqlock's first version (between
/// the Acquire load of `2s+2` and the fence before the re-check): only Relaxed atomic loads of
/// `payload`, since a later writer may be storing into it meanwhile. Copying out
/// (`[u64]`, the subscriber's buffer) and viewing in place (`bus::view::InPlace`) are the two
/// visitors; each is monomorphised into [`Ring::read_with`], so the copy compiles as it did
/// before the trait existed.
pub(crate) trait Visit {
    /// `payload` is the slot's payload words (capacity rounded up to words); `len` the message
    /// length as read once, unchecked (a torn or forged one may exceed `capacity`). What this
    /// does is valid only if the read then reports [`ReadOutcome::Message`].
    fn visit(&mut self, payload: &[AtomicU64], len: u64, capacity: usize);

    /// A buffer of `payload_words()` words for a resync's probe read (`Reader::resync`), which
    /// copies and discards.
    fn scratch(&mut self) -> &mut [u64];
}

/// The copy-out visitor: the payload words into the buffer (at least `payload_words()` long).
impl Visit for [u64] {
    #[inline]
    fn visit(&mut self, payload: &[AtomicU64], len: u64, capacity: usize) {
        let n = (len.min(capacity as u64) as usize).div_ceil(8);
        // Both are at least `n` words (the buffer and the slot hold the capacity); slicing them
        // to `n` first lets the copy run without a bounds check per word.
        let (dst, src) = (&mut self[..n], &payload[..n]);
        // The first word outside the loop: most messages are a word or two, and a loop's
        // set-up (unrolled, with its remainder) costs more than its one turn.
        if let (Some(d), Some(s)) = (dst.first_mut(), src.first()) {
            *d = s.load(Ordering::Relaxed);
        }
        for i in 1..n {
            dst[i] = src[i].load(Ordering::Relaxed);
        }
    }

    fn scratch(&mut self) -> &mut [u64] {
        self
    }
}

/// A view of a segment's words with the ring's validated shape. Cheap to make; never re-reads
/// the shape from shared memory.
#[derive(Clone, Copy)]
pub(crate) struct Ring<'a> {
    words: &'a [AtomicU64],
    g: Geometry,
    first: u64,
}

impl<'a> Ring<'a> {
    /// The ring view of a bus segment, with the shape validated when it was created or opened.
    pub(crate) fn of(seg: &'a crate::segment::Segment) -> Ring<'a> {
        Ring::new(seg.words(), seg.geometry, seg.first_seq)
    }

    /// `words` holds the whole segment (header and slots) laid out as `g` says; `first` is the
    /// bus's first sequence number.
    pub(crate) fn new(words: &'a [AtomicU64], g: Geometry, first: u64) -> Self {
        debug_assert!(words.len() >= g.segment_bytes().unwrap_or(u64::MAX) as usize / 8);
        Ring { words, g, first }
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.g
    }

    #[inline]
    fn slot(&self, seq: u64) -> &'a [AtomicU64] {
        let base = self.g.slot_word(seq);
        &self.words[base..base + self.g.stride_words]
    }

    /// The write cursor: the next sequence to be claimed (everything below it was claimed).
    #[inline]
    pub(crate) fn cursor(&self) -> u64 {
        // ORDERING: pairs with the Release store in `Writer::commit` (single producer) and the
        // Release `fetch_add` in `Writer::claim` (multi producer): a reader that sees the cursor
        // past `s` sees the slot written (single) or the claim word of `s`'s claimant (multi).
        load_acquire(&self.words[W_CURSOR])
    }

    /// The version word of `seq`'s slot (for stall checks, takeover and the inspector's census).
    #[inline]
    pub(crate) fn version(&self, seq: u64) -> u64 {
        // ORDERING: as the first load in `read`.
        load_acquire(&self.slot(seq)[0])
    }

    /// Whether a receive of `seq` would find something: see [`past_busy`].
    #[inline]
    pub(crate) fn ready(&self, seq: u64) -> bool {
        past_busy(self.version(seq), seq)
    }

    /// Producer `index`'s claim word.
    #[inline]
    pub(crate) fn claim_word(&self, index: usize) -> &'a AtomicU64 {
        &self.words[W_PRODUCERS + index * PRODUCER_ENTRY_WORDS + PE_CLAIM]
    }

    /// Copies sequence `seq` out of its slot into `buf` (at least `payload_words()` long).
    #[inline]
    pub(crate) fn read(&self, seq: u64, buf: &mut [u64]) -> ReadOutcome {
        self.read_with(seq, buf)
    }

    /// Reads sequence `seq` through `visit`: the seqlock read of docs/design.md §3, with
    /// `visit` run between the two version loads (a copy into a buffer, or a caller's closure
    /// over the slot in place, §6 "Reading in place"). Whatever `visit` did is valid only if the
    /// outcome is [`ReadOutcome::Message`].
    #[inline]
    pub(crate) fn read_with<V: Visit + ?Sized>(&self, seq: u64, visit: &mut V) -> ReadOutcome {
        let slot = self.slot(seq);
        let expect = done_version(seq);
        // ORDERING: Acquire pairs with the writer's Release store of `2s+2` in `commit`: a
        // reader that sees the final version sees the length and payload stored before it.
        let v1 = load_acquire(&slot[0]);
        if v1 != expect {
            return classify(v1, seq);
        }
        // The length is read once; the visitor clamps it before use: a forged length cannot make
        // a read leave the slot.
        let len = slot[1].load(Ordering::Relaxed);
        visit.visit(&slot[2..], len, self.g.capacity);
        // ORDERING: pairs with the writer's `fence(Release)` after its odd version: if the visit
        // saw any of a later writer's stores, `v2` sees that writer's odd version (or later).
        fence(Ordering::Acquire);
        let v2 = slot[0].load(Ordering::Relaxed);
        if v2 != v1 {
            return ReadOutcome::Overwritten;
        }
        if len > self.g.capacity as u64 {
            return ReadOutcome::Abandoned;
        }
        ReadOutcome::Message { len: len as usize }
    }

    /// The oldest sequence still intact for cursor `c`: a full ring back, or one less if the
    /// slot after the cursor is being overwritten right now.
    pub(crate) fn oldest_intact(&self, c: u64) -> u64 {
        let published = c.wrapping_sub(self.first);
        // A cursor behind the first sequence (only a corrupt or forged header has one) counts as
        // nothing published; the arithmetic wraps, so that no header value can make it panic.
        if published <= self.g.slot_count || published > u64::MAX / 2 {
            return self.first;
        }
        let oldest = c.wrapping_sub(self.g.slot_count);
        if self.version(c) & 1 == 1 {
            oldest.wrapping_add(1)
        } else {
            oldest
        }
    }
}

/// What a version other than the expected `2s+2` means for a reader expecting `seq`.
#[inline]
fn classify(v: u64, seq: u64) -> ReadOutcome {
    // The common case first: an empty poll finds an older sequence (finished, or abandoned: its
    // abandoned bit is masked off for the comparison).
    let busy = busy_version(seq);
    if v & !ABANDONED < busy {
        ReadOutcome::NotYet
    } else if v == busy {
        ReadOutcome::InProgress
    } else if v == abandoned_version(seq) {
        ReadOutcome::Abandoned
    } else {
        ReadOutcome::Overwritten
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
