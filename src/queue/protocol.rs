//! The queue protocol's state machines (docs/design.md §11): a [`Sender`] claims the tail,
//! writes and publishes; a [`Receiver`] claims the head, reads and frees; [`repair_entry`] and
//! the stall repairs turn a dead participant's claimed position into a skip or a counted loss.
//!
//! Everything works on a [`QueueRing`] (a view of the segment's words) and asks whether another
//! participant lives through [`Liveness`], so the same code runs on a mapped segment, on a heap
//! one, and under loom (`loom.rs`).

use crate::bus::ring::Liveness;
use crate::segment::header::{
    Geometry, MAX_PRODUCERS, PE_CLAIM, PRODUCER_ENTRY_WORDS, W_CURSOR, W_PRODUCERS,
};

use super::layout::{W_Q_HEAD, W_Q_LOST, W_Q_PASSED, W_Q_SKIPPED};
use crate::sync::{load_acquire, AtomicU64, Ordering};

/// Positions stay below this, so the flag bits of a slot's state word and
/// of a claim word never collide with a position. A queue moving 10^9 items a second reaches it
/// after 73 years; past it the queue reports full and empty, never wraps.
pub(crate) const POS_LIMIT: u64 = 1 << 61;

/// State-word bit: the slot holds the item of the position its lap bits name.
pub(crate) const FULL: u64 = 1 << 62;
/// State-word bit (with [`FULL`]): that position was skipped (its producer died before
/// publishing); consumers pass over it and deliver nothing. Without [`FULL`]: the slot is
/// *held* by a live participant that stalled past the queue's stall bound and was passed (see
/// [`is_held`]).
pub(crate) const SKIP: u64 = 1 << 63;
/// The lap bits of a state word: a position whose slot index bits are zero.
const LAP: u64 = !(FULL | SKIP);

/// Whether a state word says *held*: `lap(k) | SKIP`. A participant that stalled holding the
/// slot (a sender between its claim and its publish, a receiver between its claim and its
/// free) was passed after the stall bound; positions up to `k` of this slot are dead, and no
/// one but that holder may make the slot free again (docs/design.md §11, "Stalls").
#[inline]
pub(crate) fn is_held(st: u64) -> bool {
    st & (FULL | SKIP) == SKIP
}

/// Stores `v` into a slot's state word with Release: the free (and the publish of a queue
/// without a stall bound), plain stores to a word that others change with compare-and-swaps
/// (the routes and repairs of docs/design.md §11).
///
/// Under loom it is a swap whose result is ignored. Loom 0.7 lets a plain store land between
/// the read and the write of another thread's compare-and-swap on the same word
/// (tokio-rs/loom#254, fixed by the unreleased tokio-rs/loom#391), an execution no hardware
/// and no C++ or Rust memory model allows; with it the models report losses that cannot
/// happen. A swap is ordered against the compare-and-swaps as a store is; it differs only in
/// continuing the release sequence of the value it replaces, which no step of the protocol
/// relies on (every reader of a state word pairs with the store or CAS that wrote the value it
/// reads).
#[inline(always)]
fn store_state(word: &AtomicU64, v: u64) {
    #[cfg(loom)]
    let _ = word.swap(v, Ordering::Release);
    #[cfg(not(loom))]
    word.store(v, Ordering::Release);
}

/// How many dead positions (passed, or routed around a held slot) one `begin` moves the tail
/// or head over before it reports full or empty: a bound on the work a forged segment can make
/// one call do.
const PASS_LIMIT: u32 = 64;

/// Claim-word bit: the claim is a consumer's (without it, a producer's).
pub(crate) const CONSUMER: u64 = 1 << 62;

/// The state word that makes a slot writable for position `pos`: its lap, `pos` with the slot
/// index bits cleared. Zeroed memory is therefore a fresh queue.
#[inline]
fn lap(pos: u64, mask: u64) -> u64 {
    pos & !mask
}

/// Who a claim word names: a role and a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    Send(u64),
    Recv(u64),
}

impl Claim {
    #[inline]
    pub(crate) fn word(self) -> u64 {
        match self {
            Claim::Send(pos) => pos + 1,
            Claim::Recv(pos) => (pos + 1) | CONSUMER,
        }
    }

    /// The claim a word holds; `None` for 0 (no claim) or a value no participant stores.
    pub(crate) fn from_word(w: u64) -> Option<Claim> {
        let pos = (w & !CONSUMER).checked_sub(1)?;
        if pos >= POS_LIMIT {
            return None;
        }
        Some(if w & CONSUMER != 0 {
            Claim::Recv(pos)
        } else {
            Claim::Send(pos)
        })
    }
}

/// A view of a queue segment's words with its validated geometry. Cheap to make.
#[derive(Clone, Copy)]
pub(crate) struct QueueRing<'a> {
    words: &'a [AtomicU64],
    g: Geometry,
}

impl<'a> QueueRing<'a> {
    pub(crate) fn new(words: &'a [AtomicU64], g: Geometry) -> Self {
        debug_assert!(words.len() >= g.segment_bytes().unwrap_or(u64::MAX) as usize / 8);
        QueueRing { words, g }
    }

    #[inline]
    fn mask(&self) -> u64 {
        self.g.mask()
    }

