//! The producer's state machine (docs/design.md §15): one producer at a time, which owns every
//! control word and the ring.
//!
//! A publish of `s` at position `q`:
//! 1. pad if the record would straddle the ring's end (`q` moves to the next lap);
//! 2. if the end of the write (the record plus the next version word) passes the intent last
//!    stored: move the head past every record that `end + slack` overwrites (walking the
//!    producer's own record headers), store the intent `end + slack`, then `fence(Release)`
//!    (`slack`: `RingShape::slack_for` the record's size);
//! 3. version at `q` ← `Busy(s)`; a padding word at the old tail ← `Pad(s)` (Release, after the
//!    busy version, so that a reader that follows the padding finds `s` busy or later); head
//!    ← (Release) if it moved;
//! 4. length and type, payload (Relaxed), and the next record's version ← `Free(s+1)`, so that
//!    the word a reader finds after `s` is never a stale one;
//! 5. version at `q` ← `Done(s)` (Release); cursor, last, tail (Release).

use super::layout::{RingShape, W_BYTES, W_HEAD, W_INTENT, W_LAST, W_TAIL};
use super::{RecordRing, State, POS_LIMIT, SEQ_LIMIT};
use crate::segment::header::W_CURSOR;
use crate::sync::{fence, AtomicU64, Ordering};

/// What a producer found when it attached, if the control words were not consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inconsistent {
    pub tail: u64,
    pub intent: u64,
    pub head: u64,
    pub cursor: u64,
}

/// One producer's protocol state; the shared words are only ever written from here.
#[derive(Debug)]
pub(crate) struct Writer {
    /// Where the next record goes (before padding).
    tail: u64,
    /// The next record's sequence number.
    seq: u64,
    /// Start of the oldest intact record.
    head: u64,
    /// The intent last stored: an upper bound of the end of every write so far, and never
    /// lowered (readers rely on it only growing).
    intent: u64,
    /// Payload bytes published since creation.
    bytes: u64,
    /// Loom models only: how many more shared stores this producer makes before it "dies"
    /// (every later store is skipped, as a SIGKILL would leave them); `None`: it lives.
    #[cfg(all(test, loom))]
    stores_left: std::cell::Cell<Option<usize>>,
}

/// A record being written: where it is and what it is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub seq: u64,
    pub pos: u64,
    pub len: usize,
}

