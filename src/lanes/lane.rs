//! The lanes protocol over the segment's words and the lanes' bytes (docs/design.md §17): one
//! single-producer, single-consumer byte ring per lane, and the ready bitmap that lets the
//! consumer find the lanes with something to read in time proportional to their number.
//!
//! A producer writes a record (length word, payload) at its write position, then publishes the
//! new write position with Release; the consumer loads it with Acquire, reads the record in
//! place, and publishes its new read position with Release when it is done; the producer loads
//! that with Acquire before it writes over the bytes. Between the two stores nobody else writes
//! the record's bytes, which is what makes the consumer's in-place `&[u8]` sound.

use super::layout::{
    record_bytes, LanesShape, CLOSED, DIED, FREE, LANE_RECORD_HEADER, L_CONSUMED, L_DROPS,
    L_PUBLISHED, L_READ, L_STATE, L_WRITE, OPEN, SESSION, STATE_MASK, W_READY,
};
use super::mirror::LaneBytes;
use crate::sync::{load_acquire, AtomicU64, Ordering};

/// The words and bytes of a lanes segment.
pub(crate) struct LaneSet<'a, M> {
    pub(crate) words: &'a [AtomicU64],
    pub(crate) shape: LanesShape,
    pub(crate) mem: &'a M,
}

impl<M> Clone for LaneSet<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for LaneSet<'_, M> {}

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The record is queued; `raised`: this publish raised the lane's ready bit (so the consumer
    /// may need waking).
    Queued { raised: bool },
    /// The lane was full: the record was dropped, and the lane has now dropped `drops`.
    Full { drops: u64 },
}

/// A record the consumer found: its payload at `pos`, `len` bytes, and where the next begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peeked {
    pub pos: u64,
    pub len: usize,
    pub end: u64,
}

/// What the consumer found on a lane with nothing to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// A record arrived meanwhile: read again.
    Again,
    /// Empty and open (or free): its ready bit is clear.
    Empty,
    /// Closed (`died`: its producer died) and drained; the lane is free again. The session
    /// dropped `drops` records.
    Closed { drops: u64, died: bool },
}

