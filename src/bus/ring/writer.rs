//! The producer's state machine (docs/design.md §4, §5): claim a sequence, take its slot, write,
//! then commit or abandon; and the repair of a dead producer's claim.
//!
//! Single producer: the writer owns the cursor; `begin` marks the slot odd, `commit` makes it
//! even and advances the cursor. Multi producer: `begin` records `CLAIMING` in the writer's claim
//! word, takes a sequence with `fetch_add` on the cursor, records `seq + 1`, then takes the slot
//! by CAS from an older even version to `2s+1`. A writer is identified only by its full claim
//! word (0 = no claim), never by a tag or index stored in the slot; only the holder of a dead
//! writer's lock repairs its claim.

use super::{
    abandoned_version, busy_version, done_version, version_seq, Liveness, Ring, ABANDONED,
    CLAIMING, DROPPED, SEQ_LIMIT,
};
use crate::segment::header::{ProducerMode, MAX_PRODUCERS, W_CURSOR};
use crate::sync::{fence, AtomicU64, Ordering};

/// How many times a multi-producer writer re-reads a slot still held by a writer a lap behind
/// before asking whether that writer is dead (few under loom, where each is a model step).
const BUSY_SPINS: u32 = if cfg!(loom) { 2 } else { 1024 };
/// Repairs one `begin` may make before it gives up on its slot (each removes a dead writer).
const MAX_REPAIRS: u32 = 4;
/// Sequences a multi-producer `begin` may give up, because a live writer a lap behind holds
/// their slot, before it drops the message: each held slot is one other writer's, so this many
/// re-claims route around every other writer there can be (one under loom, to keep the models
/// small).
const MAX_RECLAIMS: usize = if cfg!(loom) { 1 } else { MAX_PRODUCERS };

/// Why a multi-producer writer could not take its sequence's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TakeFailed {
    /// A later sequence owns the slot: ours is more than a lap old, and the message is dropped.
    Overtaken,
    /// A writer a lap (or more) behind still holds the slot and is alive (or could not be found
    /// or repaired): the slot is never written into; the writer may claim another sequence.
    Held,
}

/// One producer's protocol state.
#[derive(Debug)]
pub(crate) struct Writer {
    mode: ProducerMode,
    /// The producer-table entry this writer holds (its claim word).
    index: usize,
    /// Single producer: the next sequence to publish (the writer owns the cursor).
    next: u64,
    /// Multi producer: this writer took a sequence past [`SEQ_LIMIT`] and takes no more.
    exhausted: bool,
}

impl Writer {
    /// The single producer of a bus whose cursor is `next`.
    pub(crate) fn single(next: u64) -> Self {
        Writer {
            mode: ProducerMode::Single,
            index: 0,
            next,
            exhausted: false,
        }
    }

    /// A multi producer holding producer-table entry `index`, attaching to a bus whose cursor
    /// is `cursor`: past [`SEQ_LIMIT`] it takes no sequence at all, so that only writers that
    /// attached before the limit was reached can take one past it (at most one each).
    pub(crate) fn multi_at(index: usize, cursor: u64) -> Self {
        let mut w = Writer::multi(index);
        w.exhausted = cursor >= SEQ_LIMIT;
        w
    }

    /// A multi producer holding producer-table entry `index`.
    pub(crate) fn multi(index: usize) -> Self {
        debug_assert!(index < MAX_PRODUCERS);
        Writer {
            mode: ProducerMode::Multi,
            index,
            next: 0,
            exhausted: false,
        }
    }

