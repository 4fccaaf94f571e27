//! The seqlock ring protocol: how one slot is written and read (DESIGN §3–5).
//!
//! Everything here works on a plain `&[AtomicU64]` view of the segment, so the same code runs on
//! a mapped `/dev/shm` segment, on a heap buffer under miri, and on loom's atomics under
//! `--cfg loom`.
//!
//! For sequence `s`, a writer stores version `2s+1` before touching the payload and `2s+2` after
//! it. The memory-model argument (Boehm, "Can seqlocks get along with programming language memory
//! models?", 2012; the pattern `atomic-memcpy` packages):
//!
//! * writer: `version = 2s+1` (Relaxed or CAS); `fence(Release)`; length and payload words
//!   (Relaxed); `version = 2s+2` (Release).
//! * reader: `v1 = version` (Acquire); length and payload words (Relaxed) into a private buffer;
//!   `fence(Acquire)`; `v2 = version` (Relaxed); accept only if `v1 == v2 == 2s+2`.
//!
//! If the reader's copy saw any store of a later writer, that store follows the writer's
//! `fence(Release)`, so the reader's `fence(Acquire)` makes the writer's odd version (or later)
//! visible to the `v2` load and the copy is rejected. Every payload access is an atomic word
//! access: no data race, hence no undefined behaviour, whatever the writers do.

use crate::layout::{Geometry, TOMBSTONE, W_CURSOR};
use crate::sync::{fence, AtomicU64, Ordering};

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

/// The sequence number a (non-zero) version belongs to.
#[inline]
pub(crate) fn version_seq(v: u64) -> u64 {
    v.wrapping_sub(1) / 2
}

/// Bits of a slot's length word: the length (low 32 bits), then a tag of the writer's sequence
/// number (27 bits) and the writer's producer index (5 bits). The tag tells whether the writer
/// index belongs to the writer of the slot's current version (see `take`).
const TAG_SHIFT: u32 = 32;
const TAG_MASK: u64 = (1 << 27) - 1;
const WRITER_SHIFT: u32 = 59;

/// Packs a slot's length word.
#[inline]
pub(crate) fn meta(len: u32, seq: u64, writer: u32) -> u64 {
    len as u64 | (seq & TAG_MASK) << TAG_SHIFT | (writer as u64 & 31) << WRITER_SHIFT
}

/// The producer index in a length word, if that word was written for sequence `seq`.
#[inline]
pub(crate) fn meta_writer(meta: u64, seq: u64) -> Option<u32> {
    ((meta >> TAG_SHIFT) & TAG_MASK == seq & TAG_MASK).then_some((meta >> WRITER_SHIFT) as u32)
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
    /// The sequence was abandoned by a dead writer (tombstone) or carries an impossible length;
    /// it is counted as lost, never delivered.
    Abandoned,
}

/// Copies sequence `seq` out of its slot into `buf` (at least `g.payload_words()` long).
#[inline]
pub(crate) fn read(words: &[AtomicU64], g: &Geometry, seq: u64, buf: &mut [u64]) -> ReadOutcome {
    let base = g.slot_word(seq);
    let slot = &words[base..base + g.stride_words];
    let expect = done_version(seq);
    // ORDERING: Acquire pairs with the writer's Release store of `2s+2` in `commit`: a reader that
    // sees the final version sees the length and payload stored before it.
    let v1 = slot[0].load(Ordering::Acquire);
    if v1 != expect {
        return if v1 == busy_version(seq) {
            ReadOutcome::InProgress
        } else if v1 > expect {
            ReadOutcome::Overwritten
        } else {
            ReadOutcome::NotYet
        };
    }
    // The length is read once and clamped before use (DESIGN §5): a forged length cannot make
    // this copy leave the slot.
    let len = slot[1].load(Ordering::Relaxed) as u32;
    let n = if len == TOMBSTONE {
        0
    } else {
        (len as usize).min(g.capacity).div_ceil(8)
    };
    for (dst, src) in buf[..n].iter_mut().zip(&slot[2..]) {
        *dst = src.load(Ordering::Relaxed);
    }
    // ORDERING: pairs with the writer's `fence(Release)` after its odd version in `begin`/`take`:
    // if the copy saw any of a later writer's stores, `v2` sees that writer's odd version.
    fence(Ordering::Acquire);
    let v2 = slot[0].load(Ordering::Relaxed);
    if v2 != v1 {
        return ReadOutcome::Overwritten;
    }
    if len == TOMBSTONE || len as usize > g.capacity {
        return ReadOutcome::Abandoned;
    }
    ReadOutcome::Message { len: len as usize }
}

