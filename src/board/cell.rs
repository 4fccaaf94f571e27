//! The board protocol (docs/design.md §12): a vector of cells, each a double-buffered seqlock
//! with its own state word, written by [`CellWriter`]s (any number per cell, taking the cell
//! with a CAS) and read by [`read`].
//!
//! A cell's **state word** packs, from the low bit up:
//!
//! * bit 0, `BUSY`: a writer holds the cell and is writing the copy that is *not* current;
//! * bit 1, `CUR`: which of the two copies holds the current value;
//! * bits 2..8, holder: the producer-table index + 1 of the writer holding the cell (0 when
//!   free), the writer's full identity (its entry lock says whether it lives);
//! * bits 8..64, seq: how many updates were committed (the value's version; 0 = never set).
//!
//! Transitions, each by one party:
//!
//! | transition | by | state word |
//! |---|---|---|
//! | take | a writer, CAS (AcqRel) | `(s, c, free)` → `(s, c, busy, holder h)` |
//! | commit | the holder, store (Release) | → `(s + 1, 1 − c, free)` |
//! | give back | the holder (its fill panicked), store (Release) | → `(s, c, free)` |
//! | repair | whoever holds dead `h`'s entry lock, CAS (AcqRel) | `(s, c, busy, h)` → `(s, c, free)` |
//!
//! The writer of update `s + 1` writes copy `1 − c` only, so copy `c` (the value of update `s`)
//! stays intact and readable the whole time, also when the writer dies mid-update: the repair
//! only clears `BUSY`, and the previous value is current again, under the same version.
//!
//! A reader copies copy `c` and accepts it if `seq` did not change meanwhile. Copy `c` is
//! written again only by the writer of update `s + 2`, which takes the cell after commit
//! `s + 1` raised `seq`; `seq` never goes back, so an unchanged `seq` proves the copy untouched
//! (no ABA: take, give back and repair keep `seq`, and never write copy `c`). The ordering
//! argument is the seqlock's (Boehm 2012), as on the bus (docs/design.md §3):
//!
//! * writer: take CAS; `fence(Release)`; copy words (Relaxed); commit store (Release);
//! * reader: `w1 = state` (Acquire); copy words (Relaxed); `fence(Acquire)`; `w2 = state`
//!   (Relaxed); accept iff `seq(w1) == seq(w2)`.
//!
//! `w1` reads commit `s` or a take/repair CAS after it (an RMW, so in commit `s`'s release
//! sequence): the copy sees at least update `s`'s words. If it saw a word of update `s + 2`'s
//! writer, that store follows the writer's `fence(Release)`, so the reader's `fence(Acquire)`
//! makes the writer's take, which follows commit `s + 1`, visible to `w2`: `seq(w2) > s`.

use crate::bus::ring::Liveness;
use crate::segment::header::{MAX_PRODUCERS, PE_CLAIM, PRODUCER_ENTRY_WORDS, W_PRODUCERS, W_SLOTS};
use std::time::{Duration, Instant};

use crate::sync::{fence, load_acquire, spin_hint, AtomicU64, Ordering};

/// The state word's busy bit.
pub(crate) const BUSY: u64 = 1;
/// The state word's current-copy bit.
pub(crate) const CUR: u64 = 1 << 1;
const HOLDER_SHIFT: u32 = 2;
const HOLDER_MASK: u64 = 0x3f << HOLDER_SHIFT;
const SEQ_SHIFT: u32 = 8;
/// The largest version a state word carries (56 bits): a cell at it takes no update.
pub(crate) const SEQ_MAX: u64 = u64::MAX >> SEQ_SHIFT;

/// Words of a copy before its value: the stamp, then the length.
pub(crate) const COPY_HEADER_WORDS: usize = 2;
/// Bytes of a cell's key block: a length word, then up to [`KEY_MAX`] bytes of UTF-8.
pub(crate) const KEY_BLOCK_BYTES: usize = 64;
/// Longest key name, in bytes.
pub const KEY_MAX: usize = KEY_BLOCK_BYTES - 8;

/// Cells up to this many words (4 lines: values up to 104 bytes without keys) are prefetched
/// whole by a read ([`Cells::prefetch`]).
#[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
const PREFETCH_MAX_WORDS: usize = 32;