    #[inline]
    fn tail_word(&self) -> &'a AtomicU64 {
        &self.words[W_CURSOR]
    }

    #[inline]
    fn head_word(&self) -> &'a AtomicU64 {
        &self.words[W_Q_HEAD]
    }

    /// The state word of `pos`'s slot.
    #[inline]
    pub(crate) fn state(&self, pos: u64) -> &'a AtomicU64 {
        &self.words[self.g.slot_word(pos)]
    }

    /// Payload word `i` of `pos`'s slot (`i` below the payload words).
    #[inline]
    fn payload_word(&self, pos: u64, i: usize) -> &'a AtomicU64 {
        &self.words[self.g.slot_word(pos) + 2 + i]
    }

    #[inline]
    fn len_word(&self, pos: u64) -> &'a AtomicU64 {
        &self.words[self.g.slot_word(pos) + 1]
    }

    /// Entry `index`'s claim word.
    #[inline]
    pub(crate) fn claim_word(&self, index: usize) -> &'a AtomicU64 {
        &self.words[W_PRODUCERS + index * PRODUCER_ENTRY_WORDS + PE_CLAIM]
    }

    /// The next position producers claim (everything below it was claimed).
    pub(crate) fn tail(&self) -> u64 {
        // ORDERING: pairs with the Release CAS in `Sender::begin`: whoever sees the tail past
        // `p` sees the claim word of `p`'s producer naming `p` (or a later value of it).
        load_acquire(self.tail_word())
    }

    /// The next position consumers claim.
    pub(crate) fn head(&self) -> u64 {
        // ORDERING: pairs with the Release CAS in `Receiver::begin`, as `tail` does.
        load_acquire(self.head_word())
    }

    /// Items claimed by producers and not yet claimed by consumers (a snapshot: the two
    /// positions are read one after the other), at most the capacity.
    pub(crate) fn len(&self) -> u64 {
        let head = self.head();
        let tail = self.tail();
        tail.saturating_sub(head).min(self.g.slot_count)
    }

    /// Positions skipped, items lost and positions passed so far, queue-wide.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        (
            self.words[W_Q_SKIPPED].load(Ordering::Relaxed),
            self.words[W_Q_LOST].load(Ordering::Relaxed),
            self.words[W_Q_PASSED].load(Ordering::Relaxed),
        )
    }

    /// Whether a sender can make progress at the tail now (a sleeping producer's re-check):
    /// the slot is free, or held (to be routed around), or the position is dead.
    pub(crate) fn has_space(&self) -> bool {
        let pos = self.tail();
        let free = lap(pos, self.mask());
        // ORDERING: as the state load in `Sender::begin` (a re-check before sleeping, §7).
        let st = load_acquire(self.state(pos));
        st == free || is_held(st) || st & LAP > free
    }

    /// Whether a receiver can make progress at the head now (a sleeping consumer's re-check):
    /// an item or a skip, or a dead position the tail has passed.
    pub(crate) fn has_item(&self) -> bool {
        let pos = self.head();
        let at = lap(pos, self.mask());
        // ORDERING: as the state load in `Receiver::begin` (a re-check before sleeping, §7).
        let st = load_acquire(self.state(pos));
        st & !SKIP == at | FULL || ((st == at | SKIP || st & LAP > at) && self.tail() > pos)
    }

    /// Whether the head's slot holds an item, or is free, for an earlier lap than the head's:
    /// a receiver still reading that item, or something for the stall repair to look at (an
    /// orphan, a stale free).
    pub(crate) fn earlier_lap_at_head(&self) -> bool {
        let pos = self.head();
        // ORDERING: as the state load in `Receiver::begin`.
        let st = load_acquire(self.state(pos));
        st & LAP < lap(pos, self.mask()) && !is_held(st)
    }

    /// Passes a position whose slot is held or was released for a later lap: moves `word`
    /// (the tail or the head) from `pos` to `pos + 1` unless someone else did; the position to
    /// look at next.
    #[cold]
    fn pass_dead(&self, word: &AtomicU64, pos: u64) -> u64 {
        // ORDERING: Relaxed: the position is dead, no claim names it, and nothing written
        // before needs to be seen through it (the RMW keeps the word's release sequence).
        match word.compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => pos + 1,
            Err(now) => now,
        }
    }

    /// Frees a slot this sender holds but was passed on (`is_held`): the slot becomes free for
    /// the lap after the last one routed around it. Only the holder calls this, so the loop
    /// only follows senders routing the slot one lap further.
    #[cold]
    fn release_held(&self, pos: u64) {
        let n = self.g.slot_count;
        // ORDERING: as every state load: Acquire pairs with the routing CAS.
        let mut st = load_acquire(self.state(pos));
        for _ in 0..PASS_LIMIT * 1024 {
            if !is_held(st) || st & LAP < lap(pos, self.mask()) {
                // Only a forged segment: the holder's slot is always held here.
                return;
            }
            // ORDERING: Release pairs with the Acquire state load of the sender of the lap it
            // frees (our stores to the slot happen before its writes); Acquire on failure
            // re-reads a routing CAS.
            match self.state(pos).compare_exchange_weak(
                st,
                (st & LAP) + n,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => st = now,
            }
        }
    }

    /// Advances a slot whose state is free for a position `y` nobody will claim any more (the
    /// tail is past it and no claim names it): a stale free, left by a holder's free or a
    /// dead position (docs/design.md §11, "Stalls"). `true` if this call moved it a lap on.
    #[cold]
    fn advance_stale(&self, y: u64) -> bool {
        let free = lap(y, self.mask());
        // ORDERING: AcqRel: Release pairs with the Acquire state load of the sender of the lap
        // it frees (whatever was done in the slot before happens before its writes); Acquire
        // orders us after the free we advance. One CAS from the exact value: done once.
        self.state(y)
            .compare_exchange(
                free,
                free + self.g.slot_count,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

/// What [`Sender::begin`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendBegin {
    /// Position `pos` is this sender's to write and publish.
    Claimed(u64),
    /// The slot of the tail position `pos` still holds (or is still being read for) the item a
    /// lap before: the queue is full.
    Full(u64),
    /// The slot of the tail position `pos` is held (state `st`, [`is_held`]) by a participant
    /// of an earlier lap that was passed: [`route_held`] routes around it, or frees it if its
    /// holder died.
    Held(u64, u64),
}

/// The producer side of the protocol. Holds only its table entry: the position lives in the
/// segment.
#[derive(Debug)]
pub(crate) struct Sender {
    index: usize,
}

impl Sender {
    /// The sender on producer-table entry `index`.
    pub(crate) fn new(index: usize) -> Self {
        Sender { index }
    }

    /// Claims the tail position if its slot is free (Vyukov's enqueue up to the CAS).
    ///
    /// The claim word names the position before the CAS that takes it, so that whoever sees the
    /// tail past a position can find its producer (docs/design.md §11, "Claims").
    #[inline(always)]
    pub(crate) fn begin(&self, q: &QueueRing<'_>) -> SendBegin {
        let claim = q.claim_word(self.index);
        let mask = q.mask();
        let mut pos = q.tail_word().load(Ordering::Relaxed);
        let mut passes = 0;
        loop {
            if pos >= POS_LIMIT || passes > PASS_LIMIT {
                return self.give_up(SendBegin::Full(pos), claim);
            }
            // ORDERING: Acquire pairs with the consumer's Release store that freed the slot in
            // `Receiver::finish` (or a repair's CAS): its reads of the previous item happen
            // before our writes of this one.
            let st = load_acquire(q.state(pos));
            let free = lap(pos, mask);
            if st == free {
                // ORDERING: Release pairs with the Acquire scans in the repairs: a repairer that
                // sees this word past a position it suspects sees our publish of that position
                // (made before we named a new one).
                claim.store(Claim::Send(pos).word(), Ordering::Release);
                // ORDERING: Release on success pairs with the Acquire load in `QueueRing::tail`
                // (and through the tail's release sequence, with any later load): whoever sees
                // the tail past `pos` sees our claim naming `pos`.
                match q.tail_word().compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return SendBegin::Claimed(pos),
                    Err(now) => pos = now,
                }
            } else if st & LAP < free && !is_held(st) {
                return self.give_up(SendBegin::Full(pos), claim);
            } else {
                match Self::unusual(q, pos, st, &mut passes) {
                    Ok(next) => pos = next,
                    Err(out) => return self.give_up(out, claim),
                }
            }
        }
    }

    /// `begin` at tail `pos` found state `st` neither free for `pos` nor full from the lap
    /// before: a held slot (`Err(Held)`: route around it), a position that is dead (passed
    /// here: `Ok` of the next position to look at), or a stale tail (`Ok` of the tail now).
    /// Out of line: no send that meets no stall comes here but for a stale tail.
    #[cold]
    #[inline(never)]
    fn unusual(q: &QueueRing<'_>, pos: u64, st: u64, passes: &mut u32) -> Result<u64, SendBegin> {
        let free = lap(pos, q.mask());
        if is_held(st) && st & LAP <= free {
            if st & LAP < free {
                return Err(SendBegin::Held(pos, st));
            }
            // `pos` was routed around its held slot: nobody sends at it.
            *passes += 1;
            return Ok(q.pass_dead(q.tail_word(), pos));
        }
        if is_held(st) {
            // Held for a later lap than our stale tail's.
            return Ok(q.tail_word().load(Ordering::Relaxed));
        }
        // The slot is a lap ahead of our stale tail: another producer took `pos`.
        let now = q.tail_word().load(Ordering::Relaxed);
        if now != pos {
            return Ok(now);
        }
        // The tail never passed `pos`, yet its slot serves a later lap: `pos` was routed around
        // a held slot whose holder has since released it (the Acquire above would have shown
        // us any claim's tail CAS). Nobody sends at it.
        *passes += 1;
        Ok(q.pass_dead(q.tail_word(), pos))
    }

    /// Withdraws a tentative claim (one that lost its CAS), so that no live participant names a
    /// position it does not hold while it does something else.
    #[inline]
    fn give_up(&self, out: SendBegin, claim: &AtomicU64) -> SendBegin {
        if claim.load(Ordering::Relaxed) != 0 {
            // ORDERING: Release, as every claim store (see `begin`).
            claim.store(0, Ordering::Release);
        }
        out
    }

    /// Writes the item's length and bytes into `pos`'s slot (Relaxed word stores: nobody reads
    /// them before `commit` publishes them). `bytes` fits the capacity.
    #[inline]
    pub(crate) fn write(&self, q: &QueueRing<'_>, pos: u64, bytes: &[u8]) {
        debug_assert!(bytes.len() <= q.g.capacity);
        q.len_word(pos).store(bytes.len() as u64, Ordering::Relaxed);
        let mut chunks = bytes.chunks_exact(8);
        let mut i = 0;
        for c in &mut chunks {
            let w = u64::from_ne_bytes(c.try_into().expect("chunks of 8"));
            q.payload_word(pos, i).store(w, Ordering::Relaxed);
            i += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            q.payload_word(pos, i)
                .store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
    }

    /// Publishes `pos` on a queue where positions may be passed (it has a stall bound): its
    /// slot now holds the item, unless receivers passed `pos` while this sender stalled past
    /// the bound (`pass_stalled_send`). Then the item never appears at `pos`: this returns
    /// `false`, the slot is released, and the item must be sent again at a new position. A
    /// compare-and-swap, because the pass and the publish race on the state word and exactly
    /// one of them must win (docs/design.md §11, "Stalls").
    #[inline]
    #[must_use]
    pub(crate) fn commit(&self, q: &QueueRing<'_>, pos: u64) -> bool {
        let free = lap(pos, q.mask());
        // ORDERING: Release pairs with the consumer's Acquire load of the state in
        // `Receiver::begin`: a consumer that sees FULL sees the length and payload. On failure
        // Relaxed: `release_held` re-reads with Acquire.
        let ok = q
            .state(pos)
            .compare_exchange(free, free | FULL, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        if !ok {
            q.release_held(pos);
        }
        ok
    }

    /// Publishes `pos` on a queue where no position is ever passed (no stall bound): a plain
    /// store, as in Vyukov's queue.
    #[inline]
    pub(crate) fn publish(&self, q: &QueueRing<'_>, pos: u64) {
        // ORDERING: Release (in `store_state`) pairs with the consumer's Acquire load of the
        // state in `Receiver::begin`: a consumer that sees FULL sees the length and payload.
        store_state(q.state(pos), lap(pos, q.mask()) | FULL);
    }
}

/// What [`Receiver::begin`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecvBegin {
    /// Position `pos` holds an item, now this receiver's to read and then `finish`.
    Claimed(u64),
    /// Position `pos` was skipped (its producer died before publishing): claimed, and to be
    /// `finish`ed without reading.
    Skipped(u64),
    /// Nothing at the head position `pos` yet: the queue is empty, or `pos`'s producer has not
    /// published (it is writing, or it died: see [`repair_stalled_recv`]).
    Empty(u64),
}

/// The consumer side of the protocol.
#[derive(Debug)]
pub(crate) struct Receiver {
    index: usize,
}

impl Receiver {
    /// The receiver on table entry `index`.
    pub(crate) fn new(index: usize) -> Self {
        Receiver { index }
    }

    /// Claims the head position if its slot holds an item or a skip (Vyukov's dequeue up to the
    /// CAS), naming it in the claim word first.
    #[inline(always)]
    pub(crate) fn begin(&self, q: &QueueRing<'_>) -> RecvBegin {
        let claim = q.claim_word(self.index);
        let mask = q.mask();
        let mut pos = q.head_word().load(Ordering::Relaxed);
        let mut passes = 0;
        loop {
            if pos >= POS_LIMIT || passes > PASS_LIMIT {
                return self.give_up(RecvBegin::Empty(pos), claim);
            }
            // ORDERING: Acquire pairs with the producer's Release store in `Sender::commit`
            // (or the repair's CAS that made a skip): we see the item's length and payload.
            let st = load_acquire(q.state(pos));
            let full = lap(pos, mask) | FULL;
            if st & !SKIP == full {
                // ORDERING: Release, as in `Sender::begin`.
                claim.store(Claim::Recv(pos).word(), Ordering::Release);
                // ORDERING: Release on success pairs with the Acquire load in `QueueRing::head`:
                // whoever sees the head past `pos` sees our claim naming `pos`.
                match q.head_word().compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) if st & SKIP != 0 => return RecvBegin::Skipped(pos),
                    Ok(_) => return RecvBegin::Claimed(pos),
                    Err(now) => pos = now,
                }
            } else if st & LAP <= lap(pos, mask) && st != lap(pos, mask) | SKIP {
                return self.give_up(RecvBegin::Empty(pos), claim);
            } else {
                match Self::unusual(q, pos, st, &mut passes) {
                    Some(next) => pos = next,
                    None => return self.give_up(RecvBegin::Empty(pos), claim),
                }
            }
        }
    }

    /// `begin` at head `pos` found state `st` neither an item for `pos` nor earlier than `pos`:
    /// `pos` held (passed or routed around), or the slot free for a later lap. The next
    /// position to look at (`pos` passed as dead, or a stale head refreshed), or `None` for
    /// nothing to receive. Out of line: no receive that meets no stall comes here but for a
    /// stale head.
    #[cold]
    #[inline(never)]
    fn unusual(q: &QueueRing<'_>, pos: u64, st: u64, passes: &mut u32) -> Option<u64> {
        if st == lap(pos, q.mask()) | SKIP {
            // `pos` was passed (its sender stalled past the bound) or routed around a held
            // slot: dead, once the tail has passed it.
            if q.tail() <= pos {
                return None;
            }
            *passes += 1;
            return Some(q.pass_dead(q.head_word(), pos));
        }
        // The slot was freed for a later lap: another consumer took `pos`.
        let now = q.head_word().load(Ordering::Relaxed);
        if now != pos {
            return Some(now);
        }
        if q.tail() <= pos {
            // Only a forged segment.
            return None;
        }
        // The head never passed `pos`, yet its slot serves a later lap (the Acquire above would
        // have shown us a receiver's head CAS): `pos` was passed and its holder has released
        // the slot since. Dead.
        *passes += 1;
        Some(q.pass_dead(q.head_word(), pos))
    }

    #[inline]
    fn give_up(&self, out: RecvBegin, claim: &AtomicU64) -> RecvBegin {
        if claim.load(Ordering::Relaxed) != 0 {
            // ORDERING: Release, as every claim store (see `Sender::begin`).
            claim.store(0, Ordering::Release);
        }
        out
    }

    /// Copies the claimed item of `pos` into `buf` (at least the payload words long); returns
    /// its length, or `None` for a length beyond the capacity (only a hostile writer stores one).
    #[inline]
    pub(crate) fn read(&self, q: &QueueRing<'_>, pos: u64, buf: &mut [u64]) -> Option<usize> {
        // The length is read once and checked before use: a forged length cannot make the copy
        // leave the slot.
        let len = q.len_word(pos).load(Ordering::Relaxed);
        if len > q.g.capacity as u64 {
            return None;
        }
        let n = (len as usize).div_ceil(8);
        for (i, dst) in buf[..n].iter_mut().enumerate() {
            *dst = q.payload_word(pos, i).load(Ordering::Relaxed);
        }
        Some(len as usize)
    }

    /// Frees `pos`'s slot for the producer of `pos + capacity` (Vyukov's `pos + N`). A plain
    /// store, also when senders routed around the slot while this receiver stalled: the free
    /// then names a position the tail has passed, a *stale free* that the next participant
    /// to meet it moves on (`advance_stale`). What it read is its own either way: nobody
    /// writes a held slot.
    #[inline]
    pub(crate) fn finish(&self, q: &QueueRing<'_>, pos: u64) {
        // ORDERING: Release (in `store_state`) pairs with the producer's Acquire load of the
        // state in `Sender::begin`: our reads of this item happen before its writes of the next.
        store_state(q.state(pos), lap(pos, q.mask()) + q.g.slot_count);
    }
}