impl Writer {
    /// Attaches to a ring whose previous producers are all dead (the caller holds the exclusive
    /// producer lock): reads the control words and finishes what a producer that died after
    /// its commit left uncounted (docs/design.md §15, "Crashes").
    pub(crate) fn attach(ring: &RecordRing<'_>) -> Result<Writer, Inconsistent> {
        let ld = |w: usize| ring.ctl(w).load(Ordering::Relaxed);
        // ORDERING: the kernel's lock orders the dead producers' stores before us; Relaxed
        // loads see them.
        let (mut tail, intent, head, mut seq) =
            (ld(W_TAIL), ld(W_INTENT), ld(W_HEAD), ld(W_CURSOR));
        let found = (tail, head, seq);
        let r = ring.shape().bytes;
        let bad = tail % 8 != 0
            || head % 8 != 0
            || head > tail
            || tail - head > r
            || intent < tail
            || intent - tail > r
            || intent > POS_LIMIT
            || seq >= SEQ_LIMIT;
        if bad {
            return Err(Inconsistent {
                tail,
                intent,
                head,
                cursor: seq,
            });
        }
        // A dead producer's last publish may have stopped between any two of its stores
        // (`finish` stores the version, bytes, cursor, last, then tail). It may have padded,
        // committed, or both, without moving the cursor and tail: the record is `seq`, and is
        // counted now. Or it stored the cursor (`seq - 1` committed) and died before the tail:
        // the tail still names the start of record `seq - 1` (or its padding), which is
        // committed and which readers may have read or be reading past; it must not be written
        // over. Either way a committed record is kept and padding is followed (readers may have
        // followed it): at most a padding word and one record, both of one sequence number.
        // In a consistent ring the tail holds the terminator free(seq), so neither applies.
        // The sequence numbers the leftover may carry.
        let mut ours = [Some(seq), seq.checked_sub(1)];
        let mut last = None;
        for _ in 0..2 {
            match State::of(ring.at(tail).load(Ordering::Relaxed)) {
                State::Pad(s) if ours.contains(&Some(s)) => {
                    tail = ring.shape().next_lap(tail);
                    // The record after the padding is the padded one: the same sequence.
                    ours = [Some(s), None];
                }
                State::Done(s) | State::Abandoned(s) if ours.contains(&Some(s)) => {
                    let len = (ring.at(tail + 8).load(Ordering::Relaxed) as u32) as usize;
                    let size = RingShape::record_size(len);
                    // Bounds checked before use: the record must fit the ring and the intent
                    // (every byte the dead producer wrote is inside the stored intent).
                    if len > ring.shape().max_payload
                        || size > ring.shape().room(tail)
                        || tail + size + 8 > intent
                    {
                        break;
                    }
                    last = Some(tail);
                    tail += size;
                    if s == seq {
                        seq += 1;
                    }
                    // One record only: what follows it is the terminator free(seq).
                    break;
                }
                _ => break,
            }
        }
        // The head is moved before the intent store but stored after it (`begin`): a producer
        // that died between the two left a head that the stored intent already refuses
        // (`head + ring < intent`), and the headers after it may be overwritten since (the
        // dead write's bytes land an intent earlier, where the walk would read). Without a
        // walk we can trust, the next record becomes the oldest: readers that resync go there.
        let head = if head + r < intent { tail } else { head };
        let w = Writer {
            tail,
            seq,
            head,
            intent,
            bytes: ring.bytes_published(),
            #[cfg(all(test, loom))]
            stores_left: std::cell::Cell::new(None),
        };
        // Our writes up to the next intent store land inside the intent a dead producer stored:
        // store it again ourselves, then fence, so that the readers' argument (an intent store,
        // `fence(Release)`, then the writes it covers, all in the writing thread; see `begin`)
        // holds for our writes without relying on the lock system calls ordering us after the
        // dead producer (docs/design.md §15, "Crashes"). The same value: the intent never
        // goes back, and readers see no change.
        // A fresh ring (intent 0) has nothing under its intent: our first write stores one.
        // Words found right are not stored again (each store is one more interleaving for the
        // loom models to explore, and changes nothing).
        if intent > found.0 {
            ring.ctl(W_INTENT).store(intent, Ordering::Relaxed);
            // ORDERING: pairs with the readers' fence(Acquire) before they load the intent
            // (`RecordRing::intact`): a reader whose copy saw any byte we write from now on
            // sees this intent store or a later one.
            fence(Ordering::Release);
        }
        // ORDERING: Release (cursor, last, tail), as in `finish`: a reader that loads one of
        // them (Acquire) sees the record a dead producer committed before them.
        if seq != found.2 {
            ring.ctl(W_CURSOR).store(seq, Ordering::Release);
        }
        if head != found.1 {
            // ORDERING: Release, as in `begin`: a reader that locates the head finds the
            // version there written (the terminator, or padding) by the producer we follow.
            ring.ctl(W_HEAD).store(head, Ordering::Release);
        }
        if let Some(last) = last {
            ring.ctl(W_LAST).store(last, Ordering::Release);
        }
        if tail != found.0 {
            ring.ctl(W_TAIL).store(tail, Ordering::Release);
        }
        Ok(w)
    }

    /// Loom models: the producer dies after `n` more shared stores.
    #[cfg(all(test, loom))]
    pub(crate) fn die_after(&self, n: usize) {
        self.stores_left.set(Some(n));
    }

    /// Loom models: whether the producer died (ran out of stores).
    #[cfg(all(test, loom))]
    pub(crate) fn died(&self) -> bool {
        self.stores_left.get() == Some(0)
    }