/// How many copies a reader attempts before it reports the cell busy.
#[cfg(not(loom))]
pub(crate) const READ_ATTEMPTS: u32 = 64;
#[cfg(loom)]
pub(crate) const READ_ATTEMPTS: u32 = 2;
/// Re-reads of a held cell between two looks at its holder's liveness.
#[cfg(not(loom))]
const SPINS_PER_ROUND: u32 = 1024;
#[cfg(loom)]
const SPINS_PER_ROUND: u32 = 1;
/// Looks at a live holder before a writer gives up with "held".
#[cfg(not(loom))]
const HELD_ROUNDS: u32 = 256;
#[cfg(loom)]
const HELD_ROUNDS: u32 = 2;

/// The version (committed updates) a state word carries.
#[inline]
pub(crate) fn seq_of(w: u64) -> u64 {
    w >> SEQ_SHIFT
}

/// The producer-table index of the writer holding a cell, if the word names one. The field has
/// room for 63 entries, the table for [`MAX_PRODUCERS`]: a caller that indexes the table with
/// it checks the bound first (only a forged or corrupt word names an entry beyond it).
#[inline]
pub(crate) fn holder_of(w: u64) -> Option<usize> {
    match ((w & HOLDER_MASK) >> HOLDER_SHIFT) as usize {
        0 => None,
        h => Some(h - 1),
    }
}

/// The word with the cell given back: not busy, no holder; version and current copy unchanged.
#[inline]
fn released(w: u64) -> u64 {
    w & !(BUSY | HOLDER_MASK)
}

/// The bytes a cell occupies for values of `capacity` bytes, with or without a key block:
/// the state word and two copies, rounded up to whole cache lines, then the key block.
pub(crate) fn stride_bytes(capacity: usize, keyed: bool) -> Option<u64> {
    let copy = copy_words(capacity)?;
    let core = 8u64
        .checked_add((copy as u64).checked_mul(16)?)?
        .checked_next_multiple_of(64)?;
    core.checked_add(if keyed { KEY_BLOCK_BYTES as u64 } else { 0 })
}

fn copy_words(capacity: usize) -> Option<usize> {
    capacity.div_ceil(8).checked_add(COPY_HEADER_WORDS)
}

/// A view of a board's cells over the segment's words, with the validated shape. Cheap to make;
/// never re-reads the shape from shared memory.
#[derive(Clone, Copy)]
pub(crate) struct Cells<'a> {
    words: &'a [AtomicU64],
    count: usize,
    stride_words: usize,
    capacity: usize,
    copy_words: usize,
    /// Word offset of the key block inside a cell, if the board has keys.
    key_at: Option<usize>,
}

/// A copy of one cell's value, as [`read`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// The value of update `version`, `len` bytes now in the buffer, stamped `stamp`.
    Value {
        version: u64,
        len: usize,
        stamp: u64,
    },
    /// Never set.
    Empty,
    /// The cell changed during every attempt.
    Busy,
    /// A length beyond the value size: only a corrupt or hostile segment holds one.
    Corrupt { len: u64 },
}

impl<'a> Cells<'a> {
    /// `words` is the whole segment; `count` cells of `stride_words` words start after the
    /// header. The caller has checked that they fit (`Board` open and create).
    #[inline]
    pub(crate) fn new(
        words: &'a [AtomicU64],
        count: usize,
        stride_words: usize,
        capacity: usize,
        keyed: bool,
    ) -> Self {
        // A validated capacity is below `CAPACITY_LIMIT`: no overflow (checked by `stride_bytes`
        // at create and open, which made the stride).
        let copy_words = capacity.div_ceil(8) + COPY_HEADER_WORDS;
        let key_at = keyed.then(|| stride_words - KEY_BLOCK_BYTES / 8);
        debug_assert!(words.len() >= W_SLOTS + count * stride_words);
        debug_assert!(
            2 * copy_words < key_at.unwrap_or(stride_words),
            "copies overlap the keys"
        );
        Cells {
            words,
            count,
            stride_words,
            capacity,
            copy_words,
            key_at,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Words of value a copy holds.
    pub(crate) fn value_words(&self) -> usize {
        self.copy_words - COPY_HEADER_WORDS
    }

    /// Cell `i`'s words (`i < count`, checked by every caller).
    #[inline]
    fn cell(&self, i: usize) -> &'a [AtomicU64] {
        let base = W_SLOTS + i * self.stride_words;
        &self.words[base..base + self.stride_words]
    }

    /// Copy `which` (0 or 1) of cell `i`: stamp, length, value words.
    #[inline]
    fn copy(&self, i: usize, which: u64) -> &'a [AtomicU64] {
        let at = 1 + which as usize * self.copy_words;
        &self.cell(i)[at..at + self.copy_words]
    }