/// What a repair did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repair {
    /// Nothing to repair.
    None,
    /// The position is stuck on a participant that lives (or that no claim names): wait for
    /// it, and pass it once it has been stuck for the stall bound (`pass_stalled_send`,
    /// `route_stalled_recv`). Only the stall repairs return it.
    Held,
    /// A dead producer's claimed position became a skip that consumers pass over.
    Skipped,
    /// A dead consumer's claimed item was given up (counted lost) and its slot freed.
    Lost,
    /// A dead consumer had claimed a skip: its slot was freed, nothing lost.
    Freed,
    /// A slot free for a position nobody will complete (the tail had passed it and no claim
    /// names it: a stale free) was moved on a lap.
    Dead,
    /// A live participant names the dead one's position too: it is the holder (and will
    /// complete it), or a loser of the CAS about to re-name another one. Which, the repairer
    /// cannot tell, so the dead participant's claim is kept: the position stays findable by a
    /// later repair (docs/design.md §11, "Claims and repair"). Only [`repair_entry`] returns it.
    Pending,
}

/// Whether a live participant other than those in `except` names `claim` (the victim's lock,
/// held by the repairer, would make it look alive). A claim word that names a
/// position is either the holder's (until it completes the position) or a loser's that is
/// about to withdraw or re-name.
fn live_claimant<L: Liveness>(q: &QueueRing<'_>, live: &L, claim: u64, except: [usize; 2]) -> bool {
    (0..MAX_PRODUCERS).any(|i| {
        // ORDERING: Acquire pairs with the Release claim stores: if this reads a value stored
        // after the claimant completed `claim`'s position, the completion is visible to our
        // repair CAS, which then fails.
        !except.contains(&i) && load_acquire(q.claim_word(i)) == claim && live.alive(i)
    })
}