impl<'a, M: LaneBytes> LaneSet<'a, M> {
    #[inline]
    fn word(&self, lane: u32, field: usize) -> &'a AtomicU64 {
        &self.words[self.shape.word(lane, field)]
    }

    #[inline]
    fn ready_word(&self, lane: u32) -> (&'a AtomicU64, u64) {
        (&self.words[W_READY + lane as usize / 64], 1 << (lane % 64))
    }

    /// Lane `lane`'s state word.
    pub(crate) fn state(&self, lane: u32) -> u64 {
        // ORDERING: Acquire pairs with the Release stores of the state (a producer's open and
        // close, the consumer's free): who sees a state sees what was done before it.
        load_acquire(self.word(lane, L_STATE))
    }

    /// The lane's state word, for the inspector and the sweep.
    pub(crate) fn state_word(&self, lane: u32) -> &'a AtomicU64 {
        self.word(lane, L_STATE)
    }

    pub(crate) fn drops(&self, lane: u32) -> u64 {
        self.word(lane, L_DROPS).load(Ordering::Relaxed)
    }

    /// Whether positions `write` and `read` can be a lane's: 8-aligned, `read <= write`, at
    /// most a lane apart.
    fn consistent(&self, write: u64, read: u64) -> bool {
        write % 8 == 0 && read % 8 == 0 && read <= write && write - read <= self.shape.lane_bytes
    }

    // ---- the producer's side ----

    /// Opens lane `lane` for a producer that holds it (its lock, or on a heap segment its free
    /// state won by `try_claim`): a new session. Fails with the positions' description if they
    /// contradict each other.
    pub(crate) fn open(&self, lane: u32, state: u64, strong: bool) -> Result<Writer, String> {
        // ORDERING: Acquire pairs with the consumer's Release stores of the read position: the
        // consumer's reads of the bytes before it are done.
        let read = load_acquire(self.word(lane, L_READ));
        let write = self.word(lane, L_WRITE).load(Ordering::Relaxed);
        if !self.consistent(write, read) {
            return Err(format!(
                "lane {lane}: write position {write} and read position {read} are inconsistent"
            ));
        }
        self.word(lane, L_DROPS).store(0, Ordering::Relaxed);
        let published = self.word(lane, L_PUBLISHED).load(Ordering::Relaxed);
        let session = (state & !STATE_MASK).wrapping_add(SESSION);
        // ORDERING: Release pairs with the consumer's and the sweep's Acquire loads of the
        // state: they see this session's zeroed drop count.
        self.word(lane, L_STATE)
            .store(session | OPEN, Ordering::Release);
        Ok(Writer {
            lane,
            write,
            read,
            drops: 0,
            published,
            strong,
        })
    }

    /// On a heap segment, where there are no locks: wins lane `lane` if it is free.
    pub(crate) fn try_claim(&self, lane: u32) -> Option<u64> {
        let state = self.state(lane);
        if state & STATE_MASK != FREE {
            return None;
        }
        // ORDERING: AcqRel pairs with the consumer's Release store of FREE (Acquire) and keeps
        // our open after the claim; the claim itself is only a token (`open` stores the state).
        self.word(lane, L_STATE)
            .compare_exchange(state, state | OPEN, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
    }

    /// Raises lane `lane`'s ready bit after a store the consumer must find (a write position or
    /// a close): the producer's side of the barrier pair with [`LaneSet::clear`]. `strong`: a
    /// real fence rather than the light side of the asymmetric pair (§7). Returns whether this
    /// raised it (the consumer may need waking).
    #[inline]
    fn raise(&self, lane: u32, strong: bool) -> bool {
        // ORDERING: the light barrier pairs with the consumer's heavy barrier in `clear`,
        // between its clearing of bits and its second look at their lanes: either that look
        // sees our store, or our load below sees the bit cleared and we raise it again
        // (docs/design.md §17, "The ready bitmap"). Under loom and miri it is a SeqCst fence.
        crate::wait::light_barrier(strong);
        let (word, bit) = self.ready_word(lane);
        if word.load(Ordering::Relaxed) & bit != 0 {
            return false;
        }
        word.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Closes lane `lane` for good (the producer's `close`, `release` and drop): the consumer
    /// reads what is queued, then sees the lane closed, then frees it. Returns whether the
    /// ready bit was raised.
    pub(crate) fn close(&self, w: &Writer) -> bool {
        let state = self.word(w.lane, L_STATE).load(Ordering::Relaxed);
        // ORDERING: Release pairs with the consumer's Acquire load of the state: a consumer
        // that sees the close sees every write position stored before it.
        self.word(w.lane, L_STATE)
            .store((state & !STATE_MASK) | CLOSED, Ordering::Release);
        self.raise(w.lane, w.strong)
    }

    // ---- the consumer's side ----

    /// The next record of lane `lane`, if the producer has published one.
    #[inline]
    pub(crate) fn peek(&self, lane: u32) -> Result<Option<Peeked>, String> {
        self.peek_at(lane, self.word(lane, L_READ).load(Ordering::Relaxed))
    }

    /// The record at position `read` of lane `lane` (the consumer's read position, or the end
    /// of the records of a batch not yet acknowledged), if the producer has published one.
    #[inline]
    pub(crate) fn peek_at(&self, lane: u32, read: u64) -> Result<Option<Peeked>, String> {
        // ORDERING: Acquire pairs with the producer's Release store of the write position in
        // `Writer::publish`: the record's bytes written before it are visible.
        let write = load_acquire(self.word(lane, L_WRITE));
        if write == read {
            return Ok(None);
        }
        self.peek_within(lane, read, write).map(Some)
    }

    /// The record at position `read` of lane `lane`, below a write position `write` that the
    /// caller loaded with Acquire (a batch reads every record below one load of it).
    #[inline]
    pub(crate) fn peek_within(&self, lane: u32, read: u64, write: u64) -> Result<Peeked, String> {
        if write == read || !self.consistent(write, read) {
            return Err(format!(
                "lane {lane}: write position {write} and read position {read} are inconsistent"
            ));
        }
        // SAFETY: the 8 bytes at `read` are below `write` (write - read >= 8: both 8-aligned
        // and different) and at or past our published read position (callers pass it, or the
        // end of records not yet acknowledged), which we do not move while the view lives (it
        // drops at the end of this statement); one word is less than a lane.
        let head = unsafe { self.mem.view(lane, read, LANE_RECORD_HEADER) };
        let word = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = (word & 0xffff_ffff) as usize;
        let need = record_bytes(len);
        if word >> 32 != 0 || need > write - read {
            return Err(format!(
                "lane {lane}: a record at {read} claims {len} bytes, but {} are published",
                write - read
            ));
        }
        Ok(Peeked {
            pos: read + LANE_RECORD_HEADER as u64,
            len,
            end: read + need,
        })
    }

    /// Lane `lane`'s read position (only the consumer stores it).
    #[inline]
    pub(crate) fn read_position(&self, lane: u32) -> u64 {
        self.word(lane, L_READ).load(Ordering::Relaxed)
    }

    /// Lane `lane`'s write position (Acquire: the bytes below it are visible).
    #[inline]
    pub(crate) fn write_position(&self, lane: u32) -> u64 {
        // ORDERING: Acquire pairs with the producer's Release store of the write position in
        // `Writer::publish`.
        load_acquire(self.word(lane, L_WRITE))
    }

    /// The payload of a peeked record.
    ///
    /// # Safety
    ///
    /// `p` came from [`LaneSet::peek`] of `lane` on this set, and no read position past
    /// `p.pos` is published while the view lives.
    #[inline]
    pub(crate) unsafe fn payload(&self, lane: u32, p: &Peeked) -> M::View<'a> {
        // SAFETY: `peek` checked that the record lies below the write position it loaded with
        // Acquire and starts at our read position; the caller keeps the read position.
        unsafe { self.mem.view(lane, p.pos, p.len) }
    }

    /// Releases lane `lane`'s bytes up to `end` (an acknowledgement) after `records` records.
    #[inline]
    pub(crate) fn ack(&self, lane: u32, end: u64, records: u64) {
        let consumed = self.word(lane, L_CONSUMED);
        consumed.store(
            consumed.load(Ordering::Relaxed).wrapping_add(records),
            Ordering::Relaxed,
        );
        // ORDERING: Release pairs with the producer's Acquire load of the read position: our
        // reads of the bytes before `end` happen before its writes over them.
        self.word(lane, L_READ).store(end, Ordering::Release);
    }

    /// Called when lane `lane` had nothing to read: frees it if it is closed and drained, else
    /// says it is empty and leaves its ready bit as it is. The consumer clears the bits of empty
    /// lanes later, several at a time, with [`LaneSet::clear`].
    pub(crate) fn settle(&self, lane: u32) -> Settled {
        let state = self.state(lane);
        if state & STATE_MASK == CLOSED || state & STATE_MASK == CLOSED | DIED {
            // The close was stored after the last write position (Release/Acquire): one more
            // look finds any record published before it.
            let read = self.word(lane, L_READ).load(Ordering::Relaxed);
            // ORDERING: Acquire pairs with the producer's Release store of the write position.
            if load_acquire(self.word(lane, L_WRITE)) != read {
                return Settled::Again;
            }
            let drops = self.drops(lane);
            // No producer can publish on a closed lane, so the bit can be cleared plainly, and
            // before the lane is freed: a new producer then finds it clear and raises it.
            let (word, bit) = self.ready_word(lane);
            word.fetch_and(!bit, Ordering::Relaxed);
            // ORDERING: Release pairs with the Acquire load of the state by a producer that
            // opens the lane (and `try_claim`): it sees our read position and cleared bit.
            self.word(lane, L_STATE)
                .store((state & !STATE_MASK) | FREE, Ordering::Release);
            return Settled::Closed {
                drops,
                died: state & DIED != 0,
            };
        }
        Settled::Empty
    }

    /// Clears the ready bits of `lanes`, which the consumer found empty, runs `heavy` (the
    /// consumer's side of the barrier pair with [`LaneSet::raise`]: `membarrier`, or a fence)
    /// and looks at each lane once more, raising its bit again if a record or a close arrived
    /// meanwhile. `heavy` returns false if it could not run: the bits are then raised again
    /// (nothing is lost; the consumer keeps visiting those lanes). Returns whether any bit was
    /// raised again.
    pub(crate) fn clear(&self, lanes: &[u32], heavy: impl FnOnce() -> bool) -> bool {
        for &lane in lanes {
            let (word, bit) = self.ready_word(lane);
            word.fetch_and(!bit, Ordering::Relaxed);
        }
        let barrier = heavy();
        let mut again = false;
        for &lane in lanes {
            let read = self.word(lane, L_READ).load(Ordering::Relaxed);
            let closed = self.word(lane, L_STATE).load(Ordering::Relaxed) & STATE_MASK >= CLOSED;
            if !barrier || self.word(lane, L_WRITE).load(Ordering::Relaxed) != read || closed {
                let (word, bit) = self.ready_word(lane);
                word.fetch_or(bit, Ordering::Relaxed);
                again = true;
            }
        }
        again
    }

    /// Raises the ready bit of a lane whose producer the sweep found dead, after marking it
    /// closed on the producer's behalf. `state` is the open state the sweep saw.
    pub(crate) fn close_dead(&self, lane: u32, state: u64) -> bool {
        let dead = (state & !STATE_MASK) | CLOSED | DIED;
        // ORDERING: AcqRel: Acquire pairs with the producer's Release stores (its last write
        // position was stored before it died); Release with `settle`'s Acquire load of the state.
        if self
            .word(lane, L_STATE)
            .compare_exchange(state, dead, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let (word, bit) = self.ready_word(lane);
        word.fetch_or(bit, Ordering::Relaxed);
        true
    }

    /// Raises the ready bit of every lane that is not free or holds unread bytes: a new
    /// consumer's first step, as its predecessor may have died between clearing a bit and
    /// looking at the lane once more (or freeing it).
    pub(crate) fn raise_all_busy(&self) {
        for lane in 0..self.shape.lanes {
            let (write, read) = (
                self.word(lane, L_WRITE).load(Ordering::Relaxed),
                self.word(lane, L_READ).load(Ordering::Relaxed),
            );
            if self.state(lane) & STATE_MASK != FREE || write != read {
                let (word, bit) = self.ready_word(lane);
                word.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// The first lane at or after `from` (wrapping around) whose ready bit is set.
    #[inline]
    pub(crate) fn next_ready(&self, from: u32) -> Option<u32> {
        let n = self.shape.ready_words();
        let lanes = self.shape.lanes;
        let from = if from >= lanes { 0 } else { from };
        let first = from as usize / 64;
        for k in 0..=n {
            let i = (first + k) % n;
            let mut bits = self.words[W_READY + i].load(Ordering::Relaxed);
            if k == 0 {
                bits &= !0u64 << (from % 64);
            } else if k == n {
                // Back at the first word: the bits below `from`.
                bits &= (1u64 << (from % 64)).wrapping_sub(1);
            }
            if bits != 0 {
                let lane = (i * 64) as u32 + bits.trailing_zeros();
                if lane < lanes {
                    return Some(lane);
                }
            }
        }
        None
    }

    /// Whether any ready bit is set.
    pub(crate) fn any_ready(&self) -> bool {
        (0..self.shape.ready_words()).any(|i| self.words[W_READY + i].load(Ordering::Relaxed) != 0)
    }
}

/// The points inside a publish between two of its stores (where a loom model's producer dies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The record's bytes are written; its write position is not.
    Written,
    /// The write position is stored; the ready bit is not raised.
    Published,
}

/// A producer's lane: its write position and what it knows of the read position.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) lane: u32,
    write: u64,
    /// The read position last loaded: the consumer's is at least this.
    read: u64,
    drops: u64,
    published: u64,
    /// A real fence before the ready-bit look (`Wakeup::Fence`, or no `membarrier`).
    strong: bool,
}

impl Writer {
    /// Writes one record, or drops it if the lane has no room for it even after a fresh look at
    /// the read position. `data` is at most the lane's largest record (the caller checked).
    #[inline]
    pub(crate) fn publish<M: LaneBytes>(&mut self, set: &LaneSet<'_, M>, data: &[u8]) -> Pushed {
        self.publish_steps(set, data, |_| true)
            .expect("a producer that always goes on finishes")
    }

    /// [`Writer::publish`], asking `go_on` after each of its steps whether to go on: `None` if it
    /// stopped there (the loom models' producer that dies between two of its stores).
    #[inline(always)]
    pub(crate) fn publish_steps<M: LaneBytes>(
        &mut self,
        set: &LaneSet<'_, M>,
        data: &[u8],
        mut go_on: impl FnMut(Step) -> bool,
    ) -> Option<Pushed> {
        let need = record_bytes(data.len());
        let lane_bytes = set.shape.lane_bytes;
        if self.write + need - self.read > lane_bytes {
            // ORDERING: Acquire pairs with the consumer's Release store in `ack`: its reads of
            // the bytes we are about to overwrite are done.
            let read = load_acquire(set.word(self.lane, L_READ));
            // A read position that is not between our last look and our write position is not
            // the consumer's (a forged segment): keep the old one, which errs towards "full".
            if read >= self.read && read <= self.write {
                self.read = read;
            }
            if self.write + need - self.read > lane_bytes {
                self.drops += 1;
                set.word(self.lane, L_DROPS)
                    .store(self.drops, Ordering::Relaxed);
                return Some(Pushed::Full { drops: self.drops });
            }
        }
        let head = (data.len() as u64).to_le_bytes();
        // SAFETY: we are the lane's only producer (we hold it: its lock, or its claim on a heap
        // segment); `[write, write + need)` is at or past the published write position and,
        // checked just above, within a lane of the read position we loaded with Acquire, so the
        // consumer reads none of it; `need <= lane_bytes`.
        unsafe {
            set.mem.write(self.lane, self.write, &head);
            set.mem
                .write(self.lane, self.write + LANE_RECORD_HEADER as u64, data);
        }
        if !go_on(Step::Written) {
            return None;
        }
        self.write += need;
        self.published += 1;
        set.word(self.lane, L_PUBLISHED)
            .store(self.published, Ordering::Relaxed);
        // ORDERING: Release pairs with the consumer's Acquire load in `peek`: the record's bytes
        // are visible to whoever sees the new position.
        set.word(self.lane, L_WRITE)
            .store(self.write, Ordering::Release);
        if !go_on(Step::Published) {
            return None;
        }
        Some(Pushed::Queued {
            raised: set.raise(self.lane, self.strong),
        })
    }

    /// Records dropped in this session.
    pub(crate) fn drops(&self) -> u64 {
        self.drops
    }

    /// Bytes free for records now, as the producer last saw the read position.
    pub(crate) fn free_bytes(&self, lane_bytes: u64) -> u64 {
        lane_bytes - (self.write - self.read)
    }
}