    /// Asks for every line of a small cell (both copies) at once, before the state word says
    /// which copy to read: when a writer on another core has just updated the cell, the misses
    /// on the state word and on the current copy then overlap instead of following each other
    /// (the copy's address depends on the state word). A hint only: no load, nothing ordered.
    #[inline(always)]
    fn prefetch(&self, i: usize) {
        #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
        if self.stride_words <= PREFETCH_MAX_WORDS {
            let cell = self.cell(i);
            for line in cell.iter().step_by(8) {
                // SAFETY: `prefetch` needs SSE, part of every x86-64 target; it is a hint that
                // reads nothing into the program and never faults, and `line` is a word of this
                // cell (docs/design.md §12, "Readers"), so no memory is accessed outside it.
                unsafe {
                    core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                        line.as_ptr().cast::<i8>().cast_const(),
                    );
                }
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(loom), not(miri))))]
        let _ = i;
    }

    /// Cell `i`'s state word.
    #[inline]
    pub(crate) fn state(&self, i: usize) -> &'a AtomicU64 {
        &self.cell(i)[0]
    }

    /// The version of cell `i` (updates committed so far).
    #[inline]
    pub(crate) fn version(&self, i: usize) -> u64 {
        // ORDERING: Acquire pairs with the commit's Release store, so that a caller who sees a
        // new version and then reads the cell finds at least that update.
        seq_of(load_acquire(self.state(i)))
    }

    /// Producer `index`'s claim word: `i + 1` names the cell it last took or is about to take.
    pub(crate) fn claim_word(&self, index: usize) -> &'a AtomicU64 {
        &self.words[W_PRODUCERS + index * PRODUCER_ENTRY_WORDS + PE_CLAIM]
    }

    /// Cell `i`'s key name bytes (empty without keys). Keys are written once, before the
    /// board is published (docs/design.md §12); the length is clamped.
    pub(crate) fn key(&self, i: usize) -> Vec<u8> {
        let Some(at) = self.key_at else {
            return Vec::new();
        };
        let block = &self.cell(i)[at..at + KEY_BLOCK_BYTES / 8];
        let len = (block[0].load(Ordering::Relaxed) as usize).min(KEY_MAX);
        let mut out: Vec<u8> = block[1..]
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        out.truncate(len);
        out
    }

    /// Stores cell `i`'s key name (creation only, before the board is published).
    pub(crate) fn set_key(&self, i: usize, key: &[u8]) {
        let Some(at) = self.key_at else { return };
        let block = &self.cell(i)[at..at + KEY_BLOCK_BYTES / 8];
        let key = &key[..key.len().min(KEY_MAX)];
        for (w, chunk) in block[1..].iter().zip(key.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        block[0].store(key.len() as u64, Ordering::Relaxed);
    }
}

/// Copies the current value of cell `i` (`i < count`) into `buf` (at least `value_words()`
/// long): never torn, retried at most [`READ_ATTEMPTS`] times while updates land during the copy.
#[inline(always)]
pub(crate) fn read(cells: &Cells<'_>, i: usize, buf: &mut [u64]) -> ReadOutcome {
    let state = cells.state(i);
    let copies = [cells.copy(i, 0), cells.copy(i, 1)];
    cells.prefetch(i);
    for _ in 0..READ_ATTEMPTS {
        // ORDERING: Acquire pairs with the commit's Release store (and, through the release
        // sequence, with take and repair CASes after it): the copy sees the committed update.
        let w1 = load_acquire(state);
        let seq = seq_of(w1);
        if seq == 0 {
            return ReadOutcome::Empty;
        }
        // A branch, not an address computed from `w1`: the predicted copy's loads start
        // before `w1` arrives (a mispredicted branch is undone, a data dependency would wait).
        let (stamp, len) = if w1 & CUR == 0 {
            copy_out(copies[0], cells.capacity, buf)
        } else {
            copy_out(copies[1], cells.capacity, buf)
        };
        // ORDERING: pairs with the `fence(Release)` after a writer's take: if the copy saw any
        // store of a later writer of this copy, `w2` sees that writer's take, hence a later seq.
        fence(Ordering::Acquire);
        let w2 = state.load(Ordering::Relaxed);
        if seq_of(w2) == seq && (w2 & CUR) == (w1 & CUR) {
            if len > cells.capacity as u64 {
                return ReadOutcome::Corrupt { len };
            }
            return ReadOutcome::Value {
                version: seq,
                len: len as usize,
                stamp,
            };
        }
        spin_hint();
    }
    ReadOutcome::Busy
}