/// Repairs the claim of entry `victim`, whose lock the caller holds (so its previous owner is
/// dead and nobody else repairs it): the position it names becomes a skip (a producer's
/// unpublished position) or is freed (a consumer's unfinished item), unless it was completed
/// or never taken (then nothing is done), or another live participant names it
/// ([`Repair::Pending`]). The claim word is cleared once the position needs nothing more from
/// it: repaired, completed, never taken, or a word no participant stores. It is kept while a
/// live participant names the position: that one may be a loser of the CAS about to re-name
/// another position, and with the dead holder's claim gone nothing would name this one, and no
/// stall repair could ever find it (a permanent wedge; repro_kinds_queue_claim_wedge.rs).
/// `except` is the caller's own entry (a participant attaching on `victim` passes `victim`).
pub(crate) fn repair_locked<L: Liveness>(
    q: &QueueRing<'_>,
    live: &L,
    victim: usize,
    except: usize,
) -> Repair {
    let word = q.claim_word(victim);
    // ORDERING: the entry lock (a system call) orders us after the victim's death; Acquire
    // pairs with the Release claim stores of whoever repaired or used the entry before us.
    let claim = word.load(Ordering::Acquire);
    let done = match Claim::from_word(claim) {
        None => Repair::None,
        Some(Claim::Send(pos)) => skip_dead_send(q, live, pos, claim, except, victim),
        Some(Claim::Recv(pos)) => free_dead_recv(q, live, pos, claim, except, victim),
    };
    if claim != 0 && done != Repair::Pending {
        // ORDERING: Release, as every claim store.
        word.store(0, Ordering::Release);
    }
    done
}