/// Single producer: marks `seq`'s slot as being written.
#[inline]
pub(crate) fn begin(words: &[AtomicU64], g: &Geometry, seq: u64) {
    words[g.slot_word(seq)].store(busy_version(seq), Ordering::Relaxed);
    // ORDERING: orders the odd version before the payload stores; pairs with the reader's
    // `fence(Acquire)` before its re-check.
    fence(Ordering::Release);
}

/// How a multi-producer writer fared claiming its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// The slot is ours: write, then `commit_cas`.
    Taken,
    /// The slot already holds a later sequence: this message is more than a lap old; drop it.
    Newer,
    /// A writer of an older sequence is still (or was, if it died) writing this slot; `writer`
    /// is its producer index once it has stored its length word (`None` before).
    Busy { version: u64, writer: Option<u32> },
}

/// Multi producer: moves the slot of `seq` from an older, even version to `2*seq + 1`.
#[inline]
pub(crate) fn take(words: &[AtomicU64], g: &Geometry, seq: u64) -> Take {
    let base = g.slot_word(seq);
    let mine = busy_version(seq);
    let mut v = words[base].load(Ordering::Relaxed);
    loop {
        if v >= mine {
            return Take::Newer;
        }
        if v & 1 == 1 {
            let writer = meta_writer(words[base + 1].load(Ordering::Relaxed), version_seq(v));
            return Take::Busy { version: v, writer };
        }
        // ORDERING: Release on success pairs with the Acquire fence in the publisher's
        // `claimant`: whoever finds this odd version also finds the claim the writer recorded in
        // its producer entry before taking the slot. Acquire on success pairs with the previous
        // occupant's Release in `commit_cas`/`tombstone`: its payload stores then happen before
        // ours, so none of them can land after ours and show under our version (loom model
        // `multi_producer_drops_stale_claims_and_never_tears`).
        match words[base].compare_exchange_weak(v, mine, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                // ORDERING: as in `begin`: the odd version is ordered before the payload stores.
                fence(Ordering::Release);
                return Take::Taken;
            }
            Err(now) => v = now,
        }
    }
}