/// Copies one copy's value into `buf` (Relaxed loads); its stamp and length as found.
#[inline(always)]
fn copy_out(copy: &[AtomicU64], capacity: usize, buf: &mut [u64]) -> (u64, u64) {
    let stamp = copy[0].load(Ordering::Relaxed);
    // Read once and clamped before use: a forged length cannot take the copy out of the cell.
    let len = copy[1].load(Ordering::Relaxed);
    let n = (len.min(capacity as u64) as usize).div_ceil(8);
    for (dst, src) in buf[..n].iter_mut().zip(&copy[COPY_HEADER_WORDS..]) {
        *dst = src.load(Ordering::Relaxed);
    }
    (stamp, len)
}

/// A cell this writer holds: its state word, the copy being written, and the word to commit
/// or give back with. Its methods are the holder's stores, one each (docs/design.md §12).
#[derive(Debug)]
pub(crate) struct Taken<'a> {
    state: &'a AtomicU64,
    /// The copy being written (the one not current): stamp, length, value words.
    words: &'a [AtomicU64],
    /// The state word the take replaced, as given back: free, no holder.
    before: u64,
    /// Which copy `words` is (0 or 1).
    copy: u64,
}

/// Why a take failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TakeError {
    /// A live writer (entry `holder`, if the word names one) kept the cell past the bound.
    /// `held_for` is a lower bound of how long: since this writer first saw the same busy word
    /// (same holder, same version), possibly in an earlier call (docs/design.md §12, "Stopped
    /// holders").
    Held {
        holder: Option<usize>,
        held_for: Duration,
    },
    /// The cell's version is at [`SEQ_MAX`]: a commit would wrap it to 0 ("never set"). Only a
    /// forged or corrupt state word holds it (2^56 updates).
    VersionLimit,
}

/// How a board's writers share its cells, fixed when the board is created (docs/design.md §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Writers {
    /// Up to 32 writers at once; an update takes its cell with a CAS.
    Many,
    /// One writer at a time (the segment's exclusive producer gate): an update takes its cell
    /// with a plain store, as a seqlock's writer does.
    One,
}

/// A busy word a waiting writer saw, and since when (its first look at a round's end), kept
/// across calls so that a caller retrying on `CellHeld` sees the hold grow.
#[derive(Clone, Copy, Debug)]
struct HeldSince {
    cell: usize,
    word: u64,
    since: Instant,
}

/// One writer's protocol state: its producer-table entry and the claim word it last stored.
#[derive(Debug)]
pub(crate) struct CellWriter {
    index: usize,
    writers: Writers,
    /// Our busy word's holder field and busy bit.
    mine: u64,
    /// The value of our claim word as we last stored it (a store saved when unchanged).
    claimed: u64,
    /// Cells of a one-writer board found busy (a dead predecessor's update) and taken over.
    repairs: u64,
    /// The hold this writer last waited on, if it is still waiting for it.
    held: Option<HeldSince>,
}

impl CellWriter {
    /// A writer on producer-table entry `index`, which it holds (its lock) and, on a board of
    /// many writers, has repaired ([`repair_entry`]) before writing anything.
    pub(crate) fn new(index: usize, writers: Writers) -> Self {
        CellWriter {
            index,
            writers,
            mine: (index as u64 + 1) << HOLDER_SHIFT | BUSY,
            claimed: u64::MAX,
            repairs: 0,
            held: None,
        }
    }

    /// Cells this writer took over from a dead predecessor on a one-writer board.
    pub(crate) fn repairs(&self) -> u64 {
        self.repairs
    }

