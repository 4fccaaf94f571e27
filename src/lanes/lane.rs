//! The lanes protocol over the segment's words and the lanes' bytes (docs/design.md §17): one
//! single-producer, single-consumer byte ring per lane, and the ready bitmap that lets the
//! consumer find the lanes with something to read in time proportional to their number.
//!
//! A producer writes a record's payload at its write position, a zero header after it, and
//! then the record's header (its length and a commit bit) with Release; the consumer, which
//! polls the header at its read position, loads it with Acquire, reads the record in place, and
//! publishes its new read position with Release when it is done; the producer loads that with
//! Acquire before it writes over the bytes. Between the two stores nobody else writes the
//! record's bytes, which is what makes the consumer's in-place `&[u8]` sound. The write
//! position word is the producer's own (for its next session and the inspector): the consumer
//! never waits on it, so a message costs one line transfer before its bytes, not two.

use super::layout::{
    max_record, record_bytes, LanesShape, BLOCK_WORDS, CLOSED, DIED, FREE, HEAD_COMMIT,
    LANE_RECORD_HEADER, L_CONSUMED, L_DROPS, L_PUBLISHED, L_READ, L_ROOM_WAITERS, L_ROOM_WAKE,
    L_STATE, L_WRITE, OPEN, SESSION, STATE_MASK, W_READY,
};
use super::mirror::{LaneBytes, LaneRing};
use crate::sync::{load_acquire, AtomicU64, Ordering};
use crate::wait::{self, Futex, WakeWords};

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

/// A producer's own lane, worked out once, when it opens the lane, rather than on every publish:
/// its control block, its ready word and bit, and its bytes (docs/design.md §17, "Publishing
/// and reading in place").
pub(crate) struct OwnLane<'a, R> {
    lane: u32,
    block: &'a [AtomicU64; BLOCK_WORDS],
    ready: &'a AtomicU64,
    bit: u64,
    ring: R,
    lane_bytes: u64,
}

impl<R> OwnLane<'_, R> {
    /// Largest record payload.
    #[inline(always)]
    pub(crate) fn max_record(&self) -> usize {
        max_record(self.lane_bytes)
    }

    /// The handshake words of this lane's producer waiting for room.
    pub(crate) fn room_words(&self) -> WakeWords<'_> {
        room_words_of(self.block)
    }
}

/// A record the consumer found: its payload at `pos`, `len` bytes, and where the next begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peeked {
    pub pos: u64,
    pub len: usize,
    pub end: u64,
}

/// The consumer's private note that an acknowledgement found a producer waiting for room (an
/// atomic only so that records and consumers may move between threads; only the thread that
/// holds the consumer touches it).
pub(crate) type Flagged = std::sync::atomic::AtomicU64;

/// The consumer's words of one lane: what an acknowledgement stores, and the handshake words
/// of a producer waiting for room.
#[derive(Clone, Copy)]
pub(crate) struct Acker<'a> {
    read: &'a AtomicU64,
    consumed: &'a AtomicU64,
    room: WakeWords<'a>,
    /// A real fence before the look at the room waiter flag (as for a producer's wake-up).
    strong: bool,
}

impl std::fmt::Debug for Acker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acker")
            .field("read", &self.read.load(Ordering::Relaxed))
            .finish()
    }
}

impl<'a> Acker<'a> {
    /// Releases the lane's bytes up to `end` after `records` more records, and wakes the
    /// lane's producer if it sleeps waiting for room (one load of its flag when it does not).
    #[inline]
    pub(crate) fn ack<F: Futex>(&self, end: u64, records: u64, futex: &F) {
        if self.release(end, records) != 0 {
            wait::wake_sleepers(self.room, futex);
        }
    }

    /// [`Acker::ack`] for a record the consumer handed out, whose drop acknowledges it: the
    /// flag it loads is OR-ed into `flagged`, and the consumer wakes the producer at its next
    /// call ([`Acker::wake_flagged`]), not here. A branch on the flag inside the drop, inlined
    /// into the caller's receive loop, measured 35 ns more per message one way in a ping-pong
    /// (docs/design.md §17, "Waiting for room").
    #[inline]
    pub(crate) fn ack_flagging(&self, end: u64, records: u64, flagged: &Flagged) {
        // A plain load and store (no read-modify-write): only the consumer's thread writes it.
        let seen = flagged.load(std::sync::atomic::Ordering::Relaxed) | self.release(end, records);
        flagged.store(seen, std::sync::atomic::Ordering::Relaxed);
    }