/// Multi producer: takes over a slot left odd (`version`) by a writer known to be dead.
pub(crate) fn take_over(words: &[AtomicU64], g: &Geometry, seq: u64, version: u64) -> bool {
    let base = g.slot_word(seq);
    let ok = words[base]
        .compare_exchange(
            version,
            busy_version(seq),
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_ok();
    if ok {
        // ORDERING: as in `begin`.
        fence(Ordering::Release);
    }
    ok
}

/// Stores the payload and its length into `seq`'s slot, which the caller holds (odd version).
#[inline]
pub(crate) fn write_bytes(words: &[AtomicU64], g: &Geometry, seq: u64, writer: u32, bytes: &[u8]) {
    debug_assert!(bytes.len() <= g.capacity);
    let base = g.slot_word(seq);
    let slot = &words[base..base + g.stride_words];
    slot[1].store(meta(bytes.len() as u32, seq, writer), Ordering::Relaxed);
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder();
    let mut dst = slot[2..].iter();
    // `chunks` first: zip stops on its None without advancing `dst` past the tail's word.
    for (c, w) in chunks.zip(dst.by_ref()) {
        let word = u64::from_ne_bytes(c.try_into().expect("chunks_exact yields 8-byte chunks"));
        w.store(word, Ordering::Relaxed);
    }
    if !tail.is_empty() {
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        if let Some(w) = dst.next() {
            w.store(u64::from_ne_bytes(last), Ordering::Relaxed);
        }
    }
}

/// Stores one payload word (index `i`) of `seq`'s slot, which the caller holds.
#[inline]
pub(crate) fn store_word(words: &[AtomicU64], g: &Geometry, seq: u64, i: usize, value: u64) {
    words[g.slot_word(seq) + 2 + i].store(value, Ordering::Relaxed);
}

/// Loads back one payload word the caller itself stored into the slot it holds.
#[inline]
pub(crate) fn load_word(words: &[AtomicU64], g: &Geometry, seq: u64, i: usize) -> u64 {
    words[g.slot_word(seq) + 2 + i].load(Ordering::Relaxed)
}

/// Stores the length word of `seq`'s slot, which the caller holds.
#[inline]
pub(crate) fn store_len(words: &[AtomicU64], g: &Geometry, seq: u64, writer: u32, len: u32) {
    words[g.slot_word(seq) + 1].store(meta(len, seq, writer), Ordering::Relaxed);
}

/// Single producer: publishes `seq` (version `2s+2`) and advances the cursor past it.
#[inline]
pub(crate) fn commit(words: &[AtomicU64], g: &Geometry, seq: u64) {
    // ORDERING: Release pairs with the reader's Acquire load of the version in `read`.
    words[g.slot_word(seq)].store(done_version(seq), Ordering::Release);
    // ORDERING: Release so that a reader resyncing from the cursor finds the slots behind it
    // written; pairs with the Acquire load in `cursor`.
    words[W_CURSOR].store(seq.wrapping_add(1), Ordering::Release);
}

/// Multi producer: publishes `seq` if the slot is still ours (a CAS, so that a writer declared
/// dead and taken over can never move a version backwards). Returns whether it was.
#[inline]
pub(crate) fn commit_cas(words: &[AtomicU64], g: &Geometry, seq: u64) -> bool {
    // ORDERING: Release pairs with the reader's Acquire load of the version in `read`.
    words[g.slot_word(seq)]
        .compare_exchange(
            busy_version(seq),
            done_version(seq),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// Marks `seq`'s odd slot (version `version`, left by a dead writer) as abandoned: a tombstone
/// length, then the even version, so readers count it lost and never deliver it.
pub(crate) fn tombstone(words: &[AtomicU64], g: &Geometry, seq: u64, version: u64) -> bool {
    let base = g.slot_word(seq);
    if words[base].load(Ordering::Relaxed) != version {
        return false;
    }
    words[base + 1].store(meta(TOMBSTONE, version_seq(version), 0), Ordering::Relaxed);
    // ORDERING: Release pairs with the reader's Acquire version load: the tombstone length is
    // visible to whoever sees the even version.
    words[base]
        .compare_exchange(
            version,
            version.wrapping_add(1),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// Multi producer: claims the next sequence number.
#[inline]
pub(crate) fn claim(words: &[AtomicU64]) -> u64 {
    // ORDERING: Relaxed suffices: the claim only has to be unique; publication is ordered by the
    // slot's version.
    words[W_CURSOR].fetch_add(1, Ordering::Relaxed)
}

/// The write cursor: the next sequence to be claimed (everything below it was claimed).
#[inline]
pub(crate) fn cursor(words: &[AtomicU64]) -> u64 {
    // ORDERING: pairs with the Release store in `commit`.
    words[W_CURSOR].load(Ordering::Acquire)
}

/// The raw version word of `seq`'s slot (for takeover scans and the inspector's census).
#[inline]
pub(crate) fn version(words: &[AtomicU64], g: &Geometry, seq: u64) -> u64 {
    words[g.slot_word(seq)].load(Ordering::Acquire)
}

/// The oldest sequence still intact for cursor `c` on a bus whose first sequence is `first`: a
/// full ring back, or one less if the slot after the cursor is being overwritten right now.
pub(crate) fn oldest_intact(words: &[AtomicU64], g: &Geometry, c: u64, first: u64) -> u64 {
    let published = c.wrapping_sub(first);
    // A cursor behind the first sequence (only a corrupt or forged header has one) counts as
    // nothing published; the arithmetic wraps, so that no header value can make it panic.
    if published <= g.slot_count || published > u64::MAX / 2 {
        return first;
    }
    let oldest = c.wrapping_sub(g.slot_count);
    if version(words, g, c) & 1 == 1 {
        oldest.wrapping_add(1)
    } else {
        oldest
    }
}

/// Where a reader that expected `next` and was lapped resumes (DESIGN §3): the oldest intact
/// sequence, or with `to_newest` the newest claimed one, and always past `next`, so that it
/// skips exactly `result - next` sequence numbers and never rereads the one it lost.
pub(crate) fn resume_after_lap(
    words: &[AtomicU64],
    g: &Geometry,
    next: u64,
    first: u64,
    to_newest: bool,
) -> u64 {
    let c = cursor(words);
    let target = if to_newest {
        // Saturating: the cursor may be read stale (even 0 on a fresh bus) by a reader that saw
        // a slot overwritten, because a writer stores the cursor after the slot's version.
        c.saturating_sub(1).max(first)
    } else {
        oldest_intact(words, g, c, first)
    };
    if target > next {
        target
    } else {
        next.wrapping_add(1)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::layout::W_SLOTS;
    use proptest::prelude::*;

    fn heap(g: &Geometry) -> Vec<AtomicU64> {
        (0..W_SLOTS + g.slot_count as usize * g.stride_words)
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    fn publish(words: &[AtomicU64], g: &Geometry, seq: u64, bytes: &[u8]) {
        begin(words, g, seq);
        write_bytes(words, g, seq, 0, bytes);
        commit(words, g, seq);
    }

    #[test]
    fn read_sees_not_yet_then_message_then_overwritten() {
        let g = Geometry::new(4, 24).unwrap();
        let words = heap(&g);
        let mut buf = vec![0u64; g.payload_words()];
        assert_eq!(read(&words, &g, 0, &mut buf), ReadOutcome::NotYet);
        begin(&words, &g, 0);
        assert_eq!(read(&words, &g, 0, &mut buf), ReadOutcome::InProgress);
        write_bytes(&words, &g, 0, 0, b"hello, world");
        commit(&words, &g, 0);
        assert_eq!(
            read(&words, &g, 0, &mut buf),
            ReadOutcome::Message { len: 12 }
        );
        assert_eq!(
            &bytemuck::cast_slice::<u64, u8>(&buf)[..12],
            b"hello, world"
        );
        for s in 1..=4 {
            publish(&words, &g, s, &[s as u8]);
        }
        assert_eq!(read(&words, &g, 0, &mut buf), ReadOutcome::Overwritten);
        assert_eq!(
            read(&words, &g, 4, &mut buf),
            ReadOutcome::Message { len: 1 }
        );
        assert_eq!(cursor(&words), 5);
    }

    #[test]
    fn forged_length_is_never_copied_past_the_slot() {
        let g = Geometry::new(2, 8).unwrap();
        let words = heap(&g);
        let mut buf = vec![0u64; g.payload_words()];
        publish(&words, &g, 0, b"12345678");
        words[g.slot_word(0) + 1].store(0xffff_fff0, Ordering::Relaxed);
        assert_eq!(read(&words, &g, 0, &mut buf), ReadOutcome::Abandoned);
    }

    #[test]
    fn tombstoned_slot_reads_as_abandoned() {
        let g = Geometry::new(2, 8).unwrap();
        let words = heap(&g);
        let mut buf = vec![0u64; g.payload_words()];
        begin(&words, &g, 0);
        assert!(tombstone(&words, &g, 0, busy_version(0)));
        assert_eq!(read(&words, &g, 0, &mut buf), ReadOutcome::Abandoned);
        assert!(
            !tombstone(&words, &g, 0, busy_version(0)),
            "only an odd slot is tombstoned"
        );
    }

    #[test]
    fn multi_producer_take_refuses_newer_and_reports_busy() {
        let g = Geometry::new(2, 8).unwrap();
        let words = heap(&g);
        assert_eq!(take(&words, &g, 2), Take::Taken);
        // Sequence 0 maps to the same slot but is a lap older: it must not overwrite 2.
        assert_eq!(take(&words, &g, 0), Take::Newer);
        // Sequence 4 finds 2 still being written.
        assert_eq!(
            take(&words, &g, 4),
            Take::Busy {
                version: busy_version(2),
                writer: None
            }
        );
        write_bytes(&words, &g, 2, 7, b"x");
        assert_eq!(
            take(&words, &g, 4),
            Take::Busy {
                version: busy_version(2),
                writer: Some(7)
            }
        );
        assert!(commit_cas(&words, &g, 2));
        assert_eq!(take(&words, &g, 4), Take::Taken);
        // A writer taken over can no longer commit.
        assert!(take_over(&words, &g, 6, busy_version(4)));
        assert!(!commit_cas(&words, &g, 4));
    }

    proptest! {
        #[test]
        fn versions_order_sequences(a in 0u64..(1 << 62), b in 0u64..(1 << 62)) {
            prop_assert_eq!(version_seq(busy_version(a)), a);
            prop_assert_eq!(version_seq(done_version(a)), a);
            prop_assert!(busy_version(a) & 1 == 1 && done_version(a) & 1 == 0);
            prop_assert_eq!(a < b, done_version(a) < busy_version(b));
            prop_assert_eq!(a < b, done_version(a) < done_version(b));
        }

        #[test]
        fn reader_outcome_matches_slot_history(
            start in prop_oneof![Just(0u64), (1u64 << 61)..(1u64 << 62)],
            published in 0u64..40,
            probe in 0u64..48,
        ) {
            let g = Geometry::new(8, 16).unwrap();
            let words = heap(&g);
            words[W_CURSOR].store(start, Ordering::Relaxed);
            let mut buf = vec![0u64; g.payload_words()];
            for s in start..start + published {
                publish(&words, &g, s, &s.to_ne_bytes());
            }
            let seq = start + probe;
            let out = read(&words, &g, seq, &mut buf);
            let end = start + published;
            if seq >= end {
                prop_assert_eq!(out, ReadOutcome::NotYet);
            } else if seq + 8 < end {
                prop_assert_eq!(out, ReadOutcome::Overwritten);
            } else {
                prop_assert_eq!(out, ReadOutcome::Message { len: 8 });
                prop_assert_eq!(buf[0], seq);
            }
        }
    }
}