    /// Takes cell `i` (`i < count`). With many writers: announces it in the claim word, then
    /// CASes the state word from free to busy under our identity; a cell held by a dead writer
    /// is repaired first (through its entry lock), one held by a live writer is waited for, a
    /// bounded time. With one writer: a store.
    #[inline]
    pub(crate) fn take<'a, L: Liveness>(
        &mut self,
        cells: &Cells<'a>,
        live: &L,
        i: usize,
    ) -> Result<Taken<'a>, TakeError> {
        match self.writers {
            Writers::One => self.take_sole(cells, i),
            Writers::Many => self.take_shared(cells, live, i),
        }
    }

    /// The sole writer's take: the seqlock writer's "odd version" store.
    #[inline(always)]
    pub(crate) fn take_sole<'a>(
        &mut self,
        cells: &Cells<'a>,
        i: usize,
    ) -> Result<Taken<'a>, TakeError> {
        let state = cells.state(i);
        // ORDERING: Relaxed. The word's last store is our own (program order) or a dead
        // predecessor's, which the exclusive gate's kernel lock orders before our attach.
        let mut w = state.load(Ordering::Relaxed);
        if w & BUSY != 0 || seq_of(w) == SEQ_MAX {
            w = self.take_sole_slow(w)?;
        }
        Ok(self.store_take(cells, i, w))
    }

    /// A sole writer finds the cell busy or at the version limit: the free word to take it
    /// from, or why not.
    #[cold]
    fn take_sole_slow(&mut self, w: u64) -> Result<u64, TakeError> {
        if seq_of(w) == SEQ_MAX {
            return Err(TakeError::VersionLimit);
        }
        // Busy on a board of one writer, and we are it (we hold the exclusive gate): the
        // previous writer died mid-update, or a forger wrote the word. Its update never counts:
        // the current copy is untouched (a take never writes it), and we fill the other copy
        // again over its partial one, under the same version (docs/design.md §12, "One writer").
        self.repairs += 1;
        Ok(released(w))
    }

    /// A sole writer's take of free word `w`.
    #[inline(always)]
    fn store_take<'a>(&self, cells: &Cells<'a>, i: usize, w: u64) -> Taken<'a> {
        let state = cells.state(i);
        // ORDERING: Release pairs with the reader's Acquire load of `w1`. This busy word is a
        // plain store, not an RMW, so it does not continue the previous commit's release
        // sequence: its own Release gives a reader that loads it the update it keeps current.
        state.store(w | self.mine, Ordering::Release);
        // ORDERING: pairs with the reader's `fence(Acquire)`: a reader whose copy sees any of
        // our value stores sees this take (a later word) in its `w2`.
        fence(Ordering::Release);
        Taken::new(cells, i, w)
    }

    /// One of many writers' take: claim, CAS, and the bounded wait for a live holder.
    pub(crate) fn take_shared<'a, L: Liveness>(
        &mut self,
        cells: &Cells<'a>,
        live: &L,
        i: usize,
    ) -> Result<Taken<'a>, TakeError> {
        let claim = i as u64 + 1;
        if self.claimed != claim {
            // ORDERING: Relaxed; the take CAS below (Release) publishes it: whoever sees our
            // busy word sees the claim that names the cell (a repairer after our death).
            cells.claim_word(self.index).store(claim, Ordering::Relaxed);
            self.claimed = claim;
        }
        let state = cells.state(i);
        let mut w = state.load(Ordering::Relaxed);
        let mut spins = 0u32;
        let mut rounds = 0u32;
        loop {
            if w & BUSY == 0 {
                if seq_of(w) == SEQ_MAX {
                    return Err(TakeError::VersionLimit);
                }
                // ORDERING: AcqRel. Acquire pairs with the previous commit (Release): our copy
                // stores come after the stores of the update that wrote this copy before.
                // Release publishes our claim word to whoever sees the busy word.
                match state.compare_exchange(
                    w,
                    released(w) | self.mine,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // ORDERING: pairs with the reader's `fence(Acquire)`: a reader whose
                        // copy sees any of our value stores sees this take in its `w2`.
                        fence(Ordering::Release);
                        return Ok(Taken::new(cells, i, released(w)));
                    }
                    Err(now) => {
                        w = now;
                        continue;
                    }
                }
            }
            if self.held.is_some_and(|h| (h.cell, h.word) != (i, w)) {
                // Another hold than the one we timed: its time starts again.
                self.held = None;
            }
            spins += 1;
            if spins >= SPINS_PER_ROUND {
                spins = 0;
                rounds += 1;
                let repaired = match holder_of(w) {
                    None => {
                        // Busy without a holder: no take stores that (a forged or corrupt
                        // word), so no writer holds the cell; nobody's lock names it, so nobody
                        // else repairs it: give the cell back. The current copy is untouched.
                        // ORDERING: AcqRel, as a repair.
                        state
                            .compare_exchange(w, released(w), Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                    }
                    Some(h) if h >= MAX_PRODUCERS => {
                        // No entry of the table: no writer ever stores this holder, so no
                        // writer holds the cell (a forged or corrupt word). Nobody's lock can
                        // be taken for it, so nobody else repairs it: give the cell back.
                        // The current copy is untouched (a take never writes it).
                        // ORDERING: AcqRel, as a repair.
                        state
                            .compare_exchange(w, released(w), Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                    }
                    Some(h) if h == self.index => {
                        // Our own entry holds it: a predecessor on this entry died holding a
                        // cell its claim did not name (only a forged word does that). We hold
                        // the entry's lock, so the holder is dead: give the cell back.
                        // ORDERING: AcqRel, as a repair.
                        state
                            .compare_exchange(w, released(w), Ordering::AcqRel, Ordering::Relaxed)
                            .is_ok()
                    }
                    Some(h) if !live.alive(h) => live
                        .lock_dead(h)
                        .is_some_and(|_guard| repair_cell(cells, h, i, w)),
                    Some(_) => false,
                };
                if !repaired {
                    // The clock is read here only, a round (1024 looks) into a wait: never on
                    // an update that finds its cell free.
                    let held = *self.held.get_or_insert(HeldSince {
                        cell: i,
                        word: w,
                        since: Instant::now(),
                    });
                    if rounds >= HELD_ROUNDS {
                        return Err(TakeError::Held {
                            holder: holder_of(w),
                            held_for: held.since.elapsed(),
                        });
                    }
                }
                #[cfg(not(loom))]
                if rounds > 1 {
                    std::thread::yield_now();
                }
            }
            spin_hint();
            w = state.load(Ordering::Relaxed);
        }
    }
}