    /// Claims the next sequence and takes its slot (odd version). `None`: a message that must
    /// be dropped: its sequence is at or past [`SEQ_LIMIT`], or (multi producer) its slot
    /// already holds a later sequence; a multi producer's claim word then says so, so that
    /// readers skip it. A multi producer whose slot a live writer a lap behind still holds
    /// gives that sequence up (readers skip it) and claims another, up to [`MAX_RECLAIMS`]
    /// times, then drops the message (docs/design.md §5, "Held slots").
    #[inline]
    pub(crate) fn begin<L: Liveness>(&mut self, ring: &Ring<'_>, live: &L) -> Option<u64> {
        match self.mode {
            ProducerMode::Single => {
                let seq = self.next;
                if seq >= SEQ_LIMIT {
                    return None;
                }
                ring.slot(seq)[0].store(busy_version(seq), Ordering::Relaxed);
                // ORDERING: orders the odd version before the payload stores; pairs with the
                // reader's `fence(Acquire)` before its re-check.
                fence(Ordering::Release);
                Some(seq)
            }
            ProducerMode::Multi => {
                if self.exhausted {
                    return None;
                }
                match self.claim_and_take(ring, live)? {
                    Ok(seq) => Some(seq),
                    Err(TakeFailed::Held) => self.reclaim(ring, live),
                    Err(TakeFailed::Overtaken) => None,
                }
            }
        }
    }

    /// Multi producer, steps 1 to 3 once: `None` past [`SEQ_LIMIT`] (then this writer takes no
    /// more), else the sequence taken or why its slot was not.
    #[inline]
    fn claim_and_take<L: Liveness>(
        &mut self,
        ring: &Ring<'_>,
        live: &L,
    ) -> Option<Result<u64, TakeFailed>> {
        self.announce(ring);
        let seq = self.claim(ring);
        if seq >= SEQ_LIMIT {
            self.exhausted = true;
            self.give_up(ring, seq);
            return None;
        }
        Some(self.take(ring, live, seq).map(|()| seq))
    }

    /// The slot of the sequence just given up is held by a live writer: claims new sequences,
    /// up to [`MAX_RECLAIMS`] times, until one's slot is taken. Out of line, so that the
    /// publish that takes its slot at once compiles as it did without re-claims.
    #[cold]
    #[inline(never)]
    fn reclaim<L: Liveness>(&mut self, ring: &Ring<'_>, live: &L) -> Option<u64> {
        for _ in 0..MAX_RECLAIMS {
            match self.claim_and_take(ring, live)? {
                Ok(seq) => return Some(seq),
                Err(TakeFailed::Held) => continue,
                Err(TakeFailed::Overtaken) => return None,
            }
        }
        None
    }

    /// Multi producer, step 1: the claim word says "taking a sequence number", so that a reader
    /// never skips a sequence whose live claimant has not named it yet.
    #[inline]
    pub(crate) fn announce(&self, ring: &Ring<'_>) {
        // ORDERING (all claim-word stores): Release, so that a reader that loads this word and
        // then fences (Acquire) sees our earlier commits (loom model `mp_dead_writer`).
        ring.claim_word(self.index)
            .store(CLAIMING, Ordering::Release);
    }

    /// Multi producer, step 2: takes the next sequence number and names it in the claim word.
    #[inline]
    pub(crate) fn claim(&self, ring: &Ring<'_>) -> u64 {
        // ORDERING: Release makes our CLAIMING visible to whoever sees the cursor past our
        // sequence (pairs with the Acquire in `Ring::cursor`; RMWs continue the release
        // sequence, so a later producer's fetch_add carries it too).
        let seq = ring.words[W_CURSOR].fetch_add(1, Ordering::Release);
        ring.claim_word(self.index)
            .store(seq.wrapping_add(1), Ordering::Release);
        seq
    }

    /// Multi producer, step 3: takes `seq`'s slot, or records in the claim word that `seq` is
    /// dropped (never written) and says why.
    #[inline]
    pub(crate) fn take<L: Liveness>(
        &self,
        ring: &Ring<'_>,
        live: &L,
        seq: u64,
    ) -> Result<(), TakeFailed> {
        let taken = self.take_slot(ring, live, seq);
        if taken.is_err() {
            self.give_up(ring, seq);
        }
        taken
    }

    /// Records in the claim word that `seq` is dropped (never written), so readers skip it.
    fn give_up(&self, ring: &Ring<'_>, seq: u64) {
        // ORDERING: as every claim-word store (see `announce`).
        ring.claim_word(self.index)
            .store(seq.wrapping_add(1) | DROPPED, Ordering::Release);
    }