    /// Wakes the lane's producer if a flag was seen (`flagged` non-zero, then reset).
    #[inline]
    pub(crate) fn wake_flagged<F: Futex>(&self, flagged: &Flagged, futex: &F) {
        if flagged.swap(0, std::sync::atomic::Ordering::Relaxed) != 0 {
            wait::wake_sleepers(self.room, futex);
        }
    }

    /// The acknowledgement's stores, then the look at the room waiter flag (its value).
    #[inline(always)]
    fn release(&self, end: u64, records: u64) -> u64 {
        self.consumed.store(
            self.consumed.load(Ordering::Relaxed).wrapping_add(records),
            Ordering::Relaxed,
        );
        // ORDERING: Release pairs with the producer's Acquire load of the read position: our
        // reads of the bytes before `end` happen before its writes over them.
        self.read.store(end, Ordering::Release);
        // The read position is to the producer waiting for room what a commit is to a sleeping
        // subscriber: the same handshake (docs/design.md §7), with the consumer as the waker:
        // the light barrier between our store and our load of the flag pairs with the
        // producer's heavy barrier between its raising of the flag and its look at the read
        // position.
        wait::light_barrier(self.strong);
        self.room.flag.load(Ordering::Relaxed)
    }
}

/// A read position or header that is not a lane's (a corrupt or forged segment): small and
/// `Copy`, so that the receive path carries no `String`; described when it is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bad {
    Misaligned { lane: u32, read: u64 },
    NotAHeader { lane: u32, read: u64, head: u64 },
    TooLong { lane: u32, read: u64, len: usize },
}

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Bad::Misaligned { lane, read } => {
                write!(f, "lane {lane}: read position {read} is not 8-aligned")
            }
            Bad::NotAHeader { lane, read, head } => {
                write!(
                    f,
                    "lane {lane}: the header at {read} ({head:#x}) is not a record's"
                )
            }
            Bad::TooLong { lane, read, len } => write!(
                f,
                "lane {lane}: the record at {read} claims {len} bytes, more than a lane holds"
            ),
        }
    }
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
        &self.block(lane)[field]
    }

    /// Lane `lane`'s words: one bounds check for all of them (a field is a constant below
    /// `BLOCK_WORDS`).
    #[inline]
    fn block(&self, lane: u32) -> &'a [AtomicU64; BLOCK_WORDS] {
        let at = self.shape.word(lane, 0);
        self.words[at..at + BLOCK_WORDS]
            .try_into()
            .expect("a slice of BLOCK_WORDS words")
    }

    #[inline]
    fn ready_word(&self, lane: u32) -> (&'a AtomicU64, u64) {
        (&self.words[W_READY + lane as usize / 64], 1 << (lane % 64))
    }

    /// Lane `lane` for its producer ([`OwnLane`]).
    pub(crate) fn own(&self, lane: u32) -> OwnLane<'a, M::Ring<'a>> {
        let (ready, bit) = self.ready_word(lane);
        OwnLane {
            lane,
            block: self.block(lane),
            ready,
            bit,
            ring: self.mem.ring(lane),
            lane_bytes: self.shape.lane_bytes,
        }
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

    /// The header word at lane `lane`'s position `pos` (Acquire), or `None` for a position
    /// that is not 8-aligned (not a lane's: a forged read position).
    #[inline]
    fn head(&self, lane: u32, pos: u64) -> Option<u64> {
        // SAFETY: `pos` is 8-aligned (checked); header words are only loaded and stored
        // atomically while they are shared (the contract of `load_head`, kept by `publish`).
        (pos % 8 == 0).then(|| unsafe { self.mem.load_head(lane, pos) })
    }

    // ---- the producer's side ----

    /// Opens lane `lane` for a producer that holds it (its lock, or on a heap segment its free
    /// state won by `try_claim`): a new session, which writes from the read position (a free
    /// lane is drained). Fails if that position is not a lane's.
    pub(crate) fn open(&self, lane: u32, state: u64, strong: bool) -> Result<Writer, String> {
        // ORDERING: Acquire pairs with the consumer's Release stores of the read position: the
        // consumer's reads of the bytes before it are done.
        let read = load_acquire(self.word(lane, L_READ));
        if read % 8 != 0 {
            return Err(format!(
                "lane {lane}: read position {read} is not 8-aligned"
            ));
        }
        let write = read;
        // The header the consumer polls next is zero whatever the last session left there (a
        // producer that died between its bytes and its header leaves it zero already). The
        // consumer holds no view of it: the lane is drained.
        // SAFETY: 8-aligned; header words are accessed atomically while shared.
        unsafe { self.mem.store_head(lane, write, 0, false) };
        self.word(lane, L_WRITE).store(write, Ordering::Relaxed);
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

    /// Closes lane `lane` for good (the producer's `close`, `release` and drop): the consumer
    /// reads what is queued, then sees the lane closed, then frees it. Returns whether the
    /// ready bit was raised.
    pub(crate) fn close(&self, w: &Writer) -> bool {
        let state = self.word(w.lane, L_STATE).load(Ordering::Relaxed);
        // ORDERING: Release pairs with the consumer's Acquire load of the state: a consumer
        // that sees the close sees every write position stored before it.
        self.word(w.lane, L_STATE)
            .store((state & !STATE_MASK) | CLOSED, Ordering::Release);
        let (word, bit) = self.ready_word(w.lane);
        raise(word, bit, w.strong)
    }

    // ---- the consumer's side ----

    /// The next record of lane `lane`, if the producer has published one.
    #[inline]
    pub(crate) fn peek(&self, lane: u32) -> Result<Option<Peeked>, Bad> {
        self.peek_at(lane, self.read_position(lane))
    }

    /// The record at position `read` of lane `lane` (the consumer's read position, or the end
    /// of the records of a batch not yet acknowledged), if the producer has published one.
    /// Every header is checked before it bounds a view: a committed one whose record, with the
    /// zero header after it, fits in a lane.
    #[inline]
    pub(crate) fn peek_at(&self, lane: u32, read: u64) -> Result<Option<Peeked>, Bad> {
        // ORDERING: `head` loads with Acquire, pairing with the producer's Release store of the
        // header in `Writer::publish`: the record's bytes written before it are visible.
        let Some(head) = self.head(lane, read) else {
            return Err(Bad::Misaligned { lane, read });
        };
        if head == 0 {
            return Ok(None);
        }
        let len = (head & 0xffff_ffff) as usize;
        let need = record_bytes(len);
        if head & !0xffff_ffff != HEAD_COMMIT {
            return Err(Bad::NotAHeader { lane, read, head });
        }
        if need + LANE_RECORD_HEADER as u64 > self.shape.lane_bytes {
            return Err(Bad::TooLong { lane, read, len });
        }
        Ok(Some(Peeked {
            pos: read + LANE_RECORD_HEADER as u64,
            len,
            end: read + need,
        }))
    }

    /// Lane `lane`'s read position (only the consumer stores it).
    #[inline]
    pub(crate) fn read_position(&self, lane: u32) -> u64 {
        self.word(lane, L_READ).load(Ordering::Relaxed)
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

    /// Releases lane `lane`'s bytes up to `end` (an acknowledgement) after `records` records,
    /// waking its producer if it waits for room (`strong`: as for [`Acker`]).
    #[inline]
    pub(crate) fn ack<F: Futex>(&self, lane: u32, end: u64, records: u64, futex: &F, strong: bool) {
        self.acker(lane, strong).ack(end, records, futex);
    }

    /// The words an acknowledgement of lane `lane` stores, for a record to keep.
    #[inline]
    pub(crate) fn acker(&self, lane: u32, strong: bool) -> Acker<'a> {
        let block = self.block(lane);
        Acker {
            read: &block[L_READ],
            consumed: &block[L_CONSUMED],
            room: room_words_of(block),
            strong,
        }
    }

    /// Called when lane `lane` had nothing to read: frees it if it is closed and drained, else
    /// says it is empty and leaves its ready bit as it is. The consumer clears the bits of empty
    /// lanes later, several at a time, with [`LaneSet::clear`].
    pub(crate) fn settle(&self, lane: u32) -> Settled {
        let state = self.state(lane);
        if state & STATE_MASK == CLOSED || state & STATE_MASK == CLOSED | DIED {
            // The close was stored after the last header (Release/Acquire): one more look finds
            // any record published before it. A header that is not a record's is left behind
            // (nothing more is written on a closed lane; the next session writes over it).
            let read = self.read_position(lane);
            if let Ok(Some(_)) = self.peek_at(lane, read) {
                return Settled::Again;
            }
            // A producer that died between its last header and its write position left the
            // latter behind the records read: the lane is drained up to `read`.
            self.word(lane, L_WRITE).store(read, Ordering::Relaxed);
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
    /// consumer's side of the barrier pair with [`raise`]: `membarrier`, or a fence)
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
            let head = self.head(lane, self.read_position(lane));
            let closed = self.word(lane, L_STATE).load(Ordering::Relaxed) & STATE_MASK >= CLOSED;
            if !barrier || head != Some(0) || closed {
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
            let head = self.head(lane, self.read_position(lane));
            if self.state(lane) & STATE_MASK != FREE || head != Some(0) {
                let (word, bit) = self.ready_word(lane);
                word.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// The first lane at or after `from` (wrapping around) whose ready bit is set.
    #[inline]
    pub(crate) fn next_ready(&self, from: u32) -> Option<u32> {
        let lanes = self.shape.lanes;
        let from = if from >= lanes { 0 } else { from };
        let ready = &self.words[W_READY..W_READY + self.shape.ready_words()];
        let first = from as usize / 64;
        let shift = from % 64;
        // A set bit of word `i`, as a lane; a bit past the last lane (only a forged segment sets
        // one) is not a lane.
        let lane_of = |i: usize, bits: u64| {
            let lane = (i * 64) as u32 + bits.trailing_zeros();
            (lane < lanes).then_some(lane)
        };
        // The common case first: `from` itself or a lane after it in its word (a busy lane keeps
        // its bit). Then the words after it and those before it, one load and one test each
        // (a consumer of 1000 lanes with 10 busy crosses two words between busy lanes), and last
        // the bits of the first word below `from`.
        let bits = ready[first].load(Ordering::Relaxed) & (!0u64 << shift);
        if bits & 1 << shift != 0 {
            return Some(from);
        }
        if bits != 0 {
            if let Some(lane) = lane_of(first, bits) {
                return Some(lane);
            }
        }
        for (i, word) in ready.iter().enumerate().skip(first + 1) {
            let bits = word.load(Ordering::Relaxed);
            if bits != 0 {
                if let Some(lane) = lane_of(i, bits) {
                    return Some(lane);
                }
            }
        }
        for (i, word) in ready[..first].iter().enumerate() {
            let bits = word.load(Ordering::Relaxed);
            if bits != 0 {
                return lane_of(i, bits);
            }
        }
        let bits = ready[first].load(Ordering::Relaxed) & ((1u64 << shift) - 1);
        if bits != 0 {
            return lane_of(first, bits);
        }
        None
    }

    /// Whether any ready bit is set.
    pub(crate) fn any_ready(&self) -> bool {
        (0..self.shape.ready_words()).any(|i| self.words[W_READY + i].load(Ordering::Relaxed) != 0)
    }
}

/// Raises a lane's ready bit (`bit` of `word`) after a store the consumer must find (a header
/// or a close): the producer's side of the barrier pair with [`LaneSet::clear`]. `strong`: a
/// real fence rather than the light side of the asymmetric pair (§7). Returns whether this
/// raised it (the consumer may need waking).
#[inline(always)]
fn raise(word: &AtomicU64, bit: u64, strong: bool) -> bool {
    // ORDERING: the light barrier pairs with the consumer's heavy barrier in `clear`, between
    // its clearing of bits and its second look at their lanes: either that look sees our store
    // (a header, or the close), or our load below sees the bit cleared and we raise it again
    // (docs/design.md §17, "The ready bitmap"). Under loom and miri it is a SeqCst fence.
    crate::wait::light_barrier(strong);
    if word.load(Ordering::Relaxed) & bit != 0 {
        return false;
    }
    word.fetch_or(bit, Ordering::Relaxed) & bit == 0
}

/// The room handshake words in a lane's control block (one bounds check for the block, done by
/// the caller, serves these and the acknowledgement's words alike).
#[inline]
fn room_words_of(block: &[AtomicU64; BLOCK_WORDS]) -> WakeWords<'_> {
    WakeWords {
        flag: &block[L_ROOM_WAITERS],
        counter: crate::sync::futex_half(&block[L_ROOM_WAKE]),
    }
}

/// The points inside a publish between two of its stores (where a loom model's producer dies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The record's bytes and the zero header after them are written; its header is not.
    Written,
    /// The header is stored (the record is published); the write position and the counters
    /// are not, and the ready bit is not raised.
    Committed,
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
    pub(crate) fn publish<R: LaneRing>(&mut self, own: &OwnLane<'_, R>, data: &[u8]) -> Pushed {
        self.publish_steps(own, data, |_| true)
            .expect("a producer that always goes on finishes")
    }

    /// [`Writer::publish`], asking `go_on` after each of its steps whether to go on: `None` if it
    /// stopped there (the loom models' producer that dies between two of its stores).
    #[inline(always)]
    pub(crate) fn publish_steps<R: LaneRing>(
        &mut self,
        own: &OwnLane<'_, R>,
        data: &[u8],
        go_on: impl FnMut(Step) -> bool,
    ) -> Option<Pushed> {
        if !self.fits(own, data.len()) {
            return Some(self.drop_one(own));
        }
        self.write_steps(own, data, go_on)
    }

    /// Whether a record of `len` bytes fits in the lane now, with a fresh look at the read
    /// position if it did not fit at the last one.
    #[inline(always)]
    pub(crate) fn fits<R>(&mut self, own: &OwnLane<'_, R>, len: usize) -> bool {
        // The record, and the zero header after it, where the consumer looks next.
        let room = record_bytes(len) + LANE_RECORD_HEADER as u64;
        let lane_bytes = own.lane_bytes;
        if self.write + room - self.read <= lane_bytes {
            return true;
        }
        // ORDERING: Acquire pairs with the consumer's Release store in `ack`: its reads of the
        // bytes we are about to overwrite are done.
        let read = load_acquire(&own.block[L_READ]);
        // A read position that is not between our last look and our write position is not the
        // consumer's (a forged segment): keep the old one, which errs towards "full".
        if read >= self.read && read <= self.write {
            self.read = read;
        }
        self.write + room - self.read <= lane_bytes
    }

    /// The lane's read position, if it is not one the consumer could have stored: behind the
    /// one this producer last loaded, or past its write position (a corrupt or forged segment,
    /// which `fits` ignores and so would find the lane full for ever).
    pub(crate) fn forged_read<R>(&self, own: &OwnLane<'_, R>) -> Option<u64> {
        let read = own.block[L_READ].load(Ordering::Relaxed);
        (read < self.read || read > self.write).then_some(read)
    }

    /// Counts a record dropped for want of room.
    #[cold]
    pub(crate) fn drop_one<R>(&mut self, own: &OwnLane<'_, R>) -> Pushed {
        self.drops += 1;
        own.block[L_DROPS].store(self.drops, Ordering::Relaxed);
        Pushed::Full { drops: self.drops }
    }

    /// Writes one record if it fits now; `None` (nothing written or counted) if it does not.
    #[inline]
    pub(crate) fn try_publish<R: LaneRing>(
        &mut self,
        own: &OwnLane<'_, R>,
        data: &[u8],
    ) -> Option<Pushed> {
        if !self.fits(own, data.len()) {
            return None;
        }
        Some(
            self.write_steps(own, data, |_| true)
                .expect("a producer that always goes on finishes"),
        )
    }

    /// Writes and commits a record that [`Writer::fits`] (just checked by the caller), asking
    /// `go_on` after each step as [`Writer::publish_steps`] does.
    #[inline(always)]
    fn write_steps<R: LaneRing>(
        &mut self,
        own: &OwnLane<'_, R>,
        data: &[u8],
        mut go_on: impl FnMut(Step) -> bool,
    ) -> Option<Pushed> {
        let need = record_bytes(data.len());
        let room = need + LANE_RECORD_HEADER as u64;
        debug_assert_eq!(own.lane, self.lane, "a writer writes its own lane");
        debug_assert!(self.write + room - self.read <= own.lane_bytes);
        let ring = &own.ring;
        // SAFETY: we are the lane's only producer (we hold it: its lock, or its claim on a heap
        // segment). `[write, write + room)` is at or past our last header, which the consumer
        // has not passed, and (checked by `fits`, the caller's contract) within a lane of the
        // read position we loaded with Acquire: the consumer holds no view of any of it and loads only the header at
        // `write` (which we store last, atomically); `room <= lane_bytes`. The zero header at
        // `write + need` is 8-aligned and stored atomically.
        unsafe {
            ring.write(self.write + LANE_RECORD_HEADER as u64, data);
            ring.store_head(self.write + need, 0, false);
        }
        if !go_on(Step::Written) {
            return None;
        }
        // ORDERING: the commit stores with Release, pairing with the consumer's Acquire load of
        // the header in `peek_at`: the bytes and the zero header after them are visible to
        // whoever sees it.
        // SAFETY: as above; `write` is 8-aligned.
        unsafe { ring.store_head(self.write, data.len() as u64 | HEAD_COMMIT, true) };
        if !go_on(Step::Committed) {
            return None;
        }
        self.write += need;
        self.published += 1;
        own.block[L_PUBLISHED].store(self.published, Ordering::Relaxed);
        own.block[L_WRITE].store(self.write, Ordering::Relaxed);
        Some(Pushed::Queued {
            raised: raise(own.ready, own.bit, self.strong),
        })
    }

    /// Records dropped in this session.
    pub(crate) fn drops(&self) -> u64 {
        self.drops
    }

    /// Bytes free for records now, as the producer last saw the read position.
    pub(crate) fn free_bytes(&self, lane_bytes: u64) -> u64 {
        // Less the zero header after the last record.
        lane_bytes - LANE_RECORD_HEADER as u64 - (self.write - self.read)
    }
}