impl<'a> Taken<'a> {
    /// Cell `i`, taken from free word `before`: the copy to write is the one not current.
    #[inline(always)]
    fn new(cells: &Cells<'a>, i: usize, before: u64) -> Self {
        let copy = ((before & CUR) >> 1) ^ 1;
        Taken {
            state: cells.state(i),
            words: cells.copy(i, copy),
            before,
            copy,
        }
    }

    /// Writes `words` of value into the copy, from word `at`.
    #[inline]
    pub(crate) fn write_words(&self, at: usize, words: &[u64]) {
        for (dst, &src) in self.words[COPY_HEADER_WORDS + at..].iter().zip(words) {
            dst.store(src, Ordering::Relaxed);
        }
    }

    /// Writes a whole value, `bytes` (at most the value size), into the copy: its whole words,
    /// then the last partial word with its unused bytes zero.
    #[inline(always)]
    pub(crate) fn write_bytes(&self, bytes: &[u8]) {
        let value = &self.words[COPY_HEADER_WORDS..];
        let whole = bytes.len() / 8;
        let (head, rest) = bytes.split_at(whole * 8);
        // The caller checked the length against the value size: `whole` words fit.
        for (dst, chunk) in value[..whole].iter().zip(head.chunks_exact(8)) {
            let word = u64::from_ne_bytes(chunk.try_into().expect("chunks of 8 bytes"));
            dst.store(word, Ordering::Relaxed);
        }
        if let (false, Some(dst)) = (rest.is_empty(), value.get(whole)) {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            dst.store(u64::from_ne_bytes(last), Ordering::Relaxed);
        }
    }

    /// Writes the copy's stamp (a copy word like the value's).
    #[inline(always)]
    pub(crate) fn write_stamp(&self, stamp: u64) {
        self.words[0].store(stamp, Ordering::Relaxed);
    }

    /// Writes the copy's length (a copy word like the value's).
    #[inline(always)]
    pub(crate) fn write_len(&self, len: usize) {
        self.words[1].store(len as u64, Ordering::Relaxed);
    }