    /// Moves `seq`'s slot from an older even version to `2s+1`. Waits a bounded time for a
    /// writer a lap behind; repairs it only if it is dead and we hold its lock.
    fn take_slot<L: Liveness>(
        &self,
        ring: &Ring<'_>,
        live: &L,
        seq: u64,
    ) -> Result<(), TakeFailed> {
        let slot = &ring.slot(seq)[0];
        let mine = busy_version(seq);
        let n = ring.g.slot_count;
        // CAS first, on the likeliest old value (the previous lap's message), which saves the
        // load's coherence transaction; a wrong guess only costs the failed CAS's reload.
        let mut v = if seq.wrapping_sub(ring.first) >= n {
            done_version(seq.wrapping_sub(n))
        } else {
            0
        };
        let (mut spins, mut repairs) = (0, 0);
        loop {
            if v & !ABANDONED >= mine {
                // A later sequence owns the slot: ours is more than a lap old.
                return Err(TakeFailed::Overtaken);
            }
            if v & 1 == 0 {
                // ORDERING: Release on success pairs with the Acquire of readers and of other
                // writers' `find_claimant`: whoever sees our odd version sees our claim word.
                // Acquire on success pairs with the previous occupant's Release commit: its
                // payload stores happen before ours, so none can land after ours and show under
                // our version (loom model `mp_writers_never_tear`).
                match slot.compare_exchange(v, mine, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => {
                        // ORDERING: as in the single-producer `begin`.
                        fence(Ordering::Release);
                        return Ok(());
                    }
                    Err(now) => {
                        v = now;
                        continue;
                    }
                }
            }
            // Odd and older: a writer a lap (or more) behind still holds the slot.
            if spins < BUSY_SPINS {
                spins += 1;
                crate::sync::spin_hint();
                v = slot.load(Ordering::Relaxed);
                continue;
            }
            if repairs == MAX_REPAIRS {
                return Err(TakeFailed::Held);
            }
            repairs += 1;
            spins = 0;
            let repaired = repair_holder(ring, live, v);
            let now = slot.load(Ordering::Relaxed);
            // Unless we repaired it, or someone else did meanwhile (the slot moved on), the
            // holder is alive (or unknown): give up rather than wait on it.
            if !repaired && now == v {
                return Err(TakeFailed::Held);
            }
            v = now;
        }
    }

    /// Stores `bytes` and their length into `seq`'s slot, which this writer holds.
    #[inline]
    pub(crate) fn write_bytes(&self, ring: &Ring<'_>, seq: u64, bytes: &[u8]) {
        debug_assert!(bytes.len() <= ring.g.capacity);
        let slot = ring.slot(seq);
        slot[1].store(bytes.len() as u64, Ordering::Relaxed);
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

    /// Stores the length word of `seq`'s slot, which this writer holds.
    #[inline]
    pub(crate) fn store_len(&self, ring: &Ring<'_>, seq: u64, len: usize) {
        ring.slot(seq)[1].store(len as u64, Ordering::Relaxed);
    }

    /// Payload word `i` of `seq`'s slot, which this writer holds (for in-place writes).
    #[inline]
    pub(crate) fn payload_word<'r>(&self, ring: &Ring<'r>, seq: u64, i: usize) -> &'r AtomicU64 {
        &ring.slot(seq)[2 + i]
    }

    /// Publishes `seq` (version `2s+2`); a single producer also advances the cursor.
    #[inline]
    pub(crate) fn commit(&mut self, ring: &Ring<'_>, seq: u64) {
        self.finish(ring, seq, done_version(seq));
    }

    /// Gives `seq` up (its fill panicked): readers count it lost and never deliver it.
    pub(crate) fn abandon(&mut self, ring: &Ring<'_>, seq: u64) {
        self.finish(ring, seq, abandoned_version(seq));
    }

    #[inline]
    fn finish(&mut self, ring: &Ring<'_>, seq: u64, version: u64) {
        // A plain store, also with several producers: a live writer's slot is never taken over,
        // repaired or abandoned by anyone else, so it is still ours.
        // ORDERING: Release pairs with the reader's Acquire load of the version in `Ring::read`.
        ring.slot(seq)[0].store(version, Ordering::Release);
        if self.mode == ProducerMode::Single {
            self.next = seq.wrapping_add(1);
            // ORDERING: Release so that a reader resyncing from the cursor finds the slots
            // behind it written; pairs with the Acquire in `Ring::cursor`.
            ring.words[W_CURSOR].store(self.next, Ordering::Release);
        }
    }
}