/// A dead producer claimed `pos` (the tail is past it) and never published it: make it a skip.
fn skip_dead_send<L: Liveness>(
    q: &QueueRing<'_>,
    live: &L,
    pos: u64,
    claim: u64,
    except: usize,
    victim: usize,
) -> Repair {
    let free = lap(pos, q.mask());
    // The tail first: past `pos`, the holder's claim naming `pos` is visible to the scan.
    if q.tail() <= pos {
        return Repair::None;
    }
    // ORDERING: the state's Acquire pairs with a publish (then the repair has nothing to do).
    let st = load_acquire(q.state(pos));
    if is_held(st) && st & LAP >= free {
        // Receivers passed `pos` while its sender stalled, and the slot is still held: the
        // victim may be its holder. Keep the claim: `route_held` frees the slot once no live
        // participant can be the holder.
        return Repair::Pending;
    }
    if st != free {
        return Repair::None;
    }
    if live_claimant(q, live, claim, [victim, except]) {
        return Repair::Pending;
    }
    // ORDERING: AcqRel: Release pairs with the consumers' Acquire state load (they see the
    // skip); Acquire orders us after whatever published the slot if the CAS fails.
    let won = q
        .state(pos)
        .compare_exchange(
            free,
            free | FULL | SKIP,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok();
    if !won {
        return Repair::None;
    }
    q.words[W_Q_SKIPPED].fetch_add(1, Ordering::Relaxed);
    Repair::Skipped
}

/// A dead consumer claimed `pos` (the head is past it) and never freed its slot: free it,
/// counting the item lost (at most once: it may have been read, it is never read again).
fn free_dead_recv<L: Liveness>(
    q: &QueueRing<'_>,
    live: &L,
    pos: u64,
    claim: u64,
    except: usize,
    victim: usize,
) -> Repair {
    let full = lap(pos, q.mask()) | FULL;
    if q.head() <= pos {
        return Repair::None;
    }
    // ORDERING: Acquire pairs with a free's Release (then the repair has nothing to do).
    let st = load_acquire(q.state(pos));
    if is_held(st) && st & LAP > lap(pos, q.mask()) {
        // Senders routed around the slot while its receiver stalled: the victim may be its
        // holder. Keep the claim, as in `skip_dead_send`.
        return Repair::Pending;
    }
    if st & !SKIP != full {
        return Repair::None;
    }
    if live_claimant(q, live, claim, [victim, except]) {
        return Repair::Pending;
    }
    let next = lap(pos, q.mask()) + q.g.slot_count;
    // ORDERING: AcqRel: Release pairs with the producers' Acquire state load, as `finish`.
    let won = q
        .state(pos)
        .compare_exchange(st, next, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok();
    match (won, st & SKIP != 0) {
        (false, _) => Repair::None,
        (true, true) => Repair::Freed,
        (true, false) => {
            q.words[W_Q_LOST].fetch_add(1, Ordering::Relaxed);
            Repair::Lost
        }
    }
}

/// Finds the dead participants whose claim is `claim` and repairs through the first whose lock
/// can be taken; [`Repair::Held`] if a live participant names it (it will complete, or be
/// passed after the stall bound) or no repair was made.
fn repair_claimed<L: Liveness>(q: &QueueRing<'_>, live: &L, claim: u64, own: usize) -> Repair {
    let mut dead = [false; MAX_PRODUCERS];
    for (i, d) in dead.iter_mut().enumerate() {
        // ORDERING: as in `live_claimant`.
        if i == own || load_acquire(q.claim_word(i)) != claim {
            continue;
        }
        if live.alive(i) {
            return Repair::Held;
        }
        *d = true;
    }
    for (i, _) in dead.iter().enumerate().filter(|(_, d)| **d) {
        if let Some(_guard) = live.lock_dead(i) {
            match repair_locked(q, live, i, own) {
                // A live claimant appeared since the scan: wait for it, as above.
                Repair::None | Repair::Pending | Repair::Held => {}
                done => return done,
            }
        }
    }
    Repair::Held
}

/// Who names a claim word's value: a live participant, a dead one, or nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Namers {
    Live,
    Dead,
    Nobody,
}

/// Looks up who names `claim` (apart from entry `own`): a live participant wins over a dead one.
fn namers<L: Liveness>(q: &QueueRing<'_>, live: &L, claim: u64, own: usize) -> Namers {
    let mut found = Namers::Nobody;
    for i in 0..MAX_PRODUCERS {
        // ORDERING: as in `live_claimant`.
        if i == own || load_acquire(q.claim_word(i)) != claim {
            continue;
        }
        if live.alive(i) {
            return Namers::Live;
        }
        found = Namers::Dead;
    }
    found
}

/// A consumer (entry `own`) finds head position `pos` empty, or its slot holding something of
/// an earlier lap, and looks at why (docs/design.md §11, "Claims and repair" and "Stalls"):
/// - free for `pos`, the tail past it: the sender that claimed it is dead (it becomes a skip),
///   or alive ([`Repair::Held`]: pass it once the stall bound is over), or nobody names it (a
///   dead position: the slot moves on a lap);
/// - free for an earlier position the tail has passed and nobody names: a stale free, left by a
///   receiver that freed its slot after senders had routed around it (the slot moves on a
///   lap).
pub(crate) fn repair_stalled_recv<L: Liveness>(
    q: &QueueRing<'_>,
    live: &L,
    pos: u64,
    own: usize,
) -> Repair {
    if pos >= POS_LIMIT {
        return Repair::None;
    }
    let mask = q.mask();
    let at = lap(pos, mask);
    // ORDERING: the state's Acquire pairs with a publish or a free, as in `Receiver::begin`; the
    // tail's (in `tail`) makes the claim of whoever took a position below it visible to the
    // scan.
    let st = load_acquire(q.state(pos));
    let tail = q.tail();
    let flags = st & (FULL | SKIP);
    if st & LAP > at {
        return Repair::None;
    }
    if flags == 0 {
        // Free for `y`: `pos` itself, or an earlier position of the slot.
        let y = (st & LAP) | (pos & mask);
        if tail <= y {
            return Repair::None;
        }
        match namers(q, live, Claim::Send(y).word(), own) {
            Namers::Nobody => {
                return if q.advance_stale(y) {
                    Repair::Dead
                } else {
                    Repair::None
                };
            }
            _ if y != pos => return Repair::None,
            _ => {}
        }
        return match repair_claimed(q, live, Claim::Send(pos).word(), own) {
            // Published (or repaired by another) while we looked: nothing is stuck any more.
            Repair::Held if load_acquire(q.state(pos)) != at => Repair::None,
            r => r,
        };
    }
    Repair::None
}

/// A producer (entry `own`) finds tail position `pos` full, and looks at why: the item of the
/// previous lap is held by a receiver that is dead (counted lost, the slot freed) or alive
/// ([`Repair::Held`]: route around it once the stall bound is over); or the slot is free for
/// an earlier position the tail has passed and nobody names (a stale free: the slot moves on
/// a lap).
pub(crate) fn repair_stalled_send<L: Liveness>(
    q: &QueueRing<'_>,
    live: &L,
    pos: u64,
    own: usize,
) -> Repair {
    if pos >= POS_LIMIT {
        return Repair::None;
    }
    let mask = q.mask();
    let free = lap(pos, mask);
    // ORDERING: the state's Acquire pairs with the receiver's free (then nothing is stuck); the
    // head's (in `head`) makes the claim of whoever took a position below it visible.
    let st = load_acquire(q.state(pos));
    if st & LAP >= free {
        return Repair::None;
    }
    let x = (st & LAP) | (pos & mask);
    match st & (FULL | SKIP) {
        // ORDERING: the tail's Acquire (in `tail`; ours in `begin` was Relaxed) reads a value of
        // the release sequence of the CAS that took `x`, so the claim of the sender that took
        // it, stored before that CAS, is visible to the scan.
        0 if q.tail() > x => match namers(q, live, Claim::Send(x).word(), own) {
            // The tail is past `x`: a stale free if nobody names `x`.
            Namers::Nobody if q.advance_stale(x) => Repair::Dead,
            // A sender still writing `x`: receivers pass it (or skip it if it died).
            _ => Repair::None,
        },
        0 => Repair::None,
        flags if flags & FULL != 0 => {
            if q.head() <= x {
                return Repair::None;
            }
            let full = st & !SKIP;
            if x + q.g.slot_count != pos {
                return Repair::None;
            }
            match repair_claimed(q, live, Claim::Recv(x).word(), own) {
                // Freed (or repaired by another) while we looked: nothing is stuck any more.
                Repair::Held if load_acquire(q.state(pos)) & !SKIP != full => Repair::None,
                r => r,
            }
        }
        _ => Repair::None,
    }
}

/// A receiver has found head position `pos` claimed by a sender that lives and has not
/// published it for the stall bound: passes it. The slot becomes held (`lap(pos) | SKIP`):
/// receivers move the head past `pos`, senders route around the slot, and the sender, when
/// it runs again, finds its publish refused (`Sender::commit`), releases the slot and sends
/// the item again at a new position. `true` if this call passed it (docs/design.md §11,
/// "Stalls").
pub(crate) fn pass_stalled_send(q: &QueueRing<'_>, pos: u64) -> bool {
    let free = lap(pos, q.mask());
    // The tail past `pos`: a sender claimed it (a free slot at the head of an empty queue is
    // not a stall).
    if pos >= POS_LIMIT || q.tail() <= pos {
        return false;
    }
    // ORDERING: AcqRel: Release pairs with the receivers' Acquire state loads (they see the
    // pass); the sender's publish CAS and this one are ordered by the state word itself, and
    // exactly one of them succeeds.
    let passed = q
        .state(pos)
        .compare_exchange(free, free | SKIP, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok();
    if passed {
        q.words[W_Q_PASSED].fetch_add(1, Ordering::Relaxed);
    }
    passed
}

/// A sender has found tail position `pos` full because the receiver of `pos - N` claimed that
/// item and, alive, has not freed its slot for the stall bound: routes around the slot. It
/// becomes held (`lap(pos) | SKIP`): senders move the tail past `pos` (nobody sends there) and
/// receivers the head; the receiver, when it runs again, still has the item it claimed (nobody
/// writes a held slot), and its free leaves a stale free that the next participant to meet
/// the slot moves on. `true` if this call routed it.
pub(crate) fn route_stalled_recv(q: &QueueRing<'_>, pos: u64) -> bool {
    let Some(prev) = pos.checked_sub(q.g.slot_count) else {
        return false;
    };
    let full = lap(prev, q.mask()) | FULL;
    if pos >= POS_LIMIT || q.head() <= prev {
        return false;
    }
    // ORDERING: Acquire, as every state load.
    let st = load_acquire(q.state(prev));
    if st & !SKIP != full {
        return false;
    }
    // ORDERING: AcqRel: Release pairs with the Acquire state loads of senders and receivers at
    // `pos` (they see it held). A free stored before makes this CAS fail; one stored after
    // overwrites the held word with a stale free.
    let routed = q
        .state(pos)
        .compare_exchange(
            st,
            lap(pos, q.mask()) | SKIP,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok();
    if routed {
        q.words[W_Q_PASSED].fetch_add(1, Ordering::Relaxed);
    }
    routed
}

/// A claim's place in time among the claims of one slot: its position, then a receiver's after
/// a sender's of the same position.
fn order(c: Claim) -> (u64, bool) {
    match c {
        Claim::Send(x) => (x, false),
        Claim::Recv(x) => (x, true),
    }
}

/// What [`route_held`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Tail position `pos` is now dead (routed around the held slot, by this call or another).
    Routed,
    /// The slot's holder is dead: the slot was freed. Counted as a lost item if the holder was
    /// a receiver (it may have read the item; it is never delivered again).
    Freed { lost: bool },
}

/// A sender at tail position `pos` found its slot held (state `st`, [`is_held`]) from an
/// earlier lap: routes around it, so a held slot costs one position a lap and never stops
/// the senders. First, if the holder died after it was passed, the slot is freed instead,
/// under the holder's entry lock.
///
/// The holder is the participant whose claim names the *latest* of this slot's positions up
/// to the held lap: claim words keep naming a completed position until their owner's next
/// claim, so older claims of the slot (a receiver that finished it long ago, idle or dead)
/// may be there too, but nobody names a later position of a held slot (naming one needs it
/// free or full). Of a sender's and a receiver's claim of the same position, the receiver's is
/// the later: an item is sent before it is received, and a passed sender's item is never
/// received where it was. Several entries naming that same latest claim are the holder and
/// losers of its CAS. If none is left (a repair cleared the holder's claim after its death),
/// the holder is dead too.
#[cold]
pub(crate) fn route_held<L: Liveness>(
    q: &QueueRing<'_>,
    live: &L,
    pos: u64,
    st: u64,
    own: usize,
) -> Route {
    let mask = q.mask();
    let held = st & LAP;
    let mut claims = [None; MAX_PRODUCERS];
    let mut latest = None;
    for (i, c) in claims.iter_mut().enumerate() {
        // ORDERING: as in `live_claimant`: a claim stored after its owner released the slot is
        // seen with that release.
        let Some(claim) = Claim::from_word(load_acquire(q.claim_word(i))) else {
            continue;
        };
        let (Claim::Send(x) | Claim::Recv(x)) = claim;
        if i == own || x & mask != pos & mask || lap(x, mask) > held {
            continue;
        }
        *c = Some(claim);
        latest = latest.max(Some(order(claim)));
    }
    let holder = |c: &Option<Claim>| c.is_some_and(|c| Some(order(c)) == latest);
    if !claims
        .iter()
        .enumerate()
        .any(|(i, c)| holder(c) && live.alive(i))
    {
        // The holder is dead (or no claim is left). Its lock (and its losers') orders us after
        // its death; one we cannot take is being repaired by someone else, and we route this
        // time.
        let guards: [Option<L::Guard>; MAX_PRODUCERS] = std::array::from_fn(|i| {
            if holder(&claims[i]) {
                live.lock_dead(i)
            } else {
                None
            }
        });
        let lost = claims
            .iter()
            .any(|c| holder(c) && matches!(c, Some(Claim::Recv(_))));
        if claims
            .iter()
            .zip(&guards)
            .all(|(c, g)| !holder(c) || g.is_some())
        {
            // ORDERING: AcqRel: Release pairs with the Acquire state load of the sender of
            // the lap it frees; exactly one CAS from `st` succeeds.
            if q.state(pos)
                .compare_exchange(
                    st,
                    held + q.g.slot_count,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                if lost {
                    q.words[W_Q_LOST].fetch_add(1, Ordering::Relaxed);
                }
                return Route::Freed { lost };
            }
        }
    }
    // ORDERING: AcqRel: Release pairs with the Acquire state loads at `pos` (it is dead);
    // failure means another sender routed it, or the holder released it: `begin` looks again.
    let _ = q.state(pos).compare_exchange(
        st,
        lap(pos, mask) | SKIP,
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
    Route::Routed
}

/// A participant attaching on entry `index` (whose lock it now holds, so the previous owner is
/// dead) repairs that owner's claim before its own claims overwrite it. On
/// [`Repair::Pending`] the claim must stay: the participant lets the entry go (its lock) and
/// attaches on another one, and a stall repair finishes the job later.
pub(crate) fn repair_entry<L: Liveness>(q: &QueueRing<'_>, live: &L, index: usize) -> Repair {
    repair_locked(q, live, index, index)
}