    /// Makes the copy current, its version one more, and frees the cell. Returns the version.
    #[inline(always)]
    pub(crate) fn publish(self) -> u64 {
        let version = seq_of(self.before) + 1;
        // ORDERING: Release pairs with the reader's Acquire load of the state word: a reader
        // that sees this version sees the copy written before. A plain store: nobody else
        // changes a live holder's cell (a repair needs its entry lock, held while it lives).
        self.state
            .store(version << SEQ_SHIFT | self.copy << 1, Ordering::Release);
        version
    }

    /// Commits the cell with a value of `len` bytes stamped `stamp`: the new value is
    /// current, its version one more. Returns the version.
    #[inline(always)]
    pub(crate) fn commit(self, len: usize, stamp: u64) -> u64 {
        self.write_stamp(stamp);
        self.write_len(len);
        self.publish()
    }

    /// Gives the cell back unchanged (the fill gave up or panicked): the previous value stays
    /// current under its version.
    pub(crate) fn give_back(self) {
        // ORDERING: Release, as a commit: the next taker's Acquire CAS orders its stores
        // after our partial ones to the same copy.
        self.state.store(self.before, Ordering::Release);
    }
}

/// Repairs dead producer `h`'s hold on cell `i` whose state word was seen as `w`: the caller
/// holds `h`'s entry lock (so `h` is dead and nobody else repairs it). Returns whether it
/// gave the cell back.
fn repair_cell(cells: &Cells<'_>, h: usize, i: usize, w: u64) -> bool {
    // ORDERING: AcqRel. Acquire: we see the dead writer's stores (its partial copy is never
    // current, but the next taker's stores must follow them). Release: continues the release
    // sequence of the commit that made the current value, for readers that load this word.
    let done = cells
        .state(i)
        .compare_exchange(w, released(w), Ordering::AcqRel, Ordering::Relaxed)
        .is_ok();
    let claim = cells.claim_word(h);
    if claim.load(Ordering::Relaxed) == i as u64 + 1 {
        claim.store(0, Ordering::Relaxed);
    }
    done
}