/// The producer whose claim word names the sequence `seq` (not given up): the writer of a slot
/// whose version is `2*seq + 1`, or the claimant of a sequence not written yet.
pub(super) fn find_claimant(ring: &Ring<'_>, seq: u64) -> Option<usize> {
    let want = seq.wrapping_add(1);
    // 0 is "no claim", never a name (a forged sequence of u64::MAX would make `want` 0).
    (want != 0)
        .then(|| (0..MAX_PRODUCERS).find(|&i| ring.claim_word(i).load(Ordering::Relaxed) == want))
        .flatten()
}

/// A slot is held (odd `v`) by a writer a lap behind: if that writer is dead and we can take
/// its lock, repair its claim. Returns whether the slot may have been freed.
#[cold]
fn repair_holder<L: Liveness>(ring: &Ring<'_>, live: &L, v: u64) -> bool {
    // ORDERING: pairs with the holder's Release take CAS (we loaded its odd version before):
    // its claim word, stored before that CAS, is visible to the scan.
    fence(Ordering::Acquire);
    let Some(w) = find_claimant(ring, version_seq(v)) else {
        return false;
    };
    match live.lock_dead(w) {
        Some(_guard) => {
            repair_claim(ring, w);
            true
        }
        None => false,
    }
}

/// Repairs the claim of producer `index`, whose lock the caller holds and whose process is dead
/// (docs/design.md §5, "Repair"): a sequence it claimed and did not publish is abandoned (from
/// the odd version it left, or from the older version of a slot it never took), then the claim
/// word is cleared. Returns the sequence abandoned, if any.
pub(crate) fn repair_claim(ring: &Ring<'_>, index: usize) -> Option<u64> {
    let claim = ring.claim_word(index);
    // The dead writer's stores are visible: the kernel's lock orders our taking the lock after
    // its death.
    let c = claim.load(Ordering::Relaxed);
    let repaired = if c == 0 || c == CLAIMING || c & DROPPED != 0 {
        None
    } else {
        let seq = c - 1;
        abandon_unwritten(ring, seq).then_some(seq)
    };
    // ORDERING: Release, like every claim-word store (see `Writer::begin`).
    claim.store(0, Ordering::Release);
    repaired
}

/// Marks `seq` abandoned if its slot is still odd with it, or still holds an older sequence and
/// is not held by anyone (so its claimant never took it). Only a dead claimant's repairer calls
/// this, so no live writer of `seq` exists.
fn abandon_unwritten(ring: &Ring<'_>, seq: u64) -> bool {
    let slot = &ring.slot(seq)[0];
    let mut v = slot.load(Ordering::Relaxed);
    loop {
        let untaken = v & 1 == 0 && v & !ABANDONED < done_version(seq);
        if v != busy_version(seq) && !untaken {
            // Written, abandoned already, taken by a later sequence, or held by another (older)
            // writer who may be alive: not ours to touch.
            return false;
        }
        // ORDERING: Release pairs with readers' Acquire version loads (they then see an
        // abandoned sequence, never a payload); Acquire as in `take`.
        match slot.compare_exchange(
            v,
            abandoned_version(seq),
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
}

/// Single producer, on attach with the exclusive producer lock (so every other writer is dead):
/// abandons a slot left odd by a dead producer, and moves the cursor past a sequence it
/// published (or we abandoned) but did not count. Returns how many slots were abandoned.
pub(crate) fn repair_single(ring: &Ring<'_>) -> u64 {
    let mut repaired = 0;
    for i in 0..ring.g.slot_count {
        let v = ring.version(i);
        if v & 1 == 1 {
            let slot = &ring.slot(i)[0];
            // ORDERING: as in `abandon_unwritten`.
            if slot
                .compare_exchange(
                    v,
                    abandoned_version(version_seq(v)),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                repaired += 1;
            }
        }
    }
    let c = ring.cursor();
    let v = ring.version(c);
    if v == done_version(c) || v == abandoned_version(c) {
        // ORDERING: as the cursor store in `Writer::finish`.
        ring.words[W_CURSOR].store(c.wrapping_add(1), Ordering::Release);
    }
    repaired
}