    /// Every shared store of a producer after attaching goes through here (loom models kill the
    /// producer between any two of them).
    #[inline]
    fn put(&self, word: &AtomicU64, v: u64, ordering: Ordering) {
        #[cfg(all(test, loom))]
        match self.stores_left.get() {
            Some(0) => return,
            Some(n) => self.stores_left.set(Some(n - 1)),
            None => {}
        }
        word.store(v, ordering);
    }

    /// The next record's sequence number.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Starts record `len` bytes long (at most `max_payload`, checked by the caller): steps 1–3.
    #[inline]
    pub(crate) fn begin(&mut self, ring: &RecordRing<'_>, len: usize, type_id: u32) -> Pending {
        let shape = *ring.shape();
        debug_assert!(len <= shape.max_payload);
        let size = RingShape::record_size(len);
        let padded = size > shape.room(self.tail);
        let pos = if padded {
            shape.next_lap(self.tail)
        } else {
            self.tail
        };
        // The write covers the record and the next version word (the terminator).
        let end = pos + size + 8;
        // The stored intent is an upper bound of every byte written or being written; while this
        // write ends inside it, neither the intent nor the head changes (docs/design.md §15,
        // "The coarse intent"): the intent's line stays in the readers' caches.
        let stored = end > self.intent;
        if stored {
            let intent = end + shape.slack_for(size);
            // Readers refuse every record before `intent - ring`: the head moves past them now,
            // while their headers are intact (nothing past the previous intent is written yet,
            // and the head is past the previous intent less the ring).
            self.advance_head(ring, pos, intent);
            self.intent = intent;
            self.put(ring.ctl(W_INTENT), intent, Ordering::Relaxed);
            // ORDERING: the intent before any byte it covers; pairs with the readers'
            // fence(Acquire) before they load the intent (`RecordRing::intact`). Every write up
            // to the next store ends inside this intent and follows this fence, so a reader that
            // saw any of its bytes sees this intent or a later one.
            fence(Ordering::Release);
        }
        let seq = self.seq;
        self.put(ring.at(pos), State::Busy(seq).word(), Ordering::Relaxed);
        if padded {
            // ORDERING: Release after the busy version: a reader that follows the padding
            // (Acquire on this word) finds `seq` busy or later at `pos`, never a stale word.
            self.put(
                ring.at(self.tail),
                State::Pad(seq).word(),
                Ordering::Release,
            );
        }
        if stored {
            // ORDERING: Release pairs with `RecordRing::locate`: a reader that finds the head
            // here finds its version written (busy, or committed earlier). The head only moves
            // with the intent.
            self.put(ring.ctl(W_HEAD), self.head, Ordering::Release);
        }
        self.put(
            ring.at(pos + 8),
            len as u64 | (type_id as u64) << 32,
            Ordering::Relaxed,
        );
        Pending { seq, pos, len }
    }

    /// Moves the head past every record that bytes up to `end` overwrite (every record readers
    /// refuse once the intent is `end`), walking the headers this producer wrote. A header that does not read as one of ours (a corrupt segment)
    /// makes the new record the oldest: bounded, and never past it.
    fn advance_head(&mut self, ring: &RecordRing<'_>, pos: u64, end: u64) {
        let shape = ring.shape();
        while self.head < pos && self.head + shape.bytes < end {
            let next = match State::of(ring.at(self.head).load(Ordering::Relaxed)) {
                State::Pad(_) => shape.next_lap(self.head),
                State::Done(_) | State::Abandoned(_) => {
                    let len = (ring.at(self.head + 8).load(Ordering::Relaxed) as u32) as usize;
                    let size = RingShape::record_size(len);
                    if len > shape.max_payload || size > shape.room(self.head) {
                        pos
                    } else {
                        self.head + size
                    }
                }
                _ => pos,
            };
            self.head = next.min(pos);
        }
    }