/// Repairs whatever the dead previous owner of entry `h` left held: the cell its claim word
/// names, if that cell is still busy under `h`. The caller holds `h`'s entry lock (a new writer
/// attaching on it, or a writer that took a dead holder's lock). Returns whether a cell was
/// given back.
pub(crate) fn repair_entry(cells: &Cells<'_>, h: usize) -> bool {
    // ORDERING: Acquire pairs with nothing in particular (the entry lock orders us after the
    // death); it keeps the state load below after the claim load.
    let claim = load_acquire(cells.claim_word(h));
    let Some(i) = claim.checked_sub(1).map(|c| c as usize) else {
        return false;
    };
    if i >= cells.count {
        // A forged claim: forget it.
        cells.claim_word(h).store(0, Ordering::Relaxed);
        return false;
    }
    let w = load_acquire(cells.state(i));
    if w & BUSY != 0 && holder_of(w) == Some(h) {
        return repair_cell(cells, h, i, w);
    }
    cells.claim_word(h).store(0, Ordering::Relaxed);
    false
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::segment::header::MAX_PRODUCERS;

    struct Live {
        dead: Vec<bool>,
    }

    impl Liveness for Live {
        type Guard = ();
        fn alive(&self, i: usize) -> bool {
            !self.dead[i]
        }
        fn any_alive(&self) -> bool {
            self.dead.iter().any(|d| !d)
        }
        fn lock_dead(&self, i: usize) -> Option<()> {
            self.dead[i].then_some(())
        }
    }

    fn words(cells: usize, capacity: usize, keyed: bool) -> (Vec<AtomicU64>, usize) {
        let stride = stride_bytes(capacity, keyed).unwrap() as usize / 8;
        let w = (0..W_SLOTS + cells * stride)
            .map(|_| AtomicU64::new(0))
            .collect();
        (w, stride)
    }

    fn value(cells: &Cells<'_>, i: usize) -> ReadOutcome {
        let mut buf = vec![0u64; cells.value_words()];
        read(cells, i, &mut buf)
    }

    #[test]
    fn small_values_fit_one_cache_line_and_keys_add_one() {
        assert_eq!(stride_bytes(8, false), Some(64));
        assert_eq!(stride_bytes(16, false), Some(128));
        assert_eq!(stride_bytes(8, true), Some(128));
    }

    #[test]
    fn a_cell_holds_the_latest_value_with_its_version() {
        let (w, stride) = words(3, 16, false);
        let cells = Cells::new(&w, 3, stride, 16, false);
        let live = Live {
            dead: vec![false; MAX_PRODUCERS],
        };
        assert_eq!(value(&cells, 1), ReadOutcome::Empty);
        let mut wr = CellWriter::new(0, Writers::Many);
        for v in 1..=3u64 {
            let t = wr.take(&cells, &live, 1).unwrap();
            t.write_words(0, &[v, v]);
            assert_eq!(t.commit(16, 100 + v), v);
        }
        let mut buf = [0u64; 2];
        assert_eq!(
            read(&cells, 1, &mut buf),
            ReadOutcome::Value {
                version: 3,
                len: 16,
                stamp: 103
            }
        );
        assert_eq!(buf, [3, 3]);
        assert_eq!(value(&cells, 0), ReadOutcome::Empty);
        assert_eq!(cells.version(1), 3);
    }

    #[test]
    fn a_dead_holder_leaves_the_previous_value_and_is_repaired_by_the_next_writer() {
        let (w, stride) = words(2, 8, false);
        let cells = Cells::new(&w, 2, stride, 8, false);
        let mut live = Live {
            dead: vec![false; MAX_PRODUCERS],
        };
        let mut a = CellWriter::new(3, Writers::Many);
        let t = a.take(&cells, &live, 0).unwrap();
        t.write_words(0, &[7]);
        t.commit(8, 1);
        let t = a.take(&cells, &live, 0).unwrap();
        t.write_words(0, &[8]);
        // `a` dies here, holding the cell: it never commits nor gives back `t`.
        let mut buf = [0u64; 1];
        assert!(matches!(
            read(&cells, 0, &mut buf),
            ReadOutcome::Value { version: 1, .. }
        ));
        assert_eq!(buf, [7], "the previous value stays readable");
        let mut b = CellWriter::new(5, Writers::Many);
        assert!(
            matches!(
                b.take(&cells, &live, 0).unwrap_err(),
                TakeError::Held {
                    holder: Some(3),
                    ..
                }
            ),
            "a live holder is never taken over"
        );
        live.dead[3] = true;
        let t = b.take(&cells, &live, 0).unwrap();
        t.write_words(0, &[9]);
        assert_eq!(t.commit(8, 2), 2);
        assert!(matches!(
            read(&cells, 0, &mut buf),
            ReadOutcome::Value { version: 2, .. }
        ));
        assert_eq!(buf, [9]);
        assert_eq!(cells.claim_word(3).load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_new_owner_of_a_dead_entry_repairs_the_cell_its_claim_names() {
        let (w, stride) = words(4, 8, false);
        let cells = Cells::new(&w, 4, stride, 8, false);
        let live = Live {
            dead: vec![false; MAX_PRODUCERS],
        };
        let mut a = CellWriter::new(2, Writers::Many);
        // `a` dies holding cell 3.
        a.take(&cells, &live, 3).unwrap();
        assert!(repair_entry(&cells, 2));
        assert_eq!(cells.state(3).load(Ordering::Relaxed) & BUSY, 0);
        assert!(!repair_entry(&cells, 2), "nothing left to repair");
        // A forged claim beyond the cells is forgotten, not followed.
        cells.claim_word(4).store(1000, Ordering::Relaxed);
        assert!(!repair_entry(&cells, 4));
        assert_eq!(cells.claim_word(4).load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_forged_length_is_reported_not_followed() {
        let (w, stride) = words(1, 8, false);
        let cells = Cells::new(&w, 1, stride, 8, false);
        cells.state(0).store(1 << SEQ_SHIFT, Ordering::Relaxed);
        cells.copy(0, 0)[1].store(u64::MAX, Ordering::Relaxed);
        assert_eq!(value(&cells, 0), ReadOutcome::Corrupt { len: u64::MAX });
    }

    #[test]
    fn keys_round_trip_and_are_clamped() {
        let (w, stride) = words(2, 8, true);
        let cells = Cells::new(&w, 2, stride, 8, true);
        cells.set_key(0, b"alpha");
        cells.set_key(1, &[b'x'; 100]);
        assert_eq!(cells.key(0), b"alpha");
        assert_eq!(cells.key(1).len(), KEY_MAX);
    }
}