    /// Sets the pending record's type id.
    pub(crate) fn set_type(&self, ring: &RecordRing<'_>, p: &Pending, type_id: u32) {
        self.put(
            ring.at(p.pos + 8),
            p.len as u64 | (type_id as u64) << 32,
            Ordering::Relaxed,
        );
    }

    /// Payload word `i` of the pending record (for in-place writes).
    #[inline]
    pub(crate) fn payload_word<'r>(
        &self,
        ring: &RecordRing<'r>,
        p: &Pending,
        i: usize,
    ) -> &'r AtomicU64 {
        debug_assert!(i < p.len.div_ceil(8));
        ring.at(p.pos + 16 + 8 * i as u64)
    }

    /// Stores `bytes` (exactly the pending record's length) as its payload: one Relaxed atomic
    /// store per word (readers race on these words), unrolled by four over slices whose bounds
    /// are checked once per record, not once per word.
    #[inline]
    pub(crate) fn write_bytes(&self, ring: &RecordRing<'_>, p: &Pending, bytes: &[u8]) {
        debug_assert_eq!(bytes.len(), p.len);
        let dst = ring.span(p.pos + 16, p.len.div_ceil(8));
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("chunks of 8 bytes"));
        // Whole groups of four words first, then whole words, then the last bytes.
        let fours = (bytes.len() / 32).min(dst.len() / 4);
        let (d4, d1) = dst.split_at(4 * fours);
        let (b32, b1) = bytes.split_at(32 * fours);
        for (d, b) in d4.chunks_exact(4).zip(b32.chunks_exact(32)) {
            self.put(&d[0], word(&b[0..8]), Ordering::Relaxed);
            self.put(&d[1], word(&b[8..16]), Ordering::Relaxed);
            self.put(&d[2], word(&b[16..24]), Ordering::Relaxed);
            self.put(&d[3], word(&b[24..32]), Ordering::Relaxed);
        }
        let mut d1 = d1.iter();
        let mut chunks = b1.chunks_exact(8);
        // The chunks first: `zip` stops at the first `None` without taking a word from `d1`.
        for (c, d) in (&mut chunks).zip(&mut d1) {
            self.put(d, word(c), Ordering::Relaxed);
        }
        let last = chunks.remainder();
        if let (false, Some(d)) = (last.is_empty(), d1.next()) {
            let mut w = [0u8; 8];
            w[..last.len()].copy_from_slice(last);
            self.put(d, u64::from_ne_bytes(w), Ordering::Relaxed);
        }
    }

    /// Publishes the pending record (step 4's terminator, then step 5).
    #[inline]
    pub(crate) fn commit(&mut self, ring: &RecordRing<'_>, p: Pending) {
        self.finish(ring, p, State::Done(p.seq));
    }

    /// Gives the pending record up (its fill panicked): readers step over it and count it lost.
    pub(crate) fn abandon(&mut self, ring: &RecordRing<'_>, p: Pending) {
        self.finish(ring, p, State::Abandoned(p.seq));
    }

    #[inline]
    fn finish(&mut self, ring: &RecordRing<'_>, p: Pending, state: State) {
        let end = p.pos + RingShape::record_size(p.len);
        let next = p.seq + 1;
        self.put(ring.at(end), State::Free(next).word(), Ordering::Relaxed);
        // ORDERING: Release pairs with the reader's Acquire load of the version: a reader that
        // sees the record done sees its length, payload and the terminator after it.
        self.put(ring.at(p.pos), state.word(), Ordering::Release);
        self.seq = next;
        self.tail = end;
        if matches!(state, State::Done(_)) {
            self.bytes += p.len as u64;
        }
        self.put(ring.ctl(W_BYTES), self.bytes, Ordering::Relaxed);
        // ORDERING: Release (all three): a reader that loads one of these words (Acquire) sees
        // the record it names committed and the terminator after it written.
        self.put(ring.ctl(W_CURSOR), next, Ordering::Release);
        self.put(ring.ctl(W_LAST), p.pos, Ordering::Release);
        self.put(ring.ctl(W_TAIL), end, Ordering::Release);
    }
}
